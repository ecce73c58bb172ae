"""BrokerExecutor over a SimBroker: deterministic ids, bad input refused before sending,
the routing rule, stale orders, account status and flatten."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_helpers import StepClock, bar, call_symbol
from tradenova_dagster.broker import (
    BrokerExecutor,
    BrokerRejected,
    RoutingPolicy,
    SimBroker,
    TransientBrokerError,
    UnknownSymbol,
    make_client_order_id,
    route_order,
)
from tradenova_dagster.broker.base import NotFound
from tradenova_dagster.broker.executor import LongOnlyRefused, OutcomeStillUnknown
from tradenova_dagster.domain import OrderClass, OrderStatus, OrderType, Quote, Side
from tradenova_dagster.ledger.book import LongOnlyViolation

T = pd.Timestamp("2024-03-04 15:00", tz="UTC")


@pytest.fixture
def clock():
    return StepClock()


@pytest.fixture
def sim(store, clock):
    broker = SimBroker("sim:exec", store, clock=clock)
    broker.on_bar(clock.t, "SPY", 500.0, vix=15)
    return broker


class ScriptedSim(SimBroker):
    """A SimBroker that counts what reaches it and fails on cue.

    ``script``: steps for the next ``submit_order`` calls, each ``(when, error)``: raise
    ``error`` ``before`` the order is created, or ``after`` it (the reply is lost).
    ``lookup_errors``: client_order_id → the error every lookup of it raises."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.script: list[tuple[str, Exception]] = []
        self.lookup_errors: dict[str, Exception] = {}
        self.submitted: list[str] = []

    def submit_order(self, order):
        self.submitted.append(order.client_order_id)
        if self.script:
            when, error = self.script.pop(0)
            if when == "after":
                super().submit_order(order)
            raise error
        return super().submit_order(order)

    def get_order_by_client_id(self, client_order_id):
        if client_order_id in self.lookup_errors:
            raise self.lookup_errors[client_order_id]
        return super().get_order_by_client_id(client_order_id)


@pytest.fixture
def executor(sim):
    return BrokerExecutor(sim, run_id="run-1", backoff_s=0)


@pytest.fixture
def scripted(store, clock):
    broker = ScriptedSim("sim:scripted", store, clock=clock)
    broker.on_bar(clock.t, "SPY", 500.0, vix=15)
    return broker, BrokerExecutor(broker, run_id="run-s", backoff_s=0)


def test_client_order_ids_are_deterministic_readable_and_distinct():
    a = make_client_order_id("SPY", "buy", 2, "entry", T, run_id="r1")
    assert a == make_client_order_id("spy", Side.BUY, 2.0, "entry", T.to_pydatetime(), run_id="r1")
    assert a.startswith("tn-entry-SPY-buy-2-20240304T1500-")
    others = {
        make_client_order_id("SPY", "buy", 2, "entry", T, run_id="r2"),
        make_client_order_id("SPY", "buy", 2, "tp1", T, run_id="r1"),
        make_client_order_id("SPY", "sell", 2, "entry", T, run_id="r1"),
        make_client_order_id("SPY", "buy", 3, "entry", T, run_id="r1"),
        make_client_order_id("SPY", "buy", 2, "entry", T + pd.Timedelta(minutes=1), run_id="r1"),
        make_client_order_id("SPY", "buy", 2, "entry", T, run_id="r1", extra=("limit_price=500",)),
    }
    assert a not in others and len(others) == 6
    with pytest.raises(ValueError, match="bar_time"):
        make_client_order_id("SPY", "buy", 2, "entry", None)


@given(symbol=st.sampled_from(["SPY", "SPY260116C00600000", "BRK.B"]), qty=st.floats(0.001, 1e6),
       intent=st.text(max_size=200), run_id=st.text(max_size=200))
def test_client_order_ids_always_fit_alpacas_128_characters(symbol, qty, intent, run_id):
    coid = make_client_order_id(symbol, "sell", qty, intent, T, run_id=run_id)
    assert 0 < len(coid) <= 128 and coid == make_client_order_id(symbol, "sell", qty, intent, T, run_id=run_id)


