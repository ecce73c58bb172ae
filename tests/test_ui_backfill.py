"""The web UI path: `dagster dev` serving TradeNova, a partition backfill launched over GraphQL."""

import os

import pytest

from conftest import REPO_ROOT
from dagster_dev import DagsterDev
from session_helpers import crafted_model
from tradenova_dagster import config
from tradenova_dagster.ledger.accounts import ledger_store
from tradenova_dagster.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture
def dagster_dev(tradenova_home, tmp_path):
    config.dagster_home()  # TradeNova's dagster.yaml in the test's DAGSTER_HOME
    env = dict(os.environ)
    server = DagsterDev(REPO_ROOT, env, tmp_path / "dagster_dev.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


DAYS = ["2026-11-18", "2026-11-19", "2026-11-20"]


def test_backfills_of_market_bars_and_of_a_backtest_over_three_trading_days(dagster_dev, tradenova_home):
    store = Store(tradenova_home / "tradenova.duckdb")
    backfill_id = dagster_dev.launch_backfill("market_bars", DAYS)
    assert dagster_dev.wait_backfill(backfill_id) in ("COMPLETED", "COMPLETED_SUCCESS")
    runs = dagster_dev.backfill_runs(backfill_id)
    assert len(runs) == 3 and {r["status"] for r in runs} == {"SUCCESS"}  # one run per partition
    counts = store.query("SELECT day::VARCHAR, count(*) FROM market_bars GROUP BY day ORDER BY day")
    assert counts == [(d, 390) for d in DAYS]

    # The backtest: backtest_day's single-run policy replays the whole range in one run.
    crafted_model(store, bias=0.8)
    backtest_id = dagster_dev.launch_backfill("backtest_day", DAYS)
    assert dagster_dev.wait_backfill(backtest_id) in ("COMPLETED", "COMPLETED_SUCCESS")
    runs = dagster_dev.backfill_runs(backtest_id)
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS"
    account = f"backtest:{backtest_id}"
    ledger = ledger_store(account)  # a backtest records into its own account's ledger file
    traded = ledger.query(
        "SELECT DISTINCT (exit_time AT TIME ZONE 'America/New_York')::DATE::VARCHAR FROM trades WHERE account = ? "
        "ORDER BY 1", [account])
    assert [d for (d,) in traded] == DAYS
    # Never mixed: nothing recorded as sim:default, neither in the backtest's file nor in sim:default's own.
    assert ledger.query("SELECT count(*) FROM trades WHERE account = 'sim:default'") == [(0,)]
    assert ledger_store("sim:default").query("SELECT count(*) FROM trades WHERE account = 'sim:default'") == [(0,)]
