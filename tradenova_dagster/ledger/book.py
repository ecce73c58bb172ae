"""Positions, cash and realised P&L, derived from fills and from nothing else.

A ``Book`` is a fold over an account's fills in the order they happened. It is the one
place that turns executions into holdings and money, so there is one P&L formula and
fees are counted once:

- a buy of ``q`` at ``p`` pays ``q·p·m + fee`` in cash (``m`` = 100 for an option
  contract, 1 for a share) and adds ``q·p·m`` to the position's premium basis and ``fee``
  to its entry fees;
- a sell of ``q`` out of ``Q`` held releases ``q/Q`` of the basis and of the entry fees
  and receives ``q·p·m − fee``; its realised P&L is
  ``q·p·m − fee − (q/Q)·(basis + entry fees)``, i.e. net of both fees, once each.

So at any mark, ``cash + Σ qty·mark·m = initial_cash + realised + unrealised`` exactly,
with ``unrealised = qty·mark·m − basis − entry fees``. ``avg_entry_price`` is the premium
paid per unit (``basis / (qty·m)``, fees excluded, as Alpaca reports it): it is what the
take-profit ladder measures gains against.

Options are long-only here: ``require_can_sell`` refuses a sell above what is held (less
what open sells already claim) before any order reaches a broker. An option held to
expiry leaves through a fill with reason ``expiry`` at its intrinsic value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Iterable
from zoneinfo import ZoneInfo

from tradenova_dagster.domain import OPTION_MULTIPLIER, OptionContract, Side

EPS = 1e-9
NEW_YORK = ZoneInfo("America/New_York")


def trading_date(ts: datetime) -> date:
    """The New York date of a moment (a naive one is UTC, as the store writes them)."""
    return (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)).astimezone(NEW_YORK).date()


class LongOnlyViolation(ValueError):
    """A sell of more option contracts than the account holds (it would open a short)."""


def multiplier(symbol: str) -> int:
    return OPTION_MULTIPLIER if OptionContract.is_option_symbol(symbol) else 1


@dataclass(frozen=True)
class LedgerFill:
    """One execution as the ledger records it. ``fill_id`` is unique per account."""

    fill_id: str
    symbol: str
    side: Side
    qty: float
    price: float
    fee: float
    ts: datetime
    client_order_id: str | None = None
    reason: str = "trade"  # trade | expiry

    def __post_init__(self) -> None:
        if not self.qty > 0:
            raise ValueError(f"fill {self.fill_id}: qty must be > 0, got {self.qty!r}")
        if not self.price >= 0:
            raise ValueError(f"fill {self.fill_id}: price must be >= 0, got {self.price!r}")
        if not self.fee >= 0:
            raise ValueError(f"fill {self.fill_id}: fee must be >= 0, got {self.fee!r}")


@dataclass
class BookPosition:
    """One open long position, as the fills left it."""

    symbol: str
    qty: float = 0.0
    basis: float = 0.0  # premium paid for what is still held, fees excluded
    entry_fees: float = 0.0  # entry fees attached to what is still held
    opened_at: datetime | None = None  # the first fill of the current holding
    position_id: str = ""  # that fill's id: names this holding (a re-entry after a close is a new one)
    realized_pnl: float = 0.0  # realised on this holding so far (partial exits)

    @property
    def avg_entry_price(self) -> float:
        return self.basis / (self.qty * multiplier(self.symbol)) if self.qty > EPS else 0.0

    def market_value(self, mark: float) -> float:
        return self.qty * mark * multiplier(self.symbol)

    def unrealized_pnl(self, mark: float) -> float:
        return self.market_value(mark) - self.basis - self.entry_fees


@dataclass(frozen=True)
class ClosedPart:
    """What one sell fill closed: the round trip the trades table records."""

    fill: LedgerFill
    entry_price: float
    entry_time: datetime | None
    pnl: float  # net of the entry and exit fees of the part, once each
    fees: float
    closes_position: bool
    position_pnl: float  # realised on the whole holding so far, this part included


@dataclass
class Book:
    initial_cash: float
    cash: float = field(init=False)
    realized_pnl: float = 0.0
    fees_paid: float = 0.0
    positions: dict[str, BookPosition] = field(default_factory=dict)
    fill_ids: set[str] = field(default_factory=set)
    closed: list[ClosedPart] = field(default_factory=list)  # what each sell closed, in fill order
    # ``closed`` by New York day, in the same order: risk asks for one day's round trips on
    # every trade, and scanning a year's parts each time made a long backtest quadratic.
    _closed_on: dict[date, list[ClosedPart]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.cash = float(self.initial_cash)

    @classmethod
    def from_fills(cls, initial_cash: float, fills: Iterable[LedgerFill]) -> "Book":
        book = cls(initial_cash)
        for fill in fills:
            book.apply(fill)
        return book

    def qty(self, symbol: str) -> float:
        pos = self.positions.get(symbol)
        return pos.qty if pos else 0.0

    def apply(self, fill: LedgerFill) -> ClosedPart | None:
        """Fold one fill in; returns what a sell closed. A fill seen before is refused."""
        if fill.fill_id in self.fill_ids:
            raise ValueError(f"fill {fill.fill_id} is already in the book")
        m = multiplier(fill.symbol)
        notional = fill.qty * fill.price * m
        if fill.side is Side.BUY:
            self.fees_paid += fill.fee
            self.fill_ids.add(fill.fill_id)
            pos = self.positions.setdefault(fill.symbol, BookPosition(fill.symbol))
            if pos.qty <= EPS:
                pos.opened_at, pos.realized_pnl, pos.position_id = fill.ts, 0.0, fill.fill_id
            pos.qty += fill.qty
            pos.basis += notional
            pos.entry_fees += fill.fee
            self.cash -= notional + fill.fee
            return None
        pos = self.positions.get(fill.symbol)
        held = pos.qty if pos else 0.0
        if fill.qty > held + EPS:
            raise LongOnlyViolation(f"fill {fill.fill_id}: sells {fill.qty:g} {fill.symbol} but holds {held:g}")
        self.fill_ids.add(fill.fill_id)
        self.fees_paid += fill.fee
        share = fill.qty / held
        cost = share * (pos.basis + pos.entry_fees)
        entry_price, entry_fees = pos.avg_entry_price, share * pos.entry_fees
        pnl = notional - fill.fee - cost
        pos.basis -= share * pos.basis
        pos.entry_fees -= entry_fees
        pos.qty -= fill.qty
        pos.realized_pnl += pnl
        self.cash += notional - fill.fee
        self.realized_pnl += pnl
        closes = pos.qty <= EPS
        part = ClosedPart(fill, entry_price, pos.opened_at, pnl, fill.fee + entry_fees, closes, pos.realized_pnl)
        if closes:
            del self.positions[fill.symbol]
        self.closed.append(part)
        self._closed_on.setdefault(trading_date(fill.ts), []).append(part)
        return part

    def realized_on(self, day: date) -> float:
        """Realised P&L of the sells on ``day`` (a New York trading day), partial exits included."""
        return sum(part.pnl for part in self._closed_on.get(day, ()))

    def round_trips_on(self, day: date) -> list[float]:
        """The P&L of each holding closed on ``day``, in order: what risk calls a trade."""
        return [part.position_pnl for part in self._closed_on.get(day, ()) if part.closes_position]

    def require_can_sell(self, symbol: str, qty: float, pending_sells: float = 0.0) -> None:
        """Refuse (before any broker sees it) a sell that would leave the account short."""
        held = self.qty(symbol)
        if qty > held - pending_sells + EPS:
            raise LongOnlyViolation(
                f"sell {qty:g} {symbol} refused: the account holds {held:g}"
                + (f" and open sells already claim {pending_sells:g}" if pending_sells else "")
                + "; options are long-only here (a short would be naked)"
            )

    def equity(self, marks: dict[str, float]) -> float:
        return self.cash + sum(p.market_value(marks[s]) for s, p in self.positions.items())
