"""The session watchdog: a live session that died during market hours is flattened and,
when the risk state allows, restarted.

A session run can end early by FAILURE (an exception, a crashed worker detected by run
monitoring) or CANCELED (terminated from the UI, by run monitoring's ``max_runtime``, or
by the kill switch sensor). Either way the account may hold positions nobody watches.
Each evaluation reads the ``trading_session_job`` runs that reached FAILURE or CANCELED
since the cursor (the last update time handled) and, for each live session of this
account (``TRADENOVA_ACCOUNT``) for today:

- requests ``flatten_job`` (run_key ``flatten-after-<run_id>``);
- requests a new live session for today (run_key ``session-restart-<run_id>``, same op
  settings as the run that died) when all of these hold: the kill switch is off, the
  account's risk state is not halted, it is before flatten time, no other session of the
  account is queued or running, and fewer than ``MAX_RESTARTS_PER_DAY`` restarts were
  made today (a session that crashes on start must not be restarted forever). The
  restarted session reconciles with the broker on start (DESIGN.md §5).

The flattens and the restart all carry the session concurrency tag, and the flattens are
requested first, so the run queue (limit 1 per account) starts the restart only after
they have finished. When several sessions died since the last evaluation, each gets its
flatten and only the latest is restarted (one session at a time).

Outside the regular session nothing is done and the cursor stays, so a run that ended
before the open is judged at the open; runs of another day are then passed over.
Replay sessions (backtests, the demo) and other accounts are ignored.

"Now" comes from ``now()`` in this module, which tests replace.
"""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
import pandas as pd
from filelock import Timeout

from ops.trading import flatten_job, trading_session_job
from resources.risk import RiskResource
from schedules.trading_day import (
    DATE_TAG,
    NEW_YORK,
    SESSION_JOB,
    default_sensor_status,
    session_account,
    session_mode,
    session_op_config,
    session_run_request,
    trading_account,
)
from sensors.kill_switch import active_session_runs
from tradenova_dagster.config import SESSION_CONCURRENCY_TAG
from tradenova_dagster.ledger.accounts import ledger_store
from tradenova_dagster.ledger.lease import lease_holder
from tradenova_dagster.market import calendar
from tradenova_dagster.session.timetable import DayPlan

ENDED_STATUSES = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
MAX_RESTARTS_PER_DAY = 3
RESTART_OF_TAG = "tradenova/restart_of"  # on a restarted session: the run it replaces
AFTER_RUN_TAG = "tradenova/after_run"  # on a flatten: the session run that died
RESTARTED_BY_TAG = "tradenova/restarted_by"
BATCH = 50
LEDGER_READ_TIMEOUT_S = 5.0


def now() -> pd.Timestamp:
    """The current instant (UTC); a function so that tests can set the time of day."""
    return pd.Timestamp.now(tz="UTC")


def run_day(record: dg.RunRecord):
    """The trading day a session run was for: its ``date`` config, else its date tag,
    else the New York date it started (an empty ``date`` means "today" to the op)."""
    run = record.dagster_run
    text = session_op_config(run).get("date") or run.tags.get(DATE_TAG)
    if text:
        return calendar.as_date(text, "date")
    started = record.start_time or record.create_timestamp.timestamp()
    return pd.Timestamp(started, unit="s", tz="UTC").tz_convert(NEW_YORK).date()


def _cursor_time(cursor: str | None, local: pd.Timestamp) -> datetime:
    """Runs updated after this instant (UTC) are new: the cursor, else today's midnight."""
    if cursor:
        return datetime.fromisoformat(cursor).astimezone(timezone.utc)
    return local.normalize().tz_convert("UTC").to_pydatetime()


def restarts_today(instance: dg.DagsterInstance, account: str, day: str) -> int:
    return instance.get_runs_count(filters=dg.RunsFilter(
        job_name=SESSION_JOB,
        tags={DATE_TAG: day, SESSION_CONCURRENCY_TAG: account, RESTARTED_BY_TAG: "session_watchdog_sensor"},
    ))


