"""``tradenova train`` (train a PPO or GRPO agent, evaluate it out of sample, register it) and
``tradenova evaluate --walk-forward``.

Each command checks its options here, before anything runs, then launches a Dagster run
(``train_job``, ``walk_forward_job`` in ``ops/research_runs.py``) that calls ``train`` or
``walk_forward`` below, follows it with a progress bar, and prints the lines the run
stored as its ``summary`` metadata: the same work and the same output whether the CLI, the
UI or the daemon's queue ran it. Torch and stable-baselines3 are imported inside the
functions, so ``tradenova --help`` stays fast.
"""

from __future__ import annotations

import argparse

from tradenova_dagster.commands import add_source_arguments
from tradenova_dagster.strategies import BASELINES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a PPO or GRPO agent on market data and evaluate it out of sample",
        description="Train on the N sessions before a held-out evaluation window, save the "
        "model under $TRADENOVA_HOME/models, log to TensorBoard, and print the out-of-sample "
        "evaluation: the held-out days replayed through the session loop against the baselines, and the "
        "gate's verdict (--promote promotes only a model that passes it).",
    )
    add_train_arguments(parser)
    parser.set_defaults(func=run_train)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="walk-forward evaluation: train per fold and seed, trade the unseen days after, vs baselines",
        description="For each walk-forward fold and seed, train each agent on the fold's training window "
        "only, then replay its evaluation days through the session loop on SimBroker (risk, ladder, costs on), "
        "with the baselines on the same days; prints mean daily P&L, the IQM with its 95%% bootstrap CI across "
        "seeds x folds, win rate, max drawdown and trades per day. Results: $TRADENOVA_HOME/sweeps/<id>/.",
    )
    evaluate.add_argument("--walk-forward", action="store_true", required=True,
                          help="the evaluation mode (required: the only one)")
    evaluate.add_argument("--start", required=True, help="first day of the range YYYY-MM-DD")
    evaluate.add_argument("--end", required=True, help="last day of the range YYYY-MM-DD")
    evaluate.add_argument("--folds", type=int, default=3)
    evaluate.add_argument("--train-days", type=int, default=40, help="sessions in each training window")
    evaluate.add_argument("--eval-days", type=int, default=10, help="sessions in each evaluation window")
    evaluate.add_argument("--seeds", type=int, default=5)
    evaluate.add_argument("--agents", nargs="+", default=["ppo", "grpo"], choices=("ppo", "grpo"))
    evaluate.add_argument("--baselines", nargs="+",
                          default=list(BASELINES))
    evaluate.add_argument("--timesteps", type=int, default=20_000, help="training steps per model")
    evaluate.add_argument("--id", default="", help="evaluation id (default: wf-<start>-<end>-<time>)")
    evaluate.add_argument("--symbol", default="SPY")
    add_source_arguments(evaluate)
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(func=run_evaluate)


def evaluate_options(args: argparse.Namespace) -> dict:
    """The walk-forward's options, checked (``plan_walk_forward``) before any run."""
    import time

    options = {"evaluation_id": args.id or f"wf-{args.start}-{args.end}-{time.strftime('%Y%m%dT%H%M%S')}",
               "start": args.start, "end": args.end, "folds": args.folds, "train_days": args.train_days,
               "eval_days": args.eval_days, "seeds": args.seeds, "agents": list(args.agents),
               "baselines": list(args.baselines), "timesteps": args.timesteps, "symbol": args.symbol,
               "source": args.source, "data_dir": args.data_dir or ""}
    _walk_forward_plan(options)
    _source(options)
    return options


def _walk_forward_plan(options: dict):
    from tradenova_dagster.research.walk_forward import plan_walk_forward

    return plan_walk_forward(options["evaluation_id"], options["start"], options["end"], n_folds=options["folds"],
                             train_days=options["train_days"], eval_days=options["eval_days"],
                             seeds=options["seeds"], agents=options["agents"], baselines=options["baselines"],
                             timesteps=options["timesteps"], symbol=options["symbol"])


def _source(options: dict):
    from tradenova_dagster.market.data import get_source

    data_dir = options.get("data_dir")
    return get_source(options["source"], **({"data_dir": data_dir} if options["source"] == "file" and data_dir else {}))


def walk_forward(options: dict, step=None) -> list[str]:
    """The walk-forward evaluation (``research.walk_forward``); ``step(what)`` after each run.
    Returns the lines ``tradenova evaluate`` prints."""
    from tradenova_dagster.ledger.accounts import shared_store
    from tradenova_dagster.research.sweep import sweep_dir
    from tradenova_dagster.research.walk_forward import run_walk_forward

    plan = _walk_forward_plan(options)
    summary = run_walk_forward(plan, shared_store(), _source(options), progress=step)
    return [summary.to_string(index=False, float_format=lambda v: f"{v:,.2f}"),
            f"results: {sweep_dir(plan.evaluation_id)} (one Parquet file per run, summary.parquet)"]


