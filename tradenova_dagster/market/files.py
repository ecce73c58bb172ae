"""Market data from CSV or Parquet files a user already has.

The file name says the symbol: everything before the first ``_`` (``spy_1m_rth.parquet``
→ SPY, ``QQQ_minute.csv`` → QQQ). Cboe's ``VIX_History.csv`` (``DATE,OPEN,HIGH,LOW,CLOSE``
with MM/DD/YYYY dates) gives the VIX. Formats read (those of ``../shared/data``):

- intraday bars, Parquet or CSV, with a ``timestamp``/``datetime`` column that is either
  naive New York exchange time or carries a UTC offset (``2024-02-20 04:00:00-05:00``);
  bars are stamped at their start; extended-hours rows are dropped (regular session only);
  the bar interval (1 or 5 minutes...) is inferred from the file;
- daily bars (``Date,Open,High,Low,Close,Adj Close,Volume``), used for daily closes.

When several files cover a day, the finest interval wins. Files are parsed once per
process. A row that is not a number where a price should be is refused with the file,
the line and the value; a missing value stays NaN for the quality checks to flag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import (
    DAILY_COLUMNS,
    MarketDataError,
    MarketDataSource,
    finish_bars,
    normalise_request,
)

DATA_DIR_ENV = "TRADENOVA_DATA_DIR"
_TIME_COLUMNS = ("timestamp", "datetime", "date", "time")
_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class _BarFile:
    path: Path
    symbol: str


def _symbol_of(path: Path) -> str:
    return path.name.split("_", 1)[0].split(".", 1)[0].upper()


def _read_raw(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise MarketDataError(f"{path}: malformed CSV ({exc}); fix or remove the bad line") from None


def _numeric(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw):
        return raw.astype("float64")
    text = raw.astype(str).str.strip()
    values = pd.to_numeric(text.replace({"": None, "nan": None, "NaN": None}), errors="coerce")
    bad = values.isna() & ~text.isin(["", "nan", "NaN"])
    if bad.any():
        row = int(bad.idxmax())
        raise MarketDataError(
            f"{path}: line {row + 2}: column {column!r} is {raw.iloc[row]!r}, not a number; "
            "fix or remove that row"
        )
    return values.astype("float64")


def _columns_lower(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={c: c.strip().lower() for c in frame.columns})


def _time_column(frame: pd.DataFrame, path: Path) -> str:
    for name in _TIME_COLUMNS:
        if name in frame.columns:
            return name
    raise MarketDataError(f"{path}: no time column; expected one of {', '.join(_TIME_COLUMNS)}")


def _parse_times(raw: pd.Series, path: Path) -> pd.Series:
    """UTC timestamps from naive New York times or offset-aware strings."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        ts = raw
    else:
        text = raw.astype(str).str.strip()
        try:
            ts = pd.to_datetime(text, utc=text.str.contains(r"[+-]\d\d:\d\d$|Z$").any())
        except (ValueError, TypeError):
            bad = pd.to_datetime(text, errors="coerce").isna()
            row = int(bad.idxmax()) if bad.any() else 0
            raise MarketDataError(
                f"{path}: line {row + 2}: {raw.iloc[row]!r} is not a timestamp; fix or remove that row"
            ) from None
    if getattr(ts.dt, "tz", None) is None:
        ts = ts.dt.tz_localize(calendar.NEW_YORK, ambiguous="NaT", nonexistent="NaT")
    return ts.dt.tz_convert("UTC")


@dataclass(frozen=True)
class _Intraday:
    """One intraday file as loaded: its bars (with their New York ``day``), its interval in
    minutes, and where each day's rows lie, so that a day is a slice, not a scan."""

    frame: pd.DataFrame
    interval: int
    rows_of_day: dict[date, slice]  # positions in ``frame``

    def day_rows(self, day: date) -> pd.DataFrame | None:
        rows = self.rows_of_day.get(day)
        return None if rows is None else self.frame.iloc[rows]

    def coverage(self) -> str:
        return f"{self.frame['day'].min()} to {self.frame['day'].max()}"


@lru_cache(maxsize=16)
def _load_intraday(path: Path) -> _Intraday:
    """One intraday file, read and indexed by day once per process."""
    frame = _columns_lower(_read_raw(path))
    time_col = _time_column(frame, path)
    out = pd.DataFrame({"timestamp": _parse_times(frame[time_col], path)})
    for column in DAILY_COLUMNS:
        if column not in frame.columns:
            raise MarketDataError(f"{path}: missing column {column!r}")
        out[column] = _numeric(frame, column, path)
    out = out.dropna(subset=["timestamp"])
    out["day"] = out["timestamp"].dt.tz_convert(calendar.NEW_YORK).dt.date
    steps = out["timestamp"].diff().dropna()
    interval = int(round(steps[steps > pd.Timedelta(0)].dt.total_seconds().median() / 60)) if len(steps) else 1
    return _Intraday(out, max(interval, 1), _day_spans(out["day"]))


def _day_spans(days: pd.Series) -> dict[date, slice]:
    """Each day's rows as the span from its first row to its last. In a file in time order
    that is the day's rows exactly; in one out of order the span may hold other days'
    rows too, which the session window of ``bars`` drops, as it drops extended hours."""
    spans = days.groupby(days, sort=False).indices
    return {day: slice(int(rows[0]), int(rows[-1]) + 1) for day, rows in spans.items()}


