"""The ledger's ``batch()`` against its unbuffered writes, stateful.

Two ledgers, each on its own DuckDB file, take the same random orders, partial and whole
fills, cancels, rejections, unknown outcomes, expiries, re-sent orders and restarts; one
writes every change at once, the other inside batches opened and closed at random
(sometimes inside a unit of work, as a session's bar or replayed day is). Whenever no
batch is open, both files hold the same ``orders`` and ``fills`` rows, value for value
(sequence numbers included), and the two ledgers the same orders and book at every step.
"""

import tempfile
from contextlib import ExitStack
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tradenova_dagster.domain import Order, OrderStatus, Side
from tradenova_dagster.ledger import AccountLedger, LongOnlyViolation
from tradenova_dagster.store import Store

S = OrderStatus
ACCOUNT = "sim:batch"
CALL, PUT = "SPY261204C00600000", "SPY261204P00590000"
T0 = datetime(2026, 12, 2, 15, 0, tzinfo=timezone.utc)
# Every column but the one DuckDB stamps with the wall clock.
ORDER_COLUMNS = ("account, run_id, client_order_id, broker_order_id, day, decision_ts, symbol, side, qty, order_type, "
                 "limit_price, intent, reason, status, filled_qty, filled_avg_price, broker_message, updated_ts")
FILL_COLUMNS = ("account, run_id, ts, day, order_id, client_order_id, symbol, side, qty, price, commission, notional, "
                "fill_id, reason, seq")


def rows(store: Store) -> tuple[list, list]:
    return (store.query(f"SELECT {ORDER_COLUMNS} FROM orders ORDER BY client_order_id"),
            store.query(f"SELECT {FILL_COLUMNS} FROM fills ORDER BY seq"))


