"""Market bars in DuckDB: save idempotently, read back, fetch if missing.

Bars are (source, symbol, day) facts: a day stored from the synthetic source never serves
a backtest on the real file data or Alpaca, and each source's day has its own quality
verdict. Saving a (source, symbol, day) replaces what was there in one transaction, so
re-materialising a partition never duplicates rows and a failure leaves the previous
version intact.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import BAR_COLUMNS, MarketDataSource, finish_bars
from tradenova_dagster.market.quality import CheckOutcome, blocking_failures, failures_json
from tradenova_dagster.store import Store


def save_day(
    store: Store,
    day: date,
    bars_by_symbol: dict[str, pd.DataFrame],
    source: str,
    outcomes_by_symbol: dict[str, list[CheckOutcome]] | None = None,
) -> int:
    """Replace the stored bars (and quality verdicts) of ``day`` from ``source`` for these symbols.

    One transaction for all symbols: either the whole day lands or nothing changes.
    Duplicate timestamps are stored once (the first), since the quality check has
    already recorded that the source sent them. Returns the number of rows stored.
    """
    outcomes_by_symbol = outcomes_by_symbol or {}
    stored = 0
    with store.transaction() as con:
        for symbol, bars in bars_by_symbol.items():
            frame = bars[BAR_COLUMNS].drop_duplicates("timestamp").rename(columns={"timestamp": "ts"})
            frame.insert(0, "symbol", symbol)
            frame.insert(1, "day", day)
            frame["source"] = source
            con.execute("DELETE FROM market_bars WHERE source = ? AND symbol = ? AND day = ?", [source, symbol, day])
            con.register("incoming_bars", frame)
            con.execute(
                "INSERT INTO market_bars (symbol, day, ts, open, high, low, close, volume, source) "
                "SELECT symbol, day, ts, open, high, low, close, volume, source FROM incoming_bars"
            )
            con.unregister("incoming_bars")
            stored += len(frame)
            if symbol in outcomes_by_symbol:
                outcomes = outcomes_by_symbol[symbol]
                con.execute("DELETE FROM market_bars_quality WHERE source = ? AND symbol = ? AND day = ?",
                            [source, symbol, day])
                con.execute(
                    "INSERT INTO market_bars_quality (source, symbol, day, passed, failures) VALUES (?, ?, ?, ?, ?)",
                    [source, symbol, day, not blocking_failures(outcomes), failures_json(outcomes)],
                )
    return stored


def quality_verdict(store: Store, symbol: str, day: date, source: str) -> tuple[bool, str] | None:
    """(passed, failures JSON) of the stored bars of (source, symbol, day); None if never checked."""
    rows = store.query(
        "SELECT passed, failures FROM market_bars_quality WHERE source = ? AND symbol = ? AND day = ?",
        [source, symbol.upper(), day],
    )
    return (bool(rows[0][0]), rows[0][1]) if rows else None


def load_stored_bars(store: Store, symbol: str, day: date, source: str) -> pd.DataFrame:
    """The bars of (symbol, day) stored from ``source``, empty if none were stored."""
    df = store.query_df(
        "SELECT ts AS timestamp, open, high, low, close, volume FROM market_bars "
        "WHERE source = ? AND symbol = ? AND day = ? ORDER BY ts",
        [source, symbol, day],
    )
    return finish_bars(df)


def bars_for_day(store: Store, source: MarketDataSource, symbol: str, day) -> pd.DataFrame:
    """The day's bars stored from ``source`` if it was materialised from it, else fetched
    from ``source`` (not stored)."""
    day = calendar.require_trading_day(day)
    stored = load_stored_bars(store, symbol.upper(), day, source.name)
    return stored if not stored.empty else source.bars(symbol, day)
