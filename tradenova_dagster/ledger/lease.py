"""The account lease: one run at a time writes an account's ledger (DESIGN.md §5).

A run that writes an account (the session, warmup, flatten, monitor, a backtest) first
takes the account's lease: an exclusive OS file lock beside the ledger
(``<ledger>.lease``) that the operating system releases when the process ends however it
ends, so a crashed holder never blocks the account. Beside it, ``<ledger>.holder.json``
names the holder (account, run id, job, pid, host, since, heartbeat); it is replaced
atomically on every heartbeat and removed on release.

- A second **session** for an account refuses at once and names the holding session.
- Other jobs wait for the lease up to ``wait_s`` (a flatten at 15:50 waits for the session
  to finish its own flatten), then refuse naming the holder.
- Anyone can ask who holds an account (``lease_holder``) without touching the lock: the
  monitor and ``tradenova status`` read the holder file and check the holder's process.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from tradenova_dagster.ledger.accounts import ledger_path, require_account

SESSION = "session"


class AccountBusy(RuntimeError):
    """The account's lease is held by another run (the message names it)."""

    def __init__(self, message: str, holder: "LeaseHolder | None"):
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class LeaseHolder:
    account: str
    run_id: str
    job: str
    pid: int
    host: str
    since: str  # ISO timestamps, UTC
    heartbeat: str
    note: str = ""

    def heartbeat_age_s(self, now: datetime | None = None) -> float:
        now = now or datetime.now(timezone.utc)
        return (now - datetime.fromisoformat(self.heartbeat)).total_seconds()

    def describe(self) -> str:
        return (f"{self.job} run {self.run_id or '(no run id)'} (pid {self.pid} on {self.host}) since {self.since}, "
                f"last heartbeat {self.heartbeat_age_s():.0f} s ago" + (f", {self.note}" if self.note else ""))


def _lock_path(account: str) -> Path:
    path = ledger_path(account)
    return path.with_name(path.name + ".lease")


def _holder_path(account: str) -> Path:
    path = ledger_path(account)
    return path.with_name(path.name + ".holder.json")


def _read_holder(account: str) -> LeaseHolder | None:
    try:
        return LeaseHolder(**json.loads(_holder_path(account).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None  # never written, released, or half a write from an older version


def _alive(holder: LeaseHolder) -> bool:
    if holder.host != socket.gethostname():
        return True  # another machine's process: its heartbeat age says more than we can check
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_holder(account: str) -> LeaseHolder | None:
    """Who holds ``account`` now (None: nobody), read without taking the lock."""
    holder = _read_holder(require_account(account))
    return holder if holder is not None and _alive(holder) else None


class AccountLease:
    """The lease of one account for one run; use as a context manager."""

    def __init__(self, account: str, run_id: str | None, job: str, wait_s: float = 0.0, poll_s: float = 0.2):
        self.account = require_account(account)
        self.run_id = run_id or ""
        self.job = job
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._lock = FileLock(str(_lock_path(self.account)), thread_local=False)
        self._since = ""

    def __enter__(self) -> "AccountLease":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def acquire(self) -> "AccountLease":
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                self._lock.acquire(timeout=0)
                break
            except Timeout:
                holder = _read_holder(self.account)
                session_holds = holder is not None and holder.job == SESSION and self.job == SESSION
                if session_holds or time.monotonic() >= deadline:
                    who = holder.describe() if holder else "another run (it has not written its name yet)"
                    waited = "" if session_holds else f" after waiting {self.wait_s:g} s"
                    raise AccountBusy(f"account {self.account} is held by {who}{waited}: one run writes an account "
                                      f"at a time; this {self.job} run does not start", holder) from None
                time.sleep(self.poll_s)
        self._since = datetime.now(timezone.utc).isoformat()
        self.heartbeat()
        return self

    def heartbeat(self, note: str = "") -> None:
        """Say the holder is alive (the session calls it every bar)."""
        if not self.held:
            raise RuntimeError(f"heartbeat on the lease of {self.account} without holding it")
        holder = LeaseHolder(self.account, self.run_id, self.job, os.getpid(), socket.gethostname(), self._since,
                             datetime.now(timezone.utc).isoformat(), note)
        path = _holder_path(self.account)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(holder)))
        os.replace(tmp, path)

    def release(self) -> None:
        if not self.held:
            return
        _holder_path(self.account).unlink(missing_ok=True)
        self._lock.release()
