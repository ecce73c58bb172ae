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


@pytest.mark.parametrize("agent", ["ppo", "grpo"])
def test_a_loaded_checkpoint_is_the_trained_policy_without_its_optimiser(tiny, store, agent):
    """Loading to predict rebuilds the policy only: the same weights, the same action
    probabilities, and no optimiser (whose first use imports torch._dynamo, 1.2 s)."""
    import subprocess
    import sys

    import numpy as np
    import torch as th

    if agent == "ppo":
        days = planted_days(2, seed=31)
        trained = train_model("ppo", TrainingDataset("SPY", days), 128, seed=0, register=False, tensorboard=False,
                              hyperparams={"n_steps": 64, "batch_size": 32, "n_epochs": 1}).model
        record = registry.save_model(trained, tiny[0].vec_normalize, agent="ppo", symbol="SPY", timesteps=128,
                                     seed=0, train_days=[d.day for d in days], meta={"env_config": {}}, store=store)
    else:
        trained, record = tiny[0].model, _save(tiny, store)
    policy, _, meta = registry.load_checkpoint(record.path)
    assert type(policy) is type(trained.policy) and meta["agent"] == agent
    assert not isinstance(policy.optimizer, th.optim.Optimizer)
    want, got = trained.policy.state_dict(), policy.state_dict()
    assert want.keys() == got.keys() and all(th.equal(want[k], got[k]) for k in want)
    obs = th.as_tensor(np.random.default_rng(0).normal(size=(64, *trained.observation_space.shape)),
                       dtype=th.float32)
    with th.no_grad():
        assert th.equal(policy.get_distribution(obs).distribution.probs,
                        trained.policy.get_distribution(obs).distribution.probs)
    code = ("import sys; from tradenova_dagster.rl import SignalModel; "
            f"SignalModel.load({str(record.path)!r}); print('torch._dynamo' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()[-1] == "False"


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


def _old_format_checkpoint(folder):
    """A model folder as the seed's TradeNova wrote it: a Gaussian (Box-action) PPO, its
    statistics, and a meta.json with no format_version."""
    import json

    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from tradenova_dagster.rl import TradingEnv

    venv = VecNormalize(DummyVecEnv([lambda: TradingEnv(planted_days(1, seed=4))]), norm_obs=False, norm_reward=False)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, seed=0, device="cpu")
    folder.mkdir(parents=True)
    model.save(folder / registry.MODEL_FILE)
    venv.save(str(folder / registry.VECNORM_FILE))
    (folder / registry.META_FILE).write_text(json.dumps({"agent": "ppo", "symbol": "SPY", "train_days": ["2024-01-02"]}))
    return model, venv


def test_an_old_format_checkpoint_refuses_to_load_naming_both_versions(tmp_path):
    from tradenova_dagster.rl import SignalModel

    model, venv = _old_format_checkpoint(tmp_path / "ppo-old")
    with pytest.raises(ValueError, match=r"ppo-old: format version 1, expected 2 \(the categorical PUT/FLAT/CALL"):
        SignalModel.load(tmp_path / "ppo-old")
    with pytest.raises(ValueError, match="model: action space Box.*format version 2"):  # and none is written again
        registry.save_model(model, venv, agent="ppo", symbol="SPY", timesteps=1, seed=0,
                            train_days=[date(2024, 1, 2)], meta={})


def test_a_checkpoint_claiming_the_new_format_with_a_continuous_policy_is_refused(tmp_path):
    import json

    _old_format_checkpoint(tmp_path / "liar")
    meta = tmp_path / "liar" / registry.META_FILE
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "format_version": registry.FORMAT_VERSION}))
    with pytest.raises(ValueError, match="action space Box.*is not the categorical"):
        registry.load_checkpoint(tmp_path / "liar")


@pytest.mark.parametrize("damage", ["truncate_model", "garbage_stats", "garbage_meta", "old_meta"])
def test_a_corrupt_checkpoint_is_a_clear_error_and_the_promoted_model_stays(tiny, store, damage):
    import json

    from tradenova_dagster.rl import SignalModel

    good, bad = _save(tiny, store), _save(tiny, store)
    registry.promote(good.model_id, force=True, store=store)
    if damage == "truncate_model":
        data = (bad.path / registry.MODEL_FILE).read_bytes()
        (bad.path / registry.MODEL_FILE).write_bytes(data[: len(data) // 2])
        match = "corrupt or unreadable grpo model files"
    elif damage == "garbage_stats":
        (bad.path / registry.VECNORM_FILE).write_bytes(b"not a pickle")
        match = "corrupt or unreadable grpo model files"
    elif damage == "garbage_meta":
        (bad.path / registry.META_FILE).write_text("{not json")
        match = "meta.json: unreadable"
    else:
        meta = json.loads((bad.path / registry.META_FILE).read_text())
        del meta["format_version"]
        (bad.path / registry.META_FILE).write_text(json.dumps(meta))
        match = "format version 1, expected 2"
    with pytest.raises(ValueError, match=match):
        SignalModel.load(bad.path)
    registry.record_evaluation(bad.model_id, eval_days=[date(2024, 2, 1)], promotable=True, reason="ok",
                               metrics={}, store=store)
    for force in (False, True):
        with pytest.raises(ValueError, match=match):
            registry.promote(bad.model_id, force=force, store=store)
    assert registry.promoted_model("SPY", store=store).model_id == good.model_id
    assert SignalModel.promoted("SPY", store=store).model_id == good.model_id
