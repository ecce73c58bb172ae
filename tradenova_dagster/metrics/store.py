"""The DuckDB store: one file, short connections, one writer at a time across processes.

DuckDB lets a single process open a database file for writing, and a process that holds
it open blocks every other process, readers included. Dagster runs each step in its own
process, and the warmup, session, monitor and flatten runs overlap. So the store never
keeps a connection: every use opens one under a file lock (``<db>.lock``), does its work
and closes it (DESIGN.md §5). Reads take the same lock, because a reader in another
process would otherwise fail while a writer holds the file.

The schema is owned here as versioned migrations: ``migrations/NNNN_name.sql`` files,
applied once each in order of their number and recorded in ``schema_migrations``. The
number ranges are split by area so that parts of the system add tables independently:
0001-0099 market data, 0100-0199 broker, 0200-0299 risk, 0300-0399 metrics and reports,
0400-0499 models, 0500-0599 session and orchestration.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd
from filelock import FileLock

from tradenova_dagster import config

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """All migrations shipped with the package as (version, name, sql), in order."""
    folder = resources.files("tradenova_dagster.metrics") / "migrations"
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


class Store:
    """A DuckDB database file with TradeNova's schema.

    ``Store()`` uses ``$TRADENOVA_HOME/tradenova.duckdb``. Use ``connect()`` for reads and
    ``transaction()`` for writes that must land whole (all or nothing).
    """

    def __init__(self, db_path: str | Path | None = None, lock_timeout_s: float = 120.0):
        self.path = Path(db_path).expanduser().resolve() if db_path else config.db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout_s)
        self.migrate()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection, held under the cross-process lock.

        The lock is re-entrant within a thread, so code that writes while reading (or a
        helper called inside a transaction) does not deadlock itself.
        """
        with self._lock:
            con = duckdb.connect(str(self.path))
            try:
                yield con
            finally:
                con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection inside BEGIN/COMMIT; any exception rolls everything back."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def query_df(self, sql: str, params: list | tuple | None = None) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(sql, params or []).df()

    def query(self, sql: str, params: list | tuple | None = None) -> list[tuple]:
        with self.connect() as con:
            return con.execute(sql, params or []).fetchall()

    def execute(self, sql: str, params: list | tuple | None = None) -> None:
        with self.transaction() as con:
            con.execute(sql, params or [])

    def schema_version(self) -> int:
        rows = self.query("SELECT max(version) FROM schema_migrations")
        return int(rows[0][0] or 0)

    def migrate(self) -> list[str]:
        """Apply the migrations this database has not seen; returns their names.

        Each migration runs in its own transaction with its bookkeeping row, so a failed
        migration leaves the database at the previous version, never half-way.
        """
        applied_now: list[str] = []
        with self.connect() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
            for version, name, sql in migrations():
                if version in done:
                    continue
                con.execute("BEGIN TRANSACTION")
                try:
                    con.execute(sql)
                    con.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name]
                    )
                except BaseException as exc:
                    con.execute("ROLLBACK")
                    raise RuntimeError(f"migration {name} failed on {self.path}: {exc}") from exc
                con.execute("COMMIT")
                applied_now.append(name)
        return applied_now
