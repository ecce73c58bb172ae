"""With a dagster.yaml that configures the QueuedRunCoordinator, the commands go through the
run queue. `tradenova backtest` (SQLite): the run is enqueued, says plainly that no daemon
is there to start it, and once a real `dagster-daemon` runs, the daemon starts it and it
succeeds. `tradenova train`, `evaluate` and `sweep` on the production profile (PostgreSQL,
one daemon for the module): each run is enqueued, started by the daemon, carries the tags
the queue's limits key on, and succeeds; and Ctrl-C on a command whose run the daemon has
started cancels that run."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

import postgres_helpers
from conftest import _SHELL_SETTINGS, REPO_ROOT
from tradenova_dagster import config
from tradenova_dagster.cli import main
from tradenova_dagster.commands import code_location_args

pytestmark = pytest.mark.slow

postgres_server = postgres_helpers.postgres_server

DAY = "2026-11-20"
QUEUED = config.DAGSTER_YAML + """
run_coordinator:
  module: dagster
  class: QueuedRunCoordinator
"""


def _daemon(env: dict, log: Path) -> subprocess.Popen:
    """A `dagster-daemon run` on ``env``'s DAGSTER_HOME, loading the code as `tradenova ui` does."""
    return subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", *code_location_args()],
                            cwd=REPO_ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(daemon: subprocess.Popen) -> None:
    """The daemon and everything it started (its code server, run workers): its whole process
    group, which a code server that outlives the daemon would otherwise keep."""
    os.killpg(daemon.pid, signal.SIGTERM)
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.time() + 10
    try:
        while time.time() < deadline:
            os.killpg(daemon.pid, 0)  # ProcessLookupError once the group is empty
            time.sleep(0.2)
        os.killpg(daemon.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    daemon.wait()


def _start_daemon_once_queued(log: Path, started: list) -> threading.Thread:
    """A `dagster-daemon run` on this DAGSTER_HOME, loading the code as `tradenova ui` does,
    started only once a run waits in the queue (so the command first meets no daemon)."""

    def watch() -> None:
        deadline = time.time() + 120
        with dg.DagsterInstance.get() as instance:
            while time.time() < deadline and not instance.get_runs(
                    dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED])):
                time.sleep(0.2)
        time.sleep(1.0)
        started.append(_daemon(dict(os.environ), log))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_backtest_goes_through_the_queue_and_waits_for_the_daemon(tradenova_home, tmp_path, capsys, monkeypatch):
    import ops.launch

    (tradenova_home / "dagster" / "dagster.yaml").write_text(QUEUED)
    with dg.DagsterInstance.get():  # its SQLite storage created once, before two threads open it
        pass
    monkeypatch.setattr(ops.launch, "_NO_DAEMON_GRACE_S", 0.0)  # say it on the first look
    daemons: list = []
    watcher = _start_daemon_once_queued(tmp_path / "daemon.log", daemons)
    try:
        code = main(["backtest", "--start", DAY, "--end", DAY, "--strategy", "always-call", "--id", "queued",
                     "--no-progress"])
    finally:
        watcher.join(timeout=5)
        for daemon in daemons:
            _stop(daemon)
    out, err = capsys.readouterr()
    assert code == 0, out + err + (tmp_path / "daemon.log").read_text()
    assert "queued behind 0 runs" in err and "no dagster-daemon is running" in err
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs(dg.RunsFilter(job_name="backtest_job"))
        events = [e.dagster_event_type for e in instance.all_logs(run.run_id) if e.is_dagster_event]
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["tradenova/account"] == "backtest:queued" and run.tags["tradenova/strategy"] == "always-call"
    assert events.index(dg.DagsterEventType.RUN_ENQUEUED) < events.index(dg.DagsterEventType.RUN_START)
    assert "backtest:queued" in out and run.run_id in out and "code_server" not in out


@pytest.fixture(scope="module")
def production(postgres_server, tmp_path_factory):
    """One TRADENOVA_HOME on the production profile (its own PostgreSQL database) and one
    daemon working its queue, shared by the tests below (the daemon's start and its code
    server are paid once). Yields the environment the tests run under, with none of the
    shell's trading settings (conftest's rule, here for the daemon too)."""
    from tradenova_dagster.deploy import profile
    from tradenova_dagster.store import Store

    root = tmp_path_factory.mktemp("production")
    env = {**os.environ, "TRADENOVA_HOME": str(root / "home"), "DAGSTER_HOME": str(root / "home" / "dagster"),
           **postgres_server.create_database("dagster_commands")}
    for name in [*_SHELL_SETTINGS, *(n for n in env if n.startswith("TRADENOVA_ALERT_"))]:
        env.pop(name, None)
    profile.write("production", home=root / "home" / "dagster")
    Store(root / "home" / "tradenova.duckdb")  # created and migrated once, before two processes open it
    daemon = _daemon(env, root / "daemon.log")
    try:
        yield env
    finally:
        _stop(daemon)


@pytest.fixture
def on_production(production, monkeypatch):
    """This test's commands on the module's production home (instead of its own)."""
    for name in ("TRADENOVA_HOME", "DAGSTER_HOME", *(n for n in production if n.startswith("DAGSTER_PG_"))):
        monkeypatch.setenv(name, production[name])
    return production


