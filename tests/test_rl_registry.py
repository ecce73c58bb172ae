"""The model registry: saving, evaluations, promotion rules, per-account fallback."""

from __future__ import annotations

from datetime import date

import pytest

from rl_helpers import planted_days
from tradenova_dagster.rl import registry
from tradenova_dagster.rl.dataset import TrainingDataset
from tradenova_dagster.rl.train import train_model


@pytest.fixture(scope="module")
def tiny():
    days = planted_days(2, seed=31)
    result = train_model("grpo", TrainingDataset("SPY", days), 256, seed=0, register=False, tensorboard=False,
                         hyperparams={"group_size": 2, "n_groups": 2, "episode_bars": 32, "batch_size": 64})
    return result, [d.day for d in days]


def _save(tiny, store, agent="grpo"):
    result, days = tiny
    return registry.save_model(result.model, result.vec_normalize, agent=agent, symbol="SPY",
                               timesteps=result.timesteps, seed=0, train_days=days,
                               meta={"env_config": {}}, store=store)


def test_save_model_writes_files_and_a_row(tiny, store, tradenova_home):
    record = _save(tiny, store)
    assert record.path.parent == tradenova_home / "models"
    assert {p.name for p in record.path.iterdir()} >= {"model.zip", "vecnormalize.pkl", "meta.json"}
    assert record.train_days == tiny[1] and record.n_train_days == 2
    assert record.train_start == tiny[1][0] and record.agent == "grpo"
    assert registry.get_model(record.model_id, store) == record
    assert [r.model_id for r in registry.list_models("SPY", "grpo", store)] == [record.model_id]
    with pytest.raises(ValueError, match="no model"):
        registry.get_model("nope", store)
    with pytest.raises(ValueError, match="agent"):
        registry.list_models(agent="dqn", store=store)


def test_promote_requires_a_passing_evaluation_unless_forced(tiny, store):
    record = _save(tiny, store)
    with pytest.raises(ValueError, match="no out-of-sample evaluation"):
        registry.promote(record.model_id, store=store)
    registry.record_evaluation(record.model_id, eval_days=[date(2024, 2, 1)], promotable=False,
                               reason="does not beat random", metrics={}, store=store)
    with pytest.raises(ValueError, match="not promotable.*does not beat random"):
        registry.promote(record.model_id, store=store)
    assert registry.promoted_model("SPY", store=store) is None

    registry.record_evaluation(record.model_id, eval_days=[date(2024, 2, 2)], promotable=True,
                               reason="beats flat and random", metrics={"x": 1}, store=store)
    assert registry.latest_evaluation(record.model_id, store)["metrics"] == {"x": 1}
    assert registry.promote(record.model_id, reason="sensor", run_id="run-1", store=store) == record
    assert registry.promoted_model("SPY", store=store) == record

    forced = _save(tiny, store)
    registry.promote(forced.model_id, force=True, reason="operator choice", store=store)
    assert registry.promoted_model("SPY", store=store).model_id == forced.model_id
    reasons = store.query("SELECT reason FROM model_promotions ORDER BY promoted_at")
    assert [r[0] for r in reasons] == ["sensor", "operator choice"]


def test_an_account_promotion_overrides_the_global_one(tiny, store):
    first, second = _save(tiny, store), _save(tiny, store)
    registry.promote(first.model_id, force=True, store=store)
    registry.promote(second.model_id, account="alpaca_paper:abc", force=True, store=store)
    assert registry.promoted_model("SPY", account="alpaca_paper:abc", store=store).model_id == second.model_id
    assert registry.promoted_model("SPY", account="sim:default", store=store).model_id == first.model_id
    assert registry.promoted_model("SPY", store=store).model_id == first.model_id
    assert registry.promoted_model("QQQ", store=store) is None


def test_a_promoted_model_loads_as_a_signal_model(tiny, store):
    from tradenova_dagster.rl import SignalModel

    with pytest.raises(ValueError, match="no model is promoted"):
        SignalModel.promoted("SPY", store=store)
    record = _save(tiny, store)
    registry.promote(record.model_id, force=True, store=store)
    signal = SignalModel.promoted("SPY", account="sim:default", store=store)
    assert signal.model_id == record.model_id


def test_evaluations_of_unknown_models_or_without_days_are_refused(tiny, store):
    with pytest.raises(ValueError, match="no model"):
        registry.record_evaluation("ghost", eval_days=[date(2024, 1, 2)], promotable=True, reason="",
                                   metrics={}, store=store)
    record = _save(tiny, store)
    with pytest.raises(ValueError, match="eval_days"):
        registry.record_evaluation(record.model_id, eval_days=[], promotable=True, reason="", metrics={},
                                   store=store)
    with pytest.raises(ValueError, match="train_days"):
        registry.save_model(tiny[0].model, tiny[0].vec_normalize, agent="ppo", symbol="SPY", timesteps=1,
                            seed=0, train_days=[], meta={}, store=store)
