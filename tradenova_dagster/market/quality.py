"""Quality checks on a day of bars: the rules behind the ``market_bars`` asset checks.

They live here, not in the Dagster layer, because the session uses the same verdict
(stored in ``market_bars_quality``) to refuse to trade a day whose data failed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from tradenova_dagster.market import calendar

ERROR = "ERROR"
WARN = "WARN"

CHECKS = {
    "no_nan": "No NaN in open, high, low, close or volume",
    "timestamps_unique_and_ordered": "No duplicate or out-of-order bar timestamps",
    "ohlc_consistent": "low <= open, close <= high on every bar",
    "prices_positive": "Every price is > 0",
    "bar_count_matches_session": "Bar count equals the session length (early closes included)",
}


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    severity: str = ERROR
    detail: str = ""
    metadata: dict = field(default_factory=dict)


def check_bars(
    bars: pd.DataFrame, day: date, max_missing_fraction: float = 0.02
) -> list[CheckOutcome]:
    """Run every check on one symbol's bars for ``day``.

    The bar-count check fails as ERROR when bars fall outside the session or more than
    ``max_missing_fraction`` of them are missing, and as WARN (visible, not blocking)
    when a few are missing: real feeds skip minutes with no trades (the real SPY year
    has a 386-bar day), and such a day is still fit to trade.
    """
    prices = bars[["open", "high", "low", "close"]]
    values = bars[["open", "high", "low", "close", "volume"]]
    outcomes = []

    nan_rows = int(values.isna().any(axis=1).sum())
    outcomes.append(CheckOutcome("no_nan", nan_rows == 0, detail=f"{nan_rows} bar(s) with NaN",
                                 metadata={"bars_with_nan": nan_rows}))

    ts = bars["timestamp"]
    duplicates = int(ts.duplicated().sum())
    backwards = int((ts.diff().dt.total_seconds() < 0).sum())
    outcomes.append(CheckOutcome(
        "timestamps_unique_and_ordered", duplicates == 0 and backwards == 0,
        detail=f"{duplicates} duplicate and {backwards} out-of-order timestamp(s)",
        metadata={"duplicates": duplicates, "out_of_order": backwards}))

    body_low = np.minimum(prices["open"], prices["close"])
    body_high = np.maximum(prices["open"], prices["close"])
    inconsistent = int(((prices["low"] > body_low) | (prices["high"] < body_high)).sum())
    outcomes.append(CheckOutcome("ohlc_consistent", inconsistent == 0,
                                 detail=f"{inconsistent} bar(s) with low/high outside open/close",
                                 metadata={"inconsistent_bars": inconsistent}))

    non_positive = int((prices <= 0).any(axis=1).sum())
    outcomes.append(CheckOutcome("prices_positive", non_positive == 0,
                                 detail=f"{non_positive} bar(s) with a price <= 0",
                                 metadata={"non_positive_bars": non_positive}))

    interval = int(bars.attrs.get("interval_minutes", 1))
    expected = calendar.session_minutes(day) // interval
    open_, close = calendar.session_open_close(day)
    outside = int(((ts < open_) | (ts >= close)).sum())
    actual = len(bars)
    missing = max(expected - (actual - outside), 0)
    if actual == expected and outside == 0:
        count = CheckOutcome("bar_count_matches_session", True)
    elif outside == 0 and actual < expected and missing <= max_missing_fraction * expected:
        count = CheckOutcome("bar_count_matches_session", False, WARN)
    else:
        count = CheckOutcome("bar_count_matches_session", False, ERROR)
    count.detail = f"{actual} bars, {expected} expected, {missing} missing, {outside} outside the session"
    count.metadata = {"bars": actual, "expected": expected, "missing": missing, "outside_session": outside,
                      "early_close": calendar.is_early_close(day)}
    outcomes.append(count)
    return outcomes


def blocking_failures(outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    return [o for o in outcomes if not o.passed and o.severity == ERROR]


def failures_json(outcomes: list[CheckOutcome]) -> str:
    return json.dumps([{"check": o.name, "severity": o.severity, "detail": o.detail}
                       for o in outcomes if not o.passed])
