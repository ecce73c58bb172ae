"""Launch a Dagster run from a ``tradenova`` command and follow it with a progress bar.

Every command that does work (backtest, demo, train, evaluate, report, sweep) goes through
``Launcher``, so that each one is a run on the instance in DAGSTER_HOME, with the
same tags as the UI's, visible in the UI afterwards. How it runs depends on the instance:

- its ``dagster.yaml`` names a ``run_coordinator`` that is a ``QueuedRunCoordinator`` (the
  production profile, ``tradenova init --profile production``): the run is created for the
  code location ``tradenova`` (module ``tradenova_dagster.definitions``, as ``dagster job
  launch`` does; the name every workspace file and ``tradenova ui`` give it, so the daemon
  loads the job from its own code server: the command starts none) and submitted to the
  queue, where the daemon starts it within the profile's limits. While it waits the bar says
  how many runs are ahead of it, and says so plainly when no daemon heartbeat is there to
  ever start it;
- otherwise (the embedded default, whose queue Dagster applies only to the runs that the UI,
  schedules and sensors launch): the run executes in this process, as it always did.

Progress comes from the run's own event log, read with a cursor (only new events each
poll): each log message that starts with the command's marker is one step done (or, when
its text starts with ``<done>/<total>``, that many steps in all), and the rest of its text
is shown beside the bar.

Ctrl-C cancels every run the command started that has not ended, instead of leaving it
queued, running on the daemon, or (in-process) STARTED forever, prints one line per run
saying so, and exits 130 (``Launcher.__exit__``): a queued run is canceled through the
instance's run coordinator (it leaves the queue, or the daemon's run worker is told to
stop); an in-process run is marked CANCELING and interrupted in its thread, so that
Dagster's own interrupt handling ends it CANCELED and tears its resources down.
"""

from __future__ import annotations

import ctypes
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

PARTITION_TAG = "dagster/partition"
# The run config part that keeps a command's run from printing its log (and a failed step's
# stack trace) over the progress bar: the command prints one line per failure, naming the
# run, and the whole log stays in the run's event log for the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
PROGRESS = "tradenova step done:"  # the default marker: ``context.log.info(f"{PROGRESS} <what>")``
CODE_MODULE = "tradenova_dagster.definitions"
CODE_ATTRIBUTE = "defs"  # the module's Definitions
# The code location's name in workspace.yaml, deploy/workspace.grpc.yaml and pyproject.toml
# ([tool.dagster]): the daemon finds a queued run's code by this name.
CODE_LOCATION = "tradenova"
REPO_ROOT = Path(__file__).resolve().parent.parent
_POLL_S = 0.25
_IN_PROCESS_POLL_S = 1.0
_STEPS_DONE = re.compile(r"(\d+)/\d+\b")  # a progress line that counts its steps itself
_DAEMON_STALE_S = 60.0  # a heartbeat older than this is a daemon that is not running
_NO_DAEMON_GRACE_S = 15.0  # how long a queued run may wait before a missing daemon is reported
_CANCEL_WAIT_S = 20.0  # how long Ctrl-C waits for a canceled run to end before saying it is still canceling
INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it


@dataclass(frozen=True)
class FinishedRun:
    """A run that ended, with what its steps recorded."""

    run: dg.DagsterRun
    metadata: dict  # metadata key -> value, from its outputs and materializations (later ones win)
    error: str = ""  # the first line of the first step failure's error, if any

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def success(self) -> bool:
        return self.run.status == dg.DagsterRunStatus.SUCCESS

    def failure(self, what: str) -> str:
        """The one line a command prints when the run did not succeed."""
        return (f"{what}: dagster run {self.run_id} ended {self.run.status.value}"
                f"{f' ({self.error})' if self.error else ''}; see it in `tradenova ui`")


