"""The DuckDB store: schema, migrations and the connection policy (DESIGN.md §2, §5).

DuckDB lets one process open a database file for writing, and a process that holds it
open blocks every other process, readers included. Dagster runs each step in its own
process, and the warmup, session, monitor and flatten runs overlap. So the store has two
ways to use a connection:

- **short uses** (``connect``, ``transaction``, ``query``, ``execute``): open a
  connection under a cross-process file lock (``<db>.lock``), do the work, close it.
  Reads take the lock too, because a reader in another process would otherwise fail
  while a writer holds the file.
- **a unit of work** (``unit_of_work()``): one connection and one transaction for a
  whole step, e.g. one bar of a trading session. Every short use made inside it on the
  same thread — by the broker, the ladder, risk or the tracker — joins that connection
  and that transaction instead of opening its own, so the step commits whole or not at
  all, and costs one connect instead of one per part. ``hold()`` keeps one connection
  for a longer stretch — a session's whole run on its account's ledger file, which only
  the holder of the account's lease writes (``ledger/lease.py``) — so units of work
  inside it connect zero times.

Migrations are versioned SQL files (``migrations/NNNN_name.sql``), applied once each in
order and recorded in ``schema_migrations``, checked once per process and file. Number
ranges by area: 0001-0099 market data, 0100-0199 broker, 0200-0299 risk, 0300-0399
metrics and reports, 0400-0499 models, 0500-0599 session and orchestration, 0600-0699
the ledger. A database written by a newer TradeNova (a version this code does not know)
is refused with a message that says what to do, never silently used.

``TRADENOVA_FAULT_EXIT_AT_COMMIT=N`` (fault injection for the crash tests, never set in
production) ends the process with ``os._exit(137)`` just before its N-th commit, exactly
as a power cut or SIGKILL at that point would.
"""

from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd
from filelock import FileLock

from tradenova_dagster import config

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_MIGRATED: set[Path] = set()  # files whose schema this process has already checked
_MIGRATE_LOCK = threading.Lock()
# The connection held for each file on each thread (``hold``/``unit_of_work``), shared by
# every Store object of that file, so that parts built with their own Store still join.
_HELD = threading.local()
_CONNECTS: dict[Path, int] = {}  # connections opened per file in this process, by any Store


