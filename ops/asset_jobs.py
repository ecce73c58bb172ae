"""Jobs over assets: the daily report, the weekly retraining, the live account observation, backtests."""

import dagster as dg

from assets.partitions import trading_day_partitions
from assets.sweeps import sweep_job

reporting_job = dg.define_asset_job(
    "reporting_job",
    selection=["daily_report"],
    partitions_def=trading_day_partitions,
    description="Today's daily report (HTML, charts, metrics in DuckDB and the asset's metadata).",
)

training_job = dg.define_asset_job(
    "training_job",
    selection=["training_dataset", "ppo_model", "grpo_model", "model_evaluation"],
    description="Retrain PPO and GRPO on recent sessions and evaluate them out of sample; the promotion "
    "sensor promotes a model whose evaluation passed.",
    tags={"tradenova/job": "training"},  # the production profile's queue runs one at a time
)

live_account_job = dg.define_asset_job(
    "live_account_job",
    selection=["live_account"],
    description="Observe the broker's account (equity, cash, positions, open orders) and check it against "
    "the ledger.",
)

backtest_job = dg.define_asset_job(
    "backtest_job",
    selection=["backtest_day"],
    partitions_def=trading_day_partitions,
    description="A backtest: the session replayed over a range of days on one simulated account "
    "(what `tradenova backtest` launches; a backfill of backtest_day is the same).",
)

ASSET_JOBS = [reporting_job, training_job, live_account_job, backtest_job, sweep_job]
