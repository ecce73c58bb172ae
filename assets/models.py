"""Model assets: the training dataset, the PPO and GRPO models, and their evaluation.

The dataset reads each day through ``bars_for_day`` (the stored ``market_bars`` if that
partition was materialised, else the market data source) instead of depending on the
partitioned ``market_bars`` asset: a non-partitioned asset downstream of a partitioned one
would need every partition since 2022. The split is walk-forward: the ``n_eval_days``
sessions ending at ``end`` are held out, the ``n_train_days`` before them are trained on.

``model_evaluation`` runs each model's SignalModel (the smoothed policy that trades) over
the held-out sessions against flat, always-call, random (same trade frequency) and
momentum baselines, records every verdict in DuckDB (``model_evaluations``), and its
``promotable`` check fails when no model beats flat and random out of sample. The
promotion sensor reads ``best_model_id`` from the check's metadata.
"""


from typing import Optional

import dagster as dg

from resources.market_data import MarketDataResource
from resources.store import StoreResource
from tradenova_dagster import config as tn_config
from tradenova_dagster.rl import registry
from tradenova_dagster.rl.dataset import TrainingDataset, build_dataset, default_train_eval_days
from tradenova_dagster.rl.env import EnvConfig

GROUP = "models"


class TrainingDatasetConfig(dg.Config):
    symbol: str = "SPY"
    end: Optional[str] = None  # last held-out session, YYYY-MM-DD; default the last completed one
    n_train_days: int = 60
    n_eval_days: int = 20


@dg.asset(group_name=GROUP, kinds={"numpy"}, description="Features and prices of the training sessions (a .npz file), "
          "and the held-out sessions that follow them for evaluation.")
def training_dataset(
    context: dg.AssetExecutionContext,
    config: TrainingDatasetConfig,
    store: StoreResource,
    market_data: MarketDataResource,
) -> dg.Output[dict]:
    train_days, eval_days = default_train_eval_days(config.n_train_days, config.n_eval_days, config.end)
    if not eval_days:
        raise ValueError("training_dataset.n_eval_days: need at least one held-out day to evaluate on, got 0")
    source = market_data.get_source()
    dataset = build_dataset(config.symbol, train_days, source, store.get_store())
    path = tn_config.models_dir() / "datasets" / f"{dataset.symbol}_{train_days[0]}_{train_days[-1]}.npz"
    dataset.save(path)
    value = {
        "path": str(path),
        "symbol": dataset.symbol,
        "train_days": [d.isoformat() for d in train_days],
        "eval_days": [d.isoformat() for d in eval_days],
        "source": source.name,
    }
    return dg.Output(
        value,
        metadata={
            "dataset_path": dg.MetadataValue.path(str(path)),
            "symbol": dataset.symbol,
            "source": source.name,
            "train_days": len(train_days),
            "train_range": f"{train_days[0]} .. {train_days[-1]}",
            "eval_range": f"{eval_days[0]} .. {eval_days[-1]}",
            "bars": dataset.n_bars,
        },
    )


class PPOModelConfig(dg.Config):
    timesteps: int = 200_000
    seed: int = 0
    n_envs: Optional[int] = None
    n_steps: Optional[int] = None
    batch_size: Optional[int] = None
    n_epochs: Optional[int] = None
    learning_rate: Optional[float] = None
    ent_coef: Optional[float] = None
    checkpoint_every: int = 50_000


class GRPOModelConfig(dg.Config):
    timesteps: int = 200_000
    seed: int = 0
    group_size: Optional[int] = None
    n_groups: Optional[int] = None
    episode_bars: Optional[int] = None
    advantage: Optional[str] = None  # outcome | process
    kl_coef: Optional[float] = None
    ref_update_interval: Optional[int] = None
    batch_size: Optional[int] = None
    n_epochs: Optional[int] = None
    learning_rate: Optional[float] = None
    checkpoint_every: int = 50_000


def _train(context: dg.AssetExecutionContext, agent: str, config: dg.Config, dataset_info: dict, store) -> dg.Output[dict]:
    from tradenova_dagster.rl.train import train_model

    hyperparams = config.model_dump(exclude={"timesteps", "seed", "checkpoint_every"})
    dataset = TrainingDataset.load(dataset_info["path"])
    context.log.info(f"training {agent} on {len(dataset.days)} sessions of {dataset.symbol} for {config.timesteps} steps")
    result = train_model(
        agent, dataset, config.timesteps, seed=config.seed, hyperparams=hyperparams,
        checkpoint_every=config.checkpoint_every, run_id=context.run_id, store=store.get_store(),
    )
    record = result.record
    return dg.Output(
        {"model_id": record.model_id, "agent": agent, "path": str(record.path)},
        metadata={
            "model_id": record.model_id,
            "model_path": dg.MetadataValue.path(str(record.path)),
            "timesteps": result.timesteps,
            "env_steps_per_s": round(result.env_steps_per_s, 1),
            "train_seconds": round(result.elapsed_s, 1),
            "final_train_reward": result.final_train_reward if result.final_train_reward is not None else float("nan"),
            "tensorboard": dg.MetadataValue.path(str(tn_config.tensorboard_dir() / f"{record.model_id}_1")),
            "hyperparameters": dg.MetadataValue.json(record.meta["hyperparams"]),
        },
    )


