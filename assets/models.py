"""Model assets: the training dataset, the PPO and GRPO models, and their evaluation.

The dataset reads each day through ``bars_for_day`` (the stored ``market_bars`` if that
partition was materialised, else the market data source) instead of depending on the
partitioned ``market_bars`` asset: a non-partitioned asset downstream of a partitioned one
would need every partition since 2022. The split is walk-forward: the ``n_eval_days``
sessions ending at ``end`` are held out, the ``n_train_days`` before them are trained on.

``model_evaluation`` replays the held-out sessions through the real session loop on
SimBroker (``rl.evaluate.evaluate_replay``) for each model's SignalModel (the smoothed
policy that trades) and for every baseline (flat, always-call, always-put, random,
momentum, orb; each on a backtest account of its own), and gates each model
(``rl.gate.gate``: the 95% bootstrap CI of its daily after-cost P&L above 0 and its IQM
above every baseline's). Every verdict is recorded in DuckDB (``model_evaluations``); the
gate's inputs per agent are the ``agents`` metadata table; the ``promotable`` check passes
when some model passes the gate, and names the best (highest IQM) in ``best_model_id``,
which the promotion sensor reads.
"""


from datetime import date
from typing import Optional

import dagster as dg

from assets.market import table_metadata
from resources.market_data import MarketDataResource
from resources.store import StoreResource
from tradenova_dagster import config as tn_config
from tradenova_dagster.rl import registry
from tradenova_dagster.rl.dataset import TrainingDataset, build_dataset, default_train_eval_days

GROUP = "models"
OWNERS = ["team:research"]


class TrainingDatasetConfig(dg.Config):
    symbol: str = "SPY"
    end: Optional[str] = None  # last held-out session, YYYY-MM-DD; default the last completed one
    n_train_days: int = 60
    n_eval_days: int = 20


