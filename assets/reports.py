"""The daily report as a Dagster asset: one HTML report (and its charts) per trading day.

A thin layer over ``tradenova_dagster.metrics.report``: it picks the account from the
config, builds the report from the DuckDB store, and puts the same numbers, tables and
the equity chart in the materialisation's metadata, so the Dagster UI shows the report
(and plots its numbers across days) without opening the HTML.
"""

import base64

import dagster as dg

from assets.partitions import partition_day, trading_day_partitions
from resources.store import StoreResource
from tradenova_dagster.metrics.tracker import DEFAULT_ACCOUNT, MetricsTracker


class DailyReportConfig(dg.Config):
    account: str = DEFAULT_ACCOUNT  # e.g. "backtest:<id>" to report a backtest's day
    initial_capital: float = 100_000.0
    lookback_days: int = 30  # the rolling window of Sharpe, drawdown and trade statistics
    # market data for SPY buy and hold: "" = $TRADENOVA_DATA_SOURCE (else synthetic), as every command
    benchmark_source: str = ""


def _markdown(frame, empty_message: str) -> dg.MetadataValue:
    if frame.empty:
        return dg.MetadataValue.md(f"_{empty_message}_")
    return dg.MetadataValue.md(frame.to_markdown(index=False))


def _number(value) -> dg.MetadataValue:
    if value is None:
        return dg.MetadataValue.null()
    if isinstance(value, int):
        return dg.MetadataValue.int(value)
    return dg.MetadataValue.float(float(value))


@dg.asset(
    partitions_def=trading_day_partitions,
    group_name="reporting",
    kinds={"duckdb", "html"},
    description="The daily report of one account for one NYSE trading day: P&L, trades, win "
    "rate, rolling Sharpe and drawdown, per-agent split, risk events and signal predictions, "
    "and the window as a tearsheet (return vs SPY buy and hold from "
    "config.benchmark_source or TRADENOVA_DATA_SOURCE; underwater, monthly returns, rolling "
    "Sharpe, trade P&L, exit reasons, risk refusals), "
    "as HTML with PNG charts under TRADENOVA_HOME/reports (table daily_reports). Backfill a "
    "range to report a backtest day by day (set config.account).",
)
def daily_report(
    context: dg.AssetExecutionContext, config: DailyReportConfig, store: StoreResource
) -> dg.MaterializeResult:
    from tradenova_dagster.metrics.report import build_daily_report, display_tables  # matplotlib: only to draw
    from tradenova_dagster.metrics.tearsheet import configured_source

    day = partition_day(context.partition_key)
    tracker = MetricsTracker(
        initial_capital=config.initial_capital, account=config.account, store=store.ledger(config.account)
    )
    source, why_not = configured_source(config.benchmark_source or None)
    if why_not:
        context.log.warning(why_not)
    report = build_daily_report(
        tracker, day, lookback_days=config.lookback_days, run_id=context.run_id,
        benchmark_source=source,
    )
    tables = display_tables(report)
    equity_png = base64.b64encode(report.charts["equity"].read_bytes()).decode("ascii")
    context.log.info(report.summary())
    return dg.MaterializeResult(
        metadata={
            "account": report.account,
            "no_trades": not report.has_trades,
            **{name: _number(value) for name, value in report.numbers().items()},
            "summary": dg.MetadataValue.md(f"```\n{report.summary()}\n```"),
            "equity_chart": dg.MetadataValue.md(
                f"![equity and drawdown](data:image/png;base64,{equity_png})"
            ),
            "trades": _markdown(tables["trades"], f"No trades on {day}."),
            "agents": _markdown(tables["agents"], f"No trades in the last {config.lookback_days} days."),
            "risk_events": _markdown(tables["risk_events"], "No risk events on this day."),
            "predictions": _markdown(tables["predictions"], "No predictions recorded on this day."),
            "decisions": _markdown(tables["decisions"], "No agent decisions recorded on this day."),
            "benchmark": report.tearsheet.benchmark_note,
            "html_report": dg.MetadataValue.path(str(report.html_path)),
            "charts": dg.MetadataValue.path(str(report.charts["equity"].parent)),
        }
    )
