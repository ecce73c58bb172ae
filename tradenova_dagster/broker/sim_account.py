"""SimBroker's account view: positions, cash and P&L folded from the account's own fills.

The simulator keeps no position or cash of its own: every execution (and every option
expiry, a fill of kind ``expiry`` at intrinsic value) is a row of ``sim_fills``, and
``ledger.book.Book`` folds those rows, in the order they happened (``seq``), into
positions, cash, realised P&L and fees — the same fold, the same formula, the ledger
uses. What a fill cannot tell — the initial cash, the equity at the previous session's
last mark (Alpaca's ``last_equity``), the time of the latest market update, whether
trading is blocked — is kept beside it, in ``sim_accounts``.

The Alpaca-like figures keep Alpaca's meaning: ``avg_entry_price`` is the premium paid
per unit (fees excluded); ``unrealized_pl`` is market value less that cost;
``realized_pl`` in the snapshot is before fees and ``fees_paid`` all fees, so that
``equity = initial_cash + realized_pl + unrealized_pl - fees_paid``.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from typing import Iterable

from tradenova_dagster.broker.sim_pricing import Pricer
from tradenova_dagster.domain import Position, Side
from tradenova_dagster.ledger.book import Book, BookPosition, LedgerFill

FILL_COLUMNS = ("account", "fill_id", "seq", "run_id", "order_id", "client_order_id", "kind", "symbol", "side",
                "qty", "price", "commission", "realized_pl", "ts")


class SimAccount:
    """One simulated account: its fills folded into a Book, and the facts fills do not give."""

    def __init__(self, name: str, initial_cash: float, created_at: datetime | None = None):
        self.name = name
        self.initial_cash = float(initial_cash)
        self.book = Book(self.initial_cash)
        self.last_equity = self.initial_cash
        self.last_equity_day: date | None = None
        self.market_time: datetime | None = None
        self.trading_blocked = False
        self.created_at = created_at or datetime.now(timezone.utc)
        self.next_seq = 0
        self.new_fills: list[dict] = []  # fills not yet written
        self.dirty = False  # the sim_accounts row changed

    # ------------------------------------------------------------------ fills in

    def record_fill(self, kind: str, symbol: str, side: Side, qty: float, price: float, fee: float, ts: datetime,
                    order_id: str | None = None, client_order_id: str | None = None,
                    run_id: str | None = None) -> float:
        """Fold one new execution into the book and queue its row; returns the P&L (before
        fees) it closed. A sell above the held quantity raises ``LongOnlyViolation``
        before anything changes."""
        fill_id = str(uuid.uuid4())
        if side is Side.SELL:
            self.book.require_can_sell(symbol, qty)
        part = self.book.apply(LedgerFill(fill_id, symbol, side, qty, price, fee, ts, client_order_id, kind))
        realized = part.pnl + part.fees if part is not None else 0.0
        self.new_fills.append({
            "account": self.name, "fill_id": fill_id, "seq": self.next_seq, "run_id": run_id, "order_id": order_id,
            "client_order_id": client_order_id, "kind": kind, "symbol": symbol, "side": side.value, "qty": qty,
            "price": price, "commission": fee, "realized_pl": realized, "ts": ts,
        })
        self.next_seq += 1
        return realized

    def replay(self, rows: Iterable[tuple]) -> None:
        """Fold stored fills ``(seq, fill_id, kind, symbol, side, qty, price, commission, ts,
        client_order_id)``, in ``seq`` order."""
        for seq, fill_id, kind, symbol, side, qty, price, fee, ts, coid in rows:
            self.book.apply(LedgerFill(fill_id, symbol, Side(side), qty, price, fee, ts, coid, kind))
            self.next_seq = seq + 1

    # ------------------------------------------------------------------ the view

    @property
    def cash(self) -> float:
        return self.book.cash

    def held(self, symbol: str) -> float:
        return self.book.qty(symbol)

    @property
    def positions(self) -> dict[str, BookPosition]:
        return self.book.positions

    def _valued(self, pricer: Pricer, at: datetime) -> list[tuple[str, BookPosition, float | None, float]]:
        """(symbol, position, mark price or None, market value) — unpriced at their cost."""
        valued = []
        for symbol, pos in sorted(self.book.positions.items()):
            price = pricer.mark_price(symbol, at)
            valued.append((symbol, pos, price, pos.market_value(price) if price is not None else pos.basis))
        return valued

    def position(self, symbol: str, pricer: Pricer, at: datetime) -> Position | None:
        pos = self.book.positions.get(symbol)
        if pos is None:
            return None
        price = pricer.mark_price(symbol, at)
        return Position(symbol, pos.qty, pos.avg_entry_price, current_price=price if price and price > 0 else None)

    def position_list(self, pricer: Pricer, at: datetime) -> list[Position]:
        return [Position(s, p.qty, p.avg_entry_price, current_price=price if price and price > 0 else None)
                for s, p, price, _ in self._valued(pricer, at)]

    def equity(self, pricer: Pricer, at: datetime) -> float:
        return self.book.cash + sum(value for *_, value in self._valued(pricer, at))

    def roll_day(self, ts: datetime, day: date, pricer: Pricer) -> None:
        """On the first update of a new day, the previous equity becomes ``last_equity``."""
        if self.last_equity_day is None:
            self.last_equity_day = day
        elif day > self.last_equity_day:
            self.last_equity = self.equity(pricer, self.market_time or ts)
            self.last_equity_day = day
        else:
            return
        self.dirty = True

    def snapshot(self, pricer: Pricer, at: datetime, buying_power: float, open_orders: int) -> dict:
        valued = self._valued(pricer, at)
        long_value = sum(value for *_, value in valued)
        book = self.book
        open_entry_fees = sum(p.entry_fees for p in book.positions.values())
        return {
            "account": self.name, "cash": book.cash, "equity": book.cash + long_value,
            "last_equity": self.last_equity, "long_market_value": long_value, "short_market_value": 0.0,
            "buying_power": buying_power, "initial_cash": self.initial_cash,
            "realized_pl": book.realized_pnl + book.fees_paid - open_entry_fees,
            "unrealized_pl": long_value - sum(p.basis for p in book.positions.values()),
            "fees_paid": book.fees_paid, "trading_blocked": self.trading_blocked, "market_time": self.market_time,
            "open_orders": open_orders, "positions": len(book.positions),
        }