@pytest.mark.parametrize("call, message", [
    (lambda e: e.execute_market_order("SPY", 0, "buy"), "qty must be > 0"),
    (lambda e: e.execute_market_order("SPY", -3, "buy"), "qty must be > 0"),
    (lambda e: e.execute_market_order("SPY", float("nan"), "buy"), "qty must be a finite number"),
    (lambda e: e.execute_limit_order("SPY", 1, "buy", float("nan")), "limit_price must be a finite number"),
    (lambda e: e.execute_market_order("SPY", 1, "hold"), "side: unknown value 'hold'"),
    (lambda e: e.execute_market_order("ZZZZ", 1, "buy"), "'ZZZZ' is not known to the broker"),
    (lambda e: e.execute_market_order(call_symbol(500), 1.5, "buy"), "whole number of option contracts"),
    (lambda e: e.execute_market_order(call_symbol(500), 1, "buy", time_in_force="gtc"), "only 'day'"),
    (lambda e: e.execute_bracket_order(call_symbol(500), 1, "buy", 3.0, 4.0, 2.0), "not accepted for options"),
    (lambda e: e.execute_oco_order(call_symbol(500), 1, "sell", 4.0, 2.0), "not accepted for options"),
    (lambda e: e.execute_bracket_order("SPY", 1, "buy", 500, take_profit=495, stop_loss=490),
     "take_profit 495.0 must be above the entry 500"),
    (lambda e: e.execute_bracket_order("SPY", 1, "buy", 500, take_profit=510, stop_loss=505),
     "take_profit 510.0 must be above stop_loss 505.0|stop_loss 505.0 must be below the entry 500"),
    (lambda e: e.execute_bracket_order("SPY", 1, "buy", None, take_profit=510, stop_loss=502),
     "stop_loss 502.0 must be below the entry 500"),
    (lambda e: e.execute_bracket_order("SPY", 1, "sell", 500, take_profit=510, stop_loss=505),
     "take_profit 510.0 must be below stop_loss 505.0"),
    (lambda e: e.execute_bracket_order("SPY", 1, "sell", 500, take_profit=505, stop_loss=510),
     "take_profit 505.0 must be below the entry 500.0"),
    (lambda e: e.execute_oco_order("SPY", 1, "sell", take_profit=490, stop_loss=495), "to exit a long"),
    (lambda e: e.execute_bracket_order("SPY", 1, "buy", 500, take_profit=float("inf"), stop_loss=490),
     "take_profit must be a finite number"),
])
def test_bad_input_is_refused_before_anything_is_sent(executor, sim, call, message):
    with pytest.raises(ValueError, match=message):
        call(executor)
    assert sim.list_orders("all") == [] and sim.get_positions() == []


def test_unknown_symbol_is_its_own_error(executor):
    with pytest.raises(UnknownSymbol):
        executor.execute_market_order("QQQQQ", 1, "buy")


def test_executor_ids_follow_the_sims_clock_and_an_explicit_id_is_kept(executor, sim, clock):
    result = executor.execute_market_order("SPY", 3, "buy")
    assert result.outcome == "submitted" and result.attempts == 1
    assert result.client_order_id == make_client_order_id("SPY", "buy", 3, "entry", clock.t, run_id="run-1",
                                                          extra=("market",))
    limit = executor.execute_limit_order("SPY", 2, "buy", 499.5, client_order_id="explicit-id")
    assert limit.order.client_order_id == "explicit-id"
    sim.on_bar(clock.minutes(1), "SPY", bar(500))
    assert [(p.symbol, p.qty) for p in executor.get_positions()] == [("SPY", 3)]


def test_a_limit_order_rests_until_the_price_crosses_and_fills_at_its_limit(executor, sim, clock):
    result = executor.execute_limit_order("SPY", 2, "buy", 499.0)
    assert result.ok and (result.order.order_type, result.order.limit_price) == (OrderType.LIMIT, 499.0)
    sim.on_bar(clock.minutes(1), "SPY", bar(500, high=500.5, low=499.5))  # never reaches 499
    assert sim.get_order(result.order.id).status is OrderStatus.NEW and sim.get_positions() == []
    sim.on_bar(clock.minutes(1), "SPY", bar(500, high=500.5, low=498.5))
    filled = sim.get_order(result.order.id)
    assert (filled.status, filled.filled_qty, filled.filled_avg_price) == (OrderStatus.FILLED, 2, 499.0)
    assert sim.get_position("SPY").qty == 2


