"""The ledger: the order state machine, and positions/cash/P&L folded from fills only.

The stateful test drives random sequences of entries, partial fills, exits, rejections,
cancels, expiries, unknown outcomes and restarts through ``AccountLedger`` on a real
DuckDB file, and checks it against a small reference model written independently here
(plain per-lot arithmetic), after every step.
"""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tradenova_dagster.domain import Order, OrderStatus, Side
from tradenova_dagster.ledger import AccountLedger, Book, IllegalTransition, LedgerFill, LongOnlyViolation, advance
from tradenova_dagster.store import Store

S = OrderStatus
CALL, PUT = "SPY261204C00600000", "SPY261204P00590000"
T0 = datetime(2026, 12, 2, 15, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- state machine


@pytest.mark.parametrize("current, new", [
    (S.FILLED, S.CANCELED), (S.REJECTED, S.NEW), (S.REJECTED, S.ACCEPTED), (S.CANCELED, S.FILLED),
    (S.EXPIRED, S.PARTIALLY_FILLED), (S.PARTIALLY_FILLED, S.NEW), (S.PARTIALLY_FILLED, S.ACCEPTED),
])
def test_moves_alpaca_never_makes_raise(current, new):
    with pytest.raises(IllegalTransition, match=f"{current.value}"):
        advance("o1", current, new, qty=2, filled_before=1 if current is S.PARTIALLY_FILLED else 0,
                filled_after=1 if current is S.PARTIALLY_FILLED else 0)


def test_a_partly_filled_order_cannot_be_rejected_and_fills_never_shrink():
    with pytest.raises(IllegalTransition, match="cannot be rejected"):
        advance("o1", S.ACCEPTED, S.REJECTED, qty=2, filled_before=1, filled_after=1)
    with pytest.raises(IllegalTransition, match="went down"):
        advance("o1", S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, qty=3, filled_before=2, filled_after=1)
    with pytest.raises(IllegalTransition, match="above its qty"):
        advance("o1", S.NEW, S.FILLED, qty=1, filled_before=0, filled_after=2)
    with pytest.raises(IllegalTransition, match="only 1"):
        advance("o1", S.NEW, S.FILLED, qty=2, filled_before=0, filled_after=1)


def test_the_usual_lives_of_an_order_are_allowed():
    for path in ([S.NEW, S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED], [S.NEW, S.REJECTED],
                 [S.NEW, S.ACCEPTED, S.PENDING_CANCEL, S.CANCELED], [S.HELD, S.NEW, S.FILLED],
                 [S.NEW, S.PARTIALLY_FILLED, S.PENDING_CANCEL, S.FILLED], [S.ACCEPTED, S.EXPIRED]):
        for a, b in zip(path, path[1:]):
            filled = 2 if b is S.FILLED else (1 if S.PARTIALLY_FILLED in (a, b) else 0)
            before = 1 if a in (S.PARTIALLY_FILLED, S.PENDING_CANCEL) and S.PARTIALLY_FILLED in path else 0
            assert advance("o", a, b, qty=2, filled_before=before, filled_after=max(filled, before)) is b


# --------------------------------------------------------------------------- the book, by hand


def _fill(fid, symbol, side, qty, price, fee=0.65, minutes=0, reason="trade"):
    return LedgerFill(fid, symbol, Side(side), qty, price, fee * qty, T0 + timedelta(minutes=minutes), None, reason)


def test_one_round_trip_by_hand_fees_counted_once():
    book = Book(10_000.0)
    book.apply(_fill("f1", CALL, "buy", 2, 1.50))  # pays 300 + 1.30
    assert book.cash == pytest.approx(10_000 - 301.30)
    part = book.apply(_fill("f2", CALL, "sell", 1, 2.00, minutes=5))  # receives 200 - 0.65
    # realised: 200 - 0.65 (exit fee) - 150 (half the premium) - 0.65 (half the entry fees)
    assert part.pnl == pytest.approx(48.70) and not part.closes_position
    assert part.entry_price == pytest.approx(1.50)
    last = book.apply(_fill("f3", CALL, "sell", 1, 1.00, minutes=9))
    assert last.pnl == pytest.approx(100 - 0.65 - 150 - 0.65) and last.closes_position
    assert last.position_pnl == pytest.approx(48.70 - 51.30)
    assert book.positions == {} and book.cash == pytest.approx(10_000 + 48.70 - 51.30)
    assert book.realized_pnl == pytest.approx(-2.60) and book.fees_paid == pytest.approx(4 * 0.65)


def test_an_order_recorded_again_keeps_what_it_filled(tmp_path):
    """A retried send recorded a second time must not forget the contracts already filled:
    the next report's fill is only what is new (found by test_ledger_batch's machine)."""
    ledger = AccountLedger(Store(tmp_path / "l.duckdb"), "sim:again", initial_cash=50_000.0, fee_per_contract=0.65)
    call, t0 = "SPY261204C00600000", datetime(2026, 12, 2, 15, tzinfo=timezone.utc)

    def order(status, filled, avg=None):
        return Order(call, 3, "buy", "c1", id="b1", status=status, filled_qty=filled, filled_avg_price=avg)

    def send(o):
        ledger.record_order("c1", o, symbol=call, side=Side.BUY, qty=3, intent="entry", reason="t", decision_ts=t0)

    send(order(OrderStatus.NEW, 0))
    ledger.observe(order(OrderStatus.PARTIALLY_FILLED, 2, 1.0), t0)
    send(order(OrderStatus.PARTIALLY_FILLED, 2, 1.0))
    [(fill, _)] = ledger.observe(order(OrderStatus.FILLED, 3, 1.5), t0 + timedelta(minutes=1))
    assert (fill.fill_id, fill.qty, fill.price) == ("b1:3", 1.0, 2.5)
    assert ledger.book.qty(call) == 3 and ledger.orders["c1"].filled_qty == 3


def test_a_sell_above_what_is_held_is_refused_before_any_broker():
    book = Book(10_000.0)
    book.apply(_fill("f1", PUT, "buy", 1, 3.0))
    with pytest.raises(LongOnlyViolation, match="holds 1"):
        book.require_can_sell(PUT, 2)
    with pytest.raises(LongOnlyViolation, match="open sells already claim 1"):
        book.require_can_sell(PUT, 1, pending_sells=1)
    with pytest.raises(LongOnlyViolation, match="holds 0"):
        book.apply(_fill("f2", CALL, "sell", 1, 1.0))
    with pytest.raises(ValueError, match="already in the book"):
        book.apply(_fill("f1", PUT, "buy", 1, 3.0))


# --------------------------------------------------------------------------- stateful, against a reference


class Reference:
    """Independent arithmetic: lots held per symbol, cash moved by each fill."""

    def __init__(self, cash):
        self.cash, self.lots, self.realized = cash, {}, 0.0

    def buy(self, symbol, qty, price, fee):
        self.cash -= qty * price * 100 + fee
        held, paid = self.lots.get(symbol, (0, 0.0))
        self.lots[symbol] = (held + qty, paid + qty * price * 100 + fee)

    def sell(self, symbol, qty, price, fee):
        held, paid = self.lots[symbol]
        cost = paid * qty / held
        self.cash += qty * price * 100 - fee
        self.realized += qty * price * 100 - fee - cost
        if held == qty:
            del self.lots[symbol]
        else:
            self.lots[symbol] = (held - qty, paid - cost)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        import tempfile
        from pathlib import Path

        self.folder = tempfile.TemporaryDirectory()
        self.store = Store(Path(self.folder.name) / "ledger.duckdb")
        self.ledger = AccountLedger(self.store, "sim:prop", initial_cash=50_000.0, fee_per_contract=0.65)
        self.ref = Reference(50_000.0)
        self.n = 0
        self.broker: dict[str, Order] = {}  # what the broker holds, by client order id
        self.unknown: set[str] = set()  # sent, outcome unknown (the broker may or may not have it)

    def teardown(self):
        self.folder.cleanup()

    def _send(self, symbol, side, qty, reaches_broker=True, outcome_known=True):
        self.n += 1
        coid = f"c{self.n}"
        order = Order(symbol, qty, side, coid, id=f"b{self.n}", status=S.NEW)
        self.ledger.record_order(coid, order if outcome_known else None, symbol=symbol, side=Side(side), qty=qty,
                                 intent="entry" if side == "buy" else "exit", reason="test",
                                 decision_ts=T0 + timedelta(minutes=self.n))
        if reaches_broker:
            self.broker[coid] = order
        if not outcome_known:
            self.unknown.add(coid)
        return coid

    def _open_coids(self):
        return sorted(c for c, o in self.broker.items() if o.status.is_open and c not in self.unknown)

    def _report(self, coid, status, filled_qty, price):
        old = self.broker[coid]
        avg = price if old.filled_qty == 0 else (old.filled_avg_price * old.filled_qty + price * (filled_qty - old.filled_qty)) / filled_qty
        new = Order(old.symbol, old.qty, old.side, coid, id=old.id, status=status, filled_qty=filled_qty,
                    filled_avg_price=avg if filled_qty else None)
        self.broker[coid] = new
        delta = filled_qty - old.filled_qty
        fills = self.ledger.observe(new, T0 + timedelta(minutes=self.n))
        if delta:
            fee = 0.65 * delta
            (self.ref.buy if old.side is Side.BUY else self.ref.sell)(old.symbol, delta, price, fee)
            assert len(fills) == 1 and fills[0][0].qty == pytest.approx(delta)
        else:
            assert fills == []

    @rule(symbol=st.sampled_from([CALL, PUT]), qty=st.integers(1, 5))
    def enter(self, symbol, qty):
        self._send(symbol, "buy", qty)

    @rule(symbol=st.sampled_from([CALL, PUT]), qty=st.integers(1, 5))
    def exit(self, symbol, qty):
        try:
            self.ledger.book.require_can_sell(symbol, qty, self.ledger.pending_sells(symbol))
        except LongOnlyViolation:
            held = self.ref.lots.get(symbol, (0, 0))[0]
            pending = sum(o.qty - o.filled_qty for o in self.broker.values()
                          if o.symbol == symbol and o.side is Side.SELL and o.status.is_open)
            assert qty > held - pending  # refused only when it really would go short
            return
        self._send(symbol, "sell", qty)

    @precondition(lambda self: self._open_coids())
    @rule(data=st.data(), price=st.sampled_from([0.5, 1.0, 1.37, 2.0, 4.1]))
    def fill_some(self, data, price):
        coid = data.draw(st.sampled_from(self._open_coids()))
        order = self.broker[coid]
        filled = data.draw(st.integers(int(order.filled_qty) + 1, int(order.qty)))
        self._report(coid, S.FILLED if filled == order.qty else S.PARTIALLY_FILLED, filled, price)

    @precondition(lambda self: self._open_coids())
    @rule(data=st.data(), final=st.sampled_from([S.CANCELED, S.REJECTED, S.EXPIRED]))
    def end_without_more_fills(self, data, final):
        coid = data.draw(st.sampled_from(self._open_coids()))
        order = self.broker[coid]
        if final is S.REJECTED and order.filled_qty > 0:
            with pytest.raises(IllegalTransition):
                self._report(coid, final, order.filled_qty, 1.0)
            self.broker[coid] = order  # the broker never said that; the ledger refused it
            return
        self._report(coid, final, order.filled_qty, 1.0)

    @rule(symbol=st.sampled_from([CALL, PUT]), qty=st.integers(1, 3), reaches=st.booleans())
    def send_with_unknown_outcome(self, symbol, qty, reaches):
        self._send(symbol, "buy", qty, reaches_broker=reaches, outcome_known=False)

    @precondition(lambda self: self.unknown)
    @rule()
    def resolve_unknowns(self):
        for coid in sorted(self.unknown):
            if coid in self.broker:  # found by its client order id: observed like any order
                self._report(coid, self.broker[coid].status, self.broker[coid].filled_qty, 1.0)
            else:  # never reached the broker: the ledger records it as rejected, final
                rec = self.ledger.orders[coid]
                self.ledger.observe(Order(rec.symbol, rec.qty, rec.side, coid, id="none", status=S.REJECTED),
                                    T0 + timedelta(minutes=self.n))
        self.unknown.clear()

    @rule(day_offset=st.integers(1, 3), close=st.sampled_from([580.0, 595.0, 605.0]))
    def expiry_passes(self, day_offset, close):
        import datetime as dt

        settled = self.ledger.settle_expired(dt.date(2026, 12, 4) + dt.timedelta(days=day_offset),
                                             lambda symbol, day: close)
        for fill, _ in settled:
            self.ref.sell(fill.symbol, fill.qty, fill.price, 0.0)
        expected = {CALL: max(close - 600, 0.0), PUT: max(590 - close, 0.0)}
        assert all(f.price == expected[f.symbol] and f.reason == "expiry" for f, _ in settled)
        for coid, order in list(self.broker.items()):  # the broker ends whatever was still open
            if order.status.is_open and coid not in self.unknown and order.side is Side.SELL:
                self._report(coid, S.CANCELED, order.filled_qty, 1.0)

    @rule()
    def restart(self):
        """A new process: everything comes back from the DuckDB file."""
        before = self.ledger.book
        self.ledger = AccountLedger(self.store, "sim:prop", initial_cash=50_000.0, fee_per_contract=0.65)
        assert {s: p.qty for s, p in self.ledger.book.positions.items()} == {s: p.qty for s, p in before.positions.items()}

    @invariant()
    def matches_the_reference(self):
        book = self.ledger.book
        assert book.cash == pytest.approx(self.ref.cash, abs=1e-6)
        assert book.realized_pnl == pytest.approx(self.ref.realized, abs=1e-6)
        assert {s: p.qty for s, p in book.positions.items()} == {s: q for s, (q, _) in self.ref.lots.items()}
        assert all(p.qty > 0 for p in book.positions.values())  # never a short option

    @invariant()
    def orders_in_the_file_match(self):
        rows = dict(self.store.query("SELECT client_order_id, status FROM orders WHERE account = 'sim:prop'"))
        assert rows == {c: o.status.value for c, o in self.ledger.orders.items()}


LedgerMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
TestLedgerAgainstAReference = LedgerMachine.TestCase
