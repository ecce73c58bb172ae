"""Learnability, both ways (issue 14, item 6): the whole pipeline (features → env →
PPO/GRPO → SignalModel → session loop → gate) learns a planted edge and is promoted,
and learns nothing from the same days with the edge shuffled away and is not.

The market is ``planted_edge.PlantedEdgeSource``: a marker bar every 30 minutes whose
sign predicts the next 30 minutes with probability 0.65, priced fairly (realised variance
= the variance the options are priced at), so only the direction pays the costs —
``test_planted_edge`` shows the oracle that knows the rule passes the gate and the same
rule on shuffled days fails it. Here each agent trains on 100 planted days, and once on
the same days with the marker signs shuffled; both models are then replayed through the
real session loop (risk rules, ladder, SimBroker costs) over the same held-out planted
days and gated (``rl.gate``) against the same replayed baselines. Evaluating the
shuffled-trained model on the planted days is the stricter null: the edge is there to be
taken, and a model that learnt nothing cannot take it. Budgets are small and seeds fixed.

Known gap (measured, seeds fixed): the null half holds for both agents (each trades
about 4.6 times a day and fails the gate), but neither agent yet learns the edge to the
gate's standard. PPO (400k steps) makes +$71 a day on the held-out days (IQM +49, CI
low −18; the shuffled-trained twin +$39) — about half the oracle's +$135, not significant
over 12 days; GRPO (400k steps, process advantage) +$27, no better than its twin. The
learning half is an ``xfail`` that names the numbers until it passes.
"""

from __future__ import annotations

import pytest

from planted_edge import EVAL_DAYS, TRAIN_DAYS, PlantedEdgeSource, planted_baselines
from tradenova_dagster.rl.dataset import build_dataset
from tradenova_dagster.rl.evaluate import evaluate_replay
from tradenova_dagster.rl.train import train_model

BUDGETS = {"ppo": 400_000, "grpo": 400_000}
HYPERPARAMS = {
    "ppo": {"ent_coef": 0.05, "gamma": 0.9, "n_epochs": 10},
    "grpo": {"advantage": "process", "episode_bars": 60},
}


def _trained(agent: str, shuffled: bool):
    dataset = build_dataset("SPY", TRAIN_DAYS, PlantedEdgeSource(shuffled=shuffled))
    result = train_model(agent, dataset, BUDGETS[agent], seed=0, hyperparams=HYPERPARAMS[agent], register=False,
                         tensorboard=False)
    return result.signal_model(model_id=f"{agent}-{'shuffled' if shuffled else 'planted'}")


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["ppo", "grpo"])
def test_agent_trained_on_the_planted_edge_passes_the_gate_and_trained_on_shuffled_days_fails_it(agent, store):
    baselines = planted_baselines(store)
    evaluations = {}
    for shuffled in (False, True):
        signal = _trained(agent, shuffled)
        evaluations[shuffled] = evaluate_replay(store, PlantedEdgeSource(), EVAL_DAYS, signal, name=agent,
                                                label=signal.model_id, train_days=TRAIN_DAYS, baselines=baselines)
    planted, shuffled = evaluations[False], evaluations[True]
    rows = {"planted": planted.model.row(), "shuffled": shuffled.model.row()}
    print(agent, rows, planted.reason, shuffled.reason, sep="\n")
    # The null: trained where the feature says nothing, it trades and is not promoted.
    assert not shuffled.promotable, (shuffled.reason, rows)
    assert rows["shuffled"]["trades_per_day"] >= 1, rows  # it fails on its P&L, not by sitting out
    # Learning it: promoted, and what it learnt pays more than the null's noise.
    learnt = planted.promotable and rows["planted"]["mean_daily_pnl"] > max(0.0, rows["shuffled"]["mean_daily_pnl"])
    if not learnt:
        pytest.xfail(f"known gap (issue 14, item 6): {agent} does not learn the planted edge to the gate's standard "
                     f"in this budget over {len(EVAL_DAYS)} held-out days: {planted.reason}; {rows}")
