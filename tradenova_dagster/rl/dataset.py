"""Days of bars with their market context, as the env trains on them and as Dagster stores them.

A :class:`TrainingDataset` is a list of :class:`~tradenova_dagster.rl.features.DayData`
for one symbol. It is built from the store's ``market_bars`` (falling back to the data
source for a day that was not materialised) and saved as one ``.npz`` file, so a
training run, an evaluation and a benchmark all read the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from tradenova_dagster.market import calendar
from tradenova_dagster.market.bars_store import bars_for_day
from tradenova_dagster.market.context import IV_RANK_WINDOW, load_context
from tradenova_dagster.market.data import MarketDataError, MarketDataSource
from tradenova_dagster.store import Store
from tradenova_dagster.rl.features import DayContext, DayData

_ARRAYS = ("timestamps", "opens", "highs", "lows", "closes", "minutes")


def day_context(source: MarketDataSource, day, store: Store | None = None) -> DayContext:
    """VIX and IV rank known at the open of ``day``: the stored ``market_context`` row if
    the day was materialised, else computed from the source's VIX history exactly as
    ``market.context.compute_context`` does (previous session's close, rank over 252
    sessions) — but from ``vix_history`` alone, which every source implements."""
    day = calendar.require_trading_day(day)
    if store is not None:
        stored = load_context(store, day, source.name)
        if stored is not None:
            return DayContext(vix=float(stored.vix), iv_rank=float(stored.iv_rank))
    prev = calendar.previous_session(day)
    history = source.vix_history(prev - timedelta(days=IV_RANK_WINDOW * 7 // 5 + 30), prev).dropna()
    history = history.tail(IV_RANK_WINDOW)
    if history.empty or history.index[-1].date() != prev:
        raise MarketDataError(f"{source.name} source has no VIX close for {prev}, the session before {day}")
    vix = float(history.iloc[-1])
    low, high = float(history.min()), float(history.max())
    iv_rank = 50.0 if high == low else (vix - low) / (high - low) * 100
    return DayContext(vix=round(vix, 4), iv_rank=round(iv_rank, 4))


def load_day(symbol: str, day, source: MarketDataSource, store: Store | None = None) -> DayData:
    """One session's DayData: stored bars if present (else the source's), and its context."""
    day = calendar.require_trading_day(day)
    bars = bars_for_day(store, source, symbol, day) if store is not None else source.bars(symbol, day)
    return DayData.from_bars(symbol, day, bars, day_context(source, day, store))


@dataclass
class TrainingDataset:
    symbol: str
    days: list[DayData]

    def __post_init__(self) -> None:
        if not self.days:
            raise ValueError(f"days: a dataset for {self.symbol} needs at least one day, got none")
        dates = [d.day for d in self.days]
        if dates != sorted(set(dates)):
            raise ValueError(f"days: must be distinct and in order, got {dates[:5]}...")

    @property
    def dates(self) -> list[date]:
        return [d.day for d in self.days]

    @property
    def n_bars(self) -> int:
        return sum(len(d) for d in self.days)

    def select(self, dates: Iterable) -> "TrainingDataset":
        """The subset of these days on the given dates (all must be present)."""
        by_day = {d.day: d for d in self.days}
        wanted = [calendar.as_date(x) for x in dates]
        missing = [x for x in wanted if x not in by_day]
        if missing:
            raise ValueError(f"dates: not in the dataset: {missing[:5]}")
        return TrainingDataset(self.symbol, [by_day[x] for x in sorted(set(wanted))])

    def save(self, path: str | Path) -> Path:
        """One compressed ``.npz``: the days' arrays concatenated, with offsets and contexts."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lengths = np.array([len(d) for d in self.days])
        arrays = {name: np.concatenate([getattr(d, name) for d in self.days]) for name in _ARRAYS}
        meta = {
            "symbol": self.symbol,
            "days": [d.day.isoformat() for d in self.days],
            "session_minutes": [d.session_minutes for d in self.days],
            "vix": [d.context.vix for d in self.days],
            "iv_rank": [d.context.iv_rank for d in self.days],
        }
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, lengths=lengths, meta=np.array(json.dumps(meta)), **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TrainingDataset":
        with np.load(Path(path)) as data:
            meta = json.loads(str(data["meta"]))
            bounds = np.concatenate([[0], np.cumsum(data["lengths"])])
            arrays = {name: data[name] for name in _ARRAYS}
        days = []
        for i, iso in enumerate(meta["days"]):
            lo, hi = bounds[i], bounds[i + 1]
            days.append(
                DayData(
                    symbol=meta["symbol"],
                    day=date.fromisoformat(iso),
                    session_minutes=int(meta["session_minutes"][i]),
                    context=DayContext(vix=meta["vix"][i], iv_rank=meta["iv_rank"][i]),
                    **{name: arrays[name][lo:hi].copy() for name in _ARRAYS},
                )
            )
        return cls(meta["symbol"], days)


def build_dataset(
    symbol: str,
    days: Iterable,
    source: MarketDataSource,
    store: Store | None = None,
    on_day: Callable[[date], None] | None = None,
) -> TrainingDataset:
    """A dataset for ``symbol`` on the given trading days (non-trading days are refused)."""
    loaded = []
    for day in days:
        loaded.append(load_day(symbol, day, source, store))
        if on_day is not None:
            on_day(loaded[-1].day)
    return TrainingDataset(symbol.upper(), loaded)


def default_train_eval_days(
    n_train: int = 60, n_eval: int = 20, end=None
) -> tuple[list[date], list[date]]:
    """The default walk-forward split: the ``n_eval`` sessions ending at ``end`` (default:
    the last completed session) are held out, and the ``n_train`` sessions before them
    are for training, so evaluation is always on days after every training day."""
    end = calendar.as_date(end) if end is not None else calendar.last_completed_session()
    if n_train < 1 or n_eval < 0:
        raise ValueError(f"n_train must be >= 1 and n_eval >= 0, got {n_train} and {n_eval}")
    start = end - timedelta(days=(n_train + n_eval) * 7 // 5 + 20)
    sessions = [d for d in calendar.trading_days(start, end)][-(n_train + n_eval):]
    return sessions[:n_train], sessions[n_train:]
