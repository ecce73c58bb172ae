"""General sub-commands: ``demo`` (the README's main command) and ``ui`` (the web UI)."""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the offline demo on the embedded defaults and print a summary",
        description="Materialise market data (bars, quality checks, market context) for a "
        "trading day into TRADENOVA_HOME, through Dagster, and print a summary.",
    )
    demo.add_argument("--date", help="trading day YYYY-MM-DD (default: the last completed session)")
    demo.add_argument("--symbol", action="append", help="symbol(s) to load (default: SPY)")
    demo.set_defaults(func=_demo)

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

    summary = run_demo(day=args.date, symbols=args.symbol or ["SPY"])
    print(summary.render())
    return 0 if summary.ok else 1


def _ui(args: argparse.Namespace) -> None:
    from tradenova_dagster import config

    config.use_dagster_home()
    command = ["dagster", "dev", "-m", "tradenova_dagster.definitions", "-h", args.host, "-p", str(args.port)]
    print(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}\n$ {' '.join(command)}", file=sys.stderr)
    os.execvp(command[0], command)  # replaces this process; raises OSError if dagster is missing
