"""With a dagster.yaml that configures the QueuedRunCoordinator, `tradenova backtest` goes
through the run queue: the run is enqueued, says plainly that no daemon is there to start
it, and once a real `dagster-daemon` runs, the daemon starts it and it succeeds."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from conftest import REPO_ROOT
from tradenova_dagster import config
from tradenova_dagster.cli import main
from tradenova_dagster.commands import code_location_args

pytestmark = pytest.mark.slow

DAY = "2026-11-20"
QUEUED = config.DAGSTER_YAML + """
run_coordinator:
  module: dagster
  class: QueuedRunCoordinator
"""


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
        started.append(subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", *code_location_args()],
            cwd=REPO_ROOT, env=dict(os.environ), stdout=open(log, "w"), stderr=subprocess.STDOUT,
            start_new_session=True))

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
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()
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
