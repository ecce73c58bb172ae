"""Training PPO and GRPO on TradingEnv, with the defaults tuned for a small CPU.

Throughput choices (``bench/training_speed.py`` measures them against SB3's PPO defaults):

- many cheap envs in one process (``DummyVecEnv``): the env step costs microseconds, so
  batching the policy forward over many envs is what pays, and subprocesses would only
  add pickling on a 2-core machine;
- one torch thread: for 64×64 MLPs, intra-op threading costs more than it saves;
- large minibatches and few epochs per rollout.

Both agents choose PUT / FLAT / CALL (a ``Discrete(3)`` action, three logits): the envs
are TradingEnvs seen through ``rl.discrete.DiscreteActions``, so what is sampled in
training is the decision the SignalModel's score will take. A bad setting (timesteps,
a hyperparameter out of range) is refused by ``validate_config`` before anything is built.

``VecNormalize`` normalises observations (and, for PPO, rewards); its statistics are
saved next to the model and used frozen by :class:`SignalModel`. TensorBoard logs go to
``$TRADENOVA_HOME/tensorboard/<model_id>``, checkpoints (model + statistics) to
``models/<model_id>/checkpoints`` every ``checkpoint_every`` steps.

``python -m tradenova_dagster.rl.train --agent ppo --symbol SPY --timesteps 100000`` is
the same command as ``tradenova train ...``.
"""

from __future__ import annotations

import math
import numbers
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tradenova_dagster import config
from tradenova_dagster.store import Store
from tradenova_dagster.rl import registry
from tradenova_dagster.rl.dataset import TrainingDataset
from tradenova_dagster.rl.discrete import DiscreteActions
from tradenova_dagster.rl.env import EnvConfig, TradingEnv
from tradenova_dagster.rl.features import FEATURE_NAMES, DayData

PPO_DEFAULTS: dict[str, Any] = {
    "n_envs": 32,
    "n_steps": 128,
    "batch_size": 1024,
    "n_epochs": 4,
    "learning_rate": 3e-4,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_range": 0.2,
    "ent_coef": 0.0,
    "net_arch": [64, 64],
    "torch_threads": 1,
}
GRPO_DEFAULTS: dict[str, Any] = {
    "group_size": 8,
    "n_groups": 4,
    "episode_bars": 120,
    "advantage": "outcome",
    "batch_size": 1024,
    "n_epochs": 4,
    "learning_rate": 3e-4,
    "clip_range": 0.2,
    "kl_coef": 0.04,
    "ref_update_interval": 10,
    "ent_coef": 0.0,
    "net_arch": [64, 64],
    "torch_threads": 1,
}
DEFAULTS = {"ppo": PPO_DEFAULTS, "grpo": GRPO_DEFAULTS}


def hyperparameters(agent: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The agent's defaults with ``overrides`` applied (unknown keys are refused)."""
    defaults = DEFAULTS[registry.require_agent(agent)]
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(f"hyperparameters: unknown for {agent}: {unknown}; known: {sorted(defaults)}")
    hp = {**defaults, **overrides}
    _check_hyperparameters(agent, hp)
    return hp


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


# name -> (test, what it must be); the ranges SB3 and GRPO need to train at all.
_RULES: dict[str, tuple[Any, str]] = {
    "n_envs": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "n_steps": (lambda v: _integer(v) and v >= 2, "an integer >= 2"),
    "batch_size": (lambda v: _integer(v) and v >= 2, "an integer >= 2"),
    "n_epochs": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "learning_rate": (lambda v: _number(v) and v > 0, "a number > 0"),
    "gamma": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "gae_lambda": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "clip_range": (lambda v: _number(v) and v > 0, "a number > 0"),
    "ent_coef": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "kl_coef": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "group_size": (lambda v: _integer(v) and v >= 2, "an integer >= 2"),
    "n_groups": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "episode_bars": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "ref_update_interval": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "torch_threads": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "advantage": (lambda v: v in ("outcome", "process"), "'outcome' or 'process'"),
    "net_arch": (lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_integer(x) and x >= 1 for x in v),
                 "a non-empty list of layer sizes >= 1"),
}


