"""The kill switch sensor: switch on → stop the account's sessions and flatten it.

The session loop itself checks the kill switch on every bar and stops entering, but a
session that is stuck (a hung data feed, a broker timeout) checks nothing; this sensor is
the outside hand. Every ``minimum_interval_seconds`` it reads the switch for the account
(``TRADENOVA_ACCOUNT``; the global row counts too, see ``risk/kill_switch.py``) and, while
it is on:

- asks the run coordinator to cancel every queued, starting or started run of
  ``trading_session_job`` that trades this account (a queued run is canceled at once; a
  started one receives Dagster's termination, which interrupts the session, whose
  handler cancels its open orders). It does so on every tick while the switch stays on,
  so a session launched meanwhile is stopped too;
- once per switch-on event (the cursor is that event's ``<row>@<set_at>``), requests
  ``flatten_job`` for the account with the reason "kill switch: <reason>". It is not
  tagged with the session concurrency key, so it starts while the session is still
  being torn down.

Runs of other accounts (e.g. ``backtest:...`` replays, which the global switch does not
cover) are left alone. This sensor is RUNNING by default, unlike the schedules: it only
ever stops trading, and a user who flips the switch expects it to act.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from resources.risk import RiskResource
from schedules.trading_day import DATE_TAG, NEW_YORK, SESSION_JOB, session_account, trading_account

ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
KILL_SWITCH_TAG = "tradenova/kill_switch"


def active_session_runs(instance: dg.DagsterInstance, account: str) -> list[dg.DagsterRun]:
    """Queued or running ``trading_session_job`` runs that trade ``account``."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=SESSION_JOB, statuses=ACTIVE_STATUSES))
    return [run for run in runs if session_account(run) == account]


def stop_session_runs(context: dg.SensorEvaluationContext, account: str, why: str) -> list[str]:
    """Ask the run coordinator to cancel the account's active session runs; returns
    one line per run saying what happened."""
    done = []
    for run in active_session_runs(context.instance, account):
        accepted = context.instance.run_coordinator.cancel_run(run.run_id)
        status = context.instance.get_run_by_id(run.run_id).status.value
        context.log.warning(f"{why}: cancel of session run {run.run_id} "
                            f"{'accepted' if accepted else 'not confirmed'} (now {status})")
        done.append(f"{run.run_id} ({status})")
    return done


def event_key(state) -> str:
    """Identifies one switch-on: which row turned it on, and when."""
    return f"{state.account}@{pd.Timestamp(state.set_at).tz_convert('UTC').isoformat()}"


@dg.sensor(
    name="kill_switch_sensor",
    job_name="flatten_job",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Kill switch on → cancel the account's trading sessions and launch flatten_job "
    "(once per switch-on).",
)
def kill_switch_sensor(context: dg.SensorEvaluationContext, risk: RiskResource):
    account = trading_account()
    state = risk.kill_switch(account).state()
    if not state.on:
        return dg.SkipReason(state.describe())
    key = event_key(state)
    stopped = stop_session_runs(context, account, f"kill switch ({state.reason})")
    stopped_note = f"; canceled session run(s): {', '.join(stopped)}" if stopped else ""
    if context.cursor == key:
        return dg.SkipReason(f"{state.describe()}: flatten already requested{stopped_note}")
    day = pd.Timestamp.now(tz="UTC").tz_convert(NEW_YORK).date().isoformat()
    flatten = dg.RunRequest(
        run_key=f"flatten-kill-switch-{account}-{key}",
        job_name="flatten_job",
        run_config={"ops": {"flatten": {"config": {"account": account, "reason": f"kill switch: {state.reason}"}}}},
        tags={DATE_TAG: day, KILL_SWITCH_TAG: key},
    )
    context.log.warning(f"{state.describe()}: flattening {account}{stopped_note}")
    return dg.SensorResult(run_requests=[flatten], cursor=key)