@lru_cache(maxsize=16)
def _load_daily(path: Path) -> pd.DataFrame:
    frame = _columns_lower(_read_raw(path))
    time_col = _time_column(frame, path)
    days = pd.to_datetime(frame[time_col].astype(str).str.strip(), errors="coerce")
    if days.isna().any():
        row = int(days.isna().idxmax())
        raise MarketDataError(f"{path}: line {row + 2}: {frame[time_col].iloc[row]!r} is not a date")
    out = pd.DataFrame(index=pd.DatetimeIndex(days.dt.normalize(), name="day"))
    for column in ("open", "high", "low", "close"):
        if column not in frame.columns:
            raise MarketDataError(f"{path}: missing column {column!r}")
        out[column] = _numeric(frame, column, path).to_numpy()
    out["volume"] = _numeric(frame, "volume", path).to_numpy() if "volume" in frame.columns else 0.0
    return out.sort_index()


def _is_daily(path: Path) -> bool:
    """Daily files carry dates without times (Cboe's VIX history, yfinance exports)."""
    name = path.name.lower()
    if name.startswith("vix") or "daily" in name:
        return True
    if path.suffix == ".parquet":
        return False
    with path.open() as handle:
        handle.readline()
        first = handle.readline()
    stamp = first.split(",", 1)[0].strip()
    return len(stamp) <= 10


class FileMarketData(MarketDataSource):
    """Bars and VIX from files in ``data_dir`` (or ``$TRADENOVA_DATA_DIR``)."""

    name = "file"

    def __init__(self, data_dir: str | os.PathLike | None = None, vix_file: str | os.PathLike | None = None):
        folder = data_dir or os.environ.get(DATA_DIR_ENV)
        if not folder:
            raise MarketDataError(
                "the file source needs a folder of bar files: set market_data.data_dir "
                f"(or the {DATA_DIR_ENV} environment variable)"
            )
        self.data_dir = Path(folder).expanduser().resolve()
        if not self.data_dir.is_dir():
            raise MarketDataError(f"market data folder {self.data_dir} does not exist")
        files = sorted(p for p in self.data_dir.iterdir() if p.suffix.lower() in _SUFFIXES)
        self._intraday = [_BarFile(p, _symbol_of(p)) for p in files if not _is_daily(p)]
        self._daily = [_BarFile(p, _symbol_of(p)) for p in files if _is_daily(p) and _symbol_of(p) != "VIX"]
        vix_candidates = [Path(vix_file)] if vix_file else [p for p in files if _symbol_of(p) == "VIX"]
        self._vix_file = vix_candidates[0] if vix_candidates else None

    def __repr__(self) -> str:
        return f"FileMarketData({str(self.data_dir)!r})"

    def symbols(self) -> list[str]:
        return sorted({f.symbol for f in self._intraday + self._daily})

    def _unknown_symbol(self, symbol: str) -> MarketDataError:
        return MarketDataError(
            f"symbol {symbol!r}: no bar file in {self.data_dir}; files there cover "
            f"{', '.join(self.symbols()) or 'no symbol'} (name files <SYMBOL>_....csv or .parquet)"
        )

    def bars(self, symbol: str, day) -> pd.DataFrame:
        symbol, day = normalise_request(symbol, day)
        files = [f for f in self._intraday if f.symbol == symbol]
        if not files:
            raise self._unknown_symbol(symbol)
        open_, close = calendar.session_open_close(day)
        best: tuple[int, pd.DataFrame] | None = None
        for bar_file in files:
            loaded = _load_intraday(bar_file.path)
            rows = loaded.day_rows(day)
            if rows is None:
                continue
            rows = rows[(rows["timestamp"] >= open_) & (rows["timestamp"] < close)]
            if not rows.empty and (best is None or loaded.interval < best[0]):
                best = (loaded.interval, rows)
        if best is None:
            covered = "; ".join(f"{f.path.name}: {_load_intraday(f.path).coverage()}" for f in files)
            raise MarketDataError(f"{symbol} {day}: no bars in any file ({covered})")
        return finish_bars(best[1], interval_minutes=best[0])

    def daily_bars(self, symbol: str, start, end) -> pd.DataFrame:
        symbol = symbol.upper()
        start, end = calendar.as_date(start, "start"), calendar.as_date(end, "end")
        daily = [f for f in self._daily if f.symbol == symbol]
        if daily:
            frame = _load_daily(daily[0].path)
        else:
            parts = [_load_intraday(f.path).frame for f in self._intraday if f.symbol == symbol]
            if not parts:
                raise self._unknown_symbol(symbol)
            frame = _daily_from_intraday(pd.concat(parts))
        return frame.loc[pd.Timestamp(start) : pd.Timestamp(end), DAILY_COLUMNS]

    def vix_history(self, start, end) -> pd.Series:
        if self._vix_file is None:
            raise MarketDataError(
                f"no VIX file in {self.data_dir}: add Cboe's VIX_History.csv there or set market_data.vix_file"
            )
        start, end = calendar.as_date(start, "start"), calendar.as_date(end, "end")
        closes = _load_daily(self._vix_file)["close"]
        return closes.loc[pd.Timestamp(start) : pd.Timestamp(end)].rename("vix")


def _daily_from_intraday(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_values("timestamp").drop_duplicates("timestamp")
    grouped = frame.groupby("day")
    out = pd.DataFrame(
        {
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(),
        }
    )
    out.index = pd.DatetimeIndex(pd.to_datetime(out.index), name="day")
    return out