def test_a_bracket_entry_fills_then_its_take_profit_exits_and_cancels_the_stop(executor, sim, clock):
    result = executor.execute_bracket_order("SPY", 3, "buy", 500.5, take_profit=505, stop_loss=495)
    assert result.ok and result.order.order_class is OrderClass.BRACKET
    assert {leg.status for leg in result.order.legs} == {OrderStatus.HELD}  # exits wait for the entry
    sim.on_bar(clock.minutes(1), "SPY", bar(500))
    entry = sim.get_order(result.order.id)
    assert entry.status is OrderStatus.FILLED and sim.get_position("SPY").qty == 3
    assert {leg.status for leg in entry.legs} == {OrderStatus.NEW}  # now live
    sim.on_bar(clock.minutes(1), "SPY", bar(504, high=506))
    legs = {leg.order_type: leg for leg in sim.get_order(result.order.id).legs}
    assert (legs[OrderType.LIMIT].status, legs[OrderType.LIMIT].filled_avg_price) == (OrderStatus.FILLED, 505.0)
    assert legs[OrderType.STOP].status is OrderStatus.CANCELED  # one exit cancels the other
    assert sim.get_positions() == []


def test_an_oco_exit_stops_out_and_cancels_the_take_profit(executor, sim, clock):
    executor.execute_market_order("SPY", 2, "buy")
    sim.on_bar(clock.minutes(1), "SPY", bar(500))
    result = executor.execute_oco_order("SPY", 2, "sell", take_profit=520, stop_loss=480)
    assert result.ok and result.order.order_class is OrderClass.OCO and result.order.limit_price == 520
    sim.on_bar(clock.minutes(1), "SPY", bar(500, high=510, low=490))  # neither price reached
    assert sim.get_position("SPY").qty == 2
    sim.on_bar(clock.minutes(1), "SPY", bar(490, low=479))
    take_profit = sim.get_order(result.order.id)
    (stop,) = take_profit.legs
    assert take_profit.status is OrderStatus.CANCELED and take_profit.filled_qty == 0
    assert stop.status is OrderStatus.FILLED and stop.filled_avg_price <= 480
    assert sim.get_positions() == []


def test_routing_rule():
    def q(symbol, bid, ask):
        return Quote(symbol, T, bid, ask)
    option = call_symbol(500)
    route = route_order("SPY", Side.BUY, q("SPY", 499.99, 500.00))
    assert (route.order_type, route.limit_price) == (OrderType.MARKET, None)
    route = route_order(option, Side.BUY, q(option, 1.00, 1.10))  # 9.5% wide: limit at the mid
    assert (route.order_type, route.limit_price) == (OrderType.LIMIT, 1.05)
    route = route_order(option, Side.SELL, q(option, 1.00, 1.09))  # mid 1.045 → the passive cent
    assert route.limit_price == 1.04
    route = route_order(option, Side.BUY, q(option, 5.00, 5.04))  # 0.8% wide: marketable, capped 1%
    assert (route.order_type, route.limit_price) == (OrderType.LIMIT, 5.09)
    route = route_order(option, Side.SELL, q(option, 5.00, 5.04))
    assert route.limit_price == 4.95
    route = route_order("XYZ", Side.BUY, q("XYZ", 10.00, 10.05))  # an illiquid equity: no market order
    assert route.order_type is OrderType.LIMIT and route.limit_price == 10.15
    assert route_order(option, Side.BUY, None).order_type is OrderType.MARKET
    assert route_order(option, Side.BUY, q(option, 5.0, 5.04), RoutingPolicy(wide_spread_pct=0.005)).limit_price == 5.02
    with pytest.raises(ValueError, match="wide_spread_pct"):
        RoutingPolicy(wide_spread_pct=1.5)