class BatchedAgainstUnbuffered(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.folder = tempfile.TemporaryDirectory()
        self.plain_store = Store(Path(self.folder.name) / "plain.duckdb")
        self.batch_store = Store(Path(self.folder.name) / "batched.duckdb")
        self.plain = self._ledger(self.plain_store)
        self.batched = self._ledger(self.batch_store)
        self.open: ExitStack | None = None  # the batched ledger's open batch (and unit of work)
        self.broker: dict[str, Order] = {}
        self.unknown: set[str] = set()
        self.n = 0

    def teardown(self):
        if self.open is not None:
            self.open.close()
        self.folder.cleanup()

    @staticmethod
    def _ledger(store):
        return AccountLedger(store, ACCOUNT, initial_cash=50_000.0, run_id="r1", fee_per_contract=0.65)

    def _both(self, call):
        results = [call(self.plain), call(self.batched)]
        assert repr(results[0]) == repr(results[1])
        return results[0]

    def _now(self):
        return T0 + timedelta(minutes=self.n)

    def _open_coids(self):
        return sorted(c for c, o in self.broker.items() if o.status.is_open and c not in self.unknown)

    # ------------------------------------------------------------------ batches

    @precondition(lambda self: self.open is None)
    @rule(in_unit=st.booleans())
    def open_batch(self, in_unit):
        stack = ExitStack()
        if in_unit:
            stack.enter_context(self.batch_store.unit_of_work())
        stack.enter_context(self.batched.batch())
        stack.enter_context(self.batched.batch())  # a nested batch joins the outer one
        self.open = stack

    @precondition(lambda self: self.open is not None)
    @rule()
    def close_batch(self):
        self.open.close()
        self.open = None

    @precondition(lambda self: self.open is None)
    @rule()
    def restart(self):
        """A new process: both ledgers come back from their files."""
        self.plain, self.batched = self._ledger(self.plain_store), self._ledger(self.batch_store)

    # ------------------------------------------------------------------ orders

    def _send(self, symbol, side, qty, known=True, limit=None):
        self.n += 1
        coid = f"c{self.n}"
        order = Order(symbol, qty, side, coid, id=f"b{self.n}", status=S.NEW)
        self._both(lambda led: led.record_order(
            coid, order if known else None, symbol=symbol, side=Side(side), qty=qty, intent="t", reason="t",
            decision_ts=self._now(), order_type="limit" if limit else "market", limit_price=limit))
        self.broker[coid] = order
        if not known:
            self.unknown.add(coid)

    @rule(symbol=st.sampled_from([CALL, PUT]), qty=st.integers(1, 5), known=st.booleans(),
          limit=st.sampled_from([None, 1.25]), twice=st.booleans())
    def enter(self, symbol, qty, known, limit, twice):
        self._send(symbol, "buy", qty, known, limit)
        if twice and known:  # sent again at once: within the batch it was first written in
            self._send_again(f"c{self.n}")

    @rule(symbol=st.sampled_from([CALL, PUT]), qty=st.integers(1, 5))
    def exit(self, symbol, qty):
        try:
            self.plain.book.require_can_sell(symbol, qty, self.plain.pending_sells(symbol))
        except LongOnlyViolation:
            return
        self._send(symbol, "sell", qty)

    @precondition(lambda self: self._open_coids())
    @rule(data=st.data())
    def send_again(self, data):
        """The same client order id recorded again (a retried send): the row keeps what the
        order was first sent with, what it filled and its status."""
        self._send_again(data.draw(st.sampled_from(self._open_coids())))

    def _send_again(self, coid):
        order = self.broker[coid]
        self._both(lambda led: led.record_order(
            coid, order, symbol=order.symbol, side=order.side, qty=order.qty, intent="again", reason="again",
            decision_ts=self._now(), order_type="limit", limit_price=9.99, status=S.ACCEPTED))
        if not order.filled_qty:  # the broker keeps what it filled: a partly filled order stays so
            self.broker[coid] = Order(order.symbol, order.qty, order.side, coid, id=order.id, status=S.ACCEPTED)

    def _report(self, coid, status, filled_qty, price):
        old = self.broker[coid]
        avg = price if not old.filled_qty else (
            (old.filled_avg_price * old.filled_qty + price * (filled_qty - old.filled_qty)) / filled_qty)
        new = Order(old.symbol, old.qty, old.side, coid, id=old.id, status=status, filled_qty=filled_qty,
                    filled_avg_price=avg if filled_qty else None)
        self.n += 1
        self._both(lambda led: led.observe(new, self._now()))
        self.broker[coid] = new

    @precondition(lambda self: self._open_coids())
    @rule(data=st.data(), price=st.sampled_from([0.5, 1.0, 1.37, 4.1]))
    def fill_some(self, data, price):
        coid = data.draw(st.sampled_from(self._open_coids()))
        order = self.broker[coid]
        filled = data.draw(st.integers(int(order.filled_qty) + 1, int(order.qty)))
        self._report(coid, S.FILLED if filled == order.qty else S.PARTIALLY_FILLED, filled, price)

    @precondition(lambda self: self._open_coids())
    @rule(data=st.data(), final=st.sampled_from([S.CANCELED, S.EXPIRED]))
    def end_without_more_fills(self, data, final):
        coid = data.draw(st.sampled_from(self._open_coids()))
        self._report(coid, final, self.broker[coid].filled_qty, 1.0)

    @precondition(lambda self: self.unknown)
    @rule(reached=st.booleans())
    def resolve_unknowns(self, reached):
        for coid in sorted(self.unknown):
            if reached:
                self._report(coid, S.ACCEPTED, 0, 1.0)
            else:
                self._both(lambda led: led.observe_missing(coid, self._now()))
                self.broker[coid] = Order(self.broker[coid].symbol, 1, "buy", coid, status=S.REJECTED)
        self.unknown.clear()

    @rule(day_offset=st.integers(1, 3), close=st.sampled_from([580.0, 605.0]))
    def expiry_passes(self, day_offset, close):
        self._both(lambda led: led.settle_expired(date(2026, 12, 4) + timedelta(days=day_offset),
                                                  lambda symbol, day: close))

    # ------------------------------------------------------------------ checks

    @invariant()
    def same_ledger(self):
        assert repr(self.plain.orders) == repr(self.batched.orders)
        assert self.plain.book.cash == self.batched.book.cash
        assert repr(self.plain.book.positions) == repr(self.batched.book.positions)

    @invariant()
    def same_rows_once_written(self):
        if self.open is None:
            assert rows(self.plain_store) == rows(self.batch_store)


BatchedAgainstUnbuffered.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
TestBatchedAgainstUnbuffered = BatchedAgainstUnbuffered.TestCase


class CountingConnection:
    """The held connection, counting the statements run through it."""

    def __init__(self, con):
        self.con, self.statements = con, []

    def execute(self, sql, *args):
        self.statements.append(sql.split()[0])
        return self.con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.con, name)


def test_a_batch_writes_each_order_once_and_the_fills_in_one_statement(tmp_path):
    """What the batch is for: an order's changes cost one row write, the fills one statement."""
    store = Store(tmp_path / "l.duckdb")
    ledger = AccountLedger(store, ACCOUNT, initial_cash=50_000.0)
    with store.unit_of_work() as con:
        counting = store._state()["con"] = CountingConnection(con)  # what every use in the unit joins
        with ledger.batch():  # 5 rows: the VALUES form (the proxy would hide the Arrow form's local from DuckDB)
            for i in range(5):
                order = Order(CALL, 1, "buy", f"c{i}", id=f"b{i}", status=S.NEW)
                ledger.record_order(f"c{i}", order, symbol=CALL, side=Side.BUY, qty=1, intent="t", reason="t",
                                    decision_ts=T0)
                ledger.observe(Order(CALL, 1, "buy", f"c{i}", id=f"b{i}", status=S.FILLED, filled_qty=1,
                                     filled_avg_price=1.0), T0)
            assert counting.statements == []  # nothing written until the batch ends
        assert counting.statements == ["INSERT", "INSERT"]
        store._state()["con"] = con
    assert store.query("SELECT count(*), min(seq), max(seq) FROM fills") == [(5, 0, 4)]
    assert store.query("SELECT count(*) FROM orders WHERE status = 'filled'") == [(5,)]
