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


# --------------------------------------------------------------------------- tests and drills

CLOCK_ENV = "TRADENOVA_CLOCK"


class ShiftedClock:
    """Simulated time for real processes: ``start`` at the wall-clock instant ``origin``
    (epoch seconds; default: when the clock is made), running ``speed`` times faster than
    the wall clock. Waits sleep the scaled time, in short real steps.

    For tests and drills only (an end-to-end paper day at 60x against local fake servers,
    a late start at 11:00 on any afternoon): several processes built from the same
    ``spec()`` (start, speed, origin) agree on "now". Never set in production.
    """

    def __init__(self, start: pd.Timestamp, speed: float = 1.0, origin: float | None = None,
                 step_seconds: float = 0.25):
        start = pd.Timestamp(start)
        if start.tzinfo is None:
            raise ValueError(f"start must be timezone-aware, got naive {start!r}")
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.start = start.tz_convert("UTC")
        self.speed = float(speed)
        self.origin = time.time() if origin is None else float(origin)
        self._step = step_seconds

    def now(self) -> pd.Timestamp:
        return self.start + pd.Timedelta(seconds=(time.time() - self.origin) * self.speed)

    def at(self, instant: pd.Timestamp) -> float:
        """The wall-clock epoch seconds at which this clock reads ``instant``."""
        return self.origin + (pd.Timestamp(instant).tz_convert("UTC") - self.start).total_seconds() / self.speed

    def wait_until(self, instant: pd.Timestamp) -> None:
        target = self.at(instant)
        while (remaining := target - time.time()) > 0:
            time.sleep(min(remaining, self._step))

    def spec(self) -> str:
        """``<start ISO>@<speed>@<origin epoch seconds>``: the value of ``TRADENOVA_CLOCK``."""
        return f"{self.start.isoformat()}@{self.speed:g}@{self.origin:.6f}"

    @classmethod
    def parse(cls, text: str) -> "ShiftedClock":
        """From ``<start>[@<speed>[@<origin>]]``, e.g. ``2026-11-20T11:00:00-05:00@60``
        (11:00 New York, 60x, starting now) or with an explicit origin shared by processes."""
        parts = text.strip().split("@")
        if not 1 <= len(parts) <= 3 or not parts[0]:
            raise ValueError(f"{CLOCK_ENV}: expected <start ISO time>[@<speed>[@<origin epoch s>]], got {text!r}")
        try:
            start = pd.Timestamp(parts[0])
            speed = float(parts[1]) if len(parts) > 1 and parts[1] else 1.0
            origin = float(parts[2]) if len(parts) > 2 and parts[2] else None
        except ValueError as exc:
            raise ValueError(f"{CLOCK_ENV}: cannot read {text!r}: {exc}") from None
        if start.tzinfo is None:
            raise ValueError(f"{CLOCK_ENV}: the start must carry its UTC offset, got {parts[0]!r}")
        return cls(start, speed, origin)


def live_clock():
    """The clock of a live session: the wall clock, unless ``TRADENOVA_CLOCK`` sets a
    ``ShiftedClock`` (tests and drills only; never set in production)."""
    import os

    spec = os.environ.get(CLOCK_ENV, "").strip()
    return ShiftedClock.parse(spec) if spec else WallClock()
