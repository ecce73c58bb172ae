"""The market context of a session day: what is known about the market at its open.

VIX, IV rank and realised volatility all come from sessions *before* the day, so that
a backtest of day D never uses D's own close (no look-ahead, DESIGN.md §5) and the
08:00 warmup can compute today's context before the market opens.

- ``vix``: the VIX close of the previous session.
- ``iv_rank``: where that VIX sits in its range over the last 252 sessions, 0..100
  (VIX stands in for SPY's implied volatility).
- ``realized_vol``: annualised std of the last 20 daily log returns of the underlying.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta

import numpy as np

from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import MarketDataError, MarketDataSource
from tradenova_dagster.store import Store

IV_RANK_WINDOW = 252
REALIZED_VOL_WINDOW = 20


@dataclass(frozen=True)
class MarketContext:
    day: date
    vix: float
    iv_rank: float
    realized_vol: float
    underlying: str
    underlying_close: float
    source: str

    def as_dict(self) -> dict:
        return asdict(self)


def compute_context(source: MarketDataSource, day, underlying: str = "SPY") -> MarketContext:
    day = calendar.require_trading_day(day)
    prev = calendar.previous_session(day)
    lookback_start = prev - timedelta(days=IV_RANK_WINDOW * 7 // 5 + 30)
    vix_hist = source.vix_history(lookback_start, prev).dropna().tail(IV_RANK_WINDOW)
    if vix_hist.empty or vix_hist.index[-1].date() != prev:
        raise MarketDataError(f"{source.name} source has no VIX close for {prev}, the session before {day}")
    vix = float(vix_hist.iloc[-1])
    low, high = float(vix_hist.min()), float(vix_hist.max())
    iv_rank = 50.0 if high == low else (vix - low) / (high - low) * 100

    closes = source.daily_closes(underlying, prev - timedelta(days=45), prev).dropna().tail(REALIZED_VOL_WINDOW + 1)
    if len(closes) < REALIZED_VOL_WINDOW + 1:
        raise MarketDataError(
            f"{source.name} source has {len(closes)} daily closes of {underlying} before {day}; "
            f"realised volatility needs {REALIZED_VOL_WINDOW + 1}"
        )
    returns = np.diff(np.log(closes.to_numpy()))
    realized = float(np.std(returns, ddof=1) * np.sqrt(252))
    return MarketContext(day, round(vix, 4), round(iv_rank, 4), round(realized, 6), underlying.upper(),
                         float(closes.iloc[-1]), source.name)


def save_context(store: Store, ctx: MarketContext) -> None:
    """Store a day's context as a fact of its source (``ctx.source``), replacing that
    source's earlier one for the day."""
    with store.transaction() as con:
        con.execute("DELETE FROM market_context WHERE source = ? AND day = ?", [ctx.source, ctx.day])
        con.execute(
            "INSERT INTO market_context (day, vix, iv_rank, realized_vol, underlying, underlying_close, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [ctx.day, ctx.vix, ctx.iv_rank, ctx.realized_vol, ctx.underlying, ctx.underlying_close, ctx.source],
        )


def load_context(store: Store, day, source: str) -> MarketContext | None:
    """The context of ``day`` stored from ``source``; None if that source's was never stored
    (another source's context is another market's: never used in its place)."""
    day = calendar.as_date(day)
    rows = store.query(
        "SELECT day, vix, iv_rank, realized_vol, underlying, underlying_close, source FROM market_context"
        " WHERE source = ? AND day = ?",
        [source, day],
    )
    return MarketContext(*rows[0]) if rows else None
