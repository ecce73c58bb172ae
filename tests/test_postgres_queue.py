"""The production profile on a real PostgreSQL: the daemon's run queue holds its limits.

`tradenova init --profile production --max-backtests 2` writes DAGSTER_HOME's dagster.yaml;
`dagster dev` (web server, daemon, code server) runs on it against a throwaway PostgreSQL
server; three backtests (backfills of backtest_day, each a single run: one over two days,
two over one day) are launched at once over GraphQL. Every run must go through the queue
and succeed, never more than two may run at once (from the start and end times in
PostgreSQL's run storage), and each backtest's results must equal the same backtest run on
the SQLite default. Then two backfills of the same sweep partition, launched at once on the
quiet queue, must run one after the other (the per-partition limit), both succeeding.
"""

import os
import subprocess
import sys
import time

import dagster as dg
import pytest

import postgres_helpers
from conftest import REPO_ROOT
from dagster_dev import DagsterDev
from session_helpers import crafted_model
from tradenova_dagster.deploy import profile
from tradenova_dagster.ledger.accounts import ledger_store
from tradenova_dagster.store import Store

pytestmark = pytest.mark.slow

postgres_server = postgres_helpers.postgres_server

MAX_BACKTESTS = 2
BACKTESTS = [("2026-11-16", "2026-11-17"), ("2026-11-18", "2026-11-18"), ("2026-11-19", "2026-11-19")]
DAY_KEYS = ("day_trades", "day_entries", "day_refused", "day_pnl", "flat_at_close", "stopped")
SUMMARY_KEYS = ("days", "trades", "pnl", "all_flat_at_close", "sharpe_ratio", "max_drawdown", "win_rate", "days_table")
TRADE_COLUMNS = ("day, symbol, contract, side, qty, entry_time, exit_time, entry_price, exit_price, pnl, commission, "
                 "exit_reason")


def _results(instance: dg.DagsterInstance, run_id: str) -> tuple[list, dict]:
    """What backtest_day recorded in the run's materializations: each day's numbers (one per
    day), and the run's summary on its last day (the account name aside)."""
    found = [event.asset_materialization
             for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)]
    days = [(m.partition, {key: m.metadata[key].value for key in DAY_KEYS}) for m in found]
    return days, {key: found[-1].metadata[key].value for key in SUMMARY_KEYS}


def _trades(account: str) -> list[tuple]:
    return ledger_store(account).query(f"SELECT {TRADE_COLUMNS} FROM trades WHERE account = ? ORDER BY exit_time, "
                                       "contract", [account])


def _max_concurrent(records) -> int:
    """The most runs in progress at one instant, from their start and end times."""
    edges = sorted([(r.start_time, 1) for r in records] + [(r.end_time, -1) for r in records],
                   key=lambda edge: (edge[0], edge[1]))  # an end before a start at the same instant
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def _wait_for_runs(server: DagsterDev, backfill_ids, timeout: float = 600) -> None:
    """Until every backfill's run has ended (its runs, not the backfill's own status, which
    the daemon updates only on its next pass, up to 30 s later)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = [server.backfill_runs(backfill_id) for backfill_id in backfill_ids]
        if all(r and all(run["status"] in ("SUCCESS", "FAILURE", "CANCELED") for run in r) for r in runs):
            return
        time.sleep(2)
    raise TimeoutError(f"backtest runs still going after {timeout} s: {runs}")


def _sqlite_baseline(tmp_path) -> dict:
    """Each backtest on the SQLite default, in this process, under an id of its own."""
    from assets.backtest import backtest_day
    from tradenova_dagster.definitions import defs

    home = tmp_path / "sqlite_dagster_home"
    profile.write("local", home=home)
    results = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        for first, last in BACKTESTS:
            result = dg.materialize(
                [backtest_day], instance=instance, resources=defs.resources,
                tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
                run_config={"ops": {"backtest_day": {"config": {"backtest_id": f"sqlite-{first}"}}}})
            assert result.success
            results[first] = (_results(instance, result.run_id), _trades(f"backtest:sqlite-{first}"))
    return results


def test_backtests_queue_within_the_backtest_limit_on_postgres_and_match_sqlite(postgres_server, tradenova_home,
                                                                                 tmp_path, monkeypatch):
    for name, value in postgres_server.create_database("dagster_queue").items():
        monkeypatch.setenv(name, value)
    init = subprocess.run([sys.executable, "-m", "tradenova_dagster.cli", "init", "--profile", "production",
                           "--max-backtests", str(MAX_BACKTESTS)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    crafted_model(Store(tradenova_home / "tradenova.duckdb"), bias=0.8)

    server = DagsterDev(REPO_ROOT, dict(os.environ), tmp_path / "dagster_dev.log")
    try:
        baseline = _sqlite_baseline(tmp_path)  # while dagster dev starts
        assert sum(len(trades) for _, trades in baseline.values()) > 0  # something to compare
        server.wait_ready()
        backfills = {first: server.launch_backfill(
            "backtest_day", sorted({first, last})) for first, last in BACKTESTS}
        _wait_for_runs(server, backfills.values())
        # Then, on a quiet queue (room for MAX_BACKTESTS backfill runs), the same sweep
        # partition twice at once: only the per-partition limit can keep them apart.
        key = _plan_one_run_sweep()
        twice = [server.launch_backfill("sweep_result", [key]) for _ in range(2)]
        _wait_for_runs(server, twice)
    finally:
        server.stop()

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        records = []
        for first, backfill_id in backfills.items():
            [record] = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            run = record.dagster_run
            assert run.status == dg.DagsterRunStatus.SUCCESS
            assert instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)  # through the queue
            records.append(record)
            expected_results, expected_trades = baseline[first]
            assert _results(instance, run.run_id) == expected_results
            assert _trades(f"backtest:{backfill_id}") == expected_trades
    # The limit held, and it was the limit (not a lack of work) that kept the rest waiting.
    assert _max_concurrent(records) == MAX_BACKTESTS

    with dg.DagsterInstance.get() as instance:
        sweep_runs = [instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": b}))[0] for b in twice]
    for record in sweep_runs:
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        assert record.dagster_run.tags["dagster/partition"] == key
    first, second = sorted(sweep_runs, key=lambda r: r.start_time)
    assert first.end_time <= second.start_time  # the second waited in the queue: never both writing


def _plan_one_run_sweep() -> str:
    """A sweep of one run (orb, seed 0, one fold of one evaluation day), planned on the
    PostgreSQL instance as the UI would: its one sweep_result partition key."""
    from assets.sweeps import sweep_plan, sweep_partitions
    from resources.market_data import MarketDataResource

    run_config = {"ops": {"sweep_plan": {"config": {
        "sweep_id": "same-partition", "strategies": ["orb"], "seeds": [0], "start": "2026-11-17", "end": "2026-11-19",
        "n_folds": 1, "train_days": 2, "eval_days": 1}}}}
    with dg.DagsterInstance.get() as instance:
        assert dg.materialize([sweep_plan], instance=instance, resources={"market_data": MarketDataResource()},
                              run_config=run_config).success
        [key] = instance.get_dynamic_partitions(sweep_partitions.name)
    return key