@given(bid=st.floats(0.01, 500), width=st.floats(0.01, 5), side=st.sampled_from([Side.BUY, Side.SELL]))
def test_a_routed_limit_never_pays_more_than_the_cap_through_the_touch(bid, width, side):
    bid = round(bid, 2)
    quote = Quote(call_symbol(500), T, bid, round(bid + width, 2))
    route = route_order(quote.symbol, side, quote)
    assert route.order_type is OrderType.LIMIT
    if side is Side.BUY:
        assert route.limit_price <= max(quote.ask * 1.01, quote.ask + 0.01) + 1e-9
        assert route.limit_price >= min(quote.mid, quote.ask) - 1e-9
    else:
        assert route.limit_price >= min(quote.bid * 0.99, quote.bid) - 0.01 - 1e-9
        assert route.limit_price <= max(quote.mid, quote.bid) + 0.01 + 1e-9


def test_execute_order_routes_an_option_on_the_sims_quote(executor, sim, clock):
    result = executor.execute_order(call_symbol(500), 2, "buy")
    quote = sim.get_quote(call_symbol(500))
    assert result.order.order_type is OrderType.LIMIT and result.order.limit_price >= quote.ask
    assert "marketable limit" in result.route
    sim.on_bar(clock.minutes(1), "SPY", 500.0)
    assert sim.get_order(result.order.id).status is OrderStatus.FILLED


def test_stale_orders_are_canceled_but_exits_are_not(executor, sim, clock):
    old = executor.execute_limit_order("SPY", 1, "buy", 450).order
    executor.execute_market_order("SPY", 5, "buy")
    sim.on_bar(clock.minutes(1), "SPY", 500.0)
    oco = executor.execute_oco_order("SPY", 5, "sell", take_profit=520, stop_loss=480).order
    bracket = executor.execute_bracket_order("SPY", 1, "buy", 460, take_profit=520, stop_loss=450).order
    clock.minutes(10)
    fresh = executor.execute_limit_order("SPY", 1, "buy", 451).order
    canceled = executor.cancel_stale_orders(max_age_s=300)
    assert {o.id for o in canceled} == {old.id, bracket.id}
    assert sim.get_order(oco.id).status is OrderStatus.NEW and sim.get_order(fresh.id).status is OrderStatus.NEW
    assert {leg.status for leg in sim.get_order(bracket.id).legs} == {OrderStatus.CANCELED}
    with pytest.raises(ValueError, match="max_age_s"):
        executor.cancel_stale_orders(max_age_s=-1)


def test_account_status_reports_equity_blocks_and_positions(executor, sim, clock):
    executor.execute_market_order("SPY", 10, "buy")
    sim.on_bar(clock.minutes(1), "SPY", bar(500, close=510))
    status = executor.get_account_status()
    assert status.positions == 1 and status.position_value == pytest.approx(5100)
    assert status.equity == pytest.approx(status.cash + 5100) and status.can_trade and status.warnings == ()
    assert status.day_pl == pytest.approx(status.equity - 100_000)
    sim.set_trading_blocked(True)
    blocked = executor.get_account_status()
    assert not blocked.can_trade and "cannot trade" in blocked.warnings[0]
    assert executor.execute_market_order("SPY", 1, "buy").outcome == "rejected"
    assert blocked.as_dict()["warnings"] == list(blocked.warnings)


def test_flatten_cancels_and_closes_everything(executor, sim, clock):
    executor.execute_market_order("SPY", 5, "buy")
    executor.execute_order(call_symbol(500), 2, "buy")
    sim.on_bar(clock.minutes(1), "SPY", 500.0)
    executor.execute_limit_order("SPY", 1, "buy", 450)
    results = executor.flatten()
    assert [r.outcome for r in results] == ["submitted", "submitted"]
    assert all(r.client_order_id.startswith("tn-flatten-") for r in results)
    # Retried within the minute: the same orders (the option's sell is not a second, naked sell).
    assert [r.outcome for r in executor.flatten(cancel_orders=False)] == ["duplicate", "duplicate"]
    sim.on_bar(clock.minutes(1), "SPY", 500.0)
    assert sim.get_positions() == [] and sim.list_orders("open") == []


