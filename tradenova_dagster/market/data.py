"""The market data interface every source implements, and the factory that picks one.

A source answers four questions, always with timezone-aware UTC timestamps:

- ``bars(symbol, day)``: that session's regular-hours bars (1-minute unless the source
  only has coarser ones; ``df.attrs["interval_minutes"]`` says which), columns
  ``timestamp, open, high, low, close, volume``, sorted, one row per bar start;
- ``daily_bars(symbol, start, end)``: one row per session, indexed by date;
- ``vix_history(start, end)``: VIX closes per session, indexed by date;
- ``vix(day)``: that session's VIX close.

Sources: ``synthetic`` (the offline default), ``file`` (CSV/Parquet a user has) and
``alpaca`` (alpaca-py's market data client).
"""

from __future__ import annotations

import abc
from datetime import date

import pandas as pd

from tradenova_dagster.domain import require_symbol
from tradenova_dagster.market import calendar

BAR_COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]
DAILY_COLUMNS = ["open", "high", "low", "close", "volume"]
SOURCES = ("synthetic", "file", "alpaca")


class MarketDataError(ValueError):
    """Data that cannot be served as asked (unknown symbol, day not covered, bad file)."""


class MarketDataSource(abc.ABC):
    name: str = "abstract"

    @abc.abstractmethod
    def bars(self, symbol: str, day: date | str) -> pd.DataFrame: ...

    @abc.abstractmethod
    def daily_bars(self, symbol: str, start: date | str, end: date | str) -> pd.DataFrame: ...

    @abc.abstractmethod
    def vix_history(self, start: date | str, end: date | str) -> pd.Series: ...

    def daily_closes(self, symbol: str, start: date | str, end: date | str) -> pd.Series:
        return self.daily_bars(symbol, start, end)["close"]

    def vix(self, day: date | str) -> float:
        day = calendar.require_trading_day(day)
        history = self.vix_history(day, day)
        if history.empty:
            raise MarketDataError(f"{self.name} source has no VIX close for {day}")
        return float(history.iloc[-1])

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def normalise_request(symbol: str, day) -> tuple[str, date]:
    """Validate a (symbol, day) request: a real symbol and an NYSE trading day."""
    return require_symbol("symbol", symbol), calendar.require_trading_day(day)


def finish_bars(df: pd.DataFrame, interval_minutes: int = 1) -> pd.DataFrame:
    """The canonical bar frame: the columns in order, UTC timestamps, a fresh index.

    Rows keep the order the source delivered, so that the quality checks can see a
    source that sends bars out of order.
    """
    out = df[BAR_COLUMNS].reset_index(drop=True)
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True)
    out[DAILY_COLUMNS] = out[DAILY_COLUMNS].astype("float64")
    out.attrs["interval_minutes"] = interval_minutes
    return out


def get_source(name: str = "synthetic", **options) -> MarketDataSource:
    """Build a source by name. Options go to its constructor (see each source)."""
    if name == "synthetic":
        from tradenova_dagster.market.synthetic import SyntheticMarketData

        return SyntheticMarketData(**options)
    if name == "file":
        from tradenova_dagster.market.files import FileMarketData

        return FileMarketData(**options)
    if name == "alpaca":
        from tradenova_dagster.market.alpaca_data import AlpacaMarketData

        return AlpacaMarketData(**options)
    raise ValueError(f"market data source: unknown value {name!r}; expected one of {', '.join(SOURCES)}")
