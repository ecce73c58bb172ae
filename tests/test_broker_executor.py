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
    RoutingPolicy,
    SimBroker,
    UnknownSymbol,
    make_client_order_id,
    route_order,
)
from tradenova_dagster.domain import OrderClass, OrderStatus, OrderType, Quote, Side

T = pd.Timestamp("2024-03-04 15:00", tz="UTC")


@pytest.fixture
def clock():
    return StepClock()


@pytest.fixture
def sim(store, clock):
    broker = SimBroker("sim:exec", store, clock=clock)
    broker.on_bar(clock.t, "SPY", 500.0, vix=15)
    return broker


@pytest.fixture
def executor(sim):
    return BrokerExecutor(sim, run_id="run-1", backoff_s=0)


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


def test_executor_orders_fill_through_the_sim_and_ids_follow_the_sims_clock(executor, sim, clock):
    result = executor.execute_market_order("SPY", 3, "buy")
    assert result.outcome == "submitted" and result.attempts == 1
    assert result.client_order_id == make_client_order_id("SPY", "buy", 3, "entry", clock.t, run_id="run-1",
                                                          extra=("market",))
    limit = executor.execute_limit_order("SPY", 2, "buy", 499.5, client_order_id="explicit-id")
    assert limit.order.client_order_id == "explicit-id"
    bracket = executor.execute_bracket_order("SPY", 1, "buy", take_profit=510, stop_loss=490)
    assert bracket.order.order_class is OrderClass.BRACKET and len(bracket.order.legs) == 2
    sim.on_bar(clock.minutes(1), "SPY", bar(500))
    assert executor.get_positions()[0].qty == 4 and executor.positions["SPY"].qty == 4
    oco = executor.execute_oco_order("SPY", 3, "sell", take_profit=520, stop_loss=480)
    assert oco.ok and oco.order.order_class is OrderClass.OCO


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
    assert executor.flatten(cancel_orders=False)[0].outcome == "duplicate"  # retried within the minute
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
