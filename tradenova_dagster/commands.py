"""General sub-commands: ``demo`` (the README's main command), ``backtest``, ``status``, ``ui``."""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run a whole trading day offline and print the summary and the report path",
        description="Offline, on the embedded defaults, through Dagster: market data for a trading "
        "day, a small model (trained now, or reused), warmup, the session replayed on the simulated "
        "broker, flatten, and the daily report.",
    )
    demo.add_argument("--date", help="trading day YYYY-MM-DD (default: the last completed session)")
    demo.add_argument("--timesteps", type=int, default=100_000, help="training steps if a model is trained")
    demo.set_defaults(func=_demo)

    backtest = subparsers.add_parser(
        "backtest",
        help="replay the trading session over a range of days (a backtest) with a progress bar",
        description="Each trading day from --start to --end goes through the session loop with the "
        "promoted model (or --model) on a simulated account; results are recorded as backtest:<id>.",
    )
    backtest.add_argument("--start", required=True, help="first day YYYY-MM-DD")
    backtest.add_argument("--end", required=True, help="last day YYYY-MM-DD")
    backtest.add_argument("--model", default="", help="model folder (default: the promoted model)")
    backtest.add_argument("--id", default="", help="backtest id (default: cli-<start>-<end>)")
    backtest.add_argument("--source", default=os.environ.get("TRADENOVA_DATA_SOURCE") or "synthetic",
                          choices=["synthetic", "file", "alpaca"],
                          help="market data (default: $TRADENOVA_DATA_SOURCE, else synthetic)")
    backtest.add_argument("--data-dir", default=os.environ.get("TRADENOVA_DATA_DIR"),
                          help="folder of bar files for --source file (default: $TRADENOVA_DATA_DIR)")
    backtest.add_argument("--no-progress", action="store_true")
    backtest.set_defaults(func=_backtest)

    status = subparsers.add_parser("status", help="where TradeNova keeps things, and the state of the account")
    status.add_argument("--account", default="sim:default")
    status.set_defaults(func=_status)

    ui = subparsers.add_parser(
        "ui",
        help="open the Dagster web UI (dagster dev) on TradeNova's DAGSTER_HOME",
        description="Runs `dagster dev -m tradenova_dagster.definitions` with DAGSTER_HOME set "
        "to $TRADENOVA_HOME/dagster (unless DAGSTER_HOME is already set).",
    )
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--host", default="127.0.0.1")
    ui.set_defaults(func=_ui)


def _demo(args: argparse.Namespace) -> int:
    from ops.demo import run_demo

    summary = run_demo(day=args.date, timesteps=args.timesteps)
    print(summary.render())
    return 0 if summary.ok else 1


def _ui(args: argparse.Namespace) -> None:
    from tradenova_dagster import config

    config.use_dagster_home()
    command = [_dagster_executable(), "dev", "-m", "tradenova_dagster.definitions", "-h", args.host,
               "-p", str(args.port)]
    print(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}\n$ {' '.join(command)}", file=sys.stderr)
    os.execv(command[0], command)  # replaces this process


def _dagster_executable() -> str:
    """The ``dagster`` installed with this TradeNova (beside its Python), so that the command
    works without an activated virtual environment; else the one on PATH."""
    import shutil
    from pathlib import Path

    beside = Path(sys.executable).parent / "dagster"
    found = str(beside) if beside.exists() else shutil.which("dagster")
    if found is None:
        raise RuntimeError(f"no dagster command beside {sys.executable} nor on PATH: "
                           'install TradeNova with pip install -e ".[dev]" in this environment')
    return found


def _backtest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tradenova_dagster.market import calendar
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.ledger.accounts import shared_store
    from tradenova_dagster.metrics import MetricsTracker
    from tradenova_dagster.rl import SignalModel
    from tradenova_dagster.session.day import backtest_account, backtest_day

    start, end = calendar.as_date(args.start, "--start"), calendar.as_date(args.end, "--end")
    last = calendar.last_completed_session()
    if end > last:
        raise ValueError(f"--end {end} has not happened yet: the last completed session is {last}")
    if start > end:
        raise ValueError(f"--start {start} is after --end {end}")
    days = calendar.trading_days(start, end)
    if not days:
        raise ValueError(f"no trading day from {start} to {end}")
    store = shared_store()
    try:
        signal = SignalModel.load(args.model) if args.model else SignalModel.promoted("SPY", store=store)
    except ValueError as exc:
        raise ValueError(f"{exc}: train and promote one (tradenova train --agent ppo --promote), "
                         "or pass --model PATH") from None
    source = get_source(args.source, **({"data_dir": args.data_dir} if args.source == "file" else {}))
    backtest_id = args.id or f"cli-{days[0]:%Y%m%d}-{days[-1]:%Y%m%d}"
    pnl = trades = 0
    with tqdm(days, desc=f"backtest {backtest_id}", unit="day", disable=args.no_progress) as bar:
        for day in bar:
            report = backtest_day(store, source, day, signal, backtest_id)
            pnl += (report.end_equity or 0) - (report.start_equity or 0)
            trades += report.trades
            bar.set_postfix(trades=trades, pnl=f"{pnl:+.0f}")
    account = backtest_account(backtest_id)
    metrics = MetricsTracker(account=account).calculate_metrics(
        lookback_days=len(days) * 2, as_of=days[-1])
    sharpe = metrics["sharpe_ratio"]
    print(f"backtest {account}: {len(days)} days {days[0]} .. {days[-1]}, model {signal.model_id}, "
          f"data {source!r}")
    print(f"  trades {metrics['num_trades']}, P&L {metrics['total_pnl']:+,.2f}, win rate "
          f"{(metrics['win_rate'] or 0):.0%}, Sharpe {'undefined' if sharpe is None else f'{sharpe:.2f}'}, "
          f"max drawdown {(metrics['max_drawdown'] or 0):.2%}")
    print(f"  daily reports: tradenova report --account {account} --date {days[-1]}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from tradenova_dagster import config
    from tradenova_dagster.ledger.accounts import ledger_path, ledger_store, shared_store
    from tradenova_dagster.ledger.lease import lease_holder
    from tradenova_dagster.risk import KillSwitch
    from tradenova_dagster.rl import registry

    store = shared_store()
    switch = KillSwitch(store, account=args.account).state()
    model = registry.promoted_model("SPY", args.account, store)
    last = ", ".join(f"{day} ({source})" for source, day in
                     store.query("SELECT source, max(day) FROM market_bars GROUP BY source ORDER BY source"))
    holder = lease_holder(args.account)
    events = []
    if holder is None and ledger_path(args.account).exists():  # a held ledger is the session's until it ends
        events = ledger_store(args.account).query(
            "SELECT job, kind, ts FROM session_events WHERE account = ? ORDER BY ts DESC LIMIT 5", [args.account])
    print(f"home:           {config.home()}")
    print(f"database:       {store.path} (schema version {store.schema_version()})")
    print(f"ledger:         {ledger_path(args.account)}")
    print(f"held by:        {holder.describe() if holder else 'nobody (no run writes this account now)'}")
    print(f"dagster home:   {config.dagster_home()}")
    print(f"kill switch:    {switch.describe()}")
    print(f"promoted model: {model.model_id if model else 'none (tradenova train --promote)'}")
    print(f"market data:    last day stored {last or 'none'}")
    for job, kind, ts in events:
        print(f"  {ts:%Y-%m-%d %H:%M} {job} {kind}")
    return 0
