"""backtest_day: the trading session replayed on one day's bars. A backfill is a backtest.

Each partition replays that day through the same session loop that trades live
(``tradenova_dagster.session``), on a simulated account of its own, recording trades and
equity under ``backtest:<id>``. The id is the backfill's id (so one backfill = one
backtest, readable as one account by ``daily_report`` and ``tradenova report``), or the
configured ``backtest_id``, or the run's id for a single materialisation. What trades is
``config.strategy``: the model (a file, or the promoted one) or a baseline that needs no
model (``tradenova_dagster.strategies``).

The single-run backfill policy replays a whole range in one run (one process, the model
loaded once), day after day in order, since the account carries over from one day to the
next: what a long backtest wants. Re-materialising a day replaces that day.
``tradenova backtest`` launches this same asset (``backtest_job``) on the Dagster instance,
so the command line and the UI share one path.
"""

import dagster as dg
import pandas as pd

from assets.market import market_bars, table_metadata
from assets.partitions import partition_day, trading_day_partitions
from resources.market_data import MarketDataResource
from resources.store import StoreResource
from tradenova_dagster.session.day import backtest_account, backtest_days
from tradenova_dagster.session.engine import SessionSettings


DAY_COLUMNS = {"day": "string", "trades": "int", "entries": "int", "refused": "int", "pnl": "float", "flat": "bool",
               "stopped": "bool"}  # days_table's schema
DAY_DONE = "backtest day done:"  # each day's log line starts so (``tradenova backtest`` counts them)


class BacktestConfig(dg.Config):
    backtest_id: str = ""  # default: the backfill id, else this run's id
    strategy: str = "model"  # the model, or a baseline: flat, always-call, always-put, random, momentum, orb
    seed: int = 0  # the random baseline's seed
    model_path: str = ""  # strategy model: default the promoted model
    initial_cash: float = 100_000.0
    contracts: int = 1


def _backtest_id(context: dg.AssetExecutionContext, config: BacktestConfig) -> str:
    return config.backtest_id or context.run.tags.get("dagster/backfill") or context.run_id.split("-")[0]


@dg.asset(
    partitions_def=trading_day_partitions,
    deps=[market_bars],
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="backtests",
    kinds={"duckdb"},
    owners=["team:research"],
    description="The trading session replayed on a day's bars with the promoted (or configured) model or a "
    "baseline strategy, on a simulated account of its own carried from day to day. A backfill over a range "
    "is a backtest.",
)
def backtest_day(context: dg.AssetExecutionContext, config: BacktestConfig, store: StoreResource,
                 market_data: MarketDataResource) -> dg.MaterializeResult:
    from tradenova_dagster.metrics import MetricsTracker
    from tradenova_dagster.strategies import build_strategy

    db = store.get_store()
    backtest_id = _backtest_id(context, config)
    account = backtest_account(backtest_id)
    signal = build_strategy(config.strategy, seed=config.seed, model_path=config.model_path, store=db)
    source = market_data.get_source()
    rows = []
    days = backtest_days(db, source, [partition_day(key) for key in context.partition_keys], signal, backtest_id,
                         initial_cash=config.initial_cash, settings=SessionSettings(contracts=config.contracts))
    for key, (_, report) in zip(context.partition_keys, days):  # in order: the account carries from day to day
        context.log.info(f"{DAY_DONE} {key} {report.summary()}")
        rows.append({"day": key, "trades": report.trades, "entries": report.entries, "refused": report.refusals,
                     "pnl": round((report.end_equity or 0) - (report.start_equity or 0), 2),
                     "flat": report.flat, "stopped": report.stopped})
    table = pd.DataFrame(rows)
    metrics = MetricsTracker(store=store.ledger(account), account=account,
                             initial_capital=config.initial_cash).calculate_metrics(
        lookback_days=len(trading_day_partitions.get_partition_keys()), as_of=context.partition_keys[-1])
    return dg.MaterializeResult(
        metadata={
            "backtest": account,
            "strategy": config.strategy,
            "model": signal.model_id,
            "source": source.name,
            "days": len(rows),
            "trades": int(table["trades"].sum()),
            "pnl": float(table["pnl"].sum()),
            "all_flat_at_close": bool(table["flat"].all()),
            "sharpe_ratio": metrics.get("sharpe_ratio"),
            "max_drawdown": metrics.get("max_drawdown"),
            "win_rate": metrics.get("win_rate"),
            "days_table": table_metadata(rows, DAY_COLUMNS),
            "report": f"materialise daily_report with config account={account!r} to see it day by day",
        }
    )
