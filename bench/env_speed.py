"""Env steps per second: TradingEnv against gym-anytrading's StocksEnv, same bars, same process.

Both envs step through the same 20 sessions of SPY 1-minute bars (the real year in
../shared/data if present, else the synthetic source) with random actions, resetting at
the end of each episode; the env alone is timed (no policy). TradingEnv fills and marks an
option per step at SimBroker's quotes (from its per-day grid of the market model's
Black-Scholes bid/ask) and computes its potential-based shaping; StocksEnv trades the share.

Timed in CPU seconds of this process (``time.process_time``), interleaved, best of
``--repeats`` for each: on a machine shared with other work, wall time mostly measures
the others (how long this process waited for a core), and it hits whichever env happens to
run at that moment.

    python bench/env_speed.py [--steps 300000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import get_source
from tradenova_dagster.rl.dataset import build_dataset
from tradenova_dagster.rl.env import TradingEnv

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def sessions(n: int = 20):
    if DATA.is_dir():
        source, start, end = get_source("file", data_dir=str(DATA)), "2023-03-01", "2023-04-30"
    else:
        source, start, end = get_source("synthetic"), "2024-03-01", "2024-04-30"
    days = [d for d in calendar.trading_days(start, end) if calendar.session_minutes(d) == 390][:n]
    return build_dataset("SPY", days, source), source.name


def time_trading_env(days, steps: int) -> float:
    env = TradingEnv(days)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, 1)).astype(np.float32)
    env.reset(seed=0)
    started = time.process_time()
    for i in range(steps):
        _, _, done, _, _ = env.step(actions[i])
        if done:
            env.reset()
    return steps / (time.process_time() - started)


def time_stocks_env(closes: np.ndarray, steps: int) -> float:
    from gym_anytrading.envs import StocksEnv

    df = pd.DataFrame({"Close": closes})
    env = StocksEnv(df=df, window_size=10, frame_bound=(10, len(df)))
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, steps)
    env.reset(seed=0)
    started = time.process_time()
    for i in range(steps):
        _, _, terminated, truncated, _ = env.step(int(actions[i]))
        if terminated or truncated:
            env.reset()
    return steps / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    dataset, source = sessions()
    closes = np.concatenate([d.closes for d in dataset.days])
    time_trading_env(dataset.days, 5_000)  # warm the per-day pricing cache (once per day, not per step)
    ours, peer = 0.0, 0.0
    for _ in range(args.repeats):  # interleaved, best of each: other load on the machine hits both alike
        ours = max(ours, time_trading_env(dataset.days, args.steps))
        peer = max(peer, time_stocks_env(closes, args.steps))
    print(f"bars: {len(dataset.days)} sessions of SPY from {source} ({len(closes)} bars); "
          f"{args.steps} random steps, best of {args.repeats} (CPU time, interleaved)")
    print("| env | steps/s | ratio |")
    print("|---|---:|---:|")
    print(f"| gym-anytrading StocksEnv | {peer:,.0f} | 1.00x |")
    print(f"| TradenovaTradingEnv (options, Black-Scholes) | {ours:,.0f} | {ours / peer:.2f}x |")


if __name__ == "__main__":
    main()
