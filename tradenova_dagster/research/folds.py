"""Walk-forward folds: a training window, then the unseen evaluation window right after it.

A research sweep scores every strategy on several evaluation windows rather than one, so
that a result is not one lucky stretch of market; a model (issue 16's walk-forward
training) is trained on each fold's training window and scored on its evaluation window
only, never on a day it saw. The folds roll forward by one evaluation window each:

    days:    |------------------------- start .. end (trading days) ------------------|
    fold 0:  [ train (train_days) ][ eval 0 ]
    fold 1:              [ train (train_days) ][ eval 1 ]
    fold 2:                          [ train (train_days) ][ eval 2 ]

so the evaluation windows are back to back and never overlap each other, and each one
starts the trading day after its own training window ends. The folds are anchored at the
END of the range: the most recent days are always evaluated, and days that do not fill a
whole fold are left unused at the start (the oldest data matters least). Days are NYSE
trading days (``market.calendar``), so a window of 3 days is 3 sessions, whatever the
weekends and holidays in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from tradenova_dagster.market import calendar


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: ``train`` then ``evaluation``, each a tuple of trading days."""

    index: int
    train: tuple[date, ...]
    evaluation: tuple[date, ...]

    def as_dict(self) -> dict:
        """A JSON-friendly form (ISO dates), what a sweep's spec file stores."""
        return {"index": self.index, "train": [d.isoformat() for d in self.train],
                "evaluation": [d.isoformat() for d in self.evaluation]}

    @classmethod
    def from_dict(cls, data: dict) -> "Fold":
        return cls(int(data["index"]), tuple(calendar.as_date(d, "train") for d in data["train"]),
                   tuple(calendar.as_date(d, "evaluation") for d in data["evaluation"]))


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def folds(start, end, n_folds: int, train_days: int, eval_days: int) -> list[Fold]:
    """``n_folds`` walk-forward folds over the trading days from ``start`` to ``end``
    (inclusive), each ``train_days`` of training then ``eval_days`` of evaluation (see the
    module docstring). Folds that do not fit the range are a ValueError naming every value."""
    n_folds = _positive("n_folds", n_folds)
    train_days = _positive("train_days", train_days)
    eval_days = _positive("eval_days", eval_days)
    days = calendar.trading_days(start, end)
    needed = train_days + n_folds * eval_days
    if needed > len(days):
        raise ValueError(
            f"folds do not fit: n_folds={n_folds} x eval_days={eval_days} + train_days={train_days} = {needed} "
            f"trading days, but start={calendar.as_date(start, 'start')} .. end={calendar.as_date(end, 'end')} "
            f"has {len(days)}; widen the range or ask for fewer or shorter folds")
    offset = len(days) - needed  # anchored at the end: the unused days are the oldest
    result = []
    for k in range(n_folds):
        eval_start = offset + train_days + k * eval_days
        result.append(Fold(k, tuple(days[eval_start - train_days:eval_start]),
                           tuple(days[eval_start:eval_start + eval_days])))
    return result
