"""The daily_report asset materialised through Dagster on a real DuckDB file: files exist,
the HTML and the materialisation metadata carry the numbers of calculate_metrics."""

from __future__ import annotations

import re

import dagster as dg
import pandas as pd

from assets.reports import daily_report
from resources.store import StoreResource
from tradenova_dagster.ledger.accounts import ledger_store
from tradenova_dagster.metrics import MetricsTracker
from tradenova_dagster.store import Store

NY = "America/New_York"
DAY = "2024-03-08"



def metadata_of(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.asset_materializations_for_node("daily_report")
    return {key: value.value for key, value in event.metadata.items()}


def html_numbers(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as handle:
        return dict(re.findall(r'data-metric="([^"]+)" data-value="([^"]*)"', handle.read()))


def test_daily_report_asset_for_a_partition(tradenova_home):
    db_path = tradenova_home / "tradenova.duckdb"  # the shared database; trades live in the account's ledger
    tracker = MetricsTracker(store=ledger_store("sim:default"))
    with tracker.batch():
        for i, day in enumerate(pd.bdate_range("2024-02-26", DAY)):
            for j, (pnl, agent) in enumerate(((120.0 - 40 * i, "ppo"), (-35.0 + 11 * i, "grpo"))):
                ts = pd.Timestamp(f"{day.date()} 11:00", tz=NY) + pd.Timedelta(hours=j)
                tracker.record_trade("SPY", 2.0, 2.5, 1, "long", pnl, agent, exit_time=ts)

    result = dg.materialize(
        [daily_report], partition_key=DAY,
        resources={"store": StoreResource(db_path=str(db_path))},
    )
    assert result.success
    meta = metadata_of(result)
    window = tracker.calculate_metrics(lookback_days=30, as_of=DAY)
    day = tracker.calculate_metrics(lookback_days=1, as_of=DAY)
    for key in ("total_pnl", "num_trades", "win_rate", "profit_factor", "sharpe_ratio",
                "sortino_ratio", "max_drawdown"):
        assert meta[f"window.{key}"] == window[key], key
    assert meta["day.total_pnl"] == day["total_pnl"] and meta["day.num_trades"] == 2
    assert window["sharpe_ratio"] is not None and meta["no_trades"] is False

    # The window's tearsheet compares with SPY bought at the open of the account's first day
    # in the window (not the window's first day, before it traded), from the configured source.
    assert meta["benchmark"].startswith("SPY buy and hold from the open of 2024-02-26 to the close of 2024-03-08, "
                                        "synthetic source")
    html_path = meta["html_report"]
    assert html_path == str(tradenova_home / "reports" / f"{DAY}.html")
    numbers = html_numbers(html_path)
    assert float(numbers["window.sharpe_ratio"]) == window["sharpe_ratio"]
    assert float(numbers["window.total_pnl"]) == window["total_pnl"]
    assert float(numbers["day.total_pnl"]) == day["total_pnl"]
    for name in ("equity.png", "trade_pnl.png", "agent_pnl.png"):
        png = tradenova_home / "reports" / DAY / name
        assert png.stat().st_size > 5_000
    assert meta["equity_chart"].startswith("![equity and drawdown](data:image/png;base64,iVBOR")
    assert "| ppo" in meta["agents"] and "grpo" in meta["agents"]
    assert meta["trades"].count("\n") >= 3  # header, rule, two trades
    assert "No risk events" in meta["risk_events"]
    assert ledger_store("sim:default").query("SELECT account, day::VARCHAR FROM daily_reports") == [
        ("sim:default", DAY)]
    assert Store(db_path).query("SELECT count(*) FROM daily_reports") == [(0,)]


def test_daily_report_asset_for_a_backtest_account_on_a_day_without_trades(tradenova_home):
    db_path = tradenova_home / "tradenova.duckdb"
    result = dg.materialize(
        [daily_report], partition_key=DAY,
        resources={"store": StoreResource(db_path=str(db_path))},
        run_config={"ops": {"daily_report": {"config": {"account": "backtest:bt-1",
                                                         "initial_capital": 25_000.0}}}},
    )
    assert result.success
    meta = metadata_of(result)
    assert meta["no_trades"] is True and meta["account"] == "backtest:bt-1"
    assert meta["day.num_trades"] == 0 and meta["window.sharpe_ratio"] is None
    assert meta["window.end_equity"] == 25_000.0
    assert meta["html_report"] == str(tradenova_home / "reports" / "backtest_bt-1" / f"{DAY}.html")
    assert f"No trades on {DAY}" in open(meta["html_report"], encoding="utf-8").read()
    assert "No trades" in meta["trades"]


def test_daily_report_is_in_the_definitions():
    from tradenova_dagster.definitions import defs

    spec = defs.resolve_assets_def("daily_report")
    assert spec.partitions_def is not None
    assert "store" in spec.required_resource_keys
