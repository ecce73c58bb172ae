"""Ctrl-C on a `tradenova` command cancels the run it follows and exits 130, instead of
leaving the run QUEUED for a daemon to start later (queued coordinator) or STARTED forever
(in-process); and the Dagster internals that ops/launch.py's queued path relies on are
still where the pinned Dagster put them.

The commands run as real child processes in a session of their own, and SIGINT goes to
that whole process group, as a terminal's Ctrl-C does (Dagster's helper processes too)."""

import inspect
import os
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest

from assets.backtest import DAY_DONE
from conftest import REPO_ROOT
from tradenova_dagster import config

QUEUED = config.DAGSTER_YAML + """
run_coordinator:
  module: dagster
  class: QueuedRunCoordinator
"""


def test_the_dagster_internals_the_queued_path_uses_are_still_there():
    """ops/launch.py creates a queued run with non-public Dagster (there is no public way);
    an upgrade that moves any of it must fail here, saying what moved, not in a user's run."""
    import ops.launch

    moved = []
    try:
        from dagster._core.instance.config import dagster_instance_config  # noqa: F401
        from dagster._core.run_coordinator import QueuedRunCoordinator
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import EmptyWorkspaceTarget  # noqa: F401

        remote_origin, code_origin = ops.launch.job_origins("train_job")
    except (ImportError, TypeError, AttributeError) as exc:
        pytest.fail(f"dagster {dg.__version__}: {type(exc).__name__}: {exc}; ops/launch.py (uses_queue, "
                    "_request_context, job_origins) was written for 1.13.27")
    wants = {
        dg.DagsterInstance.create_run_for_job: {"job_def", "run_id", "run_config", "tags", "remote_job_origin",
                                                "job_code_origin"},
        dg.DagsterInstance.submit_run: {"run_id", "workspace"},
        dg.DagsterInstance.report_run_canceling: {"run", "message"},
        dg.DagsterInstance.report_run_canceled: {"dagster_run", "message"},
        QueuedRunCoordinator.cancel_run: {"run_id"},
        WorkspaceProcessContext.__init__: {"instance", "workspace_load_target"},
    }
    for function, parameters in wants.items():
        missing = parameters - set(inspect.signature(function).parameters)
        if missing:
            moved.append(f"{function.__qualname__} lacks {sorted(missing)}")
    pointer = code_origin.repository_origin.code_pointer
    if (remote_origin.location_name, remote_origin.repository_origin.repository_name, remote_origin.job_name) != (
            "tradenova", "__repository__", "train_job"):
        moved.append(f"the run's remote origin is {remote_origin}")
    if (code_origin.job_name, pointer.module, pointer.fn_name) != ("train_job", ops.launch.CODE_MODULE, "defs"):
        moved.append(f"the run's code origin is {code_origin}")
    assert not moved, (f"dagster {dg.__version__} moved what ops/launch.py's queued path and Ctrl-C handling "
                       f"call (written for 1.13.27): {'; '.join(moved)}")


@pytest.mark.slow
def test_a_queued_runs_origins_are_the_ones_a_code_server_of_the_location_reports(tradenova_home):
    """ops/launch.py builds them without starting a code server; `dagster job launch` asks one."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._serdes import serialize_value

    import ops.launch

    target = ModuleTarget(ops.launch.CODE_MODULE, None, str(REPO_ROOT), ops.launch.CODE_LOCATION)
    with dg.instance_for_test() as instance, WorkspaceProcessContext(instance, target) as workspace:
        location = workspace.create_request_context().get_code_location(ops.launch.CODE_LOCATION)
        [repository] = location.get_repositories().values()
        for job_name in ("train_job", "backtest_job", "sweep_job"):
            remote_job = repository.get_full_job(job_name)
            served = (remote_job.get_remote_origin(), remote_job.get_python_origin())
            assert [serialize_value(o) for o in ops.launch.job_origins(job_name)] == [
                serialize_value(o) for o in served], served


def _command(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tradenova_dagster.cli", *args], cwd=REPO_ROOT,
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for_run(proc: subprocess.Popen, status: dg.DagsterRunStatus, steps: int = 0,
                  timeout: float = 180) -> dg.DagsterRun:
    """The command's one run, once it is in ``status`` and has logged ``steps`` progress lines."""
    deadline = time.time() + timeout
    with dg.DagsterInstance.get() as instance:
        while time.time() < deadline and proc.poll() is None:
            runs = instance.get_runs()
            if runs and runs[0].status == status and len(
                    [e for e in instance.all_logs(runs[0].run_id) if e.user_message.startswith(DAY_DONE)]
            ) >= steps:
                return runs[0]
            time.sleep(0.2)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"no run {status.value} within {timeout} s (exit {proc.returncode}):\n{out}\n{err}")


