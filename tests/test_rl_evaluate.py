"""Evaluation: baselines behave as named, metrics are right, out-of-sample is enforced."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from rl_helpers import planted_days
from tradenova_dagster.rl.evaluate import (
    AlwaysCallPolicy,
    Evaluation,
    FlatPolicy,
    MomentumPolicy,
    PolicyResult,
    RandomPolicy,
    evaluate_signal,
    run_policy,
)


@pytest.fixture(scope="module")
def days():
    return planted_days(3, seed=41)


def test_flat_earns_nothing_and_always_call_trades_once_a_day(days):
    flat = run_policy(FlatPolicy(), days)
    assert flat.daily_pnl == [0.0, 0.0, 0.0] and flat.pct_flat == 100.0 and flat.trades_per_day == 0
    call = run_policy(AlwaysCallPolicy(), days)
    assert call.trades == [1, 1, 1] and call.pct_flat == 0.0 and call.switch_rate == pytest.approx(1 / 379)


def test_random_baseline_switches_at_the_requested_rate(days):
    result = run_policy(RandomPolicy(0.05, seed=3), days)
    assert result.switch_rate == pytest.approx(0.05, abs=0.015)
    again = run_policy(RandomPolicy(0.05, seed=3), days)
    assert again.daily_pnl == result.daily_pnl  # seeded
    with pytest.raises(ValueError, match="switch_rate"):
        RandomPolicy(1.5, seed=0)


def test_momentum_trades_the_planted_trend_profitably(days):
    momentum = run_policy(MomentumPolicy(), days)
    assert sum(momentum.daily_pnl) > 0 and 0 < momentum.pct_flat < 100


def test_metrics_arithmetic():
    result = PolicyResult("x", [100.0, -300.0, 200.0], [1, 1, 1], [0, 0, 0], [10, 10, 10], [1, 1, 1], 10_000.0)
    assert result.total_return == pytest.approx(0.0)
    r = np.array([0.01, -0.03, 0.02])
    assert result.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(252))
    assert result.max_drawdown == pytest.approx(300 / 10_100)


def _result(name, pnl):
    n = len(pnl)
    return PolicyResult(name, list(pnl), [1] * n, [0] * n, [10] * n, [1] * n, 10_000.0)


@pytest.mark.parametrize(
    "model, randoms, promotable",
    [
        ([50.0, 50.0], [[-10.0, 0.0], [5.0, -20.0]], True),
        ([0.0, 0.0], [[-10.0, 0.0]], False),  # ties flat: not a beat
        ([10.0, 10.0], [[30.0, 0.0], [20.0, 0.0]], False),  # beats flat, not random
        ([-5.0, 0.0], [[-50.0, 0.0]], False),  # beats random, not flat
    ],
)
def test_promotable_only_when_beating_flat_and_random(model, randoms, promotable):
    evaluation = Evaluation(_result("model", model), {"flat": _result("flat", [0.0, 0.0])},
                            [_result(f"random[{i}]", r) for i, r in enumerate(randoms)],
                            [date(2025, 1, 2), date(2025, 1, 3)])
    assert evaluation.promotable is promotable
    assert ("does not beat" in evaluation.reason) is (not promotable)
    assert "| model |" in evaluation.markdown() and evaluation.chart_png()[:4] == b"\x89PNG"


def test_evaluation_refuses_days_the_model_trained_on(days):
    with pytest.raises(ValueError, match="trained on"):
        evaluate_signal(object(), days, train_days=[days[1].day])
    with pytest.raises(ValueError, match="at least one day"):
        evaluate_signal(object(), [])


# --------------------------------------------------------------------------- replays (the gate's)


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