def uses_queue(instance: dg.DagsterInstance) -> bool:
    """Whether ``instance``'s dagster.yaml itself configures a QueuedRunCoordinator (Dagster
    falls back to one when it names none, but only the daemon's launches obey it then)."""
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.run_coordinator import QueuedRunCoordinator

    if instance.root_directory is None:
        return False
    configured = dagster_instance_config(instance.root_directory)[0].get("run_coordinator")
    return bool(configured) and isinstance(instance.run_coordinator, QueuedRunCoordinator)


class Launcher:
    """Starts runs on ``instance`` and follows them (see the module docstring); a context
    manager, because leaving it on Ctrl-C cancels the runs it started."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance
        self.queued = uses_queue(instance)
        self._workers: dict[str, _Worker] = {}
        self._active: dict[str, None] = {}  # runs started here and not yet seen ending, in order
        self._workspace = None

    def __enter__(self) -> "Launcher":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        try:
            for run_id in list(self._active) if interrupted else ():
                print(self._cancel(run_id), file=sys.stderr)
        finally:
            if self._workspace is not None:
                self._workspace.__exit__(exc_type, exc, tb)
        if interrupted:
            raise SystemExit(INTERRUPTED) from None

    def run(self, job_name: str, run_config: dict, tags: dict, *, progress=None, marker: str = PROGRESS,
            partition_key: str | None = None) -> "FinishedRun":
        """Start one run and wait for it to end (``follow``)."""
        return self.follow(self.start(job_name, run_config, tags, partition_key=partition_key), progress=progress,
                           marker=marker)

    def start(self, job_name: str, run_config: dict, tags: dict, *, partition_key: str | None = None) -> str:
        """Start (in-process: in a thread) or enqueue a run; returns its id."""
        run_id = str(uuid.uuid4())
        self._active[run_id] = None
        if self.queued:
            self._submit(job_name, run_config, {**tags, **({PARTITION_TAG: partition_key} if partition_key else {})},
                         run_id)
        else:
            from tradenova_dagster.definitions import defs

            job = defs.resolve_job_def(job_name)
            worker = _Worker(lambda: job.execute_in_process(run_config=run_config, instance=self.instance,
                                                            run_id=run_id, tags=tags, partition_key=partition_key,
                                                            raise_on_error=False))
            self._workers[run_id] = worker
            worker.start()
        return run_id

    def follow(self, run_id: str, *, progress=None, marker: str = PROGRESS) -> "FinishedRun":
        """Wait for ``run_id`` to end; ``progress(steps_done, text)`` is called as the run logs
        its steps, and ``progress(None, text)`` with news about the queue."""
        follower = _Follower(self.instance, run_id, marker, progress)
        worker = self._workers.get(run_id)
        while worker is not None and not worker.done.is_set():
            # In-process: only the new log lines, once a second; the run's status is the
            # worker's to tell. Each read holds the interpreter lock the run needs too.
            follower.read_progress()
            worker.done.wait(_IN_PROCESS_POLL_S)
        if worker is not None:
            del self._workers[run_id]
            worker.raise_error()
        while True:
            run = follower.poll()
            if run is not None and run.is_finished:
                follower.poll()  # the events written between the last read and the end
                self._active.pop(run_id, None)
                return FinishedRun(self.instance.get_run_by_id(run_id), *run_metadata(self.instance, run_id))
            time.sleep(_POLL_S)

    def _submit(self, job_name: str, run_config: dict, tags: dict, run_id: str) -> None:
        """Create the run and submit it to the queue, as ``dagster job launch`` does, with
        the origins of the code location ``tradenova`` (``job_origins``), so that the daemon's
        run worker loads the job from there; no code server is started for it.

        Dagster has no public API for this (only the ``dagster job launch`` command, which
        starts a code server per run, and the webserver's GraphQL): ``create_run_for_job``
        and ``submit_run`` are methods of the public ``DagsterInstance`` (``submit_run``'s
        docstring says to create the run first), the origins and workspace classes are
        private. tests/test_launch_cancel.py checks all of it against the pinned Dagster."""
        from tradenova_dagster.definitions import defs

        job = defs.resolve_job_def(job_name)
        remote_origin, code_origin = job_origins(job_name)
        self.instance.create_run_for_job(job, run_id=run_id, run_config=run_config, tags={**job.run_tags, **tags},
                                         remote_job_origin=remote_origin, job_code_origin=code_origin)
        self.instance.submit_run(run_id, self._request_context())

    def _request_context(self):
        """What ``submit_run`` takes beside the run: a workspace request context, which the
        QueuedRunCoordinator does not read (the daemon loads the code), so an empty one."""
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import EmptyWorkspaceTarget

        if self._workspace is None:
            self._workspace = WorkspaceProcessContext(self.instance, EmptyWorkspaceTarget()).__enter__()
        return self._workspace.create_request_context()

    def _cancel(self, run_id: str) -> str:
        """Cancel a run this Launcher started (Ctrl-C; see the module docstring), wait a while
        for it to end, and say how it stands."""
        run = self.instance.get_run_by_id(run_id)
        if run is None:
            return f"interrupted: dagster run {run_id} was never created"
        if not run.is_finished:
            worker = self._workers.get(run_id)
            if worker is not None and not worker.done.is_set():
                self.instance.report_run_canceling(run, message="Ctrl-C in the tradenova command")
                worker.interrupt()
                worker.done.wait(_CANCEL_WAIT_S)
            elif run.status != dg.DagsterRunStatus.NOT_STARTED:
                self.instance.run_coordinator.cancel_run(run_id)  # out of the queue, or its run worker told to stop
                deadline = time.time() + _CANCEL_WAIT_S
                while not run.is_finished and time.time() < deadline:
                    time.sleep(_POLL_S)
                    run = self.instance.get_run_by_id(run_id)
            run = self.instance.get_run_by_id(run_id)
            if not run.is_finished and (worker is not None or run.status == dg.DagsterRunStatus.NOT_STARTED):
                # A thread that did not stop in time, or a run never submitted: nothing else will end it.
                self.instance.report_run_canceled(run, message="Ctrl-C in the tradenova command")
                run = self.instance.get_run_by_id(run_id)
        self._active.pop(run_id, None)
        if run.status == dg.DagsterRunStatus.CANCELED:
            return f"interrupted: canceled dagster run {run_id} ({run.job_name})"
        if run.is_finished:
            return f"interrupted: dagster run {run_id} ({run.job_name}) had already ended {run.status.value}"
        return (f"interrupted: dagster run {run_id} ({run.job_name}) is {run.status.value}: the daemon's run worker "
                "was told to stop it; see it in `tradenova ui`")


def job_origins(job_name: str):
    """A queued run's origins: the code location ``tradenova`` by name (the daemon launches
    the run there) and the module that defines the job (for run launchers that start Python
    themselves); the same values a code server of the location reports (checked by
    tests/test_launch_cancel.py)."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
    from dagster._core.remote_origin import RemoteRepositoryOrigin
    from dagster._core.workspace.load_target import ModuleTarget

    [location] = ModuleTarget(CODE_MODULE, None, str(REPO_ROOT), CODE_LOCATION).create_origins()
    repository = ReconstructableRepository.for_module(CODE_MODULE, CODE_ATTRIBUTE, str(REPO_ROOT),
                                                      container_context={})
    return (RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME).get_job_origin(job_name),
            repository.get_reconstructable_job(job_name).get_python_origin())


