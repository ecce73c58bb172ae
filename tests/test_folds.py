"""Walk-forward folds: evaluation windows never overlap each other or their own training,
follow their training directly, stay within the range; folds that do not fit are refused."""

from datetime import date, timedelta

import pytest
from hypothesis import given, settings, strategies as st

from tradenova_dagster.market import calendar
from tradenova_dagster.research.folds import folds


@settings(max_examples=60, deadline=None)
@given(start=st.dates(date(2023, 1, 1), date(2026, 6, 30)), span=st.integers(0, 120), n_folds=st.integers(1, 6),
       train_days=st.integers(1, 30), eval_days=st.integers(1, 10))
def test_folds_walk_forward_without_overlap_inside_the_range(start, span, n_folds, train_days, eval_days):
    end = start + timedelta(days=span)
    days = calendar.trading_days(start, end)
    if train_days + n_folds * eval_days > len(days):
        with pytest.raises(ValueError, match=f"n_folds={n_folds} x eval_days={eval_days} \\+ train_days={train_days}"):
            folds(start, end, n_folds, train_days, eval_days)
        return
    result = folds(start, end, n_folds, train_days, eval_days)
    assert [f.index for f in result] == list(range(n_folds))
    seen = set()
    for fold in result:
        assert len(fold.train) == train_days and len(fold.evaluation) == eval_days
        window = fold.train + fold.evaluation
        assert all(d in days for d in window)  # trading days of the range only
        assert list(window) == sorted(set(window))  # in order, no day twice
        assert max(fold.train) < min(fold.evaluation)  # never evaluated on a day it trained on
        assert days.index(fold.evaluation[0]) == days.index(fold.train[-1]) + 1  # the next unseen day
        assert not seen & set(fold.evaluation)  # evaluation windows never overlap each other
        seen |= set(fold.evaluation)
    assert result[-1].evaluation[-1] == days[-1]  # anchored at the end: the latest days are evaluated


def test_consecutive_folds_roll_forward_by_one_evaluation_window():
    nov = lambda *days: tuple(date(2026, 11, d) for d in days)  # noqa: E731
    result = folds("2026-11-02", "2026-11-20", 2, 3, 2)  # 15 trading days, the last 7 used
    assert [(f.train, f.evaluation) for f in result] == [(nov(12, 13, 16), nov(17, 18)),
                                                         (nov(16, 17, 18), nov(19, 20))]


@pytest.mark.parametrize("args, message", [
    (("2026-11-16", "2026-11-20", 2, 3, 2), r"folds do not fit: n_folds=2 x eval_days=2 \+ train_days=3 = 7 "
                                            r"trading days, but start=2026-11-16 .. end=2026-11-20 has 5"),
    (("2026-11-02", "2026-11-20", 0, 3, 2), "n_folds must be a whole number >= 1, got 0"),
    (("2026-11-02", "2026-11-20", 2, -1, 2), "train_days must be a whole number >= 1, got -1"),
    (("2026-11-02", "2026-11-20", 2, 3, 1.5), "eval_days must be a whole number >= 1, got 1.5"),
    (("2026-11-20", "2026-11-02", 1, 1, 1), "end 2026-11-02 is before start 2026-11-20"),
])
def test_bad_fold_config_is_refused_naming_the_values(args, message):
    with pytest.raises(ValueError, match=message):
        folds(*args)
