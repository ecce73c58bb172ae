"""The promotion gate: its rule on hand-checked numbers, and no-edge models failing it
after a replay through the real session loop (issue 14, item 5)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tradenova_dagster.rl.gate import gate, iqm, mean_ci

FLAT = [0.0] * 5


def test_a_steady_winner_above_every_baseline_is_promotable():
    # IQM (middle three of five): model 100, 110, 120 -> 110; momentum -20, -10, 5 -> -8.33.
    verdict = gate([90.0, 100.0, 110.0, 120.0, 130.0],
                   {"flat": FLAT, "momentum": [-30.0, -20.0, -10.0, 5.0, 40.0]})
    assert verdict.promotable and verdict.failed == ()
    assert verdict.iqm == pytest.approx(110.0)
    assert verdict.baseline_iqm == pytest.approx({"flat": 0.0, "momentum": -25.0 / 3})
    # Every resampled mean lies between the smallest and the largest day.
    assert 90.0 <= verdict.ci_low < 110.0 < verdict.ci_high <= 130.0
    assert verdict.reason.startswith("promotable: CI low +") and "beats every baseline (best flat +0.00)" in verdict.reason


def test_a_noisy_model_fails_on_its_ci_and_the_reason_gives_the_numbers():
    # Mean +22 but one bad day in five: the CI of the mean reaches below zero.
    verdict = gate([300.0, -250.0, 200.0, -150.0, 10.0], {"flat": FLAT})
    assert not verdict.promotable and verdict.failed == ("ci_low",)
    assert verdict.mean == pytest.approx(22.0) and verdict.iqm == pytest.approx(20.0)  # (-150 + 10 + 200) / 3
    assert verdict.ci_low < 0.0
    assert f"CI low {verdict.ci_low:+.2f} <= 0" in verdict.reason and "over 5 days" in verdict.reason


def test_a_positive_model_below_one_baseline_fails_on_iqm_naming_that_baseline():
    # IQM: model 50, 52, 55 -> 52.33; momentum 75, 80, 85 -> 80; orb 0, 1, 2 -> 1.
    verdict = gate([45.0, 50.0, 52.0, 55.0, 60.0],
                   {"flat": FLAT, "momentum": [70.0, 75.0, 80.0, 85.0, 90.0], "orb": [-5.0, 0.0, 1.0, 2.0, 3.0]})
    assert not verdict.promotable and verdict.failed == ("iqm",)
    assert verdict.reason == "not promotable: IQM +52.33 does not beat momentum +80.00"


def test_a_model_that_never_trades_fails_both_conditions():
    verdict = gate(FLAT, {"flat": FLAT})
    assert verdict.failed == ("ci_low", "iqm") and (verdict.ci_low, verdict.ci_high) == (0.0, 0.0)
    assert "CI low +0.00 <= 0" in verdict.reason and "IQM +0.00 does not beat flat +0.00" in verdict.reason


def test_one_day_gives_no_interval_and_no_promotion():
    verdict = gate([500.0], {"flat": [0.0]})
    assert not verdict.promotable and math.isnan(verdict.ci_low)
    assert "no CI: 1 evaluation day(s), need at least 2" in verdict.reason


@pytest.mark.parametrize("model, baselines, match", [
    ([], {"flat": []}, "model_daily_pnl: expected a non-empty list"),
    ([1.0, float("nan")], {"flat": [0.0, 0.0]}, "model_daily_pnl: daily P&L must be finite"),
    ([1.0, 2.0], {}, "baseline_daily_pnl: need at least one baseline"),
    ([1.0, 2.0], {"orb": [0.0]}, r"baseline_daily_pnl\['orb'\]: 1 days, but the model has 2"),
])
def test_bad_inputs_are_refused_naming_the_field(model, baselines, match):
    with pytest.raises(ValueError, match=match):
        gate(model, baselines)


def test_iqm_and_ci_helpers_on_known_values():
    assert iqm([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx(3.0)  # the outliers trimmed
    assert iqm([1.0, 2.0, 3.0, 4.0]) == pytest.approx(2.5)
    low, high = mean_ci([10.0, 11.0, 12.0, 13.0, 14.0, 15.0])
    assert 10.0 <= low < 12.5 < high <= 15.0
    assert mean_ci([10.0, 11.0, 12.0]) == mean_ci([10.0, 11.0, 12.0])  # seeded: reproducible


# --------------------------------------------------------------------------- no-edge models, replayed

EVAL_DAYS = ["2026-11-09", "2026-11-10", "2026-11-11", "2026-11-12", "2026-11-13"]
SHUFFLED_TRAIN_DAYS = ["2026-10-05", "2026-10-06", "2026-10-07"]


def _random_weight_model(seed: int):
    """A categorical PPO whose weights are random draws (seeded): its logits depend on
    what it observes, so it trades, on no information at all."""
    import torch as th
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from tradenova_dagster.rl import SignalModel, TradingEnv
    from tradenova_dagster.rl.discrete import DiscreteActions

    venv = DummyVecEnv([lambda: DiscreteActions(TradingEnv())])
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, seed=seed, device="cpu")
    generator = th.Generator().manual_seed(seed)
    with th.no_grad():
        weight = model.policy.action_net.weight
        weight.copy_(th.randn(weight.shape, generator=generator))
    return SignalModel(model, None, model_id=f"random-weights-{seed}")


def _shuffled_days(seed: int):
    """The training days with each day's minute returns randomly permuted: the same moves,
    in an order that carries no information about the next one."""
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.rl.dataset import TrainingDataset, build_dataset
    from tradenova_dagster.rl.features import DayData

    rng = np.random.default_rng(seed)
    days = []
    for day in build_dataset("SPY", SHUFFLED_TRAIN_DAYS, get_source("synthetic"), None).days:
        returns = rng.permutation(np.diff(np.log(day.closes)))
        closes = day.closes[0] * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
        opens = np.concatenate([[day.opens[0]], closes[:-1]])
        bars = pd.DataFrame({"timestamp": pd.to_datetime(day.timestamps, utc=True), "open": opens,
                             "high": np.maximum(opens, closes), "low": np.minimum(opens, closes), "close": closes})
        days.append(DayData.from_bars("SPY", day.day, bars, day.context))
    return TrainingDataset("SPY", days)


def _shuffled_returns_model(seed: int):
    """PPO trained briefly (1024 steps) on shuffled returns: whatever it learned is noise."""
    from tradenova_dagster.rl.train import train_model

    result = train_model("ppo", _shuffled_days(seed), 1024, seed=seed, register=False, tensorboard=False,
                         hyperparams={"n_envs": 2, "n_steps": 256, "batch_size": 256, "n_epochs": 2})
    signal = result.signal_model()
    signal.model_id = f"shuffled-returns-{seed}"
    return signal


@pytest.mark.slow
def test_no_edge_models_fail_the_gate_after_a_session_replay(store):
    """Five random-weight models and five trained on shuffled returns, each replayed over
    the same five synthetic days through backtest_day: none passes. They are gated against
    ``flat`` only — failing against a subset of the baselines is failing the full gate
    (the CI condition does not depend on the baselines; the IQM one must hold for all)."""
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.rl.evaluate import evaluate_replay, replay_agent
    from tradenova_dagster.strategies import build_strategy

    source = get_source("synthetic")
    flat = replay_agent(store, source, EVAL_DAYS, build_strategy("flat"), "flat", "noedge")
    assert flat.daily_pnl == FLAT and flat.trades == [0] * 5
    models = [_random_weight_model(seed) for seed in range(5)]
    models += [_shuffled_returns_model(seed) for seed in range(5)]
    verdicts = {}
    for signal in models:
        evaluation = evaluate_replay(store, source, EVAL_DAYS, signal, name="model", label=signal.model_id,
                                     baselines={"flat": flat}, train_days=[pd.Timestamp(d).date()
                                                                          for d in SHUFFLED_TRAIN_DAYS])
        verdicts[signal.model_id] = evaluation
    traded = [mid for mid, e in verdicts.items() if sum(e.model.trades) > 0]
    summary = {mid: (e.verdict.reason, e.model.daily_pnl) for mid, e in verdicts.items()}
    assert all(f"random-weights-{s}" in traded for s in range(5)), summary  # they did trade: a real test
    assert not [mid for mid, e in verdicts.items() if e.promotable], summary
