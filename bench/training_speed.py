"""Training throughput (env-steps/s, rollout collection + updates): TradeNova's PPO and GRPO
on TradingEnv against stable-baselines3's PPO on gym-anytrading's StocksEnv.

Two ratios, because either alone misleads:

- **equal hyperparameters**: the same PPO settings on both sides — the same ``n_envs``
  (vectorised with ``DummyVecEnv``), ``n_steps``, ``batch_size``, ``n_epochs`` and network
  ([64, 64]) — at two settings: SB3's defaults (1 env, n_steps 2048, batch 64, 10
  epochs: what a user gets from ``PPO("MlpPolicy", env)``) and TradeNova's tuned defaults
  (``train.PPO_DEFAULTS``: 32 envs, n_steps 128, batch 1024, 4 epochs) given to SB3 too.
  This is what the env and the training loop cost, setting for setting.
- **tuned**: our defaults against SB3's defaults, as each would be run out of the box.

GRPO has no n_steps and needs groups of at least 2 episodes, so its "equal" run keeps
the peer's rollout size (2048 steps per update: 2 groups x 8 episodes x 128 bars), batch
size, epochs and network. Everything runs with one torch thread (on a shared 2-core
machine, the peer's default thread count would only measure the other users), on the
same SPY bars (20 sessions: the real year in ../shared/data if present, else synthetic),
in this one process.

    python bench/training_speed.py [--peer-steps 16384] [--our-steps 200000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch as th

from env_speed import sessions
from tradenova_dagster.rl.train import GRPO_DEFAULTS, PPO_DEFAULTS, train_model

SB3_DEFAULTS = {"n_envs": 1, "n_steps": 2048, "batch_size": 64, "n_epochs": 10, "net_arch": [64, 64]}
TUNED = {k: PPO_DEFAULTS[k] for k in SB3_DEFAULTS}
GRPO_AT_SB3_DEFAULTS = {"group_size": 8, "n_groups": 2, "episode_bars": 128, "batch_size": 64, "n_epochs": 10,
                        "net_arch": [64, 64]}


def sb3_on_anytrading(closes: np.ndarray, steps: int, hp: dict) -> float:
    """SB3's PPO on StocksEnv with ``hp`` (the other settings SB3's defaults)."""
    from gym_anytrading.envs import StocksEnv
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    df = pd.DataFrame({"Close": closes})
    venv = DummyVecEnv([lambda: StocksEnv(df=df, window_size=10, frame_bound=(10, len(df)))
                        for _ in range(hp["n_envs"])])
    model = PPO("MlpPolicy", venv, n_steps=hp["n_steps"], batch_size=hp["batch_size"], n_epochs=hp["n_epochs"],
                policy_kwargs={"net_arch": list(hp["net_arch"])}, seed=0, device="cpu")
    started = time.perf_counter()
    model.learn(steps)
    return model.num_timesteps / (time.perf_counter() - started)


def ours(agent: str, dataset, steps: int, hp: dict | None = None) -> float:
    result = train_model(agent, dataset, steps, seed=0, hyperparams=hp, register=False, tensorboard=False)
    return result.env_steps_per_s


def describe(hp: dict) -> str:
    if "group_size" in hp:
        return (f"{hp['group_size'] * hp['n_groups']} envs ({hp['n_groups']} groups x {hp['group_size']}), "
                f"{hp['episode_bars']} bars, batch {hp['batch_size']}, {hp['n_epochs']} epochs")
    return f"{hp['n_envs']} env(s), n_steps {hp['n_steps']}, batch {hp['batch_size']}, {hp['n_epochs']} epochs"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer-steps", type=int, default=16_384, help="steps at SB3's defaults (slow: ~1k/s)")
    parser.add_argument("--our-steps", type=int, default=200_000, help="steps at the tuned settings")
    args = parser.parse_args()
    th.set_num_threads(1)
    dataset, source = sessions()
    closes = np.concatenate([d.closes for d in dataset.days])
    grpo_tuned = {k: GRPO_DEFAULTS[k] for k in ("group_size", "n_groups", "episode_bars", "batch_size", "n_epochs",
                                                  "net_arch")}
    slow, fast = args.peer_steps, args.our_steps
    peer_defaults = sb3_on_anytrading(closes, slow, SB3_DEFAULTS)
    peer_tuned = sb3_on_anytrading(closes, fast, TUNED)
    rows = [  # (comparison, run, settings, env-steps/s, peer)
        ("peer", "SB3 PPO on gym-anytrading", describe(SB3_DEFAULTS), peer_defaults, peer_defaults),
        ("peer", "SB3 PPO on gym-anytrading", describe(TUNED), peer_tuned, peer_tuned),
        ("equal, SB3 defaults", "TradeNova PPO", describe(SB3_DEFAULTS),
         ours("ppo", dataset, slow, {**SB3_DEFAULTS, "torch_threads": 1}), peer_defaults),
        ("equal, SB3 defaults", "TradeNova GRPO", describe(GRPO_AT_SB3_DEFAULTS),
         ours("grpo", dataset, slow, {**GRPO_AT_SB3_DEFAULTS, "torch_threads": 1}), peer_defaults),
        ("equal, tuned", "TradeNova PPO", describe(TUNED), ours("ppo", dataset, fast), peer_tuned),
    ]
    rows.append(("tuned vs SB3 defaults", "TradeNova PPO", describe(TUNED), rows[-1][3], peer_defaults))
    rows.append(("tuned vs SB3 defaults", "TradeNova GRPO", describe(grpo_tuned), ours("grpo", dataset, fast),
                 peer_defaults))

    print(f"bars: {len(dataset.days)} sessions of SPY from {source}; {slow} steps at SB3's defaults, {fast} at the "
          f"tuned settings; 1 torch thread; network [64, 64] everywhere")
    print("| comparison | run | settings | env-steps/s | vs peer |")
    print("|---|---|---|---:|---:|")
    for comparison, run, settings, speed, peer in rows:
        print(f"| {comparison} | {run} | {settings} | {speed:,.0f} | {speed / peer:.2f}x |")


if __name__ == "__main__":
    main()
