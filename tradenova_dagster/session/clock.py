"""Clocks: the session loop asks a clock for the time and waits on it.

One loop serves replay, paper and live (DESIGN.md §5): with a ``WallClock`` it waits for
real minutes to pass; with a ``SimulatedClock`` waiting is instant, so a whole day
replays in seconds on exactly the same code.
"""

from __future__ import annotations

import time

import pandas as pd


class WallClock:
    """Real time (UTC). Waits sleep in short steps, so an interrupt (a run terminated from
    the UI) is handled within a second."""

    def __init__(self, step_seconds: float = 1.0):
        self._step = step_seconds

    def now(self) -> pd.Timestamp:
        return pd.Timestamp.now(tz="UTC")

    def wait_until(self, instant: pd.Timestamp) -> None:
        while (remaining := (instant - self.now()).total_seconds()) > 0:
            time.sleep(min(remaining, self._step))


class SimulatedClock:
    """Time that moves only when the loop waits: replays run as fast as the code does."""

    def __init__(self, start: pd.Timestamp):
        if start.tzinfo is None:
            raise ValueError(f"start must be timezone-aware, got naive {start!r}")
        self._now = start.tz_convert("UTC")

    def now(self) -> pd.Timestamp:
        return self._now

    def wait_until(self, instant: pd.Timestamp) -> None:
        self._now = max(self._now, instant.tz_convert("UTC"))


class PacedClock(SimulatedClock):
    """A replay clock that spends ``pace_s`` real seconds per wait: a replayed day that
    takes minutes, so that it can be watched (or interrupted) mid-day."""

    def __init__(self, start: pd.Timestamp, pace_s: float):
        super().__init__(start)
        self.pace_s = pace_s

    def wait_until(self, instant: pd.Timestamp) -> None:
        time.sleep(self.pace_s)
        super().wait_until(instant)
