"""Market bars and market context in DuckDB: save idempotently, read back, fetch if missing.

Saving a (symbol, day) replaces what was there in one transaction, so re-materialising a
partition never duplicates rows and a failure leaves the previous version intact.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import BAR_COLUMNS, MarketDataSource, finish_bars
from tradenova_dagster.metrics.store import Store


def save_bars(store: Store, symbol: str, day: date, bars: pd.DataFrame, source: str) -> int:
    """Replace the stored bars of (symbol, day) with ``bars``; returns the row count."""
    frame = bars[BAR_COLUMNS].copy()
    frame.insert(0, "symbol", symbol)
    frame.insert(1, "day", pd.Timestamp(day).date())
    frame["source"] = source
    frame = frame.rename(columns={"timestamp": "ts"})
    with store.transaction() as con:
        con.execute("DELETE FROM market_bars WHERE symbol = ? AND day = ?", [symbol, day])
        con.register("incoming_bars", frame)
        con.execute(
            "INSERT INTO market_bars (symbol, day, ts, open, high, low, close, volume, source) "
            "SELECT symbol, day, ts, open, high, low, close, volume, source FROM incoming_bars"
        )
        con.unregister("incoming_bars")
    return len(frame)


def load_stored_bars(store: Store, symbol: str, day: date) -> pd.DataFrame:
    """The stored bars of (symbol, day), empty if none were stored."""
    df = store.query_df(
        "SELECT ts AS timestamp, open, high, low, close, volume FROM market_bars "
        "WHERE symbol = ? AND day = ? ORDER BY ts",
        [symbol, day],
    )
    return finish_bars(df)


def bars_for_day(store: Store, source: MarketDataSource, symbol: str, day) -> pd.DataFrame:
    """Stored bars if the day was materialised, else fetched from ``source`` (not stored)."""
    day = calendar.require_trading_day(day)
    stored = load_stored_bars(store, symbol.upper(), day)
    return stored if not stored.empty else source.bars(symbol, day)
