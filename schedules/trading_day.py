"""The trading day's schedules, in New York time, on the NYSE calendar.

Each schedule fires on a plain cron that ticks at every time its job could be due (the
flatten cron ticks at 12:50 and 15:50 every weekday, for instance) and asks the core's
timetable (``tradenova_dagster.session.timetable.is_due``) whether this tick is the one
for today. So holidays, weekends and early closes are decided by exchange_calendars in
one place, and a tick that is not due is a ``SkipReason`` saying why ("2026-11-26 is an
NYSE holiday", "flatten on 2026-11-27 is at 12:50 New York (early close), not 15:50"),
visible on the schedule's page in the UI. Dagster evaluates the crons in
``America/New_York``, so the ticks follow New York wall-clock time across DST.

Runs are requested with a deterministic ``run_key`` per day (and account), so a tick
evaluated twice never starts a second warmup or session. Every run carries the tag
``tradenova/date``; session runs carry ``tradenova/session`` = the account (limited to
one concurrent run in ``dagster.yaml``) and ``dagster/max_runtime`` = seconds until 30
minutes after that day's close, after which run monitoring ends a stuck session.

Start-up state: the schedules are STOPPED by default, so that ``dagster dev`` (and the
tests that start it) never trade on their own; set ``TRADENOVA_AUTOSTART=1`` before
starting Dagster to have them (and the watchdog and promotion sensors) RUNNING, which is
what a user leaving TradeNova to trade every day wants. They act for the account in
``TRADENOVA_ACCOUNT`` (default ``sim:default``).

This module also holds the contract of a session run (how one is requested and how its
account and mode are read back), which the watchdog and kill-switch sensors share.
"""

from __future__ import annotations

import os
from datetime import date, datetime, time, timedelta

import dagster as dg
import pandas as pd

from tradenova_dagster.config import SESSION_CONCURRENCY_TAG
from tradenova_dagster.market import calendar
from tradenova_dagster.session.timetable import FLATTEN_BEFORE_CLOSE, DayPlan, Event, is_due

NEW_YORK = calendar.NEW_YORK
ACCOUNT_ENV = "TRADENOVA_ACCOUNT"
AUTOSTART_ENV = "TRADENOVA_AUTOSTART"
DEFAULT_ACCOUNT = "sim:default"

DATE_TAG = "tradenova/date"
MAX_RUNTIME_TAG = "dagster/max_runtime"
SESSION_JOB = "trading_session_job"
SESSION_OP = "trading_session"
SESSION_GRACE = timedelta(minutes=30)  # a session may run until 30 minutes after the close

NYSE_CLOSES = (time(13, 0), time(16, 0))  # an early and a regular close, New York time


def _wall_before(close: time, delta: timedelta) -> time:
    return (datetime.combine(date(2000, 1, 3), close) - delta).time()


def _cron_at(times: list[time]) -> str:
    """A weekday cron ticking at each of ``times`` (and perhaps more: is_due filters)."""
    minutes = ",".join(str(m) for m in sorted({t.minute for t in times}))
    hours = ",".join(str(h) for h in sorted({t.hour for t in times}))
    return f"{minutes} {hours} * * 1-5"


