"""The DuckDB store: migrations, transactions, and writers in two real processes."""

import multiprocessing as mp

import duckdb
import pytest

from tradenova_dagster.metrics.store import Store, migrations


def test_every_migration_is_applied_once_and_recorded(store):
    versions = [v for v, _, _ in migrations()]
    assert versions == sorted(set(versions)) and versions[0] == 1
    recorded = [row[0] for row in store.query("SELECT version FROM schema_migrations ORDER BY version")]
    assert recorded == versions
    assert store.migrate() == []  # a second store on the same file applies nothing
    assert Store(store.path).schema_version() == versions[-1]


def test_tables_of_the_market_migration_exist(store):
    tables = {row[0] for row in store.query("SELECT table_name FROM information_schema.tables")}
    assert {"market_bars", "market_bars_quality", "market_context", "schema_migrations"} <= tables


def test_a_failed_transaction_leaves_nothing_behind(store):
    store.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    with pytest.raises(duckdb.ConstraintException):
        with store.transaction() as con:
            con.execute("INSERT INTO t VALUES (1)")
            con.execute("INSERT INTO t VALUES (1)")  # duplicate key: the whole transaction rolls back
    assert store.query("SELECT count(*) FROM t") == [(0,)]


def test_no_connection_is_kept_between_uses(store):
    store.query("SELECT 1")
    # Another connection (as another process would open) can take the file right away.
    con = duckdb.connect(str(store.path))
    con.close()


def _writer(db_path: str, worker: int, rows: int, queue) -> None:
    try:
        store = Store(db_path)
        for i in range(rows):
            with store.transaction() as con:
                con.execute("INSERT INTO writes VALUES (?, ?)", [worker, i])
            store.query("SELECT count(*) FROM writes")  # readers interleave with writers too
        queue.put((worker, "ok"))
    except BaseException as exc:  # report, so the parent can show what went wrong
        queue.put((worker, repr(exc)))


def test_two_processes_writing_at_once_lose_no_row(tmp_path):
    db = tmp_path / "shared.duckdb"
    Store(db).execute("CREATE TABLE writes (worker INTEGER, i INTEGER, PRIMARY KEY (worker, i))")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    rows = 60
    workers = [ctx.Process(target=_writer, args=(str(db), w, rows, queue)) for w in (1, 2)]
    for p in workers:
        p.start()
    outcomes = dict(queue.get(timeout=180) for _ in workers)
    for p in workers:
        p.join(timeout=60)
    assert outcomes == {1: "ok", 2: "ok"}
    counts = dict(Store(db).query("SELECT worker, count(DISTINCT i) FROM writes GROUP BY worker"))
    assert counts == {1: rows, 2: rows}
