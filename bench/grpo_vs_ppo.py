"""GRPO against PPO on real SPY, out of sample, through the session loop, with the baselines.

The walk-forward evaluation of ``tradenova evaluate --walk-forward`` (the same code:
``research.walk_forward.plan_walk_forward`` / ``run_walk_forward``) on the real SPY 1-minute
year in ../shared/data (the ``file`` source): for every fold and seed, PPO and GRPO are
trained with their defaults on the fold's training window only, then the fold's unseen
evaluation days are replayed through the real session loop on SimBroker (risk rules, the
take-profit ladder and costs all on), and so are the baselines (flat, always-call,
always-put, random per seed, momentum, opening-range breakout) on the same days.

Prints, per agent and baseline, the walk-forward summary (``research.summary``): mean
daily P&L, the IQM of the runs' mean daily P&L and its 95% bootstrap CI across seeds x
folds (scipy's ``bootstrap``, percentile method: ``rl.gate.bootstrap_ci``), win rate and
trades per day; then the gate's verdict (``rl.gate.gate``) on each agent's best model —
the (seed, fold) run with the highest mean daily P&L, gated on its own fold's evaluation
days against every baseline replayed over those days (``random`` with the model's seed).
Picking the best of several runs on the days it is then gated on flatters it: a model that
fails even so has no edge to show.

One process, one torch thread (the agents' defaults). Size it with the flags: on a
shared 2-core machine the defaults take about 25 minutes.

    python bench/grpo_vs_ppo.py [--seeds 5] [--folds 3] [--train-days 40] [--eval-days 5] [--timesteps 50000]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIRST_DAY, LAST_DAY = "2022-09-30", "2023-09-29"  # the real SPY 1-minute year


def table(summary) -> list[str]:
    """The summary as a markdown table, agents first, then the baselines."""
    order = {"ppo": 0, "grpo": 1}
    rows = sorted(summary.to_dict("records"), key=lambda r: (order.get(r["strategy"], 2), r["strategy"]))
    lines = ["| agent | runs | days | mean daily P&L | IQM | 95% CI of IQM | win rate | trades/day | max drawdown |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ci = "—" if math.isnan(r["ci_low"]) else f"[{r['ci_low']:+,.2f}, {r['ci_high']:+,.2f}]"
        win = "—" if math.isnan(r["win_rate"]) else f"{r['win_rate']:.1%}"
        lines.append(f"| {r['strategy']} | {r['runs']} | {r['days']} | {r['mean_daily_pnl']:+,.2f} | "
                     f"{r['iqm_daily_pnl']:+,.2f} | {ci} | {win} | {r['trades_per_day']:.2f} | "
                     f"{r['max_drawdown']:.2%} |")
    return lines


def best_model_verdicts(folder: Path, agents, baselines) -> list[str]:
    """Each agent's best run (highest mean daily P&L), gated against the baselines over
    the same evaluation days (``random`` with that run's seed)."""
    import pandas as pd

    from tradenova_dagster.rl.gate import gate
    from tradenova_dagster.research.sweep import RESULT_GLOB

    results = pd.concat([pd.read_parquet(p) for p in sorted(folder.glob(RESULT_GLOB))], ignore_index=True)
    lines = []
    for agent in agents:
        runs = results[results["strategy"] == agent].groupby(["seed", "fold"])["pnl"].mean()
        seed, fold = runs.idxmax()
        model = results[(results["strategy"] == agent) & (results["seed"] == seed) & (results["fold"] == fold)]
        model = model.sort_values("day")
        against = {}
        for name in baselines:
            rows = results[(results["strategy"] == name) & (results["fold"] == fold)
                           & (results["seed"] == (seed if name == "random" else 0))].sort_values("day")
            if list(rows["day"]) != list(model["day"]):
                raise RuntimeError(f"baseline {name!r} fold {fold}: replayed days differ from {agent}'s")
            against[name] = rows["pnl"].tolist()
        verdict = gate(model["pnl"].tolist(), against)
        lines.append(f"{agent} best model (seed {seed}, fold {fold}, {model['model'].iloc[0]}, mean daily P&L "
                     f"{runs.max():+,.2f}): {'PROMOTABLE' if verdict.promotable else 'NOT PROMOTABLE'} — "
                     f"{verdict.reason}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--train-days", type=int, default=40)
    parser.add_argument("--eval-days", type=int, default=5)
    parser.add_argument("--timesteps", type=int, default=50_000)
    parser.add_argument("--start", default=FIRST_DAY)
    parser.add_argument("--end", default=LAST_DAY)
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"needs the real SPY data in {DATA} (see the README's data section)")
    os.environ["TRADENOVA_HOME"] = tempfile.mkdtemp(prefix="grpo_vs_ppo_")

    import torch

    from tradenova_dagster.ledger.accounts import shared_store
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.research.sweep import sweep_dir
    from tradenova_dagster.research.walk_forward import AGENTS, plan_walk_forward, run_walk_forward

    torch.set_num_threads(1)
    plan = plan_walk_forward("grpo-vs-ppo", args.start, args.end, n_folds=args.folds, train_days=args.train_days,
                             eval_days=args.eval_days, seeds=args.seeds, timesteps=args.timesteps)
    source = get_source("file", data_dir=str(DATA))
    total = len(plan.runs())
    print(f"walk-forward on real SPY ({source.name} source): {args.folds} folds x {args.seeds} seeds x "
          f"{len(AGENTS)} agents, {args.timesteps:,} training steps each, train {args.train_days} / evaluate "
          f"{args.eval_days} sessions; {total} replayed runs with the baselines")
    for fold in plan.folds:
        print(f"  fold {fold.index}: train {fold.train[0]}..{fold.train[-1]}, "
              f"evaluate {fold.evaluation[0]}..{fold.evaluation[-1]}")
    started, done = time.perf_counter(), [0]

    def progress(what: str) -> None:
        done[0] += 1
        print(f"  [{done[0]}/{total}] {what} ({time.perf_counter() - started:.0f} s)", flush=True)

    summary = run_walk_forward(plan, shared_store(), source, progress=progress)
    elapsed = time.perf_counter() - started
    print()
    print(f"GRPO vs PPO, walk-forward on real SPY {plan.folds[0].evaluation[0]}..{plan.folds[-1].evaluation[-1]} "
          f"(out of sample), daily P&L in $ on a $100,000 backtest account, 1 contract, after costs; "
          f"{elapsed / 60:.1f} min")
    print("\n".join(table(summary)))
    print()
    print("\n".join(best_model_verdicts(sweep_dir(plan.evaluation_id), plan.agents, plan.baselines)))


if __name__ == "__main__":
    main()