def _ctrl_c(proc: subprocess.Popen) -> tuple[str, str]:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _said_canceled(err: str, run: dg.DagsterRun) -> None:
    """The command's last word is one line naming the run; no traceback of its own (a helper
    process of Dagster's log capture, in the same group, may print its KeyboardInterrupt)."""
    assert err.strip().splitlines()[-1] == f"interrupted: canceled dagster run {run.run_id} ({run.job_name})", err
    assert "tradenova_dagster/cli.py" not in err and "ops/launch.py" not in err, err


@pytest.mark.slow
def test_ctrl_c_on_a_queued_run_cancels_it_and_exits_130(tradenova_home):
    (tradenova_home / "dagster" / "dagster.yaml").write_text(QUEUED)
    with dg.DagsterInstance.get():  # its SQLite storage created once, before two processes open it
        pass
    proc = _command("backtest", "--start", "2026-11-20", "--end", "2026-11-20", "--strategy", "always-call",
                    "--id", "ctrlc", "--no-progress")
    run = _wait_for_run(proc, dg.DagsterRunStatus.QUEUED)  # no daemon: it would wait there forever
    out, err = _ctrl_c(proc)
    assert proc.returncode == 130, out + err
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run.run_id)
        events = [e.dagster_event_type for e in instance.all_logs(run.run_id) if e.is_dagster_event]
    assert run.status == dg.DagsterRunStatus.CANCELED, events
    assert events[-1] == dg.DagsterEventType.RUN_CANCELED and dg.DagsterEventType.RUN_START not in events
    _said_canceled(err, run)


@pytest.mark.slow
def test_ctrl_c_on_an_in_process_run_cancels_it_and_exits_130(tradenova_home):
    config.use_dagster_home()  # the local profile: runs execute inside the command
    proc = _command("backtest", "--start", "2026-08-03", "--end", "2026-11-20", "--strategy", "always-call",
                    "--id", "ctrlc", "--no-progress")
    run = _wait_for_run(proc, dg.DagsterRunStatus.STARTED, steps=1)  # inside the op, a day replayed
    out, err = _ctrl_c(proc)
    assert proc.returncode == 130, out + err
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run.run_id)
        logs = [e for e in instance.all_logs(run.run_id) if e.is_dagster_event]
    events = [e.dagster_event_type for e in logs]
    assert run.status == dg.DagsterRunStatus.CANCELED, events
    # Dagster's own interrupt handling ended it (the step failed on the interrupt, then the
    # run), not launch.py's fallback for a thread that does not stop.
    assert events[-1] == dg.DagsterEventType.RUN_CANCELED and dg.DagsterEventType.STEP_FAILURE in events
    assert logs[-1].dagster_event.message == 'Execution of run for "backtest_job" canceled.'
    _said_canceled(err, run)


def test_ctrl_c_in_a_command_without_a_run_exits_130_with_one_line(monkeypatch, capsys):
    """A command that follows no run (``status``) stopped by Ctrl-C: status 130 and one
    line, not a traceback."""
    from tradenova_dagster import cli

    def interrupted(args):
        raise KeyboardInterrupt

    parser = cli.build_parser()
    args = parser.parse_args(["status"])
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(parser, args, interrupted))
    assert cli.main(["status"]) == 130
    assert capsys.readouterr().err.strip() == "tradenova status: interrupted"


class _Fixed:
    """A parser that returns ``args`` with ``func`` replaced."""

    def __init__(self, parser, args, func):
        self.parser, self.args, self.func = parser, args, func

    def parse_args(self, argv):
        self.args.func = self.func
        return self.args

    def print_help(self):
        self.parser.print_help()
