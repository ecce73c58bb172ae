"""``tradenova report``: write one day's report, or the tearsheet of one or more accounts
over a span (a backtest), and print its summary and path.

SPY's buy-and-hold comparison reads the market data source the configuration names
(``TRADENOVA_DATA_SOURCE``, ``TRADENOVA_DATA_DIR``, as every command does), or
``--source``; when that source cannot serve the span the page says so and still renders.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report",
        help="write the daily report of a trading day, or the tearsheet of a backtest (HTML), and print a summary",
        description="Builds the daily report of one account for one NYSE trading day from its ledger: P&L, "
        "trades, win rate, rolling Sharpe and drawdown, per-agent table, risk events, predictions, and the "
        "window as a tearsheet. Writes TRADENOVA_HOME/reports/<date>.html (other accounts: "
        "reports/<account>/<date>.html). With --tearsheet (or several --account), writes the tearsheet of "
        "the accounts over a span instead: return vs SPY buy and hold, underwater chart, monthly returns, "
        "rolling Sharpe, trade P&L distribution, exit reasons, per-strategy and per-agent tables, risk "
        "refusals and every trade (reports/tearsheets/).",
    )
    report.add_argument("--date", help="trading day YYYY-MM-DD (default: the last completed session; "
                        "with --tearsheet: the last day of the span, default the accounts' last recorded day)")
    report.add_argument("--account", action="append",
                        help="account to report, e.g. backtest:<id> (default: the sim account, sim:default); "
                        "repeat to compare several strategies side by side in one tearsheet")
    report.add_argument("--tearsheet", action="store_true",
                        help="report the accounts over a span (--from to --date) instead of one day")
    report.add_argument("--from", dest="start",
                        help="first day of the tearsheet's span (default: the accounts' first recorded day)")
    report.add_argument("--source", choices=("synthetic", "file", "alpaca"),
                        help="market data for SPY buy and hold (default: $TRADENOVA_DATA_SOURCE, else synthetic)")
    report.add_argument("--initial-capital", type=float, default=100_000.0,
                        help="capital the account started with (default: 100000)")
    report.add_argument("--lookback-days", type=int, default=30,
                        help="rolling window for Sharpe, drawdown and trade statistics (default: 30); "
                        "with --tearsheet, the rolling Sharpe's window")
    report.add_argument("--db", help="the ledger DuckDB file (default: the account's, "
                        "$TRADENOVA_HOME/ledgers/<kind>+<id>.duckdb; one account only)")
    report.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    import sys

    from tradenova_dagster.market import calendar
    from tradenova_dagster.metrics.report import build_daily_report
    from tradenova_dagster.metrics.tearsheet import configured_source
    from tradenova_dagster.metrics.tracker import DEFAULT_ACCOUNT, MetricsTracker

    accounts = args.account or [DEFAULT_ACCOUNT]
    if args.db and len(accounts) > 1:
        raise ValueError(f"--db names one ledger file; got {len(accounts)} accounts ({', '.join(accounts)})")
    trackers = [MetricsTracker(args.db, initial_capital=args.initial_capital, account=a) for a in accounts]
    source, why_not = configured_source(args.source)
    if why_not:
        print(why_not, file=sys.stderr)
    if args.tearsheet or args.start or len(accounts) > 1:
        from tradenova_dagster.metrics.tearsheet import build_tearsheet

        sheet, path = build_tearsheet(trackers, args.start, args.date, benchmark_source=source,
                                      rolling_days=args.lookback_days)
        for account in sheet.accounts:
            m = sheet.metrics[account]
            print(f"{account} {sheet.start} to {sheet.end}: P&L {m['total_pnl']:+,.2f} | "
                  f"{m['num_trades']} trades | win rate {_pct(m['win_rate'])} | Sharpe {_ratio(m['sharpe_ratio'])} | "
                  f"max drawdown {_pct(m['max_drawdown'])}")
        print(sheet.benchmark_note)
        print(f"tearsheet: {path}")
        return 0
    day = args.date or calendar.last_completed_session()
    report = build_daily_report(trackers[0], day, lookback_days=args.lookback_days, benchmark_source=source)
    print(report.summary())
    return 0


def _pct(value) -> str:
    return "undefined" if value is None else f"{100 * value:.2f}%"


def _ratio(value) -> str:
    return "undefined" if value is None else f"{value:.3f}"
