"""Walk-forward evaluation: train on each fold's window, trade the unseen days after it.

``tradenova evaluate --walk-forward`` answers "does the learner have an edge?" the way a
user would trust: for every fold (``folds.py``) and every seed, each agent (PPO, GRPO) is
trained on the fold's training window only, then its evaluation days are replayed through
the real session loop on SimBroker — risk rules, the ladder and costs all on — on a
backtest account of its own; the baselines (``strategies.BASELINES``) are replayed on the
same days the same way (the random one once per seed, the rule-based ones once per fold:
they ignore seeds). Every run writes its per-day results as one Parquet file in
``$TRADENOVA_HOME/sweeps/<id>/`` (the sweep format, ``sweep.write_atomic``), so the
summary is ``summary.sweep_summary``: per agent, mean daily P&L, the IQM of the runs'
mean daily P&L with its 95% bootstrap CI across seeds x folds, win rate, max drawdown and
trades per day; ``report.html`` beside it (``report.write_sweep_report``) adds each
agent's gate verdict. A trained model is loaded back from its checkpoint, with its training
window, so the session itself refuses a day it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tradenova_dagster.research.folds import Fold, folds
from tradenova_dagster.research.report import write_sweep_report
from tradenova_dagster.research.summary import sweep_summary
from tradenova_dagster.research.sweep import (RESULT_COLUMNS, require_sweep_id, result_path, replay_run, sweep_dir,
                                              write_atomic)
from tradenova_dagster.strategies import BASELINES, Baseline

AGENTS = ("ppo", "grpo")


@dataclass(frozen=True)
class WalkForwardPlan:
    """A checked walk-forward request."""

    evaluation_id: str
    folds: tuple[Fold, ...]
    agents: tuple[str, ...]
    seeds: tuple[int, ...]
    baselines: tuple[str, ...]
    timesteps: int
    symbol: str = "SPY"

    def runs(self) -> list[tuple[str, int, Fold]]:
        """Every (strategy, seed, fold) to replay: each agent x seed, and the baselines (the
        random one per seed, the others once: they do not depend on a seed)."""
        runs = [(a, s, f) for f in self.folds for a in self.agents for s in self.seeds]
        for name in self.baselines:
            seeds = self.seeds if name == "random" else self.seeds[:1]
            runs += [(name, s, f) for f in self.folds for s in seeds]
        return runs


def plan_walk_forward(evaluation_id: str, start, end, *, n_folds: int, train_days: int, eval_days: int,
                      seeds: int, agents=AGENTS, baselines=BASELINES, timesteps: int = 20_000,
                      symbol: str = "SPY") -> WalkForwardPlan:
    """Everything checked before any training starts (ValueErrors naming the field and
    value): the folds fit the range, the agents and baselines exist, timesteps and seeds are
    sensible (``train.validate_config``), and the id has not been used."""
    from tradenova_dagster.rl import registry
    from tradenova_dagster.rl.train import validate_config

    require_sweep_id(evaluation_id)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds must be a whole number >= 1, got {seeds!r}")
    agents = tuple(registry.require_agent(a) for a in agents)
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"--baselines: unknown {unknown}; expected some of {', '.join(BASELINES)}")
    for agent in agents:
        validate_config(agent, timesteps, seed=0)
    windows = tuple(folds(start, end, n_folds, train_days, eval_days))
    folder = sweep_dir(evaluation_id)
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"evaluation id {evaluation_id!r} is taken ({folder}); choose another")
    return WalkForwardPlan(evaluation_id, windows, agents, tuple(range(seeds)), tuple(baselines), int(timesteps),
                           symbol)


def run_walk_forward(plan: WalkForwardPlan, store, source, *, progress=None) -> pd.DataFrame:
    """Train and replay every run of ``plan`` (``progress(description)`` after each) and
    return the summary, one row per agent and baseline (``summary.sweep_summary``)."""
    from tradenova_dagster.rl.dataset import build_dataset
    from tradenova_dagster.rl.signal import SignalModel
    from tradenova_dagster.rl.train import train_model

    folder = sweep_dir(plan.evaluation_id)
    folder.mkdir(parents=True, exist_ok=True)
    datasets: dict[int, object] = {}
    for name, seed, fold in plan.runs():
        if name in plan.agents:
            if fold.index not in datasets:
                datasets[fold.index] = build_dataset(plan.symbol, list(fold.train), source, store)
            trained = train_model(name, datasets[fold.index], plan.timesteps, seed=seed, tensorboard=False,
                                  checkpoint_every=0, store=store)
            signal = SignalModel.load(trained.record.path)  # with its training window: look-ahead is refused
        else:
            signal = Baseline(name, seed)
        frame = replay_run(store, source, signal, f"wf.{plan.evaluation_id}.{name}.s{seed}.f{fold.index}",
                           fold.evaluation)
        frame = frame.assign(sweep_id=plan.evaluation_id, strategy=name, seed=seed, fold=fold.index)
        write_atomic(result_path(plan.evaluation_id, name, seed, fold.index),
                     lambda tmp, f=frame: f[list(RESULT_COLUMNS)].to_parquet(tmp, index=False))
        if progress is not None:
            progress(f"{name} seed {seed} fold {fold.index}")
    summary = sweep_summary(folder)
    write_atomic(Path(folder) / "summary.parquet", lambda tmp: summary.to_parquet(tmp, index=False))
    write_sweep_report(folder)
    return summary