def why_not_restart(context: dg.SensorEvaluationContext, risk: RiskResource, account: str,
                    local: pd.Timestamp) -> str | None:
    """None when a restart is allowed, else the reason it is not."""
    switch = risk.kill_switch(account).state()
    if switch.on:
        return f"no restart: {switch.describe()}"
    try:  # read only, and briefly: a sensor never writes a ledger nor waits on one
        manager = risk.build_manager(account, ledger_store(account, lock_timeout_s=LEDGER_READ_TIMEOUT_S))
        halted, state = manager.is_halted, manager.state
    except Timeout:
        holder = lease_holder(account)
        return (f"no restart: the ledger of {account} is busy ({holder.describe() if holder else 'another run'}), "
                "so its risk state cannot be read (fail closed)")
    if halted:
        return f"no restart: risk state of {account} halted ({state.halt_rule}: {state.halt_reason})"
    flatten_at = DayPlan.for_day(local.date()).flatten
    if local >= flatten_at:
        return f"no restart: past flatten time {flatten_at:%H:%M} New York"
    done = restarts_today(context.instance, account, local.date().isoformat())
    if done >= MAX_RESTARTS_PER_DAY:
        return f"no restart: already restarted {done} time(s) today (limit {MAX_RESTARTS_PER_DAY})"
    active = active_session_runs(context.instance, account)
    if active:
        return f"no restart: session run {active[0].run_id} of {account} is {active[0].status.value}"
    return None


@dg.sensor(
    name="session_watchdog_sensor",
    jobs=[flatten_job, trading_session_job],
    minimum_interval_seconds=30,
    default_status=default_sensor_status(),
    description="A live session that FAILED or was CANCELED during market hours → flatten_job, then a "
    "restarted session if the kill switch is off, risk is not halted and it is before flatten time.",
)
def session_watchdog_sensor(context: dg.SensorEvaluationContext, risk: RiskResource):
    instant = now()
    local = instant.tz_convert(NEW_YORK)
    phase = calendar.market_phase(instant)
    if phase is not calendar.MarketPhase.REGULAR:
        return dg.SkipReason(f"market {phase.value} at {local:%Y-%m-%d %H:%M} New York: nothing to flatten "
                             f"or restart; ended sessions are judged while the market is open")
    since = _cursor_time(context.cursor, local)
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(job_name=SESSION_JOB, statuses=ENDED_STATUSES, updated_after=since),
        order_by="update_timestamp", ascending=True, limit=BATCH,
    )
    if not records:
        return dg.SkipReason(f"no session run failed or was canceled since {since.isoformat()}")
    account, today = trading_account(), local.date()
    requests, notes, died = [], [], []
    for record in records:
        run = record.dagster_run
        label = f"run {run.run_id} ({run.status.value})"
        if session_account(run) != account or session_mode(run) != "live":
            notes.append(f"{label}: {session_mode(run)} session of {session_account(run)}, not watched")
            continue
        if run_day(record) != today:
            notes.append(f"{label}: a session for {run_day(record)}, not today")
            continue
        context.log.warning(f"{label}: live session of {account} ended during market hours: flattening")
        died.append(run)
        requests.append(dg.RunRequest(
            run_key=f"flatten-after-{run.run_id}",
            job_name="flatten_job",
            run_config={"ops": {"flatten": {"config": {
                "account": account,
                "reason": f"watchdog: session run {run.run_id} ended {run.status.value} during market hours",
            }}}},
            tags={DATE_TAG: today.isoformat(), SESSION_CONCURRENCY_TAG: account, AFTER_RUN_TAG: run.run_id},
        ))
    if died:
        last = died[-1]  # one session at a time: restart (at most) the latest that died
        refusal = why_not_restart(context, risk, account, local)
        if refusal:
            notes.append(f"flatten requested after {len(died)} run(s); {refusal}")
        else:
            requests.append(session_run_request(
                today, account, local, f"session-restart-{last.run_id}", op_config=session_op_config(last),
                tags={RESTART_OF_TAG: last.run_id, RESTARTED_BY_TAG: "session_watchdog_sensor"},
            ))
            notes.append(f"flatten and restart of run {last.run_id} requested")
    for note in notes:
        context.log.info(note)
    cursor = records[-1].update_timestamp.isoformat()
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=cursor)
    return dg.SensorResult(skip_reason="; ".join(notes), cursor=cursor)