def _check_hyperparameters(agent: str, hp: dict[str, Any]) -> None:
    for name, value in hp.items():
        test, expected = _RULES[name]
        if not test(value):
            raise ValueError(f"hyperparameters.{name}: must be {expected} for {agent}, got {value!r}")


def validate_config(agent: str, timesteps, hyperparams: dict[str, Any] | None = None, *, seed=0,
                    checkpoint_every=0) -> dict[str, Any]:
    """Refuse a training run that cannot work, before any data is loaded or env built:
    the agent, ``timesteps`` (an integer >= 1), ``seed``, ``checkpoint_every`` (>= 0) and
    every hyperparameter (unknown names, wrong types, out of range). Returns the
    hyperparameters to train with."""
    agent = registry.require_agent(agent)
    if not _integer(timesteps) or timesteps < 1:
        raise ValueError(f"timesteps: must be an integer >= 1, got {timesteps!r}")
    if not _integer(seed) or seed < 0:
        raise ValueError(f"seed: must be an integer >= 0, got {seed!r}")
    if not _integer(checkpoint_every) or checkpoint_every < 0:
        raise ValueError(f"checkpoint_every: must be an integer >= 0 (0: no checkpoints), got {checkpoint_every!r}")
    return hyperparameters(agent, hyperparams)


