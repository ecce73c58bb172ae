"""General sub-commands: ``demo`` (the README's main command), ``backtest`` (``ops/backtest_runs.py``), ``status``, ``ui``."""

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
        description="A Dagster run of backtest_job (the same asset the UI's backfills run): each trading "
        "day from --start to --end, in order, goes through the session loop on one simulated account per "
        "strategy (backtest:<id>, or backtest:<id>-<strategy> for several), which carries its equity and "
        "risk state from day to day. Strategies: the promoted model (or --model), or baselines that need "
        "no model; several are compared side by side.",
    )
    backtest.add_argument("--start", required=True, help="first day YYYY-MM-DD")
    backtest.add_argument("--end", required=True, help="last day YYYY-MM-DD")
    backtest.add_argument("--strategy", nargs="+", default=["model"], metavar="NAME",
                          help="model, flat, always-call, always-put, random, momentum, orb (default: model)")
    backtest.add_argument("--seed", type=int, default=0, help="seed of the random strategy")
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
    from ops.backtest_runs import run_backtest_command

    return run_backtest_command(args)


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
