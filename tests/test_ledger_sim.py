"""The ledger against the SimBroker and a reference, stateful: random entries, exits,
partial and whole fills, cancels, rejections (a blocked account, sells above what is
held), unknown outcomes resolved by client order id, the week's expiry and restarts of
both (new objects on the same DuckDB file).

After every step: the ledger's positions equal the SimBroker's and a reference model's
(built from the broker's own fills, with plain per-lot arithmetic); the ledger's cash
equals the reference's; no order ever makes a move outside Alpaca's state machine (the
ledger would raise); never a short option position anywhere.
"""

import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from broker_helpers import StepClock, bar, call_symbol
from tradenova_dagster.broker import BrokerRejected, SimBroker, SimConfig
from tradenova_dagster.domain import Order, OrderStatus, Side
from tradenova_dagster.ledger import AccountLedger, LongOnlyViolation
from tradenova_dagster.market.chain import DEFAULT_MODEL
from tradenova_dagster.store import Store

ACCOUNT = "sim:ledger"
FEE = 0.65
SYMBOLS = [call_symbol(498), call_symbol(500), call_symbol(502, kind="P")]
EXPIRY_CLOSE = pd.Timestamp("2024-03-08 20:59", tz="UTC")  # Friday's last bar: the week's options expire
NEXT_OPEN = pd.Timestamp("2024-03-11 13:30", tz="UTC")


class Lots:
    """Reference: quantity and money paid per symbol; cash moved by each fill."""

    def __init__(self, cash):
        self.cash, self.held, self.contracts = cash, {}, 0.0

    def apply(self, symbol, side, qty, price, fee):
        self.contracts += qty
        held, paid = self.held.get(symbol, (0.0, 0.0))
        if side == "buy":
            self.cash -= qty * price * 100 + fee
            self.held[symbol] = (held + qty, paid + qty * price * 100 + fee)
            return
        assert qty <= held + 1e-9, f"the broker sold {qty} {symbol} with {held} held"
        self.cash += qty * price * 100 - fee
        self.held[symbol] = (held - qty, paid * (held - qty) / held)
        if self.held[symbol][0] <= 1e-9:
            del self.held[symbol]


