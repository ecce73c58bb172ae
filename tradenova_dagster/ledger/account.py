"""One account's ledger in DuckDB: its orders, its fills, and the positions folded from them.

``AccountLedger`` is what the session (and the flatten job) use to record what happened
at the broker, and the only place they read holdings from:

- ``record_order`` writes an order the moment it is sent, with its intent, reason and the
  bar that decided it; ``observe`` applies the broker's view of it through the state
  machine (``orders.advance``) and turns any newly filled quantity into a fill whose id
  is ``<broker order id>:<cumulative filled qty>``, stamped with the broker's time of the
  fill (so ``fills``, ``trades`` and the broker's own records agree on when it happened) — the same fill seen twice (a restart,
  a re-poll) has the same id, and the unique key refuses it.
- every fill is folded into the ``Book`` (``book.py``: one P&L formula, fees once); a
  sell that closes (part of) a position returns the round trip the trades table records,
  keyed by the fill id.
- ``settle_expired`` records an option that expired while held as a fill with reason
  ``expiry`` at its intrinsic value from the underlying's close on the expiry day.
- ``batch()`` keeps the rows in memory and writes them when the block ends, in one
  transaction: an order's latest state (one row per order, however often it changed) and
  the fills in the order they came, one statement per table, plus an UPDATE per order
  that was already in the file. A session enters it inside each unit of work (a bar, or a
  fast replay's day), so the rows still commit with the unit that made them. Every
  DuckDB statement costs ~1-2 ms whatever its rows: a replayed day saved each order
  ~15 times.

Each fill is numbered (``seq``, the order the book folds them in) from the ledger's own
count, not a query: only the holder of the account's lease writes its ledger
(``lease.py``), and the unique key on (account, seq) refuses a number twice.

Nothing here keeps a copy of a position that is not derived from ``fills``.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd

from tradenova_dagster.domain import OptionContract, Order, OrderStatus, Side
from tradenova_dagster.ledger.book import Book, ClosedPart, LedgerFill, multiplier
from tradenova_dagster.ledger.orders import FINAL, advance
from tradenova_dagster.market import calendar
from tradenova_dagster.rules import intrinsic_value
from tradenova_dagster.store import Store, insert_rows, upsert_row

log = logging.getLogger(__name__)


@dataclass
class LedgerOrder:
    """The ledger's record of one order (a row of ``orders``)."""

    client_order_id: str
    broker_order_id: str | None
    symbol: str
    side: Side
    qty: float
    intent: str
    reason: str
    decision_ts: datetime
    status: OrderStatus
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    broker_message: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status not in FINAL

    @property
    def filled_notional(self) -> float:
        return self.filled_qty * (self.filled_avg_price or 0.0)


_ORDER_COLUMNS = (
    "account", "run_id", "client_order_id", "broker_order_id", "day", "decision_ts", "symbol", "side", "qty",
    "order_type", "limit_price", "intent", "reason", "status", "filled_qty", "filled_avg_price", "broker_message",
    "updated_ts",
)
# What a later save of the same order changes: the broker's view of it.
_ORDER_UPDATES = ("broker_order_id", "status", "filled_qty", "filled_avg_price", "broker_message", "updated_ts")
_UPDATED = tuple(_ORDER_COLUMNS.index(c) for c in _ORDER_UPDATES)
_KEPT = tuple(i for i in range(len(_ORDER_COLUMNS)) if i not in _UPDATED)
_FILL_COLUMNS = (
    "account", "run_id", "ts", "day", "order_id", "client_order_id", "symbol", "side", "qty", "price", "commission",
    "notional", "fill_id", "reason", "seq",
)


def _day(ts) -> date:
    """The New York date of ``ts`` (the day column of every ledger table)."""
    return pd.Timestamp(ts).tz_convert(calendar.NEW_YORK).date()


