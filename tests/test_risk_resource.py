"""RiskResource: every threshold configurable, bad values refused at load, wired into defs."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest

from resources.risk import RiskResource
from tradenova_dagster.risk import AdvancedRiskManager, ProfitManager


def test_defaults_are_the_seed_numbers():
    r = RiskResource()
    lim = r.limits()
    assert (lim.daily_loss_limit_pct, lim.max_drawdown_pct, lim.max_loss_streak) == (0.02, 0.10, 3)
    assert (lim.max_iv_rank, lim.max_vix, lim.max_spread_pct) == (95.0, 32.0, 0.05)
    ladder = r.ladder()
    assert [(lv.name, lv.gain_pct, lv.sell_fraction) for lv in ladder.levels] == [
        ("TP1", 0.4, 0.5), ("TP2", 0.6, 0.2), ("TP3", 1.0, 0.1), ("TP4", 1.5, 0.1), ("TP5", 2.0, 1.0)]
    assert (ladder.stop_loss_pct, ladder.trail_arm_pct, ladder.trail_floor_pct) == (0.15, 1.5, 1.0)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("daily_loss_limit_pct", -0.02, "daily_loss_limit_pct must be a fraction in (0, 1], e.g. 0.02 for 2%, got -0.02"),
        ("daily_loss_limit_pct", 2.0, "daily_loss_limit_pct must be a fraction in (0, 1]"),
        ("max_drawdown_pct", 1.5, "max_drawdown_pct must be a fraction in (0, 1]"),
        ("max_spread_pct", 0.0, "max_spread_pct must be a fraction in (0, 1]"),
        ("max_loss_streak", 0, "max_loss_streak must be a whole number >= 1, got 0"),
        ("max_open_positions", -3, "max_open_positions must be a whole number >= 1"),
        ("max_vix", -1.0, "max_vix must be > 0, got -1.0"),
        ("max_iv_rank", 150.0, "max_iv_rank must be in (0, 100]"),
        ("stop_loss_pct", 1.2, "stop_loss_pct must be in (0, 1)"),
        ("trail_pct", -0.2, "trail_pct must be in (0, 1)"),
        ("take_profit_gains", [0.4, 0.6, 0.5, 1.5, 2.0], "take-profit gains must be strictly increasing"),
        ("take_profit_fractions", [0.5, 0.2, 0.1, 0.1], "must have the same length"),
        ("take_profit_fractions", [0.5, 0.2, 0.1, 0.1, 1.2], "TP5.sell_fraction must be in (0, 1], got 1.2"),
        ("initial_balance", 0.0, "initial_balance must be > 0"),
        ("flush_interval_s", -1.0, "flush_interval_s must be >= 0 seconds"),
    ],
)
def test_invalid_values_are_refused_at_load(field, value, message):
    with pytest.raises(Exception) as info:
        RiskResource(**{field: value})
    assert "invalid risk resource config" in str(info.value)
    assert message in str(info.value)


def test_invalid_run_config_fails_the_run_before_any_op(store):
    @dg.op
    def uses_risk(risk: RiskResource) -> float:
        return risk.limits().max_vix

    @dg.job
    def job():
        uses_risk()

    result = job.execute_in_process(
        resources={"risk": RiskResource.configure_at_launch()},
        run_config={"resources": {"risk": {"config": {"max_vix": 40.0, "db_path": str(store.path)}}}},
    )
    assert result.output_for_node("uses_risk") == 40.0
    with pytest.raises(dg.DagsterResourceFunctionError) as info:
        job.execute_in_process(
            resources={"risk": RiskResource.configure_at_launch()},
            run_config={"resources": {"risk": {"config": {"max_vix": -40.0}}}},
        )
    assert "max_vix must be > 0, got -40.0" in str(info.value.__cause__)


def test_builders_share_state_through_the_store(store):
    risk = RiskResource(db_path=str(store.path), max_vix=20.0, take_profit_fractions=[1.0, 0.2, 0.1, 0.1, 1.0])
    rm = risk.build_manager("sim:default", run_id="run-9")
    assert isinstance(rm, AdvancedRiskManager)
    assert not rm.check_trade_allowed("SPY", 1, 100.0, "buy", vix=21)[0]
    rm.start_day(date(2025, 3, 3), 100000)
    assert risk.build_manager("sim:default").state.day == date(2025, 3, 3)
    pm = risk.build_profit_manager("sim:default")
    assert isinstance(pm, ProfitManager)
    pm.add_position("SPY", 10, 100.0)
    assert pm.check_exits("SPY", 140.0)["qty"] == 10  # TP1 configured to sell everything
    risk.kill_switch().turn_on("resource test")
    assert rm.risk_level.value == "HALTED"


def test_definitions_expose_the_resource_and_the_job():
    from tradenova_dagster.definitions import defs

    assert isinstance(defs.resources["risk"], RiskResource)
    job = defs.get_job_def("kill_switch_job")
    assert job.name == "kill_switch_job"