def migrations() -> list[tuple[int, str, str]]:
    """All migrations shipped with the package as (version, name, sql), in order."""
    folder = resources.files("tradenova_dagster.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    versions = [v for v, _, _ in found]
    duplicates = {v for v in versions if versions.count(v) > 1}
    if duplicates:
        raise RuntimeError(f"two migrations share a version number: {sorted(duplicates)}")
    return sorted(found)


class _Commits:
    """Counts commits in this process; the fault-injection hook reads it (module docstring)."""

    def __init__(self) -> None:
        self.count = 0
        raw = os.environ.get("TRADENOVA_FAULT_EXIT_AT_COMMIT", "").strip()
        self.exit_at = int(raw) if raw else None

    def before_commit(self) -> None:
        self.count += 1
        if self.exit_at is not None and self.count == self.exit_at:
            os._exit(137)


COMMITS = _Commits()


class Store:
    """A DuckDB database file with TradeNova's schema (see the module docstring).

    ``Store()`` uses ``$TRADENOVA_HOME/tradenova.duckdb``. ``connects`` counts the
    connections this process has opened to the file, through any Store object (the
    benchmark reports it per bar).
    """

    def __init__(self, db_path: str | Path | None = None, lock_timeout_s: float = 120.0):
        self.path = Path(db_path).expanduser().resolve() if db_path else config.db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout_s)
        with _MIGRATE_LOCK:
            if self.path not in _MIGRATED or not self.path.exists():
                self.migrate()
                _MIGRATED.add(self.path)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ------------------------------------------------------------------ connections

    @property
    def connects(self) -> int:
        return _CONNECTS.get(self.path, 0)

    def _state(self) -> dict:
        """This thread's held connection for this file: ``{"con": ..., "unit": bool}``."""
        if not hasattr(_HELD, "by_path"):
            _HELD.by_path = {}
        return _HELD.by_path.setdefault(self.path, {"con": None, "unit": False})

    @property
    def _held(self) -> duckdb.DuckDBPyConnection | None:
        return self._state()["con"]

    @property
    def is_held(self) -> bool:
        """Whether this thread holds a connection to the file (``hold``, ``unit_of_work``):
        what it reads may include its own uncommitted writes, which no file state shows."""
        return self._held is not None

    @property
    def in_unit_of_work(self) -> bool:
        """Whether this thread is inside ``unit_of_work``: its writes commit together when
        the unit ends, and no other process writes the file meanwhile."""
        return self._state()["unit"]

    @contextmanager
    def _open(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            con = duckdb.connect(str(self.path))
            _CONNECTS[self.path] = _CONNECTS.get(self.path, 0) + 1
            try:
                yield con
            finally:
                con.close()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection: the held one (inside ``hold``/``unit_of_work``), else a short one
        under the cross-process lock. The lock is re-entrant within a thread, so code that
        writes while reading does not deadlock itself."""
        if self._held is not None:
            yield self._held
            return
        with self._open() as con:
            yield con

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection inside BEGIN/COMMIT; any exception rolls everything back.

        Inside a unit of work it joins the unit's transaction: the unit commits it.
        """
        if self.in_unit_of_work:
            yield self._held
            return
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            COMMITS.before_commit()
            con.execute("COMMIT")

    @contextmanager
    def hold(self) -> Iterator["Store"]:
        """Keep one connection (and the file lock) for the duration of the block."""
        if self._held is not None:
            yield self
            return
        with self._open() as con:
            self._state()["con"] = con
            try:
                yield self
            finally:
                self._state()["con"] = None

    @contextmanager
    def unit_of_work(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction that every store use on this thread joins until the block ends."""
        if self.in_unit_of_work:
            yield self._held
            return
        with self.hold(), self.transaction() as con:
            self._state()["unit"] = True
            try:
                yield con
            finally:
                self._state()["unit"] = False

    # ------------------------------------------------------------------ short helpers

    def query_df(self, sql: str, params: list | tuple | None = None) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(sql, params or []).df()

    def query(self, sql: str, params: list | tuple | None = None) -> list[tuple]:
        with self.connect() as con:
            return con.execute(sql, params or []).fetchall()

    def execute(self, sql: str, params: list | tuple | None = None) -> None:
        with self.transaction() as con:
            con.execute(sql, params or [])

    # ------------------------------------------------------------------ schema

    def schema_version(self) -> int:
        rows = self.query("SELECT max(version) FROM schema_migrations")
        return int(rows[0][0] or 0)

    def migrate(self) -> list[str]:
        """Apply the migrations this database has not seen; returns their names.

        Each migration runs in its own transaction with its bookkeeping row, so a failed
        migration leaves the database at the previous version, never half-way. A database
        that records a version this code does not ship was written by a newer TradeNova:
        it is refused, untouched.
        """
        applied_now: list[str] = []
        shipped = migrations()
        known = {v for v, _, _ in shipped}
        with self._open() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = dict(con.execute("SELECT version, name FROM schema_migrations").fetchall())
            unknown = sorted(v for v in done if v not in known)
            if unknown:
                raise RuntimeError(
                    f"{self.path} has schema version(s) {unknown} ({', '.join(done[v] for v in unknown)}) that this "
                    f"TradeNova does not know (it ships up to {max(known)}): it was written by a newer version. "
                    "Upgrade TradeNova (pip install -e .), or point TRADENOVA_HOME at another folder."
                )
            for version, name, sql in shipped:
                if version in done:
                    continue
                con.execute("BEGIN TRANSACTION")
                try:
                    con.execute(sql)
                    con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
                except BaseException as exc:
                    con.execute("ROLLBACK")
                    raise RuntimeError(
                        f"migration {name} failed on {self.path}: {exc}. The database is unchanged at version "
                        f"{max(done, default=0)}; move the file aside to start a fresh one, or report this."
                    ) from exc
                con.execute("COMMIT")
                applied_now.append(name)
        return applied_now