class AccountLedger:
    """Orders and fills of one account, and the book folded from the fills."""

    def __init__(self, store: Store, account: str, initial_cash: float = 0.0, run_id: str | None = None,
                 fee_per_contract: float = 0.0):
        self.store = store
        self.account = account
        self.run_id = run_id
        self.fee_per_contract = fee_per_contract
        self.orders: dict[str, LedgerOrder] = {}
        with store.connect() as con:
            rows = con.execute(
                "SELECT fill_id, symbol, side, qty, price, commission, ts, client_order_id, coalesce(reason, 'trade'), "
                "seq FROM fills WHERE account = ? ORDER BY seq NULLS LAST, ts, fill_id", [account]).fetchall()
            fills = [LedgerFill(fid or f"legacy:{i}", sym, Side(side), qty, price, fee, ts, coid, reason)
                     for i, (fid, sym, side, qty, price, fee, ts, coid, reason, _) in enumerate(rows)]
            self._next_seq = max((row[-1] for row in rows if row[-1] is not None), default=-1) + 1
            for row in con.execute(
                "SELECT client_order_id, broker_order_id, symbol, side, qty, intent, reason, decision_ts, status, "
                "filled_qty, filled_avg_price, broker_message FROM orders WHERE account = ?", [account]).fetchall():
                order = LedgerOrder(row[0], row[1], row[2], Side(row[3]), row[4], row[5], row[6], row[7],
                                    OrderStatus(row[8]), row[9], row[10], row[11])
                self.orders[order.client_order_id] = order
        self.book = Book.from_fills(initial_cash, fills)
        self._last_fill_ts = {f.client_order_id: f.ts for f in fills if f.client_order_id}
        self._stored = set(self.orders)  # the orders that have a row in the file
        # Inside ``batch()``: each order's row as it will be written, and the fills' rows.
        self._pending_orders: dict[str, tuple] | None = None
        self._pending_fills: list[tuple] = []

    # ------------------------------------------------------------------ batching

    @contextmanager
    def batch(self):
        """Keep the rows written inside the block in memory; write them when it ends (see
        the module docstring), also when it ends with an exception, as the records do: they
        describe what did happen at the broker. Nested blocks join the outer one."""
        if self._pending_orders is not None:
            yield self
            return
        self._pending_orders = {}
        try:
            yield self
        finally:
            try:
                self.flush()
            finally:
                self._pending_orders = None

    def flush(self) -> None:
        """Write what ``batch()`` holds, in one transaction (the open unit of work's, if any)."""
        orders, fills = self._pending_orders, self._pending_fills
        if not orders and not fills:
            return
        with self.store.transaction() as con:
            new = []
            for coid, row in orders.items():
                if coid not in self._stored or not self._update(con, row):
                    new.append(row)
            insert_rows(con, "orders", _ORDER_COLUMNS, new)
            insert_rows(con, "fills", _FILL_COLUMNS, fills)
        self._stored.update(orders)
        self._pending_orders, self._pending_fills = {}, []

    @staticmethod
    def _update(con, row: tuple) -> bool:
        """The broker's latest view onto the order's row; False when it has none."""
        return bool(con.execute(
            f"UPDATE orders SET {', '.join(f'{c} = ?' for c in _ORDER_UPDATES)} "
            "WHERE account = ? AND client_order_id = ?", [row[i] for i in _UPDATED] + [row[0], row[2]],
        ).fetchone()[0])

    # ------------------------------------------------------------------ reading

    def open_orders(self) -> list[LedgerOrder]:
        return [o for o in self.orders.values() if o.is_open]

    def pending_sells(self, symbol: str) -> float:
        return sum(o.qty - o.filled_qty for o in self.open_orders() if o.symbol == symbol and o.side is Side.SELL)

    # ------------------------------------------------------------------ orders

    def record_order(self, client_order_id: str, order: Order | None, *, symbol: str, side: Side, qty: float,
                     intent: str, reason: str, decision_ts: datetime, order_type: str = "market",
                     limit_price: float | None = None, status: OrderStatus = OrderStatus.NEW,
                     broker_message: str | None = None) -> LedgerOrder:
        """Write an order as sent (or as refused: ``status=rejected`` with the broker's message).
        An order recorded again (a retried send) keeps what it already filled and its status:
        the broker's view of it arrives through ``observe``, and a fill booked stays booked."""
        record = LedgerOrder(client_order_id, order.id if order else None, symbol, side, float(qty), intent, reason,
                             decision_ts, status, 0.0, None, broker_message)
        known = self.orders.get(client_order_id)
        if known is not None:
            record.status, record.filled_qty, record.filled_avg_price = (known.status, known.filled_qty,
                                                                         known.filled_avg_price)
        self.orders[client_order_id] = record
        self._save(record, order_type, limit_price)
        return record

    def observe(self, order: Order, bar_end: datetime) -> list[tuple[LedgerFill, ClosedPart | None]]:
        """Apply the broker's view of a known order; returns the new fills (and what each closed)."""
        record = self.orders[order.client_order_id]
        new_status = advance(order.client_order_id, record.status, order.status, qty=record.qty,
                             filled_before=record.filled_qty, filled_after=order.filled_qty)
        fills = []
        new_qty = order.filled_qty - record.filled_qty
        if new_qty > 1e-9:
            notional = order.filled_qty * (order.filled_avg_price or 0.0)
            # The new part's price, from the broker's average before and after: exact up to
            # the rounding of that average (the sim keeps 6 decimals). One poll
            # may see several broker fills at once; they become one fill at their average.
            price = (notional - record.filled_notional) / new_qty
            # Stamped when the broker says it filled (``filled_at``; for a partial fill its
            # update time), as the broker's own records are; no time, or a later one, gets
            # the bar's end.
            when = order.filled_at if order.status is OrderStatus.FILLED and order.filled_at else order.updated_at
            when = when if when is not None and when <= bar_end else bar_end
            last = self._last_fill_ts.get(order.client_order_id)
            when = max(when, last) if last is not None else when  # an order's fills never go back in time
            fill = LedgerFill(f"{order.id}:{order.filled_qty:g}", order.symbol, order.side, new_qty, max(price, 0.0),
                              self._fee(order.symbol, new_qty), when, order.client_order_id)
            fills.append((fill, self.record_fill(fill)))
        record.broker_order_id = order.id
        record.status, record.filled_qty, record.filled_avg_price = new_status, order.filled_qty, order.filled_avg_price
        if new_status is OrderStatus.REJECTED and not record.broker_message:
            record.broker_message = "rejected by the broker"
        self._save(record)
        return fills

    def observe_missing(self, client_order_id: str, when: datetime) -> None:
        """An order whose outcome was unknown and that the broker says it never received:
        final (rejected, with that reason); a new attempt is a new decision."""
        record = self.orders[client_order_id]
        record.status = advance(client_order_id, record.status, OrderStatus.REJECTED, qty=record.qty,
                                filled_before=record.filled_qty, filled_after=record.filled_qty)
        record.broker_message = f"never reached the broker (looked up {when:%Y-%m-%d %H:%M} UTC)"
        self._save(record)

    def _fee(self, symbol: str, qty: float) -> float:
        return self.fee_per_contract * qty if OptionContract.is_option_symbol(symbol) else 0.0

    def _save(self, o: LedgerOrder, order_type: str | None = None, limit_price: float | None = None) -> None:
        """Write the order's row; a row already there keeps what the order was sent with
        (its run, intent, reason, type and limit) and takes the broker's latest view."""
        row = (self.account, self.run_id, o.client_order_id, o.broker_order_id, _day(o.decision_ts), o.decision_ts,
               o.symbol, o.side.value, o.qty, order_type or "market", limit_price, o.intent, o.reason,
               o.status.value, o.filled_qty, o.filled_avg_price, o.broker_message, o.decision_ts)
        if self._pending_orders is None:
            with self.store.transaction() as con:
                upsert_row(con, "orders", _ORDER_COLUMNS, row, key=("account", "client_order_id"),
                           update=_ORDER_UPDATES)
            self._stored.add(o.client_order_id)
            return
        first = self._pending_orders.get(o.client_order_id)
        if first is not None:  # as an insert then updates would leave it: what it was sent with, the latest view
            row = tuple(first[i] if i in _KEPT else row[i] for i in range(len(row)))
        self._pending_orders[o.client_order_id] = row

    # ------------------------------------------------------------------ fills

    def record_fill(self, fill: LedgerFill) -> ClosedPart | None:
        """Fold a fill into the book and write it (the unique key refuses a second copy)."""
        part = self.book.apply(fill)
        if fill.client_order_id:
            self._last_fill_ts[fill.client_order_id] = fill.ts
        row = (self.account, self.run_id, fill.ts, _day(fill.ts), fill.fill_id.split(":")[0], fill.client_order_id,
               fill.symbol, fill.side.value, fill.qty, fill.price, fill.fee,
               fill.qty * fill.price * multiplier(fill.symbol), fill.fill_id, fill.reason, self._next_seq)
        self._next_seq += 1
        if self._pending_orders is None:
            with self.store.transaction() as con:
                insert_rows(con, "fills", _FILL_COLUMNS, [row])
        else:
            self._pending_fills.append(row)
        return part

    def settle_expired(self, today: date, underlying_close) -> list[tuple[LedgerFill, ClosedPart | None]]:
        """Close every held option whose expiry session has ended before ``today``, at intrinsic
        value. ``underlying_close(symbol, day)`` gives the underlying's close on the expiry day
        (None when unknown: the position is left and a warning logged)."""
        settled = []
        for symbol, pos in list(self.book.positions.items()):
            if not OptionContract.is_option_symbol(symbol):
                continue
            contract = OptionContract.parse(symbol)
            if contract.expiry >= today:
                continue
            close = underlying_close(contract.underlying, contract.expiry)
            if close is None:
                log.warning("%s expired on %s but the underlying's close that day is unknown; not settled",
                            symbol, contract.expiry)
                continue
            when = pd.Timestamp(calendar.session_open_close(contract.expiry)[1]).to_pydatetime()
            fill = LedgerFill(f"expiry:{symbol}:{len(self.book.fill_ids)}", symbol, Side.SELL, pos.qty, intrinsic_value(contract, close), 0.0,
                              when, None, "expiry")
            settled.append((fill, self.record_fill(fill)))
        return settled
