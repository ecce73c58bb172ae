"""Bar feeds: where the session loop gets each completed bar from.

A bar stamped t (its start) is known only when it completes, at t + interval; both feeds
wait on the clock until then, so nothing downstream can see a bar early (no look-ahead).

- ``ReplayFeed``: a day's bars already in hand (stored ``market_bars``); with a simulated
  clock the day runs in seconds.
- ``PollingFeed``: asks a data source for the day's bars again as each minute completes
  and yields the new ones (live and paper trading); it stops once the session's last
  bar is in, or ``max_wait`` after the close if that bar never comes, so a quiet feed
  cannot hold the session open. Bars that completed by ``start_after`` (a session
  started late, or restarted) are never yielded: they happened before the session could
  act, so it loads them as history instead (``day.run_session``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class BarTick:
    """One completed bar, as plain floats (the hot loop avoids pandas)."""

    index: int
    timestamp: pd.Timestamp  # bar start, UTC
    end: pd.Timestamp  # when the bar completed and became known
    open: float
    high: float
    low: float
    close: float
    volume: float


def _ticks(bars: pd.DataFrame, start_index: int = 0) -> Iterator[BarTick]:
    interval = pd.Timedelta(minutes=int(bars.attrs.get("interval_minutes", 1)))
    values = bars[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
    stamps = list(pd.to_datetime(bars["timestamp"], utc=True))
    for i in range(start_index, len(bars)):
        o, h, l, c, v = values[i]
        yield BarTick(i, stamps[i], stamps[i] + interval, float(o), float(h), float(l), float(c), float(v))


class ReplayFeed:
    def __init__(self, bars: pd.DataFrame, clock):
        self.bars = bars
        self.clock = clock

    def __iter__(self) -> Iterator[BarTick]:
        for tick in _ticks(self.bars):
            self.clock.wait_until(tick.end)
            yield tick


class PollingFeed:
    def __init__(
        self,
        fetch: Callable[[], pd.DataFrame],
        clock,
        session_close: pd.Timestamp,
        interval: pd.Timedelta = pd.Timedelta(minutes=1),
        poll_seconds: float = 5.0,
        max_wait: pd.Timedelta = pd.Timedelta(minutes=2),
        start_after: pd.Timestamp | None = None,
    ):
        self.fetch = fetch
        self.clock = clock
        self.session_close = session_close
        self.interval = interval
        self.poll = pd.Timedelta(seconds=poll_seconds)
        self.max_wait = max_wait
        self.start_after = start_after

    def __iter__(self) -> Iterator[BarTick]:
        last_end = self.start_after  # what completed by then is history, not news
        while self.clock.now() < self.session_close + self.max_wait:
            bars = self.fetch()
            ends = pd.to_datetime(bars["timestamp"], utc=True) + self.interval
            completed = bars[ends <= self.clock.now()]
            first_new = 0 if last_end is None else int((ends[: len(completed)] <= last_end).sum())
            for tick in _ticks(completed, first_new):  # bars are in time order (market_bars checks)
                yield tick
                last_end = tick.end
            if last_end is not None and last_end >= self.session_close:
                return
            self.clock.wait_until(self.clock.now() + self.poll)
