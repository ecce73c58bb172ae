"""SimBroker's shortcuts answer exactly what the long way would.

- orders are written as INSERTs for new rows and UPDATEs for stored ones, the account and
  marks rows as UPDATEs (``sim_store.persist``): the rows equal the orders in memory, and
  a second broker reading them back sees the same account;
- a quote is handed out again while nothing in it changed (``Pricer.quote``), a new one
  as soon as the price, the VIX or the time moves;
- the broker's time follows its clock, also when the clock is replaced (``SimBroker.now``).
"""

from __future__ import annotations

import pandas as pd

from broker_helpers import StepClock, bar, call_symbol
from tradenova_dagster.broker import SimBroker
from tradenova_dagster.broker.sim_store import ORDER_COLUMNS, _order_row
from tradenova_dagster.domain import Order, OrderStatus
from tradenova_dagster.market.chain import DEFAULT_MODEL


def stored_orders(store, account):
    rows = store.query(f"SELECT {', '.join(ORDER_COLUMNS)} FROM sim_orders WHERE account = ?", [account])
    return {row[1]: tuple(row) for row in rows}


def test_orders_account_and_marks_rows_equal_memory_after_inserts_and_updates(store):
    clock = StepClock()
    sim = SimBroker("sim:rows", store, clock=clock)
    with sim.batch():
        sim.on_bar(clock.t, "SPY", 500.0, vix=15)
        sim.submit_order(Order("SPY", 5, "buy", "a"))
        sim.submit_order(Order("SPY", 5, "buy", "b", "limit", limit_price=400.0))
        sim.on_bar(clock.minutes(1), "SPY", bar(501.0), vix=16)
    # Batch written: two new orders (one filled). Now a stored one changes, outside a batch.
    resting = sim.get_order_by_client_id("b")
    sim.cancel_order(resting.id)
    sim.on_bar(clock.minutes(1), "SPY", 502.0)
    rows = stored_orders(store, "sim:rows")
    memory = {o.id: _order_row("sim:rows", o) for o in sim._orders}
    assert set(rows) == set(memory) and len(rows) == 2
    for order_id, row in rows.items():
        want = memory[order_id]
        assert row[:19] == want[:19] and row[26:] == want[26:]  # times compared below, as instants
        for got, wanted in zip(row[19:26], want[19:26]):
            assert (got is None and wanted is None) or pd.Timestamp(got) == pd.Timestamp(wanted)
    assert rows[resting.id][ORDER_COLUMNS.index("status")] == OrderStatus.CANCELED.value
    again = SimBroker("sim:rows", store, clock=clock)
    assert again.get_account() == sim.get_account()
    assert again.market_time == sim.market_time
    assert [o.status for o in again.list_orders("all")] == [o.status for o in sim.list_orders("all")]
    assert store.query("SELECT price, vix FROM sim_marks WHERE account = ?", ["sim:rows"]) == [(502.0, 16.0)]
    assert store.query("SELECT count(*) FROM sim_accounts WHERE account = ?", ["sim:rows"]) == [(1,)]


def test_a_quote_is_reused_only_while_nothing_in_it_changed(store):
    clock = StepClock()
    sim = SimBroker("sim:quotes", store, clock=clock)
    symbol = call_symbol(500)
    sim.on_bar(clock.t, "SPY", 500.0, vix=15)
    first = sim.get_quote(symbol)
    assert sim.get_quote(symbol) is first
    expected = DEFAULT_MODEL.quote(symbol, 500.0, clock.t, 15)
    assert (first.bid, first.ask) == (expected.bid, expected.ask)
    for spot, vix in ((500.0, 20), (503.0, 20)):  # the VIX moves, then the price
        sim.on_bar(clock.minutes(1), "SPY", spot, vix=vix)
        quote = sim.get_quote(symbol)
        expected = DEFAULT_MODEL.quote(symbol, spot, clock.t, vix)
        assert (quote.timestamp, quote.bid, quote.ask) == (clock.t.to_pydatetime(), expected.bid, expected.ask)
    clock.minutes(30)  # time alone moves: the same prices, a later timestamp and premium
    later = sim.get_quote(symbol)
    assert later.timestamp == clock.t.to_pydatetime() and later is not quote
    expected = DEFAULT_MODEL.quote(symbol, 503.0, clock.t, 20)
    assert (later.bid, later.ask) == (expected.bid, expected.ask)


def test_the_broker_time_follows_its_clock_even_a_new_one(store):
    clock = StepClock()
    sim = SimBroker("sim:clock", store, clock=clock)
    assert sim.now() == clock.t
    clock.minutes(5)
    assert sim.now() == clock.t
    other = StepClock(clock.t + pd.Timedelta(days=1))
    sim.clock = other
    assert sim.now() == other.t
    sim.clock = lambda: clock.t  # a callable clock
    assert sim.now() == clock.t