@pytest.mark.parametrize("field, value, message", [
    ("max_attempts", 0, "max_attempts"), ("backoff_s", -1, "backoff_s"), ("stale_order_age_s", "x", "stale_order_age_s"),
])
def test_executor_settings_are_validated(sim, field, value, message):
    with pytest.raises(ValueError, match=message):
        BrokerExecutor(sim, **{field: value})
    with pytest.raises(ValueError, match="client must be"):
        BrokerExecutor(object())


# --------------------------------------------------------------------------- options are long-only


def _hold_option(executor, sim, clock, qty):
    option = call_symbol(500)
    assert executor.execute_market_order(option, qty, "buy").ok
    sim.on_bar(clock.minutes(1), "SPY", 500.0)
    assert sim.get_position(option).qty == qty
    return option


def test_an_option_sell_above_what_is_held_is_refused_before_the_broker_sees_it(scripted, clock):
    sim, executor = scripted
    naked = executor.execute_market_order(call_symbol(505), 1, "sell")  # nothing held at all
    assert (naked.outcome, naked.ok, naked.order, naked.attempts) == ("refused", False, None, 0)
    assert f"sell 1 {call_symbol(505)} refused" in naked.error and "holds 0" in naked.error
    option = _hold_option(executor, sim, clock, 2)
    sent = list(sim.submitted)
    too_many = executor.execute_market_order(option, 3, "sell", intent="tp1")
    assert (too_many.outcome, too_many.ok, too_many.status_code) == ("refused", False, 403)
    assert all(part in too_many.error for part in (f"sell 3 {option}", "holds 2", "claim 0", "at most 2"))
    assert sim.submitted == sent  # the broker never saw it
    # An open sell claims what it will sell: the next sell may only take the rest.
    resting = executor.execute_limit_order(option, 1, "sell", 50.0, intent="tp2")
    assert resting.outcome == "submitted" and resting.order.is_open
    claimed = executor.execute_market_order(option, 2, "sell", intent="stop")
    assert claimed.outcome == "refused" and "holds 2" in claimed.error and "claim 1" in claimed.error
    assert "at most 1" in claimed.error
    assert executor.execute_market_order(option, 1, "sell", intent="stop").outcome == "submitted"
    sim.on_bar(clock.minutes(1), "SPY", 500.0)
    assert sim.get_position(option).qty == 1 and sim.get_order(resting.order.id).is_open
    assert [o.client_order_id for o in sim.list_orders("all") if o.client_order_id in
            (naked.client_order_id, too_many.client_order_id, claimed.client_order_id)] == []


def test_a_resent_option_sell_is_that_same_order_not_a_second_sell(scripted, clock):
    sim, executor = scripted
    option = _hold_option(executor, sim, clock, 2)
    decided = clock.t
    first = executor.execute_market_order(option, 2, "sell", intent="flatten", bar_time=decided)
    again = executor.execute_market_order(option, 2, "sell", intent="flatten", bar_time=decided)  # still open
    assert (first.outcome, again.outcome, again.order.id) == ("submitted", "duplicate", first.order.id)
    sim.on_bar(clock.minutes(1), "SPY", 500.0)
    assert sim.get_position(option) is None
    # The same decision re-sent after its sell filled (a restart): the broker's order, not a refusal.
    resent = executor.execute_market_order(option, 2, "sell", intent="flatten", bar_time=decided)
    assert resent.client_order_id == first.client_order_id
    assert (resent.outcome, resent.attempts, resent.order.status) == ("duplicate", 0, OrderStatus.FILLED)
    assert sim.submitted.count(first.client_order_id) == 2  # the open re-send reached it, the filled one not


def test_equity_sells_are_left_to_the_broker(scripted, clock):
    sim, executor = scripted
    result = executor.execute_market_order("SPY", 5, "sell")  # not held: the broker's own rule says no
    assert (result.outcome, result.attempts, result.status_code) == ("rejected", 1, 403)
    assert "insufficient qty available" in result.error and sim.submitted == [result.client_order_id]


