"""SimBroker: fills at the next update (no look-ahead), order types, brackets, Alpaca's
option rules and error shapes, fees, expiry, and one account shared across processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from broker_helpers import MONDAY_OPEN, StepClock, bar, call_symbol
from conftest import REPO_ROOT
from tradenova_dagster.broker import BrokerRejected, ConcurrentAccountUpdate, NotFound, SimBroker, SimConfig
from tradenova_dagster.broker.base import CODE_FORBIDDEN, CODE_INVALID, CODE_UNPROCESSABLE
from tradenova_dagster.domain import Order, OrderStatus
from tradenova_dagster.market.chain import DEFAULT_MODEL

HALF = 0.005  # the equity half-spread on SPY at ~500 (a one-cent market)


@pytest.fixture
def clock():
    return StepClock()


@pytest.fixture
def sim(store, clock):
    broker = SimBroker("sim:test", store, clock=clock)
    broker.on_bar(clock.t, "SPY", 500.0, vix=15)
    return broker


def step(sim, clock, minutes=1, **prices):
    return sim.on_bar(clock.minutes(minutes), "SPY", bar(**prices) if prices else 500.0)


def test_market_order_fills_at_the_next_bars_open_never_on_the_bar_it_saw(sim, clock):
    placed = sim.submit_order(Order("SPY", 10, "buy", "m1"))
    assert placed.status is OrderStatus.NEW and sim.get_position("SPY") is None
    # Another update stamped like the one the order was decided on: no fill (no look-ahead).
    assert sim.on_bar(clock.t, "SPY", 480.0) == []
    fills = step(sim, clock, open_=502, high=503, low=499, close=500)
    assert [(f.qty, f.price) for f in fills] == [(10, 502 + HALF)]
    position = sim.get_position("SPY")
    assert position.qty == 10 and position.avg_entry_price == pytest.approx(502 + HALF)
    assert position.current_price == 500  # marked at the bar's close
    account = sim.get_account()
    assert account.cash == pytest.approx(100_000 - 10 * (502 + HALF))
    assert account.equity == pytest.approx(account.cash + 10 * 500)
    # Sell: at the bid, SEC fee on the sale, P&L realised.
    sim.submit_order(Order("SPY", 10, "sell", "m2"))
    fills = step(sim, clock, open_=510)
    assert fills[0].price == pytest.approx(510 - HALF)
    assert fills[0].commission == pytest.approx(0.0000278 * 10 * (510 - HALF), abs=1e-6)
    snap = sim.account_snapshot()
    assert snap["realized_pl"] == pytest.approx(10 * (510 - HALF - 502 - HALF))
    assert snap["cash"] == pytest.approx(100_000 + snap["realized_pl"] - snap["fees_paid"])
    assert sim.get_positions() == []


def test_limit_orders_fill_only_when_the_market_crosses(sim, clock):
    sim.submit_order(Order("SPY", 5, "buy", "l1", "limit", limit_price=498))
    assert step(sim, clock, open_=501, high=502, low=499) == []  # the ask never reached 498
    fills = step(sim, clock, open_=500, high=500.5, low=497)
    assert fills[0].price == 498  # touched during the bar: filled at the limit
    sim.submit_order(Order("SPY", 5, "buy", "l2", "limit", limit_price=499))
    fills = step(sim, clock, open_=495, high=496, low=494)
    assert fills[0].price == pytest.approx(495 + HALF)  # opened through the limit: the better price
    sim.submit_order(Order("SPY", 10, "sell", "l3", "limit", limit_price=505))
    assert step(sim, clock, open_=500, high=504) == []
    assert step(sim, clock, open_=501, high=506)[0].price == 505


def test_stop_and_stop_limit_orders(sim, clock):
    sim.submit_order(Order("SPY", 10, "buy", "s0"))
    step(sim, clock, open_=500)
    sim.submit_order(Order("SPY", 5, "sell", "s1", "stop", stop_price=495))
    assert step(sim, clock, open_=499, low=496) == []
    fills = step(sim, clock, open_=498, low=494)
    assert fills[0].price == pytest.approx(495 - HALF)  # triggered at the stop, sold at the bid
    # A stop-limit triggered through its limit rests as a limit until the market comes back.
    order = sim.submit_order(Order("SPY", 5, "sell", "s2", "stop_limit", stop_price=490, limit_price=489))
    assert step(sim, clock, open_=485, high=486, low=484) == []
    assert sim.get_order(order.id).status is OrderStatus.NEW
    fills = step(sim, clock, open_=487, high=489.5, low=486)
    assert fills[0].price == 489
    sim.submit_order(Order("SPY", 1, "buy", "s3", "stop", stop_price=492))
    assert step(sim, clock, open_=493)[0].price == pytest.approx(493 + HALF)  # gapped through: the open


def test_large_orders_fill_partially_up_to_the_displayed_size(store, clock):
    sim = SimBroker("sim:partial", store, SimConfig(equity_displayed_size=60), clock=clock)
    sim.on_bar(clock.t, "SPY", 500.0)
    order = sim.submit_order(Order("SPY", 150, "buy", "p1"))
    statuses = []
    for _ in range(3):
        fills = step(sim, clock)
        statuses.append((fills[0].qty, sim.get_order(order.id).status, sim.get_order(order.id).filled_qty))
    assert statuses == [(60, OrderStatus.PARTIALLY_FILLED, 60), (60, OrderStatus.PARTIALLY_FILLED, 120),
                        (30, OrderStatus.FILLED, 150)]
    assert sim.get_order(order.id).filled_avg_price == pytest.approx(500 + HALF)


def test_day_orders_expire_at_the_close_early_closes_included(store):
    clock = StepClock(pd.Timestamp("2024-11-29 17:00", tz="UTC"))  # noon New York, a 13:00 close
    sim = SimBroker("sim:expiry", store, clock=clock)
    sim.on_bar(clock.t, "SPY", 500.0)
    day = sim.submit_order(Order("SPY", 1, "buy", "d1", "limit", limit_price=450))
    gtc = sim.submit_order(Order("SPY", 1, "buy", "d2", "limit", limit_price=450, time_in_force="gtc"))
    sim.on_bar(clock.minutes(59), "SPY", 500.0)  # 12:59
    assert sim.get_order(day.id).status is OrderStatus.NEW
    sim.on_bar(pd.Timestamp("2024-12-02 14:30", tz="UTC"), "SPY", bar(440, low=430))
    expired = sim.get_order(day.id)
    assert expired.status is OrderStatus.EXPIRED and expired.filled_qty == 0
    assert sim.order_details([day.id])[day.id]["expired_at"] == pd.Timestamp("2024-11-29 18:00", tz="UTC")
    assert sim.get_order(gtc.id).status is OrderStatus.FILLED  # good-till-canceled lives on


def test_bracket_legs_wait_for_the_entry_then_one_exit_cancels_the_other(sim, clock):
    parent = sim.submit_order(Order("SPY", 10, "buy", "b1", order_class="bracket", take_profit_price=510,
                                    stop_loss_price=490))
    assert {leg.status for leg in parent.legs} == {OrderStatus.HELD}
    listed = sim.list_orders("open")
    assert len(listed) == 3 and {o.parent_id for o in listed} == {None, parent.id}  # legs listed as legs
    step(sim, clock, open_=500, high=515)  # entry fills; exits may not trade on the same bar
    legs = {leg.order_type.value: leg for leg in sim.get_order(parent.id).legs}
    assert {leg.status for leg in legs.values()} == {OrderStatus.NEW}
    assert sim.get_position("SPY").qty == 10
    fills = step(sim, clock, open_=505, high=511)
    assert [(f.side.value, f.price) for f in fills] == [("sell", 510)]
    after = {leg.order_type.value: leg.status for leg in sim.get_order(parent.id).legs}
    assert after == {"limit": OrderStatus.FILLED, "stop": OrderStatus.CANCELED}
    assert sim.get_positions() == []
    assert step(sim, clock, open_=480, low=470) == []  # the canceled stop never fires


def test_a_partly_filled_entry_canceled_leaves_exits_for_what_did_fill(store, clock):
    sim = SimBroker("sim:bracket-partial", store, SimConfig(equity_displayed_size=4), clock=clock)
    sim.on_bar(clock.t, "SPY", 500.0)
    parent = sim.submit_order(Order("SPY", 10, "buy", "bp", order_class="bracket", take_profit_price=510,
                                    stop_loss_price=490))
    sim.on_bar(clock.minutes(1), "SPY", 500.0)  # 4 of 10
    sim.cancel_order(parent.id)
    entry = sim.get_order(parent.id)
    assert entry.status is OrderStatus.CANCELED and entry.filled_qty == 4
    assert {(leg.qty, leg.status) for leg in entry.legs} == {(4, OrderStatus.NEW)}
    fills = sim.on_bar(clock.minutes(1), "SPY", bar(500, high=512))
    assert [(f.qty, f.price) for f in fills] == [(4, 510)]
    assert sim.get_positions() == []


def test_oco_exits_a_position_and_oto_adds_one_exit(sim, clock):
    sim.submit_order(Order("SPY", 10, "buy", "o0"))
    step(sim, clock)
    oco = sim.submit_order(Order("SPY", 10, "sell", "o1", "limit", limit_price=510, order_class="oco",
                                 take_profit_price=510, stop_loss_price=495))
    assert oco.take_profit_price == 510 and oco.stop_loss_price == 495
    with pytest.raises(BrokerRejected, match="insufficient qty available"):  # the OCO holds all 10
        sim.submit_order(Order("SPY", 1, "sell", "o2"))
    fills = step(sim, clock, open_=499, low=494)
    assert [f.price for f in fills] == [pytest.approx(495 - HALF)]
    assert sim.get_order(oco.id).status is OrderStatus.CANCELED
    oto = sim.submit_order(Order("SPY", 2, "buy", "o3", order_class="oto", stop_loss_price=480))
    assert [leg.order_type.value for leg in oto.legs] == ["stop"]
    step(sim, clock)
    assert sim.get_order(oto.id).legs[0].status is OrderStatus.NEW


@pytest.mark.parametrize("order, status, code, message", [
    (Order(call_symbol(500), 1, "buy", "x", "limit", limit_price=3, order_class="bracket", take_profit_price=5,
           stop_loss_price=2), 422, CODE_INVALID, "not supported for options"),
    (Order(call_symbol(500), 1, "buy", "x", "limit", limit_price=5, order_class="oco", take_profit_price=5,
           stop_loss_price=2), 422, CODE_INVALID, "not supported for options"),
    (Order(call_symbol(500), 1, "buy", "x", time_in_force="gtc"), 422, CODE_INVALID,
     "order_time_in_force provided not supported for options trading"),
    (Order(call_symbol(500), 1.5, "buy", "x"), 422, CODE_INVALID, "whole number of contracts"),
    (Order(call_symbol(500), 1, "sell", "x"), 403, CODE_FORBIDDEN, "uncovered option contracts"),
    (Order("SPY", 1, "sell", "x"), 403, CODE_FORBIDDEN, "insufficient qty available"),
    (Order("SPY", 1000, "buy", "x"), 403, CODE_FORBIDDEN, "insufficient buying power"),
    (Order("ZZZZ", 1, "buy", "x"), 422, CODE_INVALID, 'asset "ZZZZ" not found'),
    (Order("SPY240301C00500000", 1, "buy", "x"), 422, CODE_INVALID, "not active"),
    (Order("SPY", 1, "buy", "x", order_class="bracket", take_profit_price=499, stop_loss_price=490), 422,
     CODE_INVALID, "take_profit.limit_price must be >= base_price"),
    (Order("SPY", 1.5, "buy", "x", order_class="bracket", take_profit_price=510, stop_loss_price=490), 422,
     CODE_INVALID, "fractional orders"),
])
def test_refusals_have_alpacas_shape_and_leave_nothing_behind(sim, order, status, code, message):
    with pytest.raises(BrokerRejected) as caught:
        sim.submit_order(order)
    assert (caught.value.status_code, caught.value.code) == (status, code)
    assert message in caught.value.message
    assert caught.value.to_json() == {"code": code, "message": caught.value.message}
    assert sim.list_orders("all") == [] and sim.get_account().cash == 100_000


def test_a_duplicate_client_order_id_is_refused_like_alpaca(sim):
    sim.submit_order(Order("SPY", 1, "buy", "same-id"))
    with pytest.raises(BrokerRejected) as caught:
        sim.submit_order(Order("SPY", 2, "buy", "same-id"))
    assert (caught.value.status_code, caught.value.code, caught.value.message) == (
        422, 40010001, "client_order_id must be unique")
    assert caught.value.is_duplicate_client_order_id
    assert len(sim.list_orders("all")) == 1


def test_options_price_from_the_underlying_pay_commission_and_settle_at_expiry(sim, clock):
    symbol = call_symbol(500)
    quote = sim.get_quote(symbol)
    expected = DEFAULT_MODEL.quote(symbol, 500.0, clock.t, 15)
    assert (quote.bid, quote.ask) == (expected.bid, expected.ask)
    sim.submit_order(Order(symbol, 2, "buy", "opt1"))
    fills = step(sim, clock, open_=501)
    assert fills[0].price == DEFAULT_MODEL.quote(symbol, 501.0, clock.t, 15).ask
    assert fills[0].commission == pytest.approx(2 * 0.65)
    cash_after_buy = 100_000 - 2 * 100 * fills[0].price - 1.30
    assert sim.get_account().cash == pytest.approx(cash_after_buy)
    # Held through Friday's close with SPY at 507: settled at intrinsic value, 7 × 100 × 2.
    sim.on_bar(pd.Timestamp("2024-03-08 20:59", tz="UTC"), "SPY", 507.0)
    sim.on_bar(pd.Timestamp("2024-03-11 13:30", tz="UTC"), "SPY", 520.0)
    assert sim.get_positions() == []
    assert sim.get_account().cash == pytest.approx(cash_after_buy + 1400)
    fills = sim.get_fills()
    settled = fills[fills["kind"] == "expiry"].iloc[0]
    assert (settled["symbol"], settled["price"], settled["qty"]) == (symbol, 7.0, 2.0)


def test_cancel_and_close(sim, clock):
    order = sim.submit_order(Order("SPY", 5, "buy", "c1", "limit", limit_price=490))
    sim.cancel_order(order.id)
    assert sim.order_details([order.id])[order.id]["canceled_at"] == clock.t
    with pytest.raises(BrokerRejected, match='already in "canceled" state'):
        sim.cancel_order(order.id)
    with pytest.raises(NotFound):
        sim.get_order_by_client_id("nope")
    sim.submit_order(Order("SPY", 3, "buy", "c2"))
    sim.submit_order(Order("SPY", 1, "buy", "c3", "limit", limit_price=400))
    step(sim, clock)
    assert sim.cancel_all_orders() == [sim.get_order_by_client_id("c3").id]
    closing = sim.close_position("SPY")
    assert (closing.symbol, closing.side.value, closing.qty) == ("SPY", "sell", 3)
    with pytest.raises(BrokerRejected, match=r"insufficient qty available .*available: 0"):
        sim.close_position("SPY", qty=1)  # the closing order already claims all 3
    step(sim, clock)
    assert sim.get_positions() == []
    with pytest.raises(NotFound, match="position does not exist"):
        sim.close_position("SPY")


def test_a_final_order_never_changes_state_through_the_public_api(sim, clock, store):
    filled = sim.submit_order(Order("SPY", 2, "buy", "f1"))
    step(sim, clock)
    with pytest.raises(BrokerRejected) as caught:
        sim.cancel_order(filled.id)
    assert (caught.value.status_code, caught.value.code) == (422, CODE_UNPROCESSABLE)
    assert 'already in "filled" state' in caught.value.message
    after = sim.get_order(filled.id)
    assert (after.status, after.filled_qty) == (OrderStatus.FILLED, 2)
    assert sim.cancel_all_orders() == []
    # A canceled order never fills later, and the fresh process's view agrees.
    canceled = sim.submit_order(Order("SPY", 1, "buy", "f2"))
    sim.cancel_order(canceled.id)
    assert step(sim, clock, open_=499) == []
    again = SimBroker("sim:test", store, clock=clock)
    assert [(o.client_order_id, o.status) for o in again.list_orders("all")] == [
        ("f2", OrderStatus.CANCELED), ("f1", OrderStatus.FILLED)]
    assert store.query("SELECT status FROM sim_orders WHERE account = 'sim:test' AND client_order_id = 'f1'") == [
        ("filled",)]


def test_the_order_book_refuses_a_move_alpaca_never_makes(clock):
    """Below the public API: the one place a status changes asks ledger.orders.advance."""
    from tradenova_dagster.broker.sim_orders import OrderBook
    from tradenova_dagster.ledger.orders import IllegalTransition

    book = OrderBook(lambda: clock.t)
    order = book.create(Order("SPY", 2, "buy", "t1"), clock.t, None, None)
    with pytest.raises(IllegalTransition, match="only 1 of 2"):
        book.transition(order, OrderStatus.FILLED, filled_qty=1)
    book.transition(order, OrderStatus.PARTIALLY_FILLED, filled_qty=1)
    with pytest.raises(IllegalTransition, match="not a move Alpaca makes"):
        book.transition(order, OrderStatus.REJECTED)
    book.transition(order, OrderStatus.FILLED, filled_qty=2)
    assert book.open_orders() == []
    for status in (OrderStatus.CANCELED, OrderStatus.NEW, OrderStatus.REJECTED):
        with pytest.raises(IllegalTransition, match="final"):
            book.transition(order, status)
    with pytest.raises(IllegalTransition, match="went down"):
        book.transition(order, OrderStatus.FILLED, filled_qty=1)
    assert (order.status, order.filled_qty) == (OrderStatus.FILLED, 2)


def test_options_are_long_only_a_naked_or_oversized_sell_is_refused(sim, clock):
    symbol = call_symbol(500)
    with pytest.raises(BrokerRejected) as caught:  # nothing held: a naked short
        sim.submit_order(Order(symbol, 1, "sell", "n1"))
    assert (caught.value.status_code, caught.value.code) == (403, CODE_FORBIDDEN)
    assert "uncovered option contracts" in caught.value.message
    sim.submit_order(Order(symbol, 2, "buy", "n2"))
    step(sim, clock)
    sim.submit_order(Order(symbol, 1, "sell", "n3", "limit", limit_price=1_000))  # open: claims 1 of the 2
    with pytest.raises(BrokerRejected, match=r"insufficient qty available for order \(requested: 2, available: 1\)"):
        sim.submit_order(Order(symbol, 2, "sell", "n4"))
    with pytest.raises(BrokerRejected, match="insufficient qty available"):
        sim.close_position(symbol, qty=2)
    sim.submit_order(Order(symbol, 1, "sell", "n5"))
    step(sim, clock)
    assert [(p.symbol, p.qty) for p in sim.get_positions()] == [(symbol, 1)]
    sim.cancel_order(sim.get_order_by_client_id("n3").id)
    sim.submit_order(Order(symbol, 1, "sell", "n6"))
    step(sim, clock)
    with pytest.raises(BrokerRejected, match="uncovered option contracts"):  # all sold: short again refused
        sim.submit_order(Order(symbol, 1, "sell", "n7"))
    assert sim.get_positions() == []
    fills = sim.get_fills()
    assert list(fills["side"]) == ["buy", "sell", "sell"] and fills["qty"].tolist() == [2, 1, 1]


def test_positions_and_cash_are_the_fold_of_the_fills(store, clock):
    """The account view is Book.from_fills over the sim's own fills, in memory and stored."""
    from tradenova_dagster.domain import Side
    from tradenova_dagster.ledger.book import Book, LedgerFill

    sim = SimBroker("sim:fold", store, SimConfig(equity_displayed_size=7), clock=clock)
    sim.on_bar(clock.t, "SPY", 500.0, vix=15)
    call, put = call_symbol(500), call_symbol(498, kind="P")
    sim.submit_order(Order("SPY", 10, "buy", "e1"))  # 7 + 3: a partial fill
    sim.submit_order(Order(call, 3, "buy", "e2"))
    sim.submit_order(Order(put, 2, "buy", "e3"))
    sim.on_bar(clock.minutes(1), "SPY", bar(501, high=502, low=500, close=501.5))
    sim.on_bar(clock.minutes(1), "SPY", bar(502, close=503))
    sim.submit_order(Order("SPY", 4, "sell", "x1"))
    sim.submit_order(Order(call, 1, "sell", "x2"))
    sim.submit_order(Order("SPY", 6, "buy", "e4", "limit", limit_price=499))
    sim.on_bar(clock.minutes(1), "SPY", bar(501, low=498.5, close=500))
    sim.on_bar(pd.Timestamp("2024-03-08 20:59", tz="UTC"), "SPY", 496.0)  # Friday: the options expire
    sim.on_bar(pd.Timestamp("2024-03-11 13:30", tz="UTC"), "SPY", 497.0)

    fills = sim.get_fills()
    assert fills["seq"].tolist() == list(range(len(fills)))
    assert set(fills["kind"]) == {"trade", "expiry"}
    book = Book.from_fills(100_000, [
        LedgerFill(r.fill_id, r.symbol, Side(r.side), r.qty, r.price, r.commission, r.ts, r.client_order_id, r.kind)
        for r in fills.itertuples()])
    expected = {s: (p.qty, pytest.approx(p.avg_entry_price)) for s, p in book.positions.items()}
    assert expected == {"SPY": (12, pytest.approx(expected["SPY"][1]))}  # 10 - 4 + 6; the options settled
    for broker in (sim, SimBroker("sim:fold", store, clock=clock)):  # this process, and a fresh one
        assert {p.symbol: (p.qty, p.avg_entry_price) for p in broker.get_positions()} == expected
        account, snap = broker.get_account(), broker.account_snapshot()
        assert account.cash == pytest.approx(book.cash, abs=1e-9)
        assert account.equity == pytest.approx(book.equity({"SPY": 497.0}), abs=1e-9)
        assert snap["fees_paid"] == pytest.approx(book.fees_paid, abs=1e-9)
        assert snap["realized_pl"] - snap["fees_paid"] + snap["unrealized_pl"] == pytest.approx(
            account.equity - 100_000, abs=1e-6)
    put_settled = fills[(fills["kind"] == "expiry") & (fills["symbol"] == put)].iloc[0]
    assert (put_settled["price"], put_settled["qty"], put_settled["commission"]) == (2.0, 2.0, 0.0)  # 498 - 496
    assert store.query("SELECT symbol, qty FROM sim_positions WHERE account = 'sim:fold'") == [("SPY", 12.0)]
    columns = {c for (c,) in store.query("SELECT column_name FROM duckdb_columns() WHERE table_name = 'sim_accounts'")}
    assert not columns & {"cash", "realized_pl", "fees_paid"}  # not kept beside the fills


