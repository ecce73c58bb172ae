"""Learnability: the whole pipeline (features → env → PPO/GRPO → SignalModel → evaluation)
learns a planted signal and beats random out of sample, after costs.

The days carry a hidden trend regime (see ``rl_helpers.planted_day``): a policy that reads
its return window can trade it, a random one pays spreads for nothing. Budgets are small
and seeds fixed; each agent trains in seconds here, so the test guards the pipeline
(a broken feature, a sign error in P&L, an advantage bug) rather than measuring skill.
"""

from __future__ import annotations

import pytest

from rl_helpers import planted_days
from tradenova_dagster.rl.dataset import TrainingDataset
from tradenova_dagster.rl.evaluate import evaluate_signal
from tradenova_dagster.rl.train import train_model

BUDGETS = {"ppo": 40_000, "grpo": 150_000}
MARGIN = 0.10  # of capital, over the six held-out days


@pytest.fixture(scope="module")
def data():
    return TrainingDataset("SPY", planted_days(8, seed=1)), planted_days(6, seed=2, start="2025-01-02")


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["ppo", "grpo"])
def test_agent_learns_a_planted_signal_and_beats_random_and_flat(agent, data):
    train, held_out = data
    result = train_model(agent, train, BUDGETS[agent], seed=0, register=False, tensorboard=False)
    evaluation = evaluate_signal(result.signal_model(), held_out, train_days=train.dates, random_seeds=(0, 1, 2))
    model, random = evaluation.model.total_return, evaluation.random_mean_return
    assert model > 0.0, evaluation.markdown()
    assert model > random + MARGIN, evaluation.markdown()
    assert evaluation.promotable
    assert evaluation.model.pct_flat < 95  # it trades, it did not just sit out