@dg.asset(group_name=GROUP, owners=OWNERS, kinds={"numpy"},
          description="Features and prices of the training sessions (a .npz file), "
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
    from tradenova_dagster.rl.train import train_model, validate_config

    hyperparams = config.model_dump(exclude={"timesteps", "seed", "checkpoint_every"})
    validate_config(agent, config.timesteps, hyperparams, seed=config.seed,  # before the dataset is read
                    checkpoint_every=config.checkpoint_every)
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


@dg.asset(group_name=GROUP, owners=OWNERS, kinds={"pytorch"},
          description="A PPO agent (stable-baselines3) trained on the training "
          "dataset; files under $TRADENOVA_HOME/models/<model_id>, registered in DuckDB.")
def ppo_model(
    context: dg.AssetExecutionContext, config: PPOModelConfig, training_dataset: dict, store: StoreResource
) -> dg.Output[dict]:
    return _train(context, "ppo", config, training_dataset, store)


@dg.asset(group_name=GROUP, owners=OWNERS, kinds={"pytorch"},
          description="A GRPO agent (group-relative advantages, no value "
          "network, KL to a frozen reference) trained on the training dataset.")
def grpo_model(
    context: dg.AssetExecutionContext, config: GRPOModelConfig, training_dataset: dict, store: StoreResource
) -> dg.Output[dict]:
    return _train(context, "grpo", config, training_dataset, store)


VERDICT_COLUMNS = {"model_id": "string", "agent": "string", "promotable": "bool", "mean_daily_pnl": "float",
                   "iqm_daily_pnl": "float", "ci_low": "float", "ci_high": "float",
                   "reason": "string"}  # model_evaluation's "models" table
AGENT_COLUMNS = {"evaluated_model": "string", "agent": "string", "model_id": "string", "days": "int",
                 "mean_daily_pnl": "float", "iqm_daily_pnl": "float", "ci_low": "float", "ci_high": "float",
                 "win_rate": "float", "max_drawdown": "float", "trades_per_day": "float"}  # the gate's inputs


class EvaluationConfig(dg.Config):
    seed: int = 0  # the random baseline's seed
    alpha: Optional[float] = None  # SignalModel smoothing; default the SignalModel's


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            "promotable",
            asset="model_evaluation",
            description="The gate (rl/gate.py): a model passes only if the 95% bootstrap CI of its daily "
            "after-cost P&L, replayed through the session loop, lies above 0 and its IQM beats every "
            "baseline's; a model that does not is never promoted.",
        )
    ],
    description="Out-of-sample evaluation of the PPO and GRPO models: the held-out sessions replayed "
    "through the real session loop on SimBroker (risk rules, ladder, costs) for each model and for "
    "the flat / always-call / always-put / random / momentum / orb baselines, then the gate.",
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
    from tradenova_dagster.rl.evaluate import evaluate_replay, replay_baselines
    from tradenova_dagster.rl.signal import SignalModel

    db = store.get_store()
    source = market_data.get_source()
    eval_days = [date.fromisoformat(d) for d in training_dataset["eval_days"]]
    signal_kwargs = {"alpha": config.alpha} if config.alpha is not None else {}
    # The baselines do not depend on the model: replayed once, on accounts of this run.
    baselines = replay_baselines(db, source, eval_days, f"run.{context.run_id[:8]}", seed=config.seed)
    verdicts: dict[str, dict] = {}
    agent_rows, sections, charts = [], [], {}
    for info in (ppo_model, grpo_model):
        record = registry.get_model(info["model_id"], db)
        evaluation = evaluate_replay(db, source, eval_days, SignalModel.from_record(record, **signal_kwargs),
                                     name=record.agent, label=record.model_id, train_days=record.train_days,
                                     baselines=baselines)
        registry.record_evaluation(
            record.model_id, eval_days=eval_days, promotable=evaluation.promotable,
            reason=evaluation.reason, metrics=evaluation.as_dict(), run_id=context.run_id, store=db,
        )
        chart = tn_config.reports_dir() / "models" / f"{record.model_id}_evaluation.png"
        chart.parent.mkdir(parents=True, exist_ok=True)
        chart.write_bytes(evaluation.chart_png())
        charts[record.agent] = str(chart)
        verdict = evaluation.verdict
        verdicts[record.model_id] = {
            "agent": record.agent, "promotable": verdict.promotable, "reason": verdict.reason,
            "mean_daily_pnl": verdict.mean, "iqm_daily_pnl": verdict.iqm, "ci_low": verdict.ci_low,
            "ci_high": verdict.ci_high,
        }
        agent_rows += [{"evaluated_model": record.model_id, **row} for row in evaluation.rows()]
        sections.append(f"### {record.agent} `{record.model_id}`\n\n"
                        f"**{'promotable' if verdict.promotable else 'not promotable'}**: {verdict.reason}")

    promotable = {mid: v for mid, v in verdicts.items() if v["promotable"]}
    best = max(promotable, key=lambda mid: promotable[mid]["iqm_daily_pnl"]) if promotable else None
    agents_table = table_metadata(agent_rows, AGENT_COLUMNS)
    metadata = {
        "eval_range": f"{eval_days[0]} .. {eval_days[-1]}",
        "eval_days": len(eval_days),
        "best_model_id": best or "",
        "promotable_models": ", ".join(promotable) or "none",
        **{f"{agent}_chart": dg.MetadataValue.path(path) for agent, path in charts.items()},
        "models": table_metadata([{"model_id": mid, **v} for mid, v in verdicts.items()], VERDICT_COLUMNS),
        "agents": agents_table,
    }
    yield dg.Output(
        {"best_model_id": best, "models": verdicts, "eval_days": training_dataset["eval_days"]},
        metadata={**metadata, "evaluation": dg.MetadataValue.md("\n\n".join(sections))},
    )
    yield dg.AssetCheckResult(
        check_name="promotable",
        passed=best is not None,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"{best} passes the gate: {verdicts[best]['reason']}" if best
                     else "no model passes the gate: nothing to promote"),
        metadata={"best_model_id": best or "", "agents": agents_table,
                  **{mid: v["reason"] for mid, v in verdicts.items()}},
    )
