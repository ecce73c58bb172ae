"""Training throughput (env-steps/s, collection + updates): our PPO and GRPO defaults on
TradingEnv against stable-baselines3's PPO defaults on gym-anytrading's StocksEnv.

Same SPY bars for every run (20 sessions: the real year in ../shared/data if present,
else synthetic), same process. The peer is ``PPO("MlpPolicy", StocksEnv)`` exactly as a
user would write it (one env, n_steps 2048, batch 64, 10 epochs, torch's default thread
count); also shown: the same with one torch thread, and with 16 DummyVecEnv copies.

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


def sb3_on_anytrading(closes: np.ndarray, steps: int, n_envs: int) -> float:
    from gym_anytrading.envs import StocksEnv
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    df = pd.DataFrame({"Close": closes})
    venv = DummyVecEnv([lambda: StocksEnv(df=df, window_size=10, frame_bound=(10, len(df))) for _ in range(n_envs)])
    model = PPO("MlpPolicy", venv, seed=0, device="cpu")
    started = time.perf_counter()
    model.learn(steps)
    return model.num_timesteps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer-steps", type=int, default=16_384)
    parser.add_argument("--our-steps", type=int, default=200_000)
    args = parser.parse_args()
    dataset, source = sessions()
    closes = np.concatenate([d.closes for d in dataset.days])

    default_threads = th.get_num_threads()
    rows = [("SB3 PPO defaults on gym-anytrading (1 env, %d torch threads)" % default_threads,
             sb3_on_anytrading(closes, args.peer_steps, 1))]
    th.set_num_threads(1)
    rows.append(("SB3 PPO defaults on gym-anytrading (1 env, 1 torch thread)",
                 sb3_on_anytrading(closes, args.peer_steps, 1)))
    rows.append(("SB3 PPO defaults on gym-anytrading (16 DummyVecEnv, 1 thread)",
                 sb3_on_anytrading(closes, args.peer_steps * 4, 16)))
    for agent, defaults in (("ppo", PPO_DEFAULTS), ("grpo", GRPO_DEFAULTS)):
        result = train_model(agent, dataset, args.our_steps, seed=0, register=False, tensorboard=False)
        n_envs = defaults.get("n_envs") or defaults["group_size"] * defaults["n_groups"]
        rows.append((f"TradeNova {agent.upper()} defaults on TradingEnv ({n_envs} envs)", result.env_steps_per_s))

    peer = rows[0][1]
    print(f"bars: {len(dataset.days)} sessions of SPY from {source}; peer {args.peer_steps} steps, "
          f"ours {args.our_steps} steps")
    print("| run | env-steps/s | vs SB3 PPO defaults |")
    print("|---|---:|---:|")
    for name, speed in rows:
        print(f"| {name} | {speed:,.0f} | {speed / peer:.1f}x |")


if __name__ == "__main__":
    main()
