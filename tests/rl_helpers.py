"""Test helpers for the RL engine: synthetic days with a planted, learnable signal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.rl.features import DayContext, DayData, minute_sigma


def planted_day(day, seed: int, drift: float = 0.35, switch: float = 1 / 40, vix: float = 20.0,
                price: float = 600.0) -> DayData:
    """A session whose minute returns carry a hidden trend: each bar's expected return is
    ``drift`` implied-sigmas in the direction of a regime that flips with probability
    ``switch`` per bar, plus unit noise. The next bar's drift is the recent bars' drift,
    so an agent that reads its return window can trade it; a random one cannot."""
    rng = np.random.default_rng(seed)
    starts = calendar.session_bar_starts(day)
    n = len(starts)
    flips = rng.random(n) < switch
    regime = rng.choice([-1.0, 1.0]) * np.where(np.cumsum(flips) % 2 == 0, 1.0, -1.0)
    sigma = minute_sigma(vix)
    closes = price * np.exp(np.cumsum(sigma * (drift * regime + rng.standard_normal(n))))
    opens = np.concatenate([[price], closes[:-1]])
    bars = pd.DataFrame({
        "timestamp": starts, "open": opens, "high": np.maximum(opens, closes) * 1.0001,
        "low": np.minimum(opens, closes) * 0.9999, "close": closes, "volume": 1000.0,
    })
    return DayData.from_bars("SPY", day, bars, DayContext(vix, 50.0))


def planted_days(n: int, seed: int, start: str = "2024-01-02") -> list[DayData]:
    """``n`` consecutive full (390-bar) sessions from ``start`` with planted signals."""
    days = [d for d in calendar.trading_days(start, "2026-06-30") if calendar.session_minutes(d) == 390][:n]
    return [planted_day(d, seed * 1000 + i) for i, d in enumerate(days)]


def synthetic_day(day: str = "2024-03-05", symbol: str = "SPY") -> DayData:
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.rl.dataset import load_day

    return load_day(symbol, day, get_source("synthetic"))