def _queued_runs(job_name: str, **tags) -> list[dg.DagsterRun]:
    """The job's runs with ``tags``; each must have gone through the queue and succeeded."""
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = list(instance.get_runs(dg.RunsFilter(job_name=job_name, tags=tags)))
        for run in runs:
            events = [e.dagster_event_type for e in instance.all_logs(run.run_id) if e.is_dagster_event]
            assert run.status == dg.DagsterRunStatus.SUCCESS, (run.run_id, events)
            assert events.index(dg.DagsterEventType.RUN_ENQUEUED) < events.index(dg.DagsterEventType.RUN_START)
    return runs


def _daemon_log(env: dict) -> str:
    return (Path(env["DAGSTER_HOME"]).parent.parent / "daemon.log").read_text()


def test_train_goes_through_the_production_queue(on_production, capsys):
    code = main(["train", "--agent", "ppo", "--timesteps", "256", "--train-days", "3", "--eval-days", "1",
                 "--end", DAY, "--seed", "7", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, out + err + _daemon_log(on_production)
    [run] = _queued_runs("train_job", **{"tradenova/agent": "ppo"})
    # The tags the production limits key on (one training run at a time), from the job and the command.
    assert run.tags["tradenova/job"] == "training" and run.tags["tradenova/source"] == "synthetic"
    assert run.tags["tradenova/symbol"] == "SPY"
    with dg.DagsterInstance.get() as instance:
        summary = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT)[0].dagster_event
    assert out == summary.step_output_data.metadata["summary"].value + "\n"  # what the daemon's run stored
    assert "model " in out and "PROMOTABLE" in out


def test_evaluate_walk_forward_goes_through_the_production_queue(on_production, capsys):
    from tradenova_dagster.research.sweep import sweep_dir

    code = main(["evaluate", "--walk-forward", "--start", "2026-11-16", "--end", DAY, "--folds", "1",
                 "--train-days", "3", "--eval-days", "1", "--seeds", "1", "--agents", "ppo", "--timesteps", "128",
                 "--baselines", "flat", "--id", "queuedwf", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, out + err + _daemon_log(on_production)
    [run] = _queued_runs("walk_forward_job", **{"tradenova/evaluation": "queuedwf"})
    assert run.tags["tradenova/job"] == "training" and run.tags["tradenova/source"] == "synthetic"
    summary = pd.read_parquet(sweep_dir("queuedwf") / "summary.parquet")
    assert sorted(summary["strategy"]) == ["flat", "ppo"]
    assert summary.to_string(index=False, float_format=lambda v: f"{v:,.2f}") in out


def test_sweep_goes_through_the_production_queue(on_production, capsys):
    from tradenova_dagster.research.sweep import sweep_dir

    code = main(["sweep", "--id", "queued", "--start", "2026-10-01", "--end", DAY, "--strategies", "always-call",
                 "--seeds", "0", "--folds", "2", "--train-days", "10", "--eval-days", "1", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, out + err + _daemon_log(on_production)
    sweep = {"tradenova/sweep": "queued", "tradenova/job": "sweep"}
    [_plan] = _queued_runs("sweep_plan_job", **sweep)
    [_summary] = _queued_runs("sweep_summary_job", **sweep)
    partitions = _queued_runs("sweep_job", **sweep)
    assert sorted(r.tags["dagster/partition"] for r in partitions) == ["queued|always-call|0|0",
                                                                      "queued|always-call|0|1"]
    assert sorted((r.tags["tradenova/strategy"], r.tags["tradenova/fold"]) for r in partitions) == [
        ("always-call", "0"), ("always-call", "1")]
    summary = pd.read_parquet(sweep_dir("queued") / "summary.parquet")
    assert summary.to_string(index=False, float_format=lambda v: f"{v:,.2f}") in out


def test_ctrl_c_on_a_run_the_daemon_started_cancels_it(on_production):
    """The run no longer waits in the queue: Ctrl-C tells the daemon's run worker to stop it,
    and the command exits 130 once it has (tests/test_launch_cancel.py: a run still queued)."""
    from ops.launch import PROGRESS

    proc = subprocess.Popen([sys.executable, "-m", "tradenova_dagster.cli", "train", "--timesteps", "5000000",
                             "--train-days", "3", "--eval-days", "1", "--end", DAY, "--seed", "8", "--no-progress"],
                            cwd=REPO_ROOT, env=dict(on_production), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline, run = time.time() + 180, None
    with dg.DagsterInstance.get() as instance:
        while run is None and time.time() < deadline and proc.poll() is None:
            for candidate in instance.get_runs(dg.RunsFilter(job_name="train_job", tags={"tradenova/agent": "ppo"},
                                                             statuses=[dg.DagsterRunStatus.STARTED])):
                if any(e.user_message.startswith(PROGRESS) for e in instance.all_logs(candidate.run_id)):
                    run = candidate  # training, its dataset built
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert run is not None, f"no training run started within 180 s:\n{out}\n{err}\n{_daemon_log(on_production)}"
    assert proc.returncode == 130, out + err
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run.run_id)
        events = [e.dagster_event_type for e in instance.all_logs(run.run_id) if e.is_dagster_event]
    assert run.status == dg.DagsterRunStatus.CANCELED, events
    assert events.index(dg.DagsterEventType.RUN_CANCELING) < events.index(dg.DagsterEventType.RUN_CANCELED)
    assert err.strip().splitlines()[-1] == f"interrupted: canceled dagster run {run.run_id} (train_job)", err
