"""``tradenova report``: write one day's report, or the tearsheet of one or more accounts
over a span (a backtest), and print its summary and path. The options are checked here;
the report itself is written by a run of ``report_job`` (``ops/research_runs.py``) calling
``report`` below, so that it shows in the UI like any other run.

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


def report_options(args: argparse.Namespace) -> dict:
    """The report's options, checked before any run: the accounts, the dates, the source."""
    import sys

    from tradenova_dagster.market import calendar
    from tradenova_dagster.metrics.tearsheet import configured_source
    from tradenova_dagster.metrics.tracker import DEFAULT_ACCOUNT, require_account

    accounts = args.account or [DEFAULT_ACCOUNT]
    if args.db and len(accounts) > 1:
        raise ValueError(f"--db names one ledger file; got {len(accounts)} accounts ({', '.join(accounts)})")
    for name, value in (("--date", args.date), ("--from", args.start)):
        if value:
            calendar.as_date(value, name)
    daily = not (args.tearsheet or args.start or len(accounts) > 1)
    if daily and args.date:
        calendar.require_trading_day(args.date, "--date")
    if args.lookback_days < 1:
        raise ValueError(f"--lookback-days must be a whole number of days >= 1, got {args.lookback_days}")
    for account in accounts:  # a malformed account is named here, not in a run
        require_account(account)
    _, why_not = configured_source(args.source)
    if why_not:
        print(why_not, file=sys.stderr)
    return {"accounts": accounts, "date": args.date or "", "start": args.start or "",
            "tearsheet": bool(args.tearsheet), "source": args.source or "", "initial_capital": args.initial_capital,
            "lookback_days": args.lookback_days, "db": args.db or ""}


def report(options: dict) -> list[str]:
    """Write the daily report (or the tearsheet) the options name; returns the lines
    ``tradenova report`` prints."""
    from tradenova_dagster.market import calendar
    from tradenova_dagster.metrics.report import build_daily_report
    from tradenova_dagster.metrics.tearsheet import configured_source
    from tradenova_dagster.metrics.tracker import MetricsTracker

    accounts = options["accounts"]
    trackers = [MetricsTracker(options["db"] or None, initial_capital=options["initial_capital"], account=a)
                for a in accounts]
    source, _ = configured_source(options["source"] or None)
    if options["tearsheet"] or options["start"] or len(accounts) > 1:
        from tradenova_dagster.metrics.tearsheet import build_tearsheet

        sheet, path = build_tearsheet(trackers, options["start"] or None, options["date"] or None,
                                      benchmark_source=source, rolling_days=options["lookback_days"])
        lines = []
        for account in sheet.accounts:
            m = sheet.metrics[account]
            lines.append(f"{account} {sheet.start} to {sheet.end}: P&L {m['total_pnl']:+,.2f} | "
                         f"{m['num_trades']} trades | win rate {_pct(m['win_rate'])} | "
                         f"Sharpe {_ratio(m['sharpe_ratio'])} | max drawdown {_pct(m['max_drawdown'])}")
        return [*lines, sheet.benchmark_note, f"tearsheet: {path}"]
    day = options["date"] or calendar.last_completed_session()
    daily = build_daily_report(trackers[0], day, lookback_days=options["lookback_days"], benchmark_source=source)
    return [daily.summary()]


def _report(args: argparse.Namespace) -> int:
    """``tradenova report``: a run of ``report_job`` (``ops/research_runs.py``) that calls
    ``report`` and stores its lines, which are printed here."""
    from ops.research_runs import follow_command

    return follow_command("report", report_options(args), total=1, unit="report", no_progress=True)


def _pct(value) -> str:
    return "undefined" if value is None else f"{100 * value:.2f}%"


def _ratio(value) -> str:
    return "undefined" if value is None else f"{value:.3f}"
