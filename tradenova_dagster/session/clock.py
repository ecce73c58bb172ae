"""Clocks: the session loop asks a clock for the time and waits on it.

One loop serves replay, paper and live (DESIGN.md §5): with a ``WallClock`` it waits for
real minutes to pass; with a ``SimulatedClock`` waiting is instant, so a whole day
replays in seconds on exactly the same code.
"""

from __future__ import annotations

import threading
import time as _time

import pandas as pd


class WallClock:
    """Real time (UTC). ``wait_until`` sleeps in short steps so that a stop request
    (``stop()``, e.g. from Dagster's interruption handler) ends the wait promptly."""

    def __init__(self, step_seconds: float = 1.0):
        self._stop = threading.Event()
        self._step = step_seconds

    def now(self) -> pd.Timestamp:
        return pd.Timestamp.now(tz="UTC")

    def wait_until(self, instant: pd.Timestamp) -> bool:
        """Sleep until ``instant``; False if stopped before it came."""
        while not self._stop.is_set():
            remaining = (instant - self.now()).total_seconds()
            if remaining <= 0:
                return True
            self._stop.wait(min(remaining, self._step))
        return False

    def stop(self) -> None:
        self._stop.set()


class SimulatedClock:
    """Time that moves only when the loop waits: replays run as fast as the code does."""

    def __init__(self, start: pd.Timestamp):
        if start.tzinfo is None:
            raise ValueError(f"start must be timezone-aware, got naive {start!r}")
        self._now = start.tz_convert("UTC")

    def now(self) -> pd.Timestamp:
        return self._now

    def wait_until(self, instant: pd.Timestamp) -> bool:
        self._now = max(self._now, instant.tz_convert("UTC"))
        return True

    def stop(self) -> None:
        """Nothing to interrupt: a simulated wait never blocks."""