def run_metadata(instance: dg.DagsterInstance, run_id: str) -> tuple[dict, str]:
    """Every metadata value a run's steps attached to their outputs and materializations,
    and the first line of its first step failure's error ("" if none)."""
    found: dict = {}
    error = ""
    for record in instance.get_records_for_run(run_id, limit=None).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_FAILURE and not error:
            failure = event.step_failure_data.error
            cause = failure.cause if failure is not None and failure.cause is not None else failure
            error = (cause.message.strip().splitlines() or [""])[0] if cause is not None else ""
            continue
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            entries = record.event_log_entry.asset_materialization.metadata
        elif event.event_type == dg.DagsterEventType.STEP_OUTPUT:
            entries = event.step_output_data.metadata
        else:
            continue
        found.update({key: value.value for key, value in entries.items()})
    return found, error


class _Worker(threading.Thread):
    """A run executing in process. ``done`` says when it has ended: ``is_alive()`` cannot,
    because a ``join()`` cut short by Ctrl-C marks the thread stopped while it still runs
    (Python 3.11's ``Thread._wait_for_tstate_lock``)."""

    def __init__(self, target):
        super().__init__(daemon=True)
        self._target_fn, self.error, self.done = target, None, threading.Event()

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self.error = exc
        finally:
            self.done.set()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def interrupt(self) -> None:
        """Raise KeyboardInterrupt inside this thread (at its next Python instruction), as
        Ctrl-C would in a run executing in the main thread."""
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.ident), ctypes.py_object(KeyboardInterrupt))


