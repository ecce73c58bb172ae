"""The trading day's timetable: holidays, early closes and daylight saving."""

import pandas as pd
import pytest

from tradenova_dagster.session.timetable import DayPlan, Event, is_due


def ny(text):
    return pd.Timestamp(text, tz="America/New_York")


def test_a_normal_day():
    plan = DayPlan.for_day("2026-11-24")
    assert [f"{t:%H:%M}" for t in (plan.warmup, plan.open, plan.flatten, plan.close, plan.report)] == [
        "08:00", "09:30", "15:50", "16:00", "16:05"]


@pytest.mark.parametrize("day", ["2026-11-27", "2026-12-24"])
def test_early_closes_flatten_at_1250_and_report_at_1315(day):
    plan = DayPlan.for_day(day)
    assert (f"{plan.flatten:%H:%M}", f"{plan.report:%H:%M}") == ("12:50", "13:15")
    assert is_due(Event.FLATTEN, ny(f"{day} 12:50"))[0]
    due, reason = is_due(Event.FLATTEN, ny(f"{day} 15:50"))
    assert not due and "12:50" in reason and "early close" in reason
    assert is_due(Event.REPORT, ny(f"{day} 13:15"))[0] and not is_due(Event.REPORT, ny(f"{day} 16:05"))[0]
    assert not is_due(Event.MONITOR, ny(f"{day} 13:05"))[0]


@pytest.mark.parametrize("instant,expected", [
    ("2026-11-26 08:00", "2026-11-26 is an NYSE holiday: no warmup; next session 2026-11-27"),
    ("2026-11-28 08:00", "2026-11-28 is a weekend: no warmup; next session 2026-11-30"),
])
def test_no_event_on_holidays_and_weekends(instant, expected):
    assert is_due(Event.WARMUP, ny(instant)) == (False, expected)


@pytest.mark.parametrize("day", ["2026-03-06", "2026-03-09", "2026-10-30", "2026-11-02"])
def test_new_york_times_hold_across_both_dst_changes(day):
    for event, wall in [(Event.WARMUP, "08:00"), (Event.SESSION, "09:30"), (Event.FLATTEN, "15:50"), (Event.REPORT, "16:05")]:
        assert is_due(event, ny(f"{day} {wall}"))[0], (event, day)
        assert is_due(event, ny(f"{day} {wall}").tz_convert("UTC"))[0]  # the same instant in UTC


def test_monitor_runs_only_while_the_market_is_open():
    assert not is_due(Event.MONITOR, ny("2026-11-24 09:25"))[0]
    assert is_due(Event.MONITOR, ny("2026-11-24 09:30"))[0]
    assert is_due(Event.MONITOR, ny("2026-11-24 15:55"))[0]
    assert not is_due(Event.MONITOR, ny("2026-11-24 16:00"))[0]
    with pytest.raises(ValueError, match="naive"):
        is_due(Event.MONITOR, pd.Timestamp("2026-11-24 10:00"))