@dg.asset(group_name=GROUP, kinds={"pytorch"}, description="A PPO agent (stable-baselines3) trained on the training "
          "dataset; files under $TRADENOVA_HOME/models/<model_id>, registered in DuckDB.")
def ppo_model(
    context: dg.AssetExecutionContext, config: PPOModelConfig, training_dataset: dict, store: StoreResource
) -> dg.Output[dict]:
    return _train(context, "ppo", config, training_dataset, store)


@dg.asset(group_name=GROUP, kinds={"pytorch"}, description="A GRPO agent (group-relative advantages, no value "
          "network, KL to a frozen reference) trained on the training dataset.")
def grpo_model(
    context: dg.AssetExecutionContext, config: GRPOModelConfig, training_dataset: dict, store: StoreResource
) -> dg.Output[dict]:
    return _train(context, "grpo", config, training_dataset, store)


class EvaluationConfig(dg.Config):
    random_seeds: list[int] = [0, 1, 2, 3, 4]
    alpha: Optional[float] = None  # SignalModel smoothing; default the SignalModel's


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            "promotable",
            asset="model_evaluation",
            description="At least one model beats both always-flat and random (same trade frequency) "
            "out of sample, after costs; a model that does not is never promoted.",
        )
    ],
    description="Walk-forward, out-of-sample evaluation of the PPO and GRPO models on the held-out "
    "sessions, after costs, against flat / always-call / random / momentum baselines.",
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    training_dataset: dict,
    ppo_model: dict,
    grpo_model: dict,
    store: StoreResource,
    market_data: MarketDataResource,
):
    from tradenova_dagster.rl.evaluate import evaluate_signal
    from tradenova_dagster.rl.signal import SignalModel

    db = store.get_store()
    eval_data = build_dataset(training_dataset["symbol"], training_dataset["eval_days"], market_data.get_source(), db)
    signal_kwargs = {"alpha": config.alpha} if config.alpha is not None else {}
    verdicts: dict[str, dict] = {}
    sections, charts = [], {}
    for info in (ppo_model, grpo_model):
        record = registry.get_model(info["model_id"], db)
        evaluation = evaluate_signal(
            SignalModel.from_record(record, **signal_kwargs),
            eval_data.days,
            env_config=EnvConfig.from_dict(record.meta["env_config"]),
            train_days=record.train_days,
            random_seeds=config.random_seeds,
            name=record.agent,
        )
        registry.record_evaluation(
            record.model_id, eval_days=eval_data.dates, promotable=evaluation.promotable,
            reason=evaluation.reason, metrics=evaluation.as_dict(), run_id=context.run_id, store=db,
        )
        chart = evaluation.save_chart(tn_config.reports_dir() / "models" / f"{record.model_id}_evaluation.png")
        charts[record.agent] = str(chart)
        verdicts[record.model_id] = {
            "agent": record.agent,
            "promotable": evaluation.promotable,
            "reason": evaluation.reason,
            "total_return": evaluation.model.total_return,
            "sharpe": evaluation.model.sharpe,
        }
        sections.append(f"### {record.agent} `{record.model_id}`\n\n{evaluation.markdown()}\n\n"
                        f"**{'promotable' if evaluation.promotable else 'not promotable'}**: {evaluation.reason}\n\n"
                        f"{evaluation.chart_markdown()}")

    promotable = {mid: v for mid, v in verdicts.items() if v["promotable"]}
    best = max(promotable, key=lambda mid: promotable[mid]["total_return"]) if promotable else None
    metadata = {
        "eval_range": f"{eval_data.dates[0]} .. {eval_data.dates[-1]}",
        "eval_days": len(eval_data.dates),
        "best_model_id": best or "",
        "promotable_models": ", ".join(promotable) or "none",
        **{f"{v['agent']}_return": v["total_return"] for v in verdicts.values()},
        **{f"{v['agent']}_sharpe": v["sharpe"] for v in verdicts.values()},
        **{f"{agent}_chart": dg.MetadataValue.path(path) for agent, path in charts.items()},
    }
    yield dg.Output(
        {"best_model_id": best, "models": verdicts, "eval_days": training_dataset["eval_days"]},
        metadata={**metadata, "evaluation": dg.MetadataValue.md("\n\n".join(sections))},
    )
    yield dg.AssetCheckResult(
        check_name="promotable",
        passed=best is not None,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"{best} beats flat and random out of sample" if best
                     else "no model beats flat and random out of sample: nothing to promote"),
        metadata={"best_model_id": best or "", **{f"{mid}": v["reason"] for mid, v in verdicts.items()}},
    )