def test_option_commission_comes_from_the_rules():
    from tradenova_dagster.rules import OPTION_COMMISSION_PER_CONTRACT

    assert SimConfig().option_commission_per_contract == OPTION_COMMISSION_PER_CONTRACT


def test_bad_updates_are_refused_with_the_field_named(sim, clock):
    with pytest.raises(ValueError, match="open of SPY"):
        sim.on_bar(clock.minutes(1), "SPY", {"open": float("nan"), "high": 1, "low": 1, "close": 1})
    with pytest.raises(ValueError, match="low <= open,close <= high"):
        sim.on_bar(clock.t, "SPY", {"open": 500, "high": 501, "low": 500.5, "close": 500})
    with pytest.raises(ValueError, match="before the latest market update"):
        sim.on_bar(clock.t - pd.Timedelta(minutes=5), "SPY", 500.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        sim.on_bar(pd.Timestamp("2024-03-04 15:00").to_pydatetime(), "SPY", 500.0)


def test_accounts_are_separate_and_last_equity_rolls_each_day(store, clock):
    a = SimBroker("sim:a", store, clock=clock)
    b = SimBroker("backtest:b", store, SimConfig(initial_cash=5_000), clock=clock)
    a.on_bar(clock.t, "SPY", 500.0)
    a.submit_order(Order("SPY", 10, "buy", "same"))
    b.on_bar(clock.t, "SPY", 500.0)
    b.submit_order(Order("SPY", 1, "buy", "same"))  # the same id in another account is fine
    a.on_bar(clock.minutes(1), "SPY", 500.0)
    a.on_bar(pd.Timestamp("2024-03-05 14:30", tz="UTC"), "SPY", 510.0)
    assert b.get_account().cash == 5_000 and b.get_positions() == []
    assert a.get_account().last_equity == pytest.approx(100_000 - 10 * HALF)
    assert a.get_account().equity == pytest.approx(100_000 - 10 * HALF + 100)


def test_a_batch_writes_once_and_refuses_to_overwrite_another_writer(store, clock):
    sim = SimBroker("backtest:batch", store, clock=clock)
    with sim.batch():
        sim.on_bar(clock.t, "SPY", 500.0)
        sim.submit_order(Order("SPY", 1, "buy", "b1"))
        sim.on_bar(clock.minutes(1), "SPY", 501.0)
        assert store.query("SELECT count(*) FROM sim_orders WHERE account = 'backtest:batch'")[0][0] == 0
    assert store.query("SELECT status FROM sim_orders WHERE account = 'backtest:batch'") == [("filled",)]
    other = SimBroker("backtest:batch", store, clock=clock)
    with pytest.raises(ConcurrentAccountUpdate):
        with sim.batch():
            sim.submit_order(Order("SPY", 1, "buy", "b2"))
            other.set_trading_blocked(True)
    assert SimBroker("backtest:batch", store).list_orders("all")[0].client_order_id == "b1"


def test_a_flatten_in_another_process_closes_positions_at_the_last_stored_price(store, clock, tradenova_home):
    sim = SimBroker("sim:shared", store, clock=clock)
    sim.on_bar(clock.t, "SPY", 500.0, vix=15)
    sim.submit_order(Order("SPY", 10, "buy", "entry"))
    sim.submit_order(Order(call_symbol(500), 3, "buy", "entry-call"))
    sim.on_bar(clock.minutes(1), "SPY", bar(500, close=504))
    assert len(sim.get_positions()) == 2
    script = textwrap.dedent(f"""
        import pandas as pd
        from tradenova_dagster.broker import SimBroker, BrokerExecutor
        from tradenova_dagster.store import Store
        sim = SimBroker("sim:shared", Store({str(store.path)!r}))
        executor = BrokerExecutor(sim)
        results = executor.flatten(bar_time=pd.Timestamp("2024-03-04 20:50", tz="UTC"))
        assert all(r.ok for r in results), results
        sim.advance(pd.Timestamp("2024-03-04 20:50", tz="UTC"))
        print(len(sim.get_positions()))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    assert sim.get_positions() == []  # this process sees what the other one did
    fills = sim.get_fills()
    closing = fills[fills["client_order_id"].str.startswith("tn-flatten")]
    spy = closing[closing["symbol"] == "SPY"].iloc[0]
    assert spy["price"] == pytest.approx(504 - HALF)  # the last stored price, at the bid
    option = closing[closing["symbol"] == call_symbol(500)].iloc[0]
    close_time = pd.Timestamp("2024-03-04 20:50", tz="UTC")
    assert option["price"] == DEFAULT_MODEL.quote(call_symbol(500), 504.0, close_time, 15).bid


def test_clock_asset_and_quote_answers(sim, clock):
    c = sim.get_clock()
    assert c.is_open and c.next_close == pd.Timestamp("2024-03-04 21:00", tz="UTC")
    assert c.next_open == pd.Timestamp("2024-03-05 14:30", tz="UTC")
    assert sim.get_asset(call_symbol(500)).asset_class.value == "us_option"
    with pytest.raises(NotFound):
        sim.get_asset("NOPE")
    with pytest.raises(NotFound, match="no market data for QQQ"):
        sim.get_quote("QQQ")
    assert sim.get_quote("SPY").spread == pytest.approx(0.01)
    assert MONDAY_OPEN == clock.t