FLATTEN_MINUTES = int(FLATTEN_BEFORE_CLOSE.total_seconds() // 60)  # the timetable's, for messages
FLATTEN_TIMES = [_wall_before(close, FLATTEN_BEFORE_CLOSE) for close in NYSE_CLOSES]  # 12:50, 15:50

# Crons (New York time) that tick at every time the event can be due; is_due picks the one.
WARMUP_CRON = "0 8 * * 1-5"
SESSION_CRON = "30 9 * * 1-5"
FLATTEN_CRON = _cron_at(FLATTEN_TIMES)  # FLATTEN_BEFORE_CLOSE before a 13:00 or a 16:00 close
REPORT_CRON = "5,15 13,16 * * 1-5"  # 16:05 after a normal close, 13:15 after an early one
MONITOR_CRON = "*/5 9-15 * * 1-5"  # every 5 minutes from 09:00; is_due keeps 09:30 to the close
TRAINING_CRON = "0 6 * * 6"  # Saturday 06:00, no market to disturb


def trading_account() -> str:
    """The account the schedules and sensors act for: ``$TRADENOVA_ACCOUNT`` or ``sim:default``."""
    return (os.environ.get(ACCOUNT_ENV) or DEFAULT_ACCOUNT).strip() or DEFAULT_ACCOUNT


def autostart() -> bool:
    """Whether schedules and automatic sensors start RUNNING (``TRADENOVA_AUTOSTART=1``)."""
    return os.environ.get(AUTOSTART_ENV, "").strip() == "1"


def default_schedule_status() -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if autostart() else dg.DefaultScheduleStatus.STOPPED


def default_sensor_status() -> dg.DefaultSensorStatus:
    """For the sensors that start runs on their own (watchdog restarts, promotion)."""
    return dg.DefaultSensorStatus.RUNNING if autostart() else dg.DefaultSensorStatus.STOPPED


def tick_time(context: dg.ScheduleEvaluationContext) -> pd.Timestamp:
    """The tick being evaluated, in New York time (now, when evaluated outside the scheduler)."""
    when = context.scheduled_execution_time
    stamp = pd.Timestamp(when) if when is not None else pd.Timestamp.now(tz="UTC")
    return stamp.tz_convert(NEW_YORK)


def session_max_runtime(day: date, now: pd.Timestamp) -> int:
    """Seconds from ``now`` until 30 minutes after ``day``'s close (the run's time limit)."""
    limit = DayPlan.for_day(day).close + SESSION_GRACE
    return max(60, int((limit - now).total_seconds()))


def session_run_request(day: date, account: str, now: pd.Timestamp, run_key: str,
                        op_config: dict | None = None, tags: dict | None = None) -> dg.RunRequest:
    """A live ``trading_session_job`` run for ``day``: one per account at a time, ended by
    run monitoring 30 minutes after the close at the latest. ``op_config`` carries other
    settings of the op (e.g. a restarted run keeps its model and contract count)."""
    config = {**(op_config or {}), "date": day.isoformat(), "mode": "live", "account": account}
    return dg.RunRequest(
        run_key=run_key,
        job_name=SESSION_JOB,
        run_config={"ops": {SESSION_OP: {"config": config}}},
        tags={
            SESSION_CONCURRENCY_TAG: account,
            MAX_RUNTIME_TAG: str(session_max_runtime(day, now)),
            DATE_TAG: day.isoformat(),
            **(tags or {}),
        },
    )


def session_op_config(run: dg.DagsterRun) -> dict:
    """The ``trading_session`` op config of a run (empty when it used the defaults)."""
    ops = (run.run_config or {}).get("ops") or {}
    return dict((ops.get(SESSION_OP) or {}).get("config") or {})


def session_account(run: dg.DagsterRun) -> str:
    """The account a session run trades (the op's default, ``sim:default``, when not set)."""
    return str(session_op_config(run).get("account") or DEFAULT_ACCOUNT).strip()


def session_mode(run: dg.DagsterRun) -> str:
    return str(session_op_config(run).get("mode") or "live").strip()


def _due(event: Event, context: dg.ScheduleEvaluationContext) -> tuple[pd.Timestamp, dg.SkipReason | None]:
    tick = tick_time(context)
    due, reason = is_due(event, tick)
    return tick, None if due else dg.SkipReason(reason)


def _op_request(job_name: str, op_name: str, run_key: str, config: dict, day: str) -> dg.RunRequest:
    return dg.RunRequest(run_key=run_key, job_name=job_name,
                         run_config={"ops": {op_name: {"config": config}}}, tags={DATE_TAG: day})


_AUTOSTART_NOTE = " Stopped by default; TRADENOVA_AUTOSTART=1 starts it running."


@dg.schedule(
    name="warmup_schedule", cron_schedule=WARMUP_CRON, job_name="warmup_job", execution_timezone=NEW_YORK,
    default_status=default_schedule_status(),
    description="08:00 New York on trading days: broker, calendar, kill switch, the day's risk state, the "
    "promoted model, today's market context." + _AUTOSTART_NOTE,
)
def warmup_schedule(context: dg.ScheduleEvaluationContext):
    """08:00 on trading days; stopped unless TRADENOVA_AUTOSTART=1 (see the module docstring)."""
    tick, skip = _due(Event.WARMUP, context)
    if skip:
        return skip
    day, account = tick.date().isoformat(), trading_account()
    return _op_request("warmup_job", "warmup", f"warmup-{day}-{account}", {"date": day, "account": account}, day)


@dg.schedule(
    name="trading_session_schedule", cron_schedule=SESSION_CRON, job_name=SESSION_JOB, execution_timezone=NEW_YORK,
    default_status=default_schedule_status(),
    description="09:30 New York on trading days: the live trading session until flatten time, one per "
    "account at a time, limited to 30 minutes after the close." + _AUTOSTART_NOTE,
)
def trading_session_schedule(context: dg.ScheduleEvaluationContext):
    """The open (09:30) on trading days; stopped unless TRADENOVA_AUTOSTART=1."""
    tick, skip = _due(Event.SESSION, context)
    if skip:
        return skip
    account = trading_account()
    return session_run_request(tick.date(), account, tick, f"session-{tick.date().isoformat()}-{account}")


@dg.schedule(
    name="flatten_schedule", cron_schedule=FLATTEN_CRON, job_name="flatten_job", execution_timezone=NEW_YORK,
    default_status=default_schedule_status(),
    description=f"{FLATTEN_MINUTES} minutes before the close ({FLATTEN_TIMES[1]:%H:%M}, or "
    f"{FLATTEN_TIMES[0]:%H:%M} on early-close days): cancel every order, close every position, verify flat."
    + _AUTOSTART_NOTE,
)
def flatten_schedule(context: dg.ScheduleEvaluationContext):
    """``FLATTEN_BEFORE_CLOSE`` (10 minutes) before that day's close; stopped unless
    TRADENOVA_AUTOSTART=1."""
    tick, skip = _due(Event.FLATTEN, context)
    if skip:
        return skip
    day, account = tick.date().isoformat(), trading_account()
    close = DayPlan.for_day(tick.date()).close
    reason = f"scheduled flatten {FLATTEN_MINUTES} minutes before the {close:%H:%M} close on {day}"
    return _op_request("flatten_job", "flatten", f"flatten-{day}-{account}", {"account": account, "reason": reason},
                       day)


@dg.schedule(
    name="reporting_schedule", cron_schedule=REPORT_CRON, job_name="reporting_job", execution_timezone=NEW_YORK,
    default_status=default_schedule_status(),
    description="16:05 New York (15 minutes after an early close): today's daily_report partition." + _AUTOSTART_NOTE,
)
def reporting_schedule(context: dg.ScheduleEvaluationContext):
    """After the close (16:05, or 13:15 on early closes); stopped unless TRADENOVA_AUTOSTART=1."""
    tick, skip = _due(Event.REPORT, context)
    if skip:
        return skip
    day, account = tick.date().isoformat(), trading_account()
    return dg.RunRequest(
        run_key=f"report-{day}-{account}",
        job_name="reporting_job",
        partition_key=day,
        run_config={"ops": {"daily_report": {"config": {"account": account}}}},
        tags={DATE_TAG: day},
    )


@dg.schedule(
    name="monitor_schedule", cron_schedule=MONITOR_CRON, job_name="monitor_job", execution_timezone=NEW_YORK,
    default_status=default_schedule_status(),
    description="Every 5 minutes while the market is open: reconcile, cancel stale orders, enforce the "
    "daily loss and drawdown limits, heartbeat." + _AUTOSTART_NOTE,
)
def monitor_schedule(context: dg.ScheduleEvaluationContext):
    """Every 5 minutes of the regular session; stopped unless TRADENOVA_AUTOSTART=1."""
    return _every_monitor_tick(context, "monitor_job", "monitor", "monitor")


def _every_monitor_tick(context: dg.ScheduleEvaluationContext, job_name: str, op_name: str, key: str):
    """A run of ``job_name`` for the trading account at each monitor tick of a trading day."""
    tick, skip = _due(Event.MONITOR, context)
    if skip:
        return skip
    day, account = tick.date().isoformat(), trading_account()
    return _op_request(job_name, op_name, f"{key}-{tick:%Y-%m-%dT%H:%M}-{account}", {"account": account}, day)


@dg.schedule(
    name="live_account_schedule", cron_schedule=MONITOR_CRON, job_name="live_account_job",
    execution_timezone=NEW_YORK, default_status=default_schedule_status(),
    description="Every 5 minutes while the market is open: observe the broker's account and check it "
    "against the ledger (live_account and its check)." + _AUTOSTART_NOTE,
)
def live_account_schedule(context: dg.ScheduleEvaluationContext):
    """With the monitor; stopped unless TRADENOVA_AUTOSTART=1."""
    return _every_monitor_tick(context, "live_account_job", "live_account", "live-account")


@dg.schedule(
    name="training_schedule", cron_schedule=TRAINING_CRON, job_name="training_job", execution_timezone=NEW_YORK,
    default_status=default_schedule_status(),
    description="Saturday 06:00 New York: retrain PPO and GRPO on recent sessions and evaluate them; the "
    "promotion sensor promotes a model that passed." + _AUTOSTART_NOTE,
)
def training_schedule(context: dg.ScheduleEvaluationContext):
    """Weekly, on Saturday morning (no trading-day check: the market is closed anyway);
    stopped unless TRADENOVA_AUTOSTART=1."""
    day = tick_time(context).date().isoformat()
    return dg.RunRequest(run_key=f"training-{day}", job_name="training_job", tags={DATE_TAG: day})


SCHEDULES = [
    warmup_schedule,
    trading_session_schedule,
    flatten_schedule,
    reporting_schedule,
    monitor_schedule,
    live_account_schedule,
    training_schedule,
]
