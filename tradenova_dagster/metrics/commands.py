"""``tradenova report``: write one day's report (HTML + charts) and print its summary."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report",
        help="write the daily report of a trading day (HTML + PNG charts) and print a summary",
        description="Builds the daily report of one account for one NYSE trading day from the "
        "DuckDB store: P&L, trades, win rate, rolling Sharpe and drawdown, per-agent table, "
        "risk events and predictions. Writes TRADENOVA_HOME/reports/<date>.html (other "
        "accounts: reports/<account>/<date>.html) and prints the numbers and the path.",
    )
    report.add_argument("--date", help="trading day YYYY-MM-DD (default: the last completed session)")
    report.add_argument("--account",
                        help="account to report, e.g. backtest:<id> (default: the sim account, sim:default)")
    report.add_argument("--initial-capital", type=float, default=100_000.0,
                        help="capital the account started with (default: 100000)")
    report.add_argument("--lookback-days", type=int, default=30,
                        help="rolling window for Sharpe, drawdown and trade statistics (default: 30)")
    report.add_argument("--db", help="the ledger DuckDB file (default: the account's, $TRADENOVA_HOME/ledgers/<kind>+<id>.duckdb)")
    report.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from tradenova_dagster.market import calendar
    from tradenova_dagster.metrics.report import build_daily_report
    from tradenova_dagster.metrics.tracker import DEFAULT_ACCOUNT, MetricsTracker

    day = args.date or calendar.last_completed_session()
    tracker = MetricsTracker(args.db, initial_capital=args.initial_capital, account=args.account or DEFAULT_ACCOUNT)
    report = build_daily_report(tracker, day, lookback_days=args.lookback_days)
    print(report.summary())
    return 0
