"""GRPO against PPO on real SPY days, out of sample, over several seeds.

Walk-forward folds over the real SPY 1-minute year in ../shared/data: each fold trains on
``--train-days`` sessions and evaluates on the ``--eval-days`` sessions right after them
(never a day it trained on), whole sessions, after spread and commission, through the
SignalModel (the smoothed policy that would trade). Each agent is trained with its
defaults from ``tradenova_dagster.rl.train`` for ``--timesteps`` steps per seed.

Prints per fold and overall: mean, std and interquartile mean (IQM) of the out-of-sample
return on capital over seeds, with the flat / always-call / momentum / random baselines.

    python bench/grpo_vs_ppo.py [--seeds 10] [--timesteps 200000] [--folds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import trim_mean

from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import get_source
from tradenova_dagster.rl.dataset import build_dataset
from tradenova_dagster.rl.evaluate import evaluate_signal
from tradenova_dagster.rl.train import train_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIRST_DAY, LAST_DAY = "2022-10-03", "2023-09-29"


def stats(values) -> str:
    values = np.asarray(values)
    return f"{values.mean():+.2%} | {values.std(ddof=1) if len(values) > 1 else 0.0:.2%} | {trim_mean(values, 0.25):+.2%}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--timesteps", type=int, default=200_000)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--train-days", type=int, default=60)
    parser.add_argument("--eval-days", type=int, default=20)
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"needs the real SPY data in {DATA}")
    os.environ.setdefault("TRADENOVA_HOME", tempfile.mkdtemp(prefix="grpo_vs_ppo_"))

    source = get_source("file", data_dir=str(DATA))
    sessions = calendar.trading_days(FIRST_DAY, LAST_DAY)
    span = args.train_days + args.eval_days
    step = (len(sessions) - span) // max(args.folds - 1, 1)
    results: dict[str, list[float]] = {"ppo": [], "grpo": []}
    started = time.perf_counter()
    print(f"{args.folds} folds x {args.seeds} seeds x 2 agents, {args.timesteps} steps each, "
          f"train {args.train_days} / evaluate {args.eval_days} sessions\n")
    for fold in range(args.folds):
        window = sessions[fold * step: fold * step + span]
        train = build_dataset("SPY", window[: args.train_days], source)
        held_out = build_dataset("SPY", window[args.train_days:], source)
        fold_results: dict[str, list] = {"ppo": [], "grpo": []}
        baselines = None
        for agent in ("ppo", "grpo"):
            for seed in range(args.seeds):
                result = train_model(agent, train, args.timesteps, seed=seed, register=False, tensorboard=False)
                evaluation = evaluate_signal(result.signal_model(), held_out.days, train_days=train.dates,
                                             name=agent)
                fold_results[agent].append(evaluation)
                results[agent].append(evaluation.model.total_return)
                baselines = baselines or evaluation
        print(f"### fold {fold + 1}: train {train.dates[0]}..{train.dates[-1]}, "
              f"evaluate {held_out.dates[0]}..{held_out.dates[-1]}")
        print("| policy | mean return | std | IQM | mean Sharpe | trades/day | % flat |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for agent, evaluations in fold_results.items():
            models = [e.model for e in evaluations]
            print(f"| {agent} ({len(models)} seeds) | {stats([m.total_return for m in models])} | "
                  f"{np.mean([m.sharpe for m in models]):.2f} | {np.mean([m.trades_per_day for m in models]):.1f} | "
                  f"{np.mean([m.pct_flat for m in models]):.0f}% |")
        for name, row in baselines.table().items():
            if name in ("ppo", "grpo"):
                continue
            print(f"| {name} | {row['total_return']:+.2%} | | | {row['sharpe']:.2f} | {row['trades_per_day']:.1f} | "
                  f"{row['pct_flat']:.0f}% |")
        print(f"(random: same trade frequency as PPO seed 0; elapsed {time.perf_counter() - started:.0f} s)\n",
              flush=True)

    print("### all folds (return per fold and seed, out of sample)")
    print("| agent | runs | mean return | std | IQM |")
    print("|---|---:|---:|---:|---:|")
    for agent, values in results.items():
        print(f"| {agent} | {len(values)} | {stats(values)} |")


if __name__ == "__main__":
    main()
