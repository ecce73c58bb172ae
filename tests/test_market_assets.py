"""market_bars and market_context through real Dagster materialisations and a real DuckDB."""

import json
from datetime import datetime, timezone

import dagster as dg
import pytest

from assets.market import market_bars, market_context
from assets.partitions import partition_day, trading_day_partitions
from resources.market_data import MarketDataResource
from resources.store import StoreResource
from tradenova_dagster.market.bars_store import load_stored_bars, quality_verdict
from tradenova_dagster.market.context import load_context


@pytest.fixture
def resources(store, monkeypatch):
    monkeypatch.delenv("TRADENOVA_DATA_SOURCE", raising=False)  # MarketDataResource() defaults from it
    return {"store": StoreResource(db_path=str(store.path)), "market_data": MarketDataResource()}


def _bar_count(store, day):
    return store.query("SELECT count(*) FROM market_bars WHERE day = ?", [day])[0][0]


def test_partitions_are_trading_days_only():
    keys = set(trading_day_partitions.get_partition_keys(current_time=datetime(2026, 12, 31, tzinfo=timezone.utc)))
    assert {"2025-11-26", "2025-11-28", "2026-11-20", "2026-11-25", "2026-11-27", "2026-12-24"} <= keys
    assert not {"2025-11-27", "2026-11-21", "2026-11-22", "2025-12-25", "2026-01-19"} & keys
    with pytest.raises(ValueError, match="not a trading day"):
        partition_day("2026-11-22")


def test_materialising_a_day_stores_bars_checks_and_context(store, resources):
    result = dg.materialize([market_bars, market_context], partition_key="2026-11-20", resources=resources)
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {name: True for name in checks} and len(checks) == 5
    assert _bar_count(store, "2026-11-20") == 390
    assert quality_verdict(store, "SPY", partition_day("2026-11-20"), "synthetic") == (True, "[]")
    ctx = load_context(store, "2026-11-20", "synthetic")
    assert 9 <= ctx.vix <= 80 and 0 <= ctx.iv_rank <= 100 and 0 < ctx.realized_vol < 1
    meta = result.asset_materializations_for_node("market_bars")[0].metadata
    assert meta["rows"].value == 390 and meta["source"].value == "synthetic"


def test_rematerialising_replaces_and_never_duplicates(store, resources):
    for _ in range(2):
        assert dg.materialize([market_bars], partition_key="2025-11-28", resources=resources).success
    assert _bar_count(store, "2025-11-28") == 210  # an early close, stored once


def test_multiple_symbols_and_the_stored_bars_round_trip(store, resources):
    run_config = {"ops": {"market_bars": {"config": {"symbols": ["SPY", "QQQ"]}}}}
    assert dg.materialize([market_bars], partition_key="2026-11-19", resources=resources, run_config=run_config).success
    stored = load_stored_bars(store, "QQQ", partition_day("2026-11-19"), "synthetic")
    assert len(stored) == 390 and str(stored["timestamp"].dt.tz) == "UTC"


def _file_resources(store, folder):
    return {"store": StoreResource(db_path=str(store.path)),
            "market_data": MarketDataResource(source="file", data_dir=str(folder))}


def test_a_failed_check_blocks_downstream_assets_and_marks_the_day(store, tmp_path):
    rows = ["datetime,open,high,low,close,volume"]
    rows += [f"2026-11-20 {9 + (30 + m) // 60:02d}:{(30 + m) % 60:02d}:00,10,11,9,10.5,100" for m in range(390)]
    rows[100] = rows[100].replace("10.5,100", ",100")  # one NaN close
    (tmp_path / "abc_1min.csv").write_text("\n".join(rows) + "\n")

    @dg.asset(deps=[market_bars], partitions_def=trading_day_partitions)
    def consumer() -> None:
        raise AssertionError("must not run on bad bars")

    result = dg.materialize(
        [market_bars, consumer], partition_key="2026-11-20", resources=_file_resources(store, tmp_path),
        run_config={"ops": {"market_bars": {"config": {"symbols": ["ABC"]}}}}, raise_on_error=False,
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["no_nan"].passed and checks["no_nan"].severity == dg.AssetCheckSeverity.ERROR
    assert checks["bar_count_matches_session"].passed
    assert not result.success
    assert result.asset_materializations_for_node("consumer") == []
    passed, failures = quality_verdict(store, "ABC", partition_day("2026-11-20"), "file")
    assert not passed and json.loads(failures)[0]["check"] == "no_nan"


def test_a_few_missing_minutes_warn_without_blocking(store, tmp_path):
    rows = ["datetime,open,high,low,close,volume"]
    rows += [f"2026-11-20 {9 + (30 + m) // 60:02d}:{(30 + m) % 60:02d}:00,10,11,9,10.5,100" for m in range(390)]
    del rows[200:204]  # 4 of 390 minutes missing, like the real 2023-06-05
    (tmp_path / "abc_1min.csv").write_text("\n".join(rows) + "\n")
    result = dg.materialize([market_bars], partition_key="2026-11-20", resources=_file_resources(store, tmp_path),
                            run_config={"ops": {"market_bars": {"config": {"symbols": ["ABC"]}}}})
    count = next(e for e in result.get_asset_check_evaluations() if e.check_name == "bar_count_matches_session")
    assert result.success and not count.passed and count.severity == dg.AssetCheckSeverity.WARN
    assert quality_verdict(store, "ABC", partition_day("2026-11-20"), "file")[0] is True


def test_one_unknown_symbol_writes_nothing(store, tmp_path):
    (tmp_path / "abc_1min.csv").write_text("datetime,open,high,low,close,volume\n2026-11-20 09:30:00,10,11,9,10.5,100\n")
    result = dg.materialize(
        [market_bars], partition_key="2026-11-20", resources=_file_resources(store, tmp_path),
        run_config={"ops": {"market_bars": {"config": {"symbols": ["ABC", "XYZ"]}}}}, raise_on_error=False,
    )
    assert not result.success
    failure = result.failure_data_for_node("market_bars")
    assert "symbol 'XYZ': no bar file" in str(failure.error)
    assert _bar_count(store, "2026-11-20") == 0


def test_a_non_trading_day_is_not_a_partition(resources):
    with pytest.raises(dg.DagsterUnknownPartitionError, match="2025-11-27"):
        dg.materialize([market_bars], partition_key="2025-11-27", resources=resources)  # Thanksgiving


def test_bad_resource_config_is_refused_with_field_and_value(monkeypatch):
    for name in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "APCA_API_KEY_ID", "APCA_API_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)  # the resource reads keys from the environment
    with pytest.raises(Exception, match="market_data.source: unknown value 'yahoo'"):
        MarketDataResource(source="yahoo")
    with pytest.raises(ValueError, match="ALPACA_API_KEY and ALPACA_SECRET_KEY"):
        MarketDataResource(source="alpaca").get_source()