def test_a_refusal_by_the_brokers_own_long_only_check_is_refused_not_rejected(scripted, clock):
    sim, executor = scripted
    option = _hold_option(executor, sim, clock, 1)
    sim.script = [("before", LongOnlyRefused(option, 1, 0, 0))]  # a fill between the two checks
    refused = executor.execute_market_order(option, 1, "sell")
    assert (refused.outcome, refused.attempts) == ("refused", 1)
    assert isinstance(LongOnlyRefused(option, 1, 0, 0), (BrokerRejected, LongOnlyViolation))
    # An earlier attempt landed (its reply lost), then the check refuses the retry: it is found.
    sim.script = [("after", TransientBrokerError("reply lost", 504)), ("before", LongOnlyRefused(option, 1, 0, 1))]
    sim.lookup_errors[executor.client_order_id(option, "sell", 1, "exit", extra=("market",))] = \
        TransientBrokerError("lookup failed", 502)
    blind = executor.execute_market_order(option, 1, "sell", intent="exit")
    assert blind.outcome == "unknown"  # landed, and no lookup could tell: never "refused"
    sim.lookup_errors.clear()
    assert executor.resolve([blind.client_order_id])[blind.client_order_id].side is Side.SELL


def test_a_maybe_landed_attempt_stays_unknown_after_a_later_attempt_certainly_sent_nothing(scripted, clock):
    sim, executor = scripted
    coid = executor.client_order_id("SPY", "buy", 1, "entry", extra=("market",))
    sim.script = [("after", TransientBrokerError("no reply", kind="timeout")),
                  ("before", TransientBrokerError("connection refused", kind="connection", maybe_sent=False))]
    sim.lookup_errors[coid] = TransientBrokerError("lookup timed out", kind="timeout")
    executor.max_attempts = 2
    result = executor.execute_market_order("SPY", 1, "buy")
    assert result.outcome == "unknown", result.events  # not "failed": the first attempt created it
    sim.lookup_errors.clear()
    assert executor.resolve([coid])[coid].client_order_id == coid


def test_a_holdings_read_failure_sends_nothing(scripted, clock, monkeypatch):
    sim, executor = scripted
    option = _hold_option(executor, sim, clock, 1)
    sent = list(sim.submitted)

    def down(*args, **kwargs):
        raise TransientBrokerError("positions unavailable", 503)
    monkeypatch.setattr(sim, "get_position", down)
    result = executor.execute_market_order(option, 1, "sell")
    assert (result.outcome, result.attempts, result.ok) == ("failed", 0, False)
    assert "could not check what the account holds" in result.error and sim.submitted == sent


# --------------------------------------------------------------------------- unknown outcomes


def test_resolve_finds_what_the_broker_has_and_none_for_what_it_never_got(scripted, clock):
    sim, executor = scripted
    placed = executor.execute_market_order("SPY", 2, "buy")
    sim.on_bar(clock.minutes(1), "SPY", 500.0)
    sent = list(sim.submitted)
    found = executor.resolve([placed.client_order_id, "tn-never-sent", placed.client_order_id])
    assert list(found) == [placed.client_order_id, "tn-never-sent"]
    assert found[placed.client_order_id].id == placed.order.id
    assert found[placed.client_order_id].status is OrderStatus.FILLED and found["tn-never-sent"] is None
    assert sim.submitted == sent and executor.resolve([]) == {}  # resolving never sends
    with pytest.raises(ValueError, match="single string"):
        executor.resolve(placed.client_order_id)
    with pytest.raises(ValueError, match="non-empty string"):
        executor.resolve(["ok", ""])


def test_resolve_says_which_orders_are_still_unknown(scripted, clock):
    sim, executor = scripted
    placed = executor.execute_market_order("SPY", 2, "buy")
    sim.lookup_errors["tn-lost"] = TransientBrokerError("HTTP 503", 503)
    with pytest.raises(OutcomeStillUnknown) as caught:
        executor.resolve([placed.client_order_id, "tn-lost", "tn-never-sent"])
    assert isinstance(caught.value, TransientBrokerError)
    assert caught.value.resolved[placed.client_order_id].id == placed.order.id
    assert caught.value.resolved["tn-never-sent"] is None and list(caught.value.unresolved) == ["tn-lost"]
    assert "tn-lost" in str(caught.value)
    sim.lookup_errors["tn-lost"] = NotFound("order not found")  # the broker answers at last
    assert executor.resolve(["tn-lost"]) == {"tn-lost": None}
