"""The model assets through real Dagster materialisations and a real DuckDB."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from assets.models import grpo_model, model_evaluation, ppo_model, training_dataset
from resources.market_data import MarketDataResource
from resources.store import StoreResource
from tradenova_dagster.market.data import get_source
from tradenova_dagster.rl import registry
from tradenova_dagster.rl.dataset import TrainingDataset, build_dataset

RUN_CONFIG = {
    "ops": {
        "training_dataset": {"config": {"end": "2026-11-20", "n_train_days": 3, "n_eval_days": 2}},
        "ppo_model": {"config": {"timesteps": 2048, "n_envs": 8, "n_steps": 128, "batch_size": 256}},
        "grpo_model": {"config": {"timesteps": 256, "group_size": 2, "n_groups": 2, "episode_bars": 32,
                                  "batch_size": 64}},
        "model_evaluation": {"config": {"random_seeds": [0, 1]}},
    }
}


@pytest.fixture
def resources(store):
    return {"store": StoreResource(db_path=str(store.path)), "market_data": MarketDataResource()}


@pytest.mark.slow
def test_train_and_evaluate_both_agents_through_dagster(store, resources, tradenova_home):
    result = dg.materialize([training_dataset, ppo_model, grpo_model, model_evaluation], resources=resources,
                            run_config=RUN_CONFIG)
    assert result.success

    dataset_meta = result.asset_materializations_for_node("training_dataset")[0].metadata
    assert dataset_meta["train_range"].value == "2026-11-16 .. 2026-11-18"
    assert dataset_meta["eval_range"].value == "2026-11-19 .. 2026-11-20"
    dataset = TrainingDataset.load(dataset_meta["dataset_path"].value)
    assert [d.isoformat() for d in dataset.dates] == ["2026-11-16", "2026-11-17", "2026-11-18"]

    models = {}
    for agent in ("ppo", "grpo"):
        meta = result.asset_materializations_for_node(f"{agent}_model")[0].metadata
        assert meta["timesteps"].value >= 256 and meta["env_steps_per_s"].value > 0
        record = registry.get_model(meta["model_id"].value, store)
        assert record.agent == agent and record.train_days == dataset.dates
        assert store.query("SELECT run_id FROM models WHERE model_id = ?", [record.model_id]) == [(result.run_id,)]
        assert Path(meta["model_path"].value).is_dir()
        models[agent] = record

    evaluation = result.asset_materializations_for_node("model_evaluation")[0].metadata
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == "promotable"
    best = evaluation["best_model_id"].value
    assert check.passed == bool(best)
    for agent, record in models.items():
        verdict = registry.latest_evaluation(record.model_id, store)
        assert verdict is not None and verdict["n_days"] == 2
        assert verdict["eval_start"].isoformat() > record.train_end.isoformat()  # out of sample
        assert set(verdict["metrics"]["table"]) == {agent, "flat", "always_call", "momentum", "random"}
        if best == record.model_id:
            assert verdict["promotable"]
    assert Path(evaluation["ppo_chart"].value).is_file()
    assert "| flat |" in evaluation["evaluation"].value


def test_training_dataset_reads_stored_bars_when_a_day_was_materialised(store):
    from datetime import date

    from tradenova_dagster.market.bars_store import save_day

    source = get_source("synthetic")
    day = "2026-11-18"
    edited = source.bars("SPY", day)
    edited[["open", "high", "low", "close"]] *= 1.01
    save_day(store, date(2026, 11, 18), {"SPY": edited}, "test")
    dataset = build_dataset("SPY", [day, "2026-11-19"], source, store)
    np.testing.assert_allclose(dataset.days[0].closes, edited["close"].to_numpy())
    np.testing.assert_allclose(dataset.days[1].closes, source.bars("SPY", "2026-11-19")["close"].to_numpy())
