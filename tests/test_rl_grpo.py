"""GRPO: group-relative advantages, no critic, groups from one start, KL to a frozen reference."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch as th
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rl_helpers import planted_days
from tradenova_dagster.rl import GRPO
from tradenova_dagster.rl.env import EnvConfig
from tradenova_dagster.rl.features import N_FEATURES
from tradenova_dagster.rl.grpo import group_advantages
from tradenova_dagster.rl.train import make_vec_env

rewards_arrays = st.integers(1, 6).flatmap(
    lambda steps: st.integers(1, 4).flatmap(
        lambda groups: st.tuples(
            arrays(np.float64, (steps, groups * 4), elements=st.floats(-100, 100, allow_subnormal=False)),
            st.just(4),
        )
    )
)


@settings(max_examples=60, deadline=None)
@given(rewards_arrays)
def test_outcome_advantages_are_zero_mean_unit_std_within_each_group_and_constant_in_time(case):
    rewards, group_size = case
    adv, zero_spread = group_advantages(rewards, group_size, "outcome")
    grouped = adv.reshape(adv.shape[0], -1, group_size)
    np.testing.assert_allclose(grouped.mean(axis=2), 0.0, atol=1e-6)
    np.testing.assert_array_equal(adv, np.broadcast_to(adv[0], adv.shape))
    returns = rewards.sum(axis=0).reshape(-1, group_size)
    for g in range(grouped.shape[1]):
        if zero_spread[g]:
            assert np.all(grouped[:, g, :] == 0)
        else:
            r = returns[g]
            np.testing.assert_allclose(grouped[0, g], (r - r.mean()) / (r.std() + 1e-8), rtol=1e-9, atol=1e-12)
            if r.std() > 1e-3:
                assert grouped[0, g].std() == pytest.approx(1.0, rel=1e-3)


@settings(max_examples=60, deadline=None)
@given(rewards_arrays)
def test_process_advantages_are_rewards_to_go_of_group_normalised_rewards(case):
    rewards, group_size = case
    adv, zero_spread = group_advantages(rewards, group_size, "process")
    steps = rewards.shape[0]
    grouped = rewards.reshape(steps, -1, group_size)
    for g in range(grouped.shape[1]):
        block = grouped[:, g, :]
        if zero_spread[g]:
            continue
        normalised = (block - block.mean()) / (block.std() + 1e-8)
        expected = np.flip(np.cumsum(np.flip(normalised, 0), 0), 0)
        np.testing.assert_allclose(adv[:, g * group_size:(g + 1) * group_size], expected, atol=1e-9)
        assert adv[0, g * group_size:(g + 1) * group_size].mean() == pytest.approx(0.0, abs=1e-6)


def test_group_advantages_refuse_bad_shapes():
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(np.zeros((3, 6)), 4)
    with pytest.raises(ValueError, match="advantage"):
        group_advantages(np.zeros((3, 8)), 4, "bogus")
    adv, zero = group_advantages(np.ones((3, 8)), 4)
    assert zero.all() and not adv.any()


@pytest.fixture(scope="module")
def days():
    return planted_days(3, seed=11)


def _grpo(days, tmp_path, **kwargs):
    from stable_baselines3.common.logger import configure

    venv = make_vec_env(days, EnvConfig(episode_bars=20), n_envs=8, seed=0, norm_reward=False)
    model = GRPO("MlpPolicy", venv, group_size=4, batch_size=64, n_epochs=2, seed=0, **kwargs)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    return model


def test_grpo_is_an_on_policy_algorithm_without_a_value_network(days, tmp_path):
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    model = _grpo(days, tmp_path)
    assert isinstance(model, OnPolicyAlgorithm)
    names = [n for n, _ in model.policy.named_parameters()]
    assert names and not any("value" in n or "vf" in n for n in names)
    assert model.policy.value_net is None
    optimised = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in model.policy.parameters()}
    assert model.n_steps == 20 and model.n_groups == 2


def test_each_group_starts_from_the_same_day_and_bar(days, tmp_path):
    from stable_baselines3.common.callbacks import BaseCallback

    class Nothing(BaseCallback):
        def _on_step(self) -> bool:
            return True

    model = _grpo(days, tmp_path)
    model._setup_learn(20, None)
    callback = Nothing()
    callback.init_callback(model)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    first = model.rollout_buffer.observations[0]  # (n_envs, obs)
    for g in range(2):
        group = first[g * 4:(g + 1) * 4]
        assert np.all(group == group[0])
    assert not np.array_equal(first[0], first[4])  # two groups, two different starts
    actions = model.rollout_buffer.actions[:, :4, 0]
    assert not np.allclose(actions[:, 0], actions[:, 1])  # rollouts of a group differ by sampling
    adv = model.rollout_buffer.advantages.reshape(20, 2, 4)
    np.testing.assert_allclose(adv.mean(axis=2), 0.0, atol=1e-6)


def test_training_logs_group_kl_clip_and_entropy_and_refreshes_the_reference(days, tmp_path):
    model = _grpo(days, tmp_path, kl_coef=0.1, ref_update_interval=3)
    model.learn(total_timesteps=8 * 20 * 2)  # two updates: the reference is still the initial policy
    ref = dict(model.ref_policy.named_parameters())
    changed = any(not th.equal(p, ref[n]) for n, p in model.policy.named_parameters())
    assert changed and all(not p.requires_grad for p in model.ref_policy.parameters())
    model.learn(total_timesteps=8 * 20, reset_num_timesteps=False)  # third update: refresh
    ref = dict(model.ref_policy.named_parameters())
    assert all(th.equal(p, ref[n]) for n, p in model.policy.named_parameters())

    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    for key in ("grpo/zero_spread_groups", "train/kl_ref", "train/clip_fraction", "train/entropy",
                "grpo/group_return_std", "train/approx_kl"):
        assert key in rows[-1] and rows[-1][key] != "", key
    assert 0.0 <= float(rows[-1]["grpo/zero_spread_groups"]) <= 1.0
    assert float(rows[-1]["train/kl_ref"]) >= 0.0


def test_grpo_refuses_what_it_cannot_do(days):
    venv = make_vec_env(days, EnvConfig(episode_bars=20), n_envs=6, seed=0, norm_reward=False)
    with pytest.raises(ValueError, match="group_size"):
        GRPO("MlpPolicy", venv, group_size=4)
    with pytest.raises(ValueError, match="kl_coef"):
        GRPO("MlpPolicy", venv, group_size=3, kl_coef=-1)
    full_days = make_vec_env(days, EnvConfig(), n_envs=4, seed=0, norm_reward=False)
    with pytest.raises(ValueError, match="episode_bars"):
        GRPO("MlpPolicy", full_days, group_size=4)


def test_save_load_keeps_policy_and_reference(days, tmp_path):
    model = _grpo(days, tmp_path, ref_update_interval=100)
    model.learn(total_timesteps=8 * 20)
    model.save(tmp_path / "grpo.zip")
    loaded = GRPO.load(tmp_path / "grpo.zip", env=model.env)
    obs = np.random.default_rng(0).normal(size=(16, model.observation_space.shape[0])).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    for (name, a), (_, b) in zip(model.ref_policy.named_parameters(), loaded.ref_policy.named_parameters()):
        assert th.equal(a, b), name
    assert loaded.group_size == 4 and loaded.kl_coef == model.kl_coef


def test_grpo_samples_the_categorical_put_flat_call_policy(days, tmp_path):
    from stable_baselines3.common.distributions import CategoricalDistribution

    model = _grpo(days, tmp_path)
    assert model.action_space.n == 3
    assert isinstance(model.policy.action_dist, CategoricalDistribution) and model.policy.action_net.out_features == 3
    model.learn(total_timesteps=8 * 20)
    actions = model.rollout_buffer.actions
    assert set(np.unique(actions)) == {0.0, 1.0, 2.0}  # every decision is sampled, nothing in between


def test_grpo_train_save_load_predict_round_trip(days, store):
    from tradenova_dagster.rl import SignalModel, registry
    from tradenova_dagster.rl.dataset import TrainingDataset
    from tradenova_dagster.rl.train import train_model

    result = train_model("grpo", TrainingDataset("SPY", days), 512, seed=0, tensorboard=False, store=store,
                         hyperparams={"group_size": 4, "n_groups": 2, "episode_bars": 32, "batch_size": 128},
                         checkpoint_every=0)
    assert registry.read_meta(result.record.path)["format_version"] == registry.FORMAT_VERSION
    original, loaded = result.signal_model(alpha=0.5), SignalModel.load(result.record.path, alpha=0.5)
    obs = np.random.default_rng(1).normal(size=(40, N_FEATURES)).astype(np.float32)
    for o in obs:
        a, b = original.predict(o), loaded.predict(o)
        assert (a.raw_action, a.smoothed_action, a.decision, a.probabilities) == \
            (b.raw_action, b.smoothed_action, b.decision, b.probabilities)
        assert a.probabilities is not None and abs(sum(a.probabilities) - 1.0) < 1e-9
