"""Shared helpers for the broker tests: a settable clock and bar builders."""

from __future__ import annotations

import pandas as pd

MONDAY_OPEN = pd.Timestamp("2024-03-04 14:30", tz="UTC")  # 09:30 New York, a normal Monday
WEEK_EXPIRY = "240308"  # that week's Friday


class StepClock:
    """A clock the test moves by hand (the session engine passes its SimulatedClock)."""

    def __init__(self, start: pd.Timestamp = MONDAY_OPEN):
        self.t = start

    def now(self) -> pd.Timestamp:
        return self.t

    def minutes(self, n: float) -> pd.Timestamp:
        self.t = self.t + pd.Timedelta(minutes=n)
        return self.t


def bar(open_: float, high: float | None = None, low: float | None = None, close: float | None = None) -> dict:
    close = open_ if close is None else close
    return {"open": open_, "high": max(open_, close) if high is None else high,
            "low": min(open_, close) if low is None else low, "close": close}


def call_symbol(strike: int, expiry: str = WEEK_EXPIRY, kind: str = "C", root: str = "SPY") -> str:
    return f"{root}{expiry}{kind}{strike * 1000:08d}"
