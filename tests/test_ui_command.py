"""`tradenova ui` as a user runs it: without an activated virtual environment, stopped by
SIGTERM (a service manager) or SIGINT (Ctrl-C), it leaves no webserver, daemon or code server
behind and prints no Beta, deprecation or supersession warning (stdout nor stderr)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from dagster_dev import _free_port

START_S = 240  # webserver answering and both code locations loaded, on a loaded 2-core machine
STOP_S = 45  # the command's own grace period (30 s) plus the wait for its children
WARNING = re.compile(r"\w*Warning\b")


def _children() -> dict[int, int]:
    """pid → parent pid of every process, from /proc (psutil is not a dependency)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _descendants(pid: int) -> dict[int, str]:
    parents, found, todo = _children(), {}, [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                try:
                    found[child] = (Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
                except OSError:
                    continue
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited; only its parent has to reap it


def _wait_ready(url: str, proc: subprocess.Popen, logs: Path) -> None:
    """The webserver answers and has loaded the code location; the daemon has run a sensor
    (so its own code server has loaded the definitions: where warnings would be printed)."""
    deadline = time.monotonic() + START_S
    query = "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { __typename } } } } }"
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"tradenova ui exited with {proc.returncode}:\n{_read(logs)}"
        try:
            body = requests.post(f"{url}/graphql", json={"query": query}, timeout=5).json()
            entries = body["data"]["workspaceOrError"]["locationEntries"]
            loaded = bool(entries) and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation"
        except (requests.RequestException, KeyError, TypeError, ValueError):
            loaded = False
        if loaded and "SensorDaemon" in _read(logs):
            return
        time.sleep(1)
    raise TimeoutError(f"tradenova ui not ready in {START_S} s:\n{_read(logs)}")


def _read(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(logs.glob("*.txt")))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_ui_runs_without_the_venv_and_stops_with_all_its_processes(sig, tradenova_home, tmp_path):
    venv_bin = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "DAGSTER_HOME", "PYTHONWARNINGS")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and Path(p).resolve() != venv_bin.resolve()) or "/usr/bin:/bin"
    port = _free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    started: dict[int, str] = {}
    with open(logs / "stdout.txt", "w") as out, open(logs / "stderr.txt", "w") as err:
        proc = subprocess.Popen([str(venv_bin / "tradenova"), "ui", "--port", str(port)], cwd=tmp_path, env=env,
                                stdout=out, stderr=err)
        try:
            _wait_ready(f"http://127.0.0.1:{port}", proc, logs)
            started.update(_descendants(proc.pid))
            kinds = " ".join(started.values())
            assert re.search(r"dagster[-_]webserver", kinds) and re.search(r"dagster(-|\._)daemon", kinds), kinds
            assert (tradenova_home / "dagster").is_dir()  # the UI's instance is TradeNova's DAGSTER_HOME

            proc.send_signal(sig)
            assert proc.wait(timeout=STOP_S) == 0, _read(logs)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(_alive(pid) for pid in started):
                time.sleep(0.2)
            left = {pid: cmd for pid, cmd in started.items() if _alive(pid)}
            assert not left, f"still running after {sig.name}: {left}"
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://127.0.0.1:{port}/server_info", timeout=5)
        finally:
            for pid in [proc.pid, *started]:  # a failed test leaves nothing running either
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=10)
    printed = _read(logs)
    assert not WARNING.findall(printed), f"warnings printed:\n{printed}"
