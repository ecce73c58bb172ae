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

Each partition's materialisation carries that day's numbers (``day_trades``, ``day_pnl``,
...); the last day's also carries the whole run's summary (``days``, ``pnl``, the metrics
and the table of days or months). Dagster would copy a run's metadata onto every
partition: a year's summary serialised and committed 251 times cost seconds.
"""

import time

import dagster as dg
import pandas as pd

from assets.market import market_bars, table_metadata
from assets.partitions import partition_day, trading_day_partitions
from resources.market_data import MarketDataResource
from resources.store import StoreResource
from tradenova_dagster.session.day import backtest_account, backtest_days
from tradenova_dagster.session.engine import SessionSettings


DAY_COLUMNS = {"day": "string", "trades": "int", "entries": "int", "refused": "int", "pnl": "float", "flat": "bool",
               "stopped": "string"}  # days_table's schema
MONTH_COLUMNS = {"month": "string", "days": "int", "trades": "int", "entries": "int", "refused": "int",
                 "pnl": "float", "days_flat": "int"}  # months_table's schema
DAYS_TABLE_MAX = 31  # a longer run's summary shows a row per month: 250 day rows are not read
DAY_DONE = "backtest day done:"  # progress lines start so, then "<days done>/<days>" (``tradenova backtest`` reads it)
# At most one progress line a second (and the first and last day's): each log line is an
# event Dagster commits to its storage, ~20-50 ms here, as long as replaying a day.
PROGRESS_EVERY_S = 1.0


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
    rows, keys, logged = [], context.partition_keys, None
    days = backtest_days(db, source, [partition_day(key) for key in keys], signal, backtest_id,
                         initial_cash=config.initial_cash, settings=SessionSettings(contracts=config.contracts))
    for done, (key, (_, report)) in enumerate(zip(keys, days), 1):  # in order: the account carries over
        if logged is None or done == len(keys) or time.monotonic() - logged >= PROGRESS_EVERY_S:
            context.log.info(f"{DAY_DONE} {done}/{len(keys)} {key} {report.summary()}")
            logged = time.monotonic()
        row = {"day": key, "trades": report.trades, "entries": report.entries, "refused": report.refusals,
               "pnl": round((report.end_equity or 0) - (report.start_equity or 0), 2),
               "flat": report.flat, "stopped": report.stopped}
        rows.append(row)
        context.add_asset_metadata(day_metadata(row), partition_key=key)
    table = pd.DataFrame(rows)
    metrics = MetricsTracker(store=store.ledger(account), account=account,
                             initial_capital=config.initial_cash).calculate_metrics(
        lookback_days=len(trading_day_partitions.get_partition_keys()), as_of=context.partition_keys[-1])
    context.add_asset_metadata({
        "days": len(rows),
        "trades": int(table["trades"].sum()),
        "pnl": float(table["pnl"].sum()),
        "all_flat_at_close": bool(table["flat"].all()),
        "sharpe_ratio": metrics.get("sharpe_ratio"),
        "max_drawdown": metrics.get("max_drawdown"),
        "win_rate": metrics.get("win_rate"),
        **({"days_table": table_metadata(rows, DAY_COLUMNS)} if len(rows) <= DAYS_TABLE_MAX
           else {"months_table": table_metadata(by_month(table), MONTH_COLUMNS)}),
        "report": f"materialise daily_report with config account={account!r} to see it day by day",
    }, partition_key=keys[-1])
    return dg.MaterializeResult(
        metadata={"backtest": account, "strategy": config.strategy, "model": signal.model_id, "source": source.name})


def day_metadata(row: dict) -> dict:
    """One day's numbers, on that day's partition (``row`` as in days_table)."""
    return {"day_trades": row["trades"], "day_entries": row["entries"], "day_refused": row["refused"],
            "day_pnl": row["pnl"], "flat_at_close": row["flat"], "stopped": row["stopped"]}


def by_month(days: pd.DataFrame) -> list[dict]:
    """The day rows of a backtest summed by calendar month (``months_table``)."""
    months = days.assign(month=days["day"].str[:7]).groupby("month", sort=True)
    return [{"month": month, "days": len(group), "trades": int(group["trades"].sum()),
             "entries": int(group["entries"].sum()), "refused": int(group["refused"].sum()),
             "pnl": round(float(group["pnl"].sum()), 2), "days_flat": int(group["flat"].sum())}
            for month, group in months]
