"""Bar feeds: where the session loop gets each completed bar from.

A bar stamped t (its start) is known only when it completes, at t + interval; both feeds
wait on the clock until then, so nothing downstream can see a bar early (no look-ahead).

- ``ReplayFeed``: a day's bars already in hand (stored ``market_bars``); with a simulated
  clock the day runs in seconds.
- ``PollingFeed``: asks a data source for the bars completed since the last one as each
  minute completes and yields the new, valid ones (live and paper trading); it stops once the session's last
  bar is in, or ``max_wait`` after the close if that bar never comes, so a quiet feed
  cannot hold the session open. Bars that completed by ``start_after`` (a session
  started late, or restarted) are never yielded: they happened before the session could
  act, so it loads them as history instead (``day.run_session``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timezone
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from tradenova_dagster.market import calendar


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
    stale: bool = False  # no bar came: the last good close, for managing exits only


def _ticks(bars: pd.DataFrame, start_index: int = 0) -> Iterator[BarTick]:
    """The frame's bars as ticks. Starts, ends and prices are converted for the whole frame
    at once (a Timestamp plus a Timedelta, or a numpy row unpacked into floats, costs
    microseconds per bar; the same arithmetic on a whole column, nanoseconds)."""
    interval = pd.Timedelta(minutes=int(bars.attrs.get("interval_minutes", 1)))
    times = bars["timestamp"]
    if not (isinstance(times.dtype, pd.DatetimeTZDtype) and times.dtype.tz is timezone.utc):
        times = pd.to_datetime(times, utc=True)  # stored bars are UTC already: no conversion for them
    starts = pd.DatetimeIndex(times)
    stamps, ends = list(starts), list(starts + interval)
    opens, highs, lows, closes, volumes = (bars[name].to_numpy(dtype=np.float64).tolist()
                                           for name in ("open", "high", "low", "close", "volume"))
    for i in range(start_index, len(bars)):
        yield BarTick(i, stamps[i], ends[i], opens[i], highs[i], lows[i], closes[i], volumes[i])


class ReplayFeed:
    def __init__(self, bars: pd.DataFrame, clock):
        self.bars = bars
        self.clock = clock

    def __iter__(self) -> Iterator[BarTick]:
        for tick in _ticks(self.bars):
            self.clock.wait_until(tick.end)
            yield tick


class PollingFeed:
    """Polls ``fetch(after)`` for the bars that start at or after ``after`` (None: the whole
    day so far) as each minute completes; see the module docstring.

    Each new bar is checked with the rules of the ``market_bars`` checks (no NaN, low <=
    open/close <= high, prices > 0, later than the last bar): a bad one is reported and
    skipped, never traded on. A failed fetch is reported and counts as a quiet poll. When
    no good bar has come for ``stale_after``, the feed yields a *stale* tick for each
    minute slot that passes (the last good close, ``stale=True``): the session then enters
    nothing but still manages its exits on the broker's quotes. ``on_problem(kind,
    detail)`` hears of each bad bar, failed fetch and stale spell (kinds ``bad_bar``,
    ``fetch_failed``, ``stale_feed``).
    """

    def __init__(
        self,
        fetch: Callable[[pd.Timestamp | None], pd.DataFrame],
        clock,
        session_close: pd.Timestamp,
        interval: pd.Timedelta = pd.Timedelta(minutes=1),
        poll_seconds: float = 5.0,
        max_wait: pd.Timedelta = pd.Timedelta(minutes=2),
        start_after: pd.Timestamp | None = None,
        stale_after: pd.Timedelta = pd.Timedelta(minutes=3),
        on_problem: Callable[[str, dict], None] | None = None,
    ):
        self.fetch = fetch
        self.clock = clock
        self.session_close = session_close
        self.interval = interval
        self.poll = pd.Timedelta(seconds=poll_seconds)
        self.max_wait = max_wait
        self.start_after = start_after
        self.stale_after = stale_after
        self.on_problem = on_problem or (lambda kind, detail: None)
        self.session_open = calendar.session_open_close(session_close.tz_convert(calendar.NEW_YORK).date())[0]

    def __iter__(self) -> Iterator[BarTick]:
        last_end = self.start_after  # what completed by then is history, not news
        last_good: BarTick | None = None
        heard = pd.Timestamp(self.clock.now())  # when the feed last gave a good bar (or the start)
        stale = False
        while self.clock.now() < self.session_close + self.max_wait:
            for tick in self._new_bars(last_end):
                last_end = tick.end
                problem = _bar_problem(tick, last_good)
                if problem:
                    self.on_problem("bad_bar", {"bar": tick.timestamp.isoformat(), "why": problem})
                    continue
                last_good, heard, stale = tick, pd.Timestamp(self.clock.now()), False
                yield tick
            if last_end is not None and last_end >= self.session_close:
                return
            now = pd.Timestamp(self.clock.now())
            if now - heard >= self.stale_after and now < self.session_close and last_good is not None:
                if not stale:
                    stale = True
                    self.on_problem("stale_feed", {"last_bar": last_good.timestamp.isoformat(),
                                                   "silent_s": (now - heard).total_seconds()})
                slot_end = now.floor(self.interval)
                if last_end is None or slot_end > last_end:
                    last_end = slot_end
                    c = last_good.close
                    yield BarTick(last_good.index, slot_end - self.interval, slot_end, c, c, c, c, 0.0, stale=True)
            self.clock.wait_until(self.clock.now() + self.poll)

    def _new_bars(self, last_end: pd.Timestamp | None) -> Iterator[BarTick]:
        try:  # the bars starting at or after the slot where the last one ended
            bars = self.fetch(None if last_end is None else last_end.floor(self.interval))
        except Exception as exc:  # noqa: BLE001 - a feed outage is a quiet poll, reported, not a crash
            self.on_problem("fetch_failed", {"error": repr(exc)})
            return
        if bars is None or bars.empty:
            return
        ends = pd.to_datetime(bars["timestamp"], utc=True) + self.interval
        fresh = ends <= self.clock.now()
        if last_end is not None:
            fresh &= ends > last_end
        if not fresh.any():
            return
        for tick in _ticks(bars[fresh.to_numpy()]):  # in time order; one out of order is caught by _bar_problem
            yield replace(tick, index=int((tick.timestamp - self.session_open) / self.interval))  # its place in the day


def _bar_problem(tick: BarTick, last: BarTick | None) -> str:
    """Why one bar cannot be traded on ("" if it can): the ``market_bars`` rules, per bar."""
    values = (tick.open, tick.high, tick.low, tick.close, tick.volume)
    if any(v != v for v in values):  # NaN
        return "NaN in the bar"
    if min(tick.open, tick.high, tick.low, tick.close) <= 0:
        return "a price <= 0"
    if tick.low > min(tick.open, tick.close) or tick.high < max(tick.open, tick.close):
        return f"low/high outside open/close (o {tick.open}, h {tick.high}, l {tick.low}, c {tick.close})"
    if last is not None and tick.timestamp <= last.timestamp:
        return f"not after the previous bar ({last.timestamp.isoformat()})"
    return ""
