"""The DuckDB store: migrations, transactions, and writers in two real processes."""

import multiprocessing as mp

import duckdb
import pytest

from tradenova_dagster.store import Store, migrations


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


def _open_for_writing(db_path: str) -> str:
    """Run in another process: can it take the file for writing right now?"""
    import subprocess
    import sys

    code = f"import duckdb; duckdb.connect({db_path!r}).execute('CREATE TABLE IF NOT EXISTS probe (x INT)')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return "ok" if done.returncode == 0 else done.stderr.strip().splitlines()[-1]


def test_no_connection_is_kept_between_uses(store):
    store.query("SELECT 1")
    assert _open_for_writing(str(store.path)) == "ok"  # another process takes the file right away
    with store.hold():  # ... but not while a connection is held (this is what the check tells apart)
        assert "lock" in _open_for_writing(str(store.path)).lower()


def test_a_unit_of_work_commits_every_part_together_or_nothing(store):
    store.execute("CREATE TABLE a (x INTEGER PRIMARY KEY)")
    store.execute("CREATE TABLE b (x INTEGER PRIMARY KEY)")
    with pytest.raises(RuntimeError, match="crash mid-bar"):
        with store.unit_of_work():
            store.execute("INSERT INTO a VALUES (1)")  # one part commits "its" transaction ...
            with store.transaction() as con:  # ... another part too ...
                con.execute("INSERT INTO b VALUES (1)")
            raise RuntimeError("crash mid-bar")  # ... and the step fails before it ends
    assert store.query("SELECT count(*) FROM a") == [(0,)]
    assert store.query("SELECT count(*) FROM b") == [(0,)]
    with store.unit_of_work():
        store.execute("INSERT INTO a VALUES (2)")
        store.execute("INSERT INTO b VALUES (2)")
    assert store.query("SELECT x FROM a UNION ALL SELECT x FROM b") == [(2,), (2,)]


def test_units_of_work_inside_hold_connect_once(tmp_path):
    store = Store(tmp_path / "held.duckdb")
    store.execute("CREATE TABLE t (x INTEGER)")
    before = store.connects
    with store.hold():
        for i in range(20):
            with store.unit_of_work():
                store.execute("INSERT INTO t VALUES (?)", [i])
                store.query("SELECT count(*) FROM t")
    assert store.connects - before == 1
    assert store.query("SELECT count(*) FROM t") == [(20,)]


def test_a_database_from_a_newer_version_is_refused_untouched(tmp_path):
    db = tmp_path / "newer.duckdb"
    Store(db).execute("INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_from_the_future.sql')")
    from tradenova_dagster.store import database

    database._MIGRATED.discard(db.resolve())  # as a new process would see it
    with pytest.raises(RuntimeError, match=r"9999.*newer version.*Upgrade TradeNova"):
        Store(db)


def test_the_fault_hook_exits_before_the_nth_commit(tmp_path):
    import subprocess
    import sys

    db = tmp_path / "fault.duckdb"
    Store(db).execute("CREATE TABLE t (x INTEGER)")
    code = (
        "from tradenova_dagster.store import Store\n"
        f"s = Store({str(db)!r})\n"
        "for i in range(5):\n"
        "    s.execute('INSERT INTO t VALUES (?)', [i])\n"
    )
    env = {**__import__("os").environ, "TRADENOVA_FAULT_EXIT_AT_COMMIT": "3"}
    done = subprocess.run([sys.executable, "-c", code], env=env, timeout=120)
    assert done.returncode == 137
    assert Store(db).query("SELECT x FROM t ORDER BY x") == [(0,), (1,)]  # the third never committed


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
