"""``tradenova train`` (train a PPO or GRPO agent, evaluate it out of sample, register it) and
``tradenova evaluate --walk-forward``.

Torch and stable-baselines3 are imported inside the command, so ``tradenova --help``
stays fast.
"""

from __future__ import annotations

import argparse
import os


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
                          default=["flat", "always-call", "always-put", "random", "momentum", "orb"])
    evaluate.add_argument("--timesteps", type=int, default=20_000, help="training steps per model")
    evaluate.add_argument("--id", default="", help="evaluation id (default: wf-<start>-<end>-<time>)")
    evaluate.add_argument("--symbol", default="SPY")
    evaluate.add_argument("--source", choices=("synthetic", "file", "alpaca"),
                          default=os.environ.get("TRADENOVA_DATA_SOURCE") or "synthetic")
    evaluate.add_argument("--data-dir", default=os.environ.get("TRADENOVA_DATA_DIR"))
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """``tradenova evaluate --walk-forward`` (see ``research.walk_forward``)."""
    import time

    from tqdm import tqdm

    from tradenova_dagster.ledger.accounts import shared_store
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.research.sweep import sweep_dir
    from tradenova_dagster.research.walk_forward import plan_walk_forward, run_walk_forward

    evaluation_id = args.id or f"wf-{args.start}-{args.end}-{time.strftime('%Y%m%dT%H%M%S')}"
    plan = plan_walk_forward(evaluation_id, args.start, args.end, n_folds=args.folds, train_days=args.train_days,
                             eval_days=args.eval_days, seeds=args.seeds, agents=args.agents,
                             baselines=args.baselines, timesteps=args.timesteps, symbol=args.symbol)
    source = get_source(args.source, **({"data_dir": args.data_dir} if args.source == "file" and args.data_dir else {}))
    print(f"walk-forward {evaluation_id}: {len(plan.folds)} folds on {args.source} data "
          + ", ".join(f"[train {f.train[0]}..{f.train[-1]} | eval {f.evaluation[0]}..{f.evaluation[-1]}]"
                      for f in plan.folds))
    with tqdm(total=len(plan.runs()), desc="walk-forward", unit="run", disable=args.no_progress) as bar:
        summary = run_walk_forward(plan, shared_store(), source,
                                   progress=lambda what: (bar.set_postfix_str(what), bar.update()))
    print(summary.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    print(f"results: {sweep_dir(evaluation_id)} (one Parquet file per run, summary.parquet)")
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", choices=("ppo", "grpo"), default="ppo")
    parser.add_argument("--symbol", default="SPY")
    parser.add_argument("--timesteps", type=int, default=100_000, help="env steps (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-days", type=int, default=60, help="sessions to train on (default 60)")
    parser.add_argument("--eval-days", type=int, default=20, help="held-out sessions after them (default 20)")
    parser.add_argument("--end", help="last evaluation session YYYY-MM-DD (default: the last completed one)")
    parser.add_argument("--source", choices=("synthetic", "file", "alpaca"),
                        default=os.environ.get("TRADENOVA_DATA_SOURCE") or "synthetic",
                        help="market data (default: $TRADENOVA_DATA_SOURCE, else synthetic)")
    parser.add_argument("--data-dir", default=os.environ.get("TRADENOVA_DATA_DIR"),
                        help="folder of CSV/Parquet bars for --source file (default: $TRADENOVA_DATA_DIR)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--promote", action="store_true", help="promote the model if it passes its evaluation")


def run_train(args: argparse.Namespace) -> int:
    from tradenova_dagster import config
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.ledger.accounts import shared_store
    from tradenova_dagster.rl import registry
    from tradenova_dagster.rl.dataset import build_dataset, default_train_eval_days
    import pandas as pd

    from tradenova_dagster.rl.evaluate import evaluate_replay
    from tradenova_dagster.rl.signal import SignalModel
    from tradenova_dagster.rl.train import train_model, validate_config

    if args.timesteps < 1:
        raise ValueError(f"--timesteps must be >= 1, got {args.timesteps}")
    validate_config(args.agent, args.timesteps, seed=args.seed)  # before any data is fetched
    options = {"data_dir": args.data_dir} if args.source == "file" and args.data_dir else {}
    source = get_source(args.source, **options)
    store = shared_store()
    train_days, eval_days = default_train_eval_days(args.train_days, args.eval_days, args.end)
    print(f"data: {args.symbol} from {args.source}, training {train_days[0]}..{train_days[-1]} "
          f"({len(train_days)} sessions)" + (f", evaluating {eval_days[0]}..{eval_days[-1]}" if eval_days else ""))
    dataset = build_dataset(args.symbol, train_days, source, store)
    result = train_model(args.agent, dataset, args.timesteps, seed=args.seed, progress_bar=not args.no_progress,
                         store=store)
    record = result.record
    print(f"model {record.model_id}: {result.timesteps} steps in {result.elapsed_s:.1f} s "
          f"({result.env_steps_per_s:,.0f} env-steps/s), final train reward {result.final_train_reward}")
    print(f"saved to {record.path}; TensorBoard: tensorboard --logdir {config.tensorboard_dir()}")
    if not eval_days:
        return 0
    # The gate: the held-out days replayed through the session loop (risk, ladder, costs), with the baselines.
    evaluation = evaluate_replay(store, source, eval_days, SignalModel.load(record.path), name=args.agent,
                                 label=record.model_id, train_days=dataset.dates)
    registry.record_evaluation(record.model_id, eval_days=list(evaluation.eval_days), promotable=evaluation.promotable,
                               reason=evaluation.reason, metrics=evaluation.as_dict(), store=store)
    print(pd.DataFrame(evaluation.rows()).to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    print(("PROMOTABLE: " if evaluation.promotable else "NOT PROMOTABLE: ") + evaluation.reason)
    if args.promote and evaluation.promotable:
        registry.promote(record.model_id, reason="tradenova train --promote", store=store)
        print(f"promoted {record.model_id} for {record.symbol}")
    return 0
