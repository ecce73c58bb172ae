"""The web UI path: `dagster dev` serving TradeNova, a partition backfill launched over GraphQL."""

import os

import pytest

from conftest import REPO_ROOT
from dagster_dev import DagsterDev
from tradenova_dagster import config
from tradenova_dagster.metrics.store import Store

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


def test_backfill_of_market_bars_over_three_trading_days(dagster_dev, tradenova_home):
    days = ["2026-11-18", "2026-11-19", "2026-11-20"]
    backfill_id = dagster_dev.launch_backfill("market_bars", days)
    assert dagster_dev.wait_backfill(backfill_id) in ("COMPLETED", "COMPLETED_SUCCESS")
    runs = dagster_dev.backfill_runs(backfill_id)
    assert len(runs) == 3 and {r["status"] for r in runs} == {"SUCCESS"}
    counts = Store(tradenova_home / "tradenova.duckdb").query(
        "SELECT day::VARCHAR, count(*) FROM market_bars GROUP BY day ORDER BY day")
    assert counts == [(d, 390) for d in days]
