"""The trading day's schedules, evaluated by Dagster on the NYSE calendar.

Ticks are given as ``scheduled_execution_time`` the way the scheduler gives them; the
crons are iterated with Dagster's own cron iteration in ``America/New_York``.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
from dagster._utils.schedules import cron_string_iterator

from schedules import SCHEDULES
from schedules.trading_day import (
    default_schedule_status,
    default_sensor_status,
    flatten_schedule,
    monitor_schedule,
    reporting_schedule,
    trading_account,
    trading_session_schedule,
    training_schedule,
    warmup_schedule,
)
from tradenova_dagster.config import SESSION_CONCURRENCY_TAG
from tradenova_dagster.market import calendar
from tradenova_dagster.session.timetable import DayPlan, Event

NY = ZoneInfo("America/New_York")
SINGLE_SHOT = {
    Event.WARMUP: warmup_schedule,
    Event.SESSION: trading_session_schedule,
    Event.FLATTEN: flatten_schedule,
    Event.REPORT: reporting_schedule,
}


@pytest.fixture(autouse=True)
def _account(monkeypatch):
    monkeypatch.delenv("TRADENOVA_ACCOUNT", raising=False)


def at(text: str, tz=NY) -> dt.datetime:
    return pd.Timestamp(text).to_pydatetime().replace(tzinfo=tz)


def tick(schedule, when: dt.datetime):
    """Evaluate ``schedule`` at a tick, as the scheduler would."""
    return schedule(dg.build_schedule_context(scheduled_execution_time=when))


def op_config(request: dg.RunRequest, op: str) -> dict:
    return request.run_config["ops"][op]["config"]


def test_the_schedules_run_in_new_york_time_and_start_stopped():
    assert [s.name for s in SCHEDULES] == ["warmup_schedule", "trading_session_schedule", "flatten_schedule",
                                          "reporting_schedule", "monitor_schedule", "live_account_schedule",
                                          "training_schedule"]
    assert {s.execution_timezone for s in SCHEDULES} == {"America/New_York"}
    assert {s.job_name for s in SCHEDULES} == {"warmup_job", "trading_session_job", "flatten_job",
                                              "reporting_job", "monitor_job", "live_account_job", "training_job"}
    assert {s.default_status for s in SCHEDULES} == {dg.DefaultScheduleStatus.STOPPED}
    assert all("TRADENOVA_AUTOSTART=1" in s.description for s in SCHEDULES)


def test_autostart_and_account_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRADENOVA_AUTOSTART", "1")
    assert default_schedule_status() is dg.DefaultScheduleStatus.RUNNING
    assert default_sensor_status() is dg.DefaultSensorStatus.RUNNING
    monkeypatch.setenv("TRADENOVA_AUTOSTART", "0")
    assert default_schedule_status() is dg.DefaultScheduleStatus.STOPPED
    assert trading_account() == "sim:default"
    monkeypatch.setenv("TRADENOVA_ACCOUNT", "alpaca_paper:main")
    request = tick(trading_session_schedule, at("2026-11-24 09:30"))
    assert request.run_key == "session-2026-11-24-alpaca_paper:main"
    assert op_config(request, "trading_session")["account"] == "alpaca_paper:main"
    assert request.tags[SESSION_CONCURRENCY_TAG] == "alpaca_paper:main"


def test_a_normal_day_requests_each_job_once_with_keys_config_and_tags():
    day = "2026-11-24"
    warmup = tick(warmup_schedule, at(f"{day} 08:00"))
    assert warmup.run_key == f"warmup-{day}-sim:default"
    assert op_config(warmup, "warmup") == {"date": day, "account": "sim:default"}

    session = tick(trading_session_schedule, at(f"{day} 09:30"))
    assert session.run_key == f"session-{day}-sim:default"
    assert session.job_name == "trading_session_job"
    assert op_config(session, "trading_session") == {"date": day, "mode": "live", "account": "sim:default"}
    assert session.tags[SESSION_CONCURRENCY_TAG] == "sim:default"
    assert session.tags["dagster/max_runtime"] == str(7 * 3600)  # 09:30 until 16:30, the close + 30 min

    flatten = tick(flatten_schedule, at(f"{day} 15:50"))
    assert flatten.run_key == f"flatten-{day}-sim:default"
    assert op_config(flatten, "flatten") == {"account": "sim:default",
                                             "reason": f"scheduled flatten 10 minutes before the 16:00 close on {day}"}

    report = tick(reporting_schedule, at(f"{day} 16:05"))
    assert (report.run_key, report.partition_key) == (f"report-{day}-sim:default", day)
    assert op_config(report, "daily_report") == {"account": "sim:default"}

    monitor = tick(monitor_schedule, at(f"{day} 10:05"))
    assert monitor.run_key == f"monitor-{day}T10:05-sim:default"
    assert op_config(monitor, "monitor") == {"account": "sim:default"}

    for request in (warmup, session, flatten, report, monitor):
        assert isinstance(request, dg.RunRequest) and request.tags["tradenova/date"] == day
    # the other ticks of those crons on a normal day are skipped, saying when it is due
    early = tick(flatten_schedule, at(f"{day} 12:50"))
    assert isinstance(early, dg.SkipReason) and "15:50" in early.skip_message
    assert isinstance(tick(reporting_schedule, at(f"{day} 13:15")), dg.SkipReason)
    assert isinstance(tick(reporting_schedule, at(f"{day} 16:15")), dg.SkipReason)
    before_open = tick(monitor_schedule, at(f"{day} 09:25"))
    assert isinstance(before_open, dg.SkipReason) and "market closed" in before_open.skip_message


def test_the_same_tick_gives_the_same_run_key():
    first = tick(trading_session_schedule, at("2026-11-24 09:30"))
    again = tick(trading_session_schedule, at("2026-11-24 09:30"))
    assert first.run_key == again.run_key and first.run_config == again.run_config


def test_thanksgiving_is_skipped_by_every_trading_schedule_saying_why():
    for schedule, time_of_day in [(warmup_schedule, "08:00"), (trading_session_schedule, "09:30"),
                                  (flatten_schedule, "15:50"), (reporting_schedule, "16:05"),
                                  (monitor_schedule, "11:00")]:
        result = tick(schedule, at(f"2026-11-26 {time_of_day}"))
        assert isinstance(result, dg.SkipReason), schedule.name
        assert "2026-11-26 is an NYSE holiday" in result.skip_message
        assert "next session 2026-11-27" in result.skip_message


def test_the_early_close_flattens_at_1250_and_reports_at_1315():
    day = "2026-11-27"
    flatten = tick(flatten_schedule, at(f"{day} 12:50"))
    assert isinstance(flatten, dg.RunRequest) and "13:00 close" in op_config(flatten, "flatten")["reason"]
    late = tick(flatten_schedule, at(f"{day} 15:50"))
    assert isinstance(late, dg.SkipReason) and "12:50" in late.skip_message and "early close" in late.skip_message

    report = tick(reporting_schedule, at(f"{day} 13:15"))
    assert isinstance(report, dg.RunRequest) and report.partition_key == day
    for wrong in ("13:05", "16:05", "16:15"):
        assert isinstance(tick(reporting_schedule, at(f"{day} {wrong}")), dg.SkipReason)

    session = tick(trading_session_schedule, at(f"{day} 09:30"))
    assert session.tags["dagster/max_runtime"] == str(4 * 3600)  # until 13:30
    assert isinstance(tick(monitor_schedule, at(f"{day} 12:55")), dg.RunRequest)
    assert isinstance(tick(monitor_schedule, at(f"{day} 13:00")), dg.SkipReason)


def test_a_weekend_is_skipped_but_training_runs_on_saturday():
    for schedule, time_of_day in [(warmup_schedule, "08:00"), (trading_session_schedule, "09:30"),
                                  (flatten_schedule, "15:50"), (monitor_schedule, "10:00")]:
        result = tick(schedule, at(f"2026-11-28 {time_of_day}"))
        assert isinstance(result, dg.SkipReason) and "2026-11-28 is a weekend" in result.skip_message
    training = tick(training_schedule, at("2026-11-28 06:00"))
    assert isinstance(training, dg.RunRequest)
    assert training.run_key == "training-2026-11-28" and training.tags["tradenova/date"] == "2026-11-28"


@pytest.mark.parametrize("before,after", [("2026-03-06", "2026-03-09"), ("2026-10-30", "2026-11-02")])
def test_the_first_trading_day_after_a_dst_change_keeps_new_york_wall_clock(before, after):
    """The scheduler hands a tick over as an instant; 09:30 New York is 14:30 UTC in winter
    and 13:30 UTC in summer, and only the New York one may start the session."""
    winter_first = before == "2026-03-06"
    for day, utc_offset in [(before, 5 if winter_first else 4), (after, 4 if winter_first else 5)]:
        for schedule, time_of_day in [(warmup_schedule, "08:00"), (trading_session_schedule, "09:30"),
                                      (flatten_schedule, "15:50"), (reporting_schedule, "16:05")]:
            local = at(f"{day} {time_of_day}")
            as_utc = local.astimezone(dt.timezone.utc)
            assert as_utc.hour == (local.hour + utc_offset) % 24
            assert isinstance(tick(schedule, as_utc), dg.RunRequest), (schedule.name, day)
            # the same UTC time-of-day on the other side of the change is an hour off in New York
            other = before if day == after else after
            shifted = at(f"{other} {as_utc:%H:%M}", dt.timezone.utc)
            assert isinstance(tick(schedule, shifted), dg.SkipReason), (schedule.name, other)


@pytest.mark.parametrize("start,end", [("2026-03-05", "2026-03-11"), ("2026-10-29", "2026-11-04")])
def test_cron_ticks_across_a_dst_change_land_on_new_york_wall_clock(start, end):
    begin = at(f"{start} 00:00").timestamp()
    stop = at(f"{end} 00:00")
    for schedule, wall in [(warmup_schedule, {"08:00"}), (trading_session_schedule, {"09:30"}),
                           (flatten_schedule, {"12:50", "15:50"}),
                           (reporting_schedule, {"13:05", "13:15", "16:05", "16:15"})]:
        ticks = []
        for t in cron_string_iterator(begin, schedule.cron_schedule, schedule.execution_timezone):
            if t >= stop:
                break
            ticks.append(t)
        assert ticks and {f"{t.astimezone(NY):%H:%M}" for t in ticks} == wall, schedule.name
        assert {t.astimezone(NY).weekday() for t in ticks} <= {0, 1, 2, 3, 4}
        # and the UTC hour moves with the change (one offset before it, the other after)
        assert len({t.utcoffset() for t in ticks}) == 2


def _year_ticks(schedule, year=2026):
    begin = at(f"{year}-01-01 00:00").timestamp()
    stop = at(f"{year + 1}-01-01 00:00")
    out = []
    for t in cron_string_iterator(begin, schedule.cron_schedule, schedule.execution_timezone):
        if t >= stop:
            return out
        out.append(t)


@pytest.mark.parametrize("event", list(SINGLE_SHOT), ids=lambda e: e.value)
def test_over_2026_each_event_runs_exactly_at_its_time_on_every_trading_day(event):
    """Every tick of the year is evaluated: the RunRequests are exactly the timetable's
    times (one per trading day, early closes and both DST changes included)."""
    schedule = SINGLE_SHOT[event]
    requested = []
    for t in _year_ticks(schedule):
        result = tick(schedule, t)
        if isinstance(result, dg.RunRequest):
            requested.append(pd.Timestamp(t))
        else:
            assert isinstance(result, dg.SkipReason) and result.skip_message
    expected = [DayPlan.for_day(d).time_of(event) for d in calendar.trading_days("2026-01-01", "2026-12-31")]
    assert requested == expected
    assert len(requested) == len(calendar.trading_days("2026-01-01", "2026-12-31"))


@pytest.mark.parametrize("day", ["2026-03-09", "2026-11-02", "2026-11-27"])
def test_the_monitor_runs_every_five_minutes_of_the_regular_session(day):
    begin = at(f"{day} 00:00").timestamp()
    stop = at(f"{day} 23:59")
    due = []
    for t in cron_string_iterator(begin, monitor_schedule.cron_schedule, monitor_schedule.execution_timezone):
        if t >= stop:
            break
        if isinstance(tick(monitor_schedule, t), dg.RunRequest):
            due.append(pd.Timestamp(t))
    plan = DayPlan.for_day(day)
    assert due == list(pd.date_range(plan.open, plan.close, freq="5min", inclusive="left"))


def test_the_reporting_request_resolves_to_a_real_trading_day_partition(tradenova_home):
    from assets.partitions import trading_day_partitions
    from assets.reports import daily_report
    from resources.store import StoreResource

    reporting_job = dg.define_asset_job("reporting_job", selection=["daily_report"],
                                        partitions_def=trading_day_partitions)
    defs = dg.Definitions(assets=[daily_report], jobs=[reporting_job], schedules=[reporting_schedule],
                          resources={"store": StoreResource()})
    repo = defs.get_repository_def()
    schedule = repo.get_schedule_def("reporting_schedule")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at("2026-11-27 13:15"),
                                            repository_def=repo)
        result = schedule.evaluate_tick(context)
    [request] = result.run_requests
    assert request.partition_key == "2026-11-27"
    assert request.tags["dagster/partition"] == "2026-11-27"
    assert request.tags["dagster/schedule_name"] == "reporting_schedule"


def test_live_account_is_observed_with_the_monitor_on_trading_days_only():
    from schedules.trading_day import live_account_schedule

    open_day = dg.build_schedule_context(scheduled_execution_time=pd.Timestamp("2026-11-20 10:05", tz=NY))
    request = live_account_schedule(open_day)
    assert request.job_name == "live_account_job"
    assert request.run_config == {"ops": {"live_account": {"config": {"account": "sim:default"}}}}
    saturday = dg.build_schedule_context(scheduled_execution_time=pd.Timestamp("2026-11-21 10:05", tz=NY))
    assert isinstance(live_account_schedule(saturday), dg.SkipReason)