class LedgerAndSim(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.folder = tempfile.TemporaryDirectory()
        self.store = Store(Path(self.folder.name) / "tradenova.duckdb")
        self.clock = StepClock()
        self.spot = 500.0
        self.sim = self._sim()
        self.sim.on_bar(self.clock.t, "SPY", self.spot, vix=15)
        self.ledger = AccountLedger(self.store, ACCOUNT, initial_cash=100_000.0, fee_per_contract=FEE)
        self.ref = Lots(100_000.0)
        self.applied: set[str] = set()  # the broker's fills the reference has taken in
        self.n = 0
        self.expired = False
        self.unknown: set[str] = set()

    def teardown(self):
        self.folder.cleanup()

    def _sim(self):
        # Option fills at the displayed size make partial fills; $0.65 a contract, no other fee.
        return SimBroker(ACCOUNT, self.store, SimConfig(options=replace(DEFAULT_MODEL, displayed_size=2)),
                         clock=self.clock)

    def _submit(self, symbol, side, qty, outcome_known=True):
        self.n += 1
        coid = f"o{self.n}"
        decided = self.clock.t.to_pydatetime()
        try:
            placed = self.sim.submit_order(Order(symbol, qty, side, coid))
        except BrokerRejected as exc:
            self.ledger.record_order(coid, None, symbol=symbol, side=Side(side), qty=qty, intent="t", reason="t",
                                     decision_ts=decided, status=OrderStatus.REJECTED, broker_message=str(exc))
            return
        self.ledger.record_order(coid, placed if outcome_known else None, symbol=symbol, side=Side(side), qty=qty,
                                 intent="t", reason="t", decision_ts=decided)
        if not outcome_known:
            self.unknown.add(coid)

    def _sync(self):
        """The session's poll: the broker's view of every open order, then the reference."""
        now = self.clock.t.to_pydatetime()
        for record in self.ledger.open_orders():
            if record.client_order_id in self.unknown:
                continue
            self.ledger.observe(self.sim.get_order(record.broker_order_id), now)
        for row in self.sim.get_fills().itertuples():
            if row.fill_id in self.applied or row.client_order_id in self.unknown:
                continue  # applied already, or of an order the "session" has not resolved yet
            self.applied.add(row.fill_id)
            if row.kind == "expiry":
                continue  # the ledger settles expiries itself (checked in the expiry rule)
            self.ref.apply(row.symbol, row.side, row.qty, row.price, FEE * row.qty)

    @precondition(lambda self: not self.expired)
    @rule(symbol=st.sampled_from(SYMBOLS), qty=st.integers(1, 5), known=st.booleans())
    def enter(self, symbol, qty, known):
        self._submit(symbol, "buy", qty, outcome_known=known)

    @precondition(lambda self: not self.expired)
    @rule(symbol=st.sampled_from(SYMBOLS), qty=st.integers(1, 6))
    def exit(self, symbol, qty):
        try:
            self.ledger.book.require_can_sell(symbol, qty, self.ledger.pending_sells(symbol))
        except LongOnlyViolation:
            unresolved = {self.sim.get_order_by_client_id(c).symbol for c in self.unknown}
            if symbol not in unresolved:  # (what the ledger cannot know yet, it does not sell: fail closed)
                with pytest.raises(BrokerRejected):  # the ledger refuses only what the broker would refuse too
                    self.sim.submit_order(Order(symbol, qty, "sell", f"probe{self.n}"))
            return
        self._submit(symbol, "sell", qty)

    @precondition(lambda self: not self.expired)
    @rule(move=st.sampled_from([-2.0, -0.5, 0.0, 0.5, 2.0]))
    def next_bar(self, move):
        self.spot += move
        self.sim.on_bar(self.clock.minutes(1), "SPY", bar(self.spot))
        self._sync()

    @precondition(lambda self: any(o.broker_order_id for o in self.ledger.open_orders()))
    @rule(data=st.data())
    def cancel(self, data):
        open_ = [o for o in self.ledger.open_orders() if o.broker_order_id]
        order = data.draw(st.sampled_from(sorted(open_, key=lambda o: o.client_order_id)))
        self.sim.cancel_order(order.broker_order_id)
        self._sync()

    @rule(blocked=st.booleans())
    def block_trading(self, blocked):
        self.sim.set_trading_blocked(blocked)

    @precondition(lambda self: self.unknown)
    @rule()
    def resolve_unknown_outcomes(self):
        for coid in sorted(self.unknown):
            found = self.sim.get_order_by_client_id(coid)  # the order did land: adopt it, never re-send
            self.ledger.orders[coid].broker_order_id = found.id
        self.unknown.clear()
        self._sync()

    @precondition(lambda self: not self.expired)
    @rule(close=st.sampled_from([495.0, 500.5, 506.0]))
    def expiry(self, close):
        self.resolve_unknown_outcomes() if self.unknown else None
        self.clock.t = EXPIRY_CLOSE
        self.sim.on_bar(EXPIRY_CLOSE, "SPY", close)
        self._sync()
        self.clock.t = NEXT_OPEN
        self.sim.on_bar(NEXT_OPEN, "SPY", close)
        self._sync()
        settled = self.ledger.settle_expired(NEXT_OPEN.date(), lambda symbol, day: close)
        for fill, _ in settled:
            self.ref.apply(fill.symbol, "sell", fill.qty, fill.price, 0.0)
        broker = {r.symbol: r.price for r in self.sim.get_fills().itertuples() if r.kind == "expiry"}
        assert {f.symbol: f.price for f, _ in settled} == broker  # the same intrinsic value as the broker's
        self.expired = True

    @rule()
    def restart(self):
        self.sim = self._sim()
        self.ledger = AccountLedger(self.store, ACCOUNT, initial_cash=100_000.0, fee_per_contract=FEE)

    @invariant()
    def ledger_broker_and_reference_agree(self):
        ledger = {s: p.qty for s, p in self.ledger.book.positions.items()}
        broker = {p.symbol: p.qty for p in self.sim.get_positions()}
        reference = {s: q for s, (q, _) in self.ref.held.items()}
        pending = {o.symbol for o in self.ledger.open_orders()} | {
            self.sim.get_order_by_client_id(c).symbol for c in self.unknown}
        # Fills the ledger has not polled yet (an unknown outcome) may put the broker ahead.
        assert {s: q for s, q in broker.items() if s not in pending} == {
            s: q for s, q in ledger.items() if s not in pending}
        assert ledger == reference
        # The ledger prices a fill from the broker's average price, which the broker rounds
        # (the sim to 6 decimals): a generous bound of half a cent per contract traded.
        assert self.ledger.book.cash == pytest.approx(self.ref.cash, abs=1e-6 + 0.005 * self.ref.contracts)
        assert all(q > 0 for q in ledger.values()) and all(q > 0 for q in broker.values())


LedgerAndSim.TestCase.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
TestLedgerAgainstTheSimBroker = LedgerAndSim.TestCase
