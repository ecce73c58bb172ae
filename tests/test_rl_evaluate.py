"""The gate's evaluation: agent rows, account names, replays through the session loop."""

from __future__ import annotations

from datetime import date

import pytest


def test_agent_run_row_arithmetic():
    from tradenova_dagster.rl.evaluate import AgentRun

    row = AgentRun("momentum", "baseline:momentum", "backtest:x", [100.0, -50.0, 0.0, 30.0], [2, 1, 0, 1],
                   [2, 0, 0, 1], 0.004).row()
    assert row["mean_daily_pnl"] == pytest.approx(20.0) and row["iqm_daily_pnl"] == pytest.approx(15.0)  # (0 + 30) / 2
    assert row["win_rate"] == 0.75 and row["trades_per_day"] == 1.0 and row["max_drawdown"] == 0.004
    assert row["ci_low"] < row["mean_daily_pnl"] < row["ci_high"]


def test_replay_accounts_are_named_per_model_and_strategy():
    from tradenova_dagster.rl.evaluate import backtest_id

    assert backtest_id("ppo_SPY_20261207", "always-call") == "eval-ppo_SPY_20261207-always-call"
    assert backtest_id("a b/c", "orb") == "eval-a_b_c-orb"  # only what a backtest id accepts


def test_replay_evaluation_refuses_trained_days_and_no_days(store):
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.rl.evaluate import evaluate_replay

    source = get_source("synthetic")
    with pytest.raises(ValueError, match="eval_days: 1 evaluation days were trained on .first 2026-11-10"):
        evaluate_replay(store, source, ["2026-11-09", "2026-11-10"], object(), train_days=[date(2026, 11, 10)])
    with pytest.raises(ValueError, match="eval_days: an evaluation needs at least one day"):
        evaluate_replay(store, source, [], object())
    with pytest.raises(ValueError, match="eval_days"):
        evaluate_replay(store, source, ["2026-11-08"], object())  # a Sunday
