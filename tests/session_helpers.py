"""Helpers for session tests: a real stable-baselines3 model whose policy is set by hand.

A trained model's behaviour on a given day is hard to predict; session tests need one
that certainly trades. ``crafted_model`` builds a real PPO (saved and registered like any
trained one, loaded by the real SignalModel) whose action is pinned by the bias of its
action layer: +0.8 always asks for a CALL, -0.8 a PUT, 0 stays flat.
"""

from datetime import date

import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from tradenova_dagster.rl import TradingEnv, registry


def crafted_model(store, bias: float = 0.8, promote: bool = True, model_id: str | None = None):
    venv = VecNormalize(DummyVecEnv([lambda: TradingEnv()]), norm_obs=False, norm_reward=False)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, seed=0, device="cpu")
    with th.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.fill_(bias)
    record = registry.save_model(
        model, venv, agent="ppo", symbol="SPY", timesteps=0, seed=0, train_days=[date(2026, 1, 5)],
        meta={"crafted": True, "bias": bias}, model_id=model_id, store=store,
    )
    if promote:
        registry.promote(record.model_id, reason="test: crafted model", force=True, store=store)
    return record