def make_vec_env(days: Sequence[DayData], env_config: EnvConfig, n_envs: int, seed: int, norm_reward: bool, gamma: float = 0.99):
    """``n_envs`` Monitor-wrapped TradingEnvs over the same days, each with the categorical
    PUT / FLAT / CALL action (``DiscreteActions``), in a VecNormalize."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    days = list(days)
    venv = DummyVecEnv([lambda: Monitor(DiscreteActions(TradingEnv(days, config=env_config))) for _ in range(n_envs)])
    venv.seed(seed)
    return VecNormalize(venv, norm_obs=True, norm_reward=norm_reward, clip_obs=10.0, gamma=gamma)


def build_model(agent: str, venv, hp: dict[str, Any], seed: int, tensorboard_log: str | None):
    policy_kwargs = {"net_arch": list(hp["net_arch"])}
    if agent == "ppo":
        from stable_baselines3 import PPO

        return PPO(
            "MlpPolicy", venv, n_steps=hp["n_steps"], batch_size=hp["batch_size"], n_epochs=hp["n_epochs"],
            learning_rate=hp["learning_rate"], gamma=hp["gamma"], gae_lambda=hp["gae_lambda"],
            clip_range=hp["clip_range"], ent_coef=hp["ent_coef"], policy_kwargs=policy_kwargs,
            tensorboard_log=tensorboard_log, seed=seed, device="cpu", verbose=0,
        )
    from tradenova_dagster.rl.grpo import GRPO

    return GRPO(
        "MlpPolicy", venv, group_size=hp["group_size"], advantage=hp["advantage"], batch_size=hp["batch_size"],
        n_epochs=hp["n_epochs"], learning_rate=hp["learning_rate"], clip_range=hp["clip_range"],
        kl_coef=hp["kl_coef"], ref_update_interval=hp["ref_update_interval"], ent_coef=hp["ent_coef"],
        policy_kwargs=policy_kwargs, tensorboard_log=tensorboard_log, seed=seed, device="cpu", verbose=0,
    )


@dataclass
class TrainResult:
    record: registry.ModelRecord | None  # None when not registered (benchmarks)
    model: Any
    vec_normalize: Any
    timesteps: int
    elapsed_s: float
    env_steps_per_s: float
    final_train_reward: float | None

    def signal_model(self, **kwargs):
        """The trained policy as a SignalModel (frozen normalisation statistics)."""
        from tradenova_dagster.rl.signal import SignalModel

        kwargs.setdefault("model_id", self.record.model_id if self.record else "")
        return SignalModel(self.model, self.vec_normalize, **kwargs)


def train_model(
    agent: str,
    dataset: TrainingDataset,
    timesteps: int,
    *,
    seed: int = 0,
    hyperparams: dict[str, Any] | None = None,
    env_config: EnvConfig | None = None,
    progress_bar: bool = False,
    tensorboard: bool = True,
    checkpoint_every: int = 50_000,
    register: bool = True,
    run_id: str | None = None,
    store: Store | None = None,
    callback=None,
) -> TrainResult:
    """Train ``agent`` ("ppo" or "grpo") on the dataset's days; register the model.

    GRPO trains on windows of ``episode_bars`` bars (its groups need equal-length
    episodes); PPO on whole sessions. Either is evaluated on whole sessions.
    """
    import torch as th
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
    from stable_baselines3.common.utils import safe_mean

    agent = registry.require_agent(agent)
    hp = validate_config(agent, timesteps, hyperparams, seed=seed, checkpoint_every=checkpoint_every)
    env_values = (env_config or EnvConfig()).as_dict()
    # The shaping's discount is the agent's own, so that it is exactly policy-neutral (Ng et al.).
    if agent == "grpo":
        env_values["episode_bars"] = hp["episode_bars"]
        env_values["rewards"] = {**env_values["rewards"], "gamma": 1.0}  # GRPO's returns are undiscounted
        n_envs = hp["group_size"] * hp["n_groups"]
    else:
        env_values["rewards"] = {**env_values["rewards"], "gamma": hp["gamma"]}
        n_envs = hp["n_envs"]
    env_config = EnvConfig.from_dict(env_values)
    th.set_num_threads(int(hp["torch_threads"]))

    model_id = registry.new_model_id(agent, dataset.symbol)
    venv = make_vec_env(dataset.days, env_config, n_envs, seed, norm_reward=(agent == "ppo"), gamma=hp.get("gamma", 0.99))
    model = build_model(agent, venv, hp, seed, str(config.tensorboard_dir()) if tensorboard else None)
    callbacks = [callback] if callback is not None else []
    if register and checkpoint_every:
        callbacks.append(
            CheckpointCallback(
                save_freq=max(checkpoint_every // n_envs, 1),
                save_path=str(registry.model_dir(model_id) / "checkpoints"),
                name_prefix="step",
                save_vecnormalize=True,
            )
        )
    started = time.perf_counter()
    model.learn(
        total_timesteps=timesteps,
        callback=CallbackList(callbacks) if callbacks else None,
        tb_log_name=model_id,
        progress_bar=progress_bar,
    )
    elapsed = time.perf_counter() - started
    steps_per_s = model.num_timesteps / elapsed
    final_reward = safe_mean([ep["r"] for ep in model.ep_info_buffer]) if model.ep_info_buffer else None
    final_reward = float(final_reward) if final_reward is not None and np.isfinite(final_reward) else None
    venv.training = False

    record = None
    if register:
        record = registry.save_model(
            model,
            venv,
            agent=agent,
            symbol=dataset.symbol,
            timesteps=model.num_timesteps,
            seed=seed,
            train_days=dataset.dates,
            meta={
                "hyperparams": hp,
                "env_config": env_config.as_dict(),
                "features": list(FEATURE_NAMES),
                "elapsed_s": elapsed,
            },
            env_steps_per_s=steps_per_s,
            final_train_reward=final_reward,
            model_id=model_id,
            run_id=run_id,
            store=store,
        )
    return TrainResult(record, model, venv, model.num_timesteps, elapsed, steps_per_s, final_reward)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from tradenova_dagster.rl.commands import add_train_arguments, run_train

    parser = argparse.ArgumentParser(prog="python -m tradenova_dagster.rl.train", description="Train a TradeNova agent.")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_train(args)
    except (ValueError, RuntimeError) as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