def run_evaluate(args: argparse.Namespace) -> int:
    """``tradenova evaluate --walk-forward`` (see ``research.walk_forward``)."""
    from ops.research_runs import follow_command

    options = evaluate_options(args)
    plan = _walk_forward_plan(options)
    print(f"walk-forward {plan.evaluation_id}: {len(plan.folds)} folds on {args.source} data "
          + ", ".join(f"[train {f.train[0]}..{f.train[-1]} | eval {f.evaluation[0]}..{f.evaluation[-1]}]"
                      for f in plan.folds))
    return follow_command("evaluate", options, total=len(plan.runs()), unit="run", no_progress=args.no_progress)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", choices=("ppo", "grpo"), default="ppo")
    parser.add_argument("--symbol", default="SPY")
    parser.add_argument("--timesteps", type=int, default=100_000, help="env steps (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-days", type=int, default=60, help="sessions to train on (default 60)")
    parser.add_argument("--eval-days", type=int, default=20, help="held-out sessions after them (default 20)")
    parser.add_argument("--end", help="last evaluation session YYYY-MM-DD (default: the last completed one)")
    add_source_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--promote", action="store_true", help="promote the model if it passes its evaluation")


def train_options(args: argparse.Namespace) -> dict:
    """The training's options, checked before any run (or any data is fetched)."""
    from tradenova_dagster.rl.dataset import default_train_eval_days
    from tradenova_dagster.rl.train import validate_config

    if args.timesteps < 1:
        raise ValueError(f"--timesteps must be >= 1, got {args.timesteps}")
    validate_config(args.agent, args.timesteps, seed=args.seed)
    default_train_eval_days(args.train_days, args.eval_days, args.end)  # the dates and window sizes
    options = {"agent": args.agent, "symbol": args.symbol, "timesteps": args.timesteps, "seed": args.seed,
               "train_days": args.train_days, "eval_days": args.eval_days, "end": args.end or "",
               "source": args.source, "data_dir": args.data_dir or "", "promote": bool(args.promote)}
    _source(options)
    return options


TRAIN_STEPS = 3  # dataset, training, evaluation: the progress bar's total


def train(options: dict, step=None) -> list[str]:
    """Train, register and evaluate one model (the gate); ``step(what)`` after each of the
    ``TRAIN_STEPS`` stages. Returns the lines ``tradenova train`` prints."""
    import pandas as pd

    from tradenova_dagster import config
    from tradenova_dagster.ledger.accounts import shared_store
    from tradenova_dagster.rl import registry
    from tradenova_dagster.rl.dataset import build_dataset, default_train_eval_days
    from tradenova_dagster.rl.evaluate import evaluate_replay
    from tradenova_dagster.rl.signal import SignalModel
    from tradenova_dagster.rl.train import train_model

    step = step or (lambda what: None)
    agent, symbol = options["agent"], options["symbol"]
    store = shared_store()
    train_days, eval_days = default_train_eval_days(options["train_days"], options["eval_days"],
                                                    options["end"] or None)
    lines = [f"data: {symbol} from {options['source']}, training {train_days[0]}..{train_days[-1]} "
             f"({len(train_days)} sessions)" + (f", evaluating {eval_days[0]}..{eval_days[-1]}" if eval_days else "")]
    dataset = build_dataset(symbol, train_days, _source(options), store)
    step(f"dataset of {len(train_days)} sessions")
    result = train_model(agent, dataset, options["timesteps"], seed=options["seed"], store=store)
    record = result.record
    step(f"trained {record.model_id}")
    lines += [f"model {record.model_id}: {result.timesteps} steps in {result.elapsed_s:.1f} s "
              f"({result.env_steps_per_s:,.0f} env-steps/s), final train reward {result.final_train_reward}",
              f"saved to {record.path}; TensorBoard: tensorboard --logdir {config.tensorboard_dir()}"]
    if not eval_days:
        step("no held-out days to evaluate")
        return lines
    # The gate: the held-out days replayed through the session loop (risk, ladder, costs), with the baselines.
    evaluation = evaluate_replay(store, _source(options), eval_days, SignalModel.load(record.path), name=agent,
                                 label=record.model_id, train_days=dataset.dates)
    registry.record_evaluation(record.model_id, eval_days=list(evaluation.eval_days), promotable=evaluation.promotable,
                               reason=evaluation.reason, metrics=evaluation.as_dict(), store=store)
    step(f"evaluated on {len(eval_days)} held-out sessions")
    lines += [pd.DataFrame(evaluation.rows()).to_string(index=False, float_format=lambda v: f"{v:,.2f}"),
              ("PROMOTABLE: " if evaluation.promotable else "NOT PROMOTABLE: ") + evaluation.reason]
    if options["promote"] and evaluation.promotable:
        registry.promote(record.model_id, reason="tradenova train --promote", store=store)
        lines.append(f"promoted {record.model_id} for {record.symbol}")
    return lines


def run_train(args: argparse.Namespace) -> int:
    """``tradenova train``: a run of ``train_job`` (see the module docstring)."""
    from ops.research_runs import follow_command

    return follow_command("train", train_options(args), total=TRAIN_STEPS, unit="step", no_progress=args.no_progress)