class _Follower:
    """Reads a run's new events (cursor) and reports steps and queue news to ``progress``."""

    def __init__(self, instance, run_id: str, marker: str, progress):
        self.instance, self.run_id, self.marker, self.progress = instance, run_id, marker, progress
        self.cursor, self.steps, self.queued_since, self.last_news = None, 0, None, None

    def poll(self) -> dg.DagsterRun | None:
        run = self.instance.get_run_by_id(self.run_id)
        if run is None:
            return None
        self.read_progress()
        if run.status == dg.DagsterRunStatus.QUEUED:
            self._queue_news(run)
        return run

    def read_progress(self) -> None:
        """Report the progress lines logged since the last read."""
        page = self.instance.get_records_for_run(self.run_id, cursor=self.cursor)
        self.cursor = page.cursor
        for record in page.records:
            message = record.event_log_entry.user_message
            if message.startswith(self.marker):
                text = message[len(self.marker):].strip()
                count = _STEPS_DONE.match(text)  # "<done>/<total> ...": a line that speaks for several steps
                self.steps = int(count.group(1)) if count else self.steps + 1
                self._tell(self.steps, text)

    def _queue_news(self, run: dg.DagsterRun) -> None:
        now = time.time()
        self.queued_since = self.queued_since or now
        ahead = self.instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED],
                                                           created_before=_created(self.instance, run)))
        news = f"queued behind {ahead} run{'s' if ahead != 1 else ''}"
        if now - self.queued_since > _NO_DAEMON_GRACE_S and not daemon_alive(self.instance):
            news = (f"{news}; no dagster-daemon is running for {self.instance.root_directory}, so nothing will "
                    "start it: run `tradenova ui` (or `dagster-daemon run`) with this DAGSTER_HOME")
        if news != self.last_news:
            self.last_news = news
            self._tell(None, news)

    def _tell(self, steps, text: str) -> None:
        if self.progress is not None:
            self.progress(steps, text)


def _created(instance, run):
    [record] = instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id]))
    return record.create_timestamp


def daemon_alive(instance: dg.DagsterInstance) -> bool:
    """Whether the daemon that dequeues runs has sent a heartbeat lately."""
    beat = instance.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR")
    return beat is not None and time.time() - beat.timestamp < _DAEMON_STALE_S


def progress_bar(total: int | None, desc: str, unit: str, disable: bool):
    """A tqdm bar and the ``progress`` callback that drives it (on stderr)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr)

    def progress(steps, text: str) -> None:
        if steps is not None:
            bar.update(steps - bar.n)
        if text:
            bar.set_postfix_str(text[:60])
        if steps is None:  # queue news: a line of its own, bar or not
            (print if disable else bar.write)(f"{desc}: {text}", file=sys.stderr)

    return bar, progress
