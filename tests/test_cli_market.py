"""End to end through the command line: the dagster CLI and `tradenova demo`."""

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from conftest import REPO_ROOT
from tradenova_dagster.ledger.accounts import ledger_store
from tradenova_dagster.store import Store

pytestmark = pytest.mark.slow


def _env(home: Path) -> dict:
    env = dict(os.environ)
    env.update(TRADENOVA_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    env.pop("TRADENOVA_DATA_SOURCE", None)
    return env


def test_dagster_cli_materialises_a_partition(tradenova_home):
    from tradenova_dagster import config

    config.dagster_home()  # the dagster.yaml TradeNova writes
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "tradenova_dagster.definitions",
         "--select", "market_bars", "--partition", "2026-11-20"],
        cwd=REPO_ROOT, env=_env(tradenova_home), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    store = Store(tradenova_home / "tradenova.duckdb")
    assert store.query("SELECT count(*) FROM market_bars WHERE day = '2026-11-20'") == [(390,)]
    with dg.DagsterInstance.from_config(str(tradenova_home / "dagster")) as instance:
        partitions = instance.get_materialized_partitions(dg.AssetKey("market_bars"))
    assert partitions == {"2026-11-20"}


def test_tradenova_demo_from_a_fresh_home(tmp_path):
    home = tmp_path / "fresh"
    proc = subprocess.run(
        ["tradenova", "demo", "--date", "2026-11-20"], cwd=tmp_path, env=_env(home),
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "TradeNova demo day 2026-11-20: OK" in proc.stdout, proc.stdout
    for step in ("data", "train", "warmup", "session", "flatten", "report"):
        assert any(line.split()[:2] == [step, "ok"] for line in proc.stdout.splitlines()), (step, proc.stdout)
    report = Path(proc.stdout.split("report:")[1].split()[0])
    assert report.exists() and report.stat().st_size > 0
    assert (home / "tradenova.duckdb").exists() and (home / "dagster" / "dagster.yaml").exists()
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        jobs = {r.job_name for r in instance.get_runs()}
    assert {"warmup_job", "trading_session_job", "flatten_job", "reporting_job"} <= jobs


def test_tradenova_demo_refuses_a_holiday(tmp_path):
    proc = subprocess.run(
        ["tradenova", "demo", "--date", "2026-11-26"], cwd=tmp_path, env=_env(tmp_path / "h"),
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "date 2026-11-26 is not a trading day" in proc.stderr


def test_tradenova_backtest_is_a_dagster_run_with_a_progress_bar(tradenova_home, store):
    from session_helpers import crafted_model

    record = crafted_model(store, bias=-0.8, promote=False)
    proc = subprocess.run(
        ["tradenova", "backtest", "--start", "2026-11-18", "--end", "2026-11-20", "--model", str(record.path),
         "--id", "cli-test"], env=_env(tradenova_home), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "backtest:cli-test (model)" in proc.stderr and "3/3" in proc.stderr  # tqdm's bar
    assert "backtest: 3 days 2026-11-18 .. 2026-11-20, data synthetic" in proc.stdout
    ledger = ledger_store("backtest:cli-test")  # a backtest records into its own account's ledger file
    trades = ledger.query("SELECT count(*), count(DISTINCT contract) FROM trades WHERE account = 'backtest:cli-test'")[0]
    assert trades[0] > 0 and re.search(rf"backtest:cli-test +model +{trades[0]} ", proc.stdout)
    with dg.DagsterInstance.from_config(str(tradenova_home / "dagster")) as instance:  # in the UI, as any run
        runs = instance.get_runs(dg.RunsFilter(tags={"tradenova/account": "backtest:cli-test"}))
        assert [(r.job_name, r.status, r.tags["tradenova/strategy"]) for r in runs] == \
            [("backtest_job", dg.DagsterRunStatus.SUCCESS, "model")]
        assert runs[0].tags["dagster/asset_partition_range_start"] == "2026-11-18"


def test_tradenova_status_shows_the_switch_the_model_and_the_day(tradenova_home, store, capsys):
    from session_helpers import crafted_model
    from tradenova_dagster.cli import main
    from tradenova_dagster.market.bars_store import save_day
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.risk import KillSwitch

    record = crafted_model(store)
    day = get_source("synthetic").bars("SPY", "2026-11-20")
    save_day(store, day["timestamp"].iloc[0].tz_convert("America/New_York").date(), {"SPY": day}, "synthetic")
    KillSwitch(store).turn_on("status test", set_by="test")
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"home:           {tradenova_home}" in out
    assert "status test" in out and f"promoted model: {record.model_id}" in out
    assert "last day stored 2026-11-20" in out


def test_tradenova_backtest_takes_its_data_source_from_the_environment(tradenova_home, store, shared_data,
                                                                       monkeypatch, capsys):
    """The README's TRADENOVA_DATA_SOURCE / TRADENOVA_DATA_DIR reach `tradenova backtest`, and
    the output names the data it ran on (it used to run synthetic data silently)."""
    from session_helpers import crafted_model
    from tradenova_dagster.cli import main

    record = crafted_model(store, promote=False)
    monkeypatch.setenv("TRADENOVA_DATA_SOURCE", "file")
    monkeypatch.setenv("TRADENOVA_DATA_DIR", str(shared_data))
    assert main(["backtest", "--start", "2023-01-03", "--end", "2023-01-03", "--model", str(record.path),
                 "--id", "env-source", "--no-progress"]) == 0
    assert f"data file ({shared_data.resolve()})" in capsys.readouterr().out


def test_tradenova_ui_finds_dagster_beside_its_own_python_without_a_path(monkeypatch):
    import sys
    from pathlib import Path

    from tradenova_dagster.commands import _dagster_executable

    monkeypatch.setenv("PATH", "")  # a virtual environment that was never activated
    assert Path(_dagster_executable()) == Path(sys.executable).parent / "dagster"


@pytest.mark.parametrize("argv, message", [
    (["--start", "2026-11-18", "--end", "2099-01-02"], "--end 2099-01-02 has not happened yet"),
    (["--start", "2026-11-20", "--end", "2026-11-18"], "--start 2026-11-20 is after --end 2026-11-18"),
    (["--start", "2026-11-31", "--end", "2026-12-01"], "--start"),
    (["--start", "2026-11-18", "--end", "2026-11-20"], "tradenova train --agent ppo --promote"),  # no model
])
def test_tradenova_backtest_refuses_bad_dates_and_a_missing_model_with_a_clear_error(argv, message, capsys):
    from tradenova_dagster.cli import main

    assert main(["backtest", *argv, "--no-progress"]) == 1
    assert message in capsys.readouterr().err
