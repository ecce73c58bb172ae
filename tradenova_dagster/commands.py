"""General sub-commands: ``demo`` (the README's main command), ``backtest`` (``ops/backtest_runs.py``),
``sweep`` (``ops/sweep_runs.py``), ``status``, ``ui``."""

from __future__ import annotations

import argparse
import os
import sys

from tradenova_dagster.strategies import BASELINES


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """``--source`` and ``--data-dir``, defaulting to the variables the README documents, so
    every command that reads market data honours them the same way."""
    parser.add_argument("--source", default=os.environ.get("TRADENOVA_DATA_SOURCE") or "synthetic",
                        choices=["synthetic", "file", "alpaca"],
                        help="market data (default: $TRADENOVA_DATA_SOURCE, else synthetic)")
    parser.add_argument("--data-dir", default=os.environ.get("TRADENOVA_DATA_DIR"),
                        help="folder of CSV/Parquet bars for --source file (default: $TRADENOVA_DATA_DIR)")


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
    demo.add_argument("--no-progress", action="store_true")
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
    add_source_arguments(backtest)
    backtest.add_argument("--no-progress", action="store_true")
    backtest.set_defaults(func=_backtest)

    sweep = subparsers.add_parser(
        "sweep",
        help="a research sweep (strategies x seeds x walk-forward folds) as Dagster runs, and its summary",
        description="Plans the sweep (sweep_plan), runs each (strategy, seed, fold) as a run of sweep_job "
        "(one partition of sweep_result: the fold's evaluation days replayed on its own backtest account, one "
        "Parquet file), then summarises them per strategy (sweep_summary: mean daily P&L, IQM with a 95%% "
        "bootstrap CI, win rate, max drawdown, trades per day). With the production profile the runs go through "
        "the queue and run side by side. Results: $TRADENOVA_HOME/sweeps/<id>/.",
    )
    sweep.add_argument("--id", required=True, help="sweep id (letters, digits, '-', '_')")
    sweep.add_argument("--start", required=True, help="first day of the range the folds are laid in YYYY-MM-DD")
    sweep.add_argument("--end", required=True, help="last day of the range YYYY-MM-DD")
    sweep.add_argument("--strategies", nargs="+", metavar="NAME",
                       default=list(BASELINES),
                       help="baselines, and model (needs --model-paths, one per fold)")
    sweep.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    sweep.add_argument("--folds", type=int, default=4)
    sweep.add_argument("--train-days", type=int, default=20, help="sessions in each training window")
    sweep.add_argument("--eval-days", type=int, default=5, help="sessions in each evaluation window")
    sweep.add_argument("--model-paths", nargs="*", default=[], metavar="PATH",
                       help="for the model strategy: the model trained on each fold's window, in fold order")
    add_source_arguments(sweep)
    sweep.add_argument("--no-progress", action="store_true")
    sweep.set_defaults(func=_sweep)

    status = subparsers.add_parser("status", help="where TradeNova keeps things, and the state of the account")
    status.add_argument("--account", default="sim:default")
    status.set_defaults(func=_status)

    ui = subparsers.add_parser(
        "ui",
        help="open the Dagster web UI (webserver and daemon) on TradeNova's DAGSTER_HOME",
        description="Runs dagster-webserver and dagster-daemon for tradenova_dagster.definitions with "
        "DAGSTER_HOME set to $TRADENOVA_HOME/dagster (unless DAGSTER_HOME is already set). Ctrl-C or "
        "SIGTERM stops both.",
    )
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--host", default="127.0.0.1")
    ui.set_defaults(func=_ui)


def _demo(args: argparse.Namespace) -> int:
    from ops.demo import run_demo

    summary = run_demo(day=args.date, timesteps=args.timesteps, progress=not args.no_progress)
    print(summary.render())
    return 0 if summary.ok else 1


# Beta warnings Dagster prints wherever TradeNova's definitions load, with no non-beta API to
# switch to: PYTHONWARNINGS entries that ignore exactly these texts (not every warning), set in
# the environment so that the code servers the webserver and the daemon start inherit them.
DAGSTER_WARNING_FILTERS = (
    # BackfillPolicy.single_run() on backtest_day: a backtest's days must replay in order in one
    # run (the account carries over), and BackfillPolicy is the only way to say so.
    "ignore:Parameter `backfill_policy` of function `asset` is currently in beta",
    # Not ours: Dagster copies every job-targeting sensor with owners=[] when it attaches the
    # resources (SensorDefinition.with_attributes), which warns although no sensor sets owners.
    "ignore:Parameter `owners` of initializer `SensorDefinition.__init__` is currently in beta",
)
_UI_STOP_S = 30.0  # how long the webserver and the daemon get to shut down before they are killed


def _ui(args: argparse.Namespace) -> int:
    """The webserver and the daemon as two processes (what ``dagster dev``, superseded by ``dg dev``,
    which is not installed, starts), each in its own process group: SIGINT or SIGTERM to this
    process interrupts both, waits for them, and kills whatever of their groups is left, so no
    webserver, daemon or code server outlives the command."""
    import signal
    import subprocess
    import time

    from tradenova_dagster import config

    config.use_dagster_home()
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS", ""), *DAGSTER_WARNING_FILTERS]))
    location = code_location_args()
    commands = {
        "webserver": [_dagster_executable("dagster-webserver"), *location, "-h", args.host, "-p", str(args.port)],
        "daemon": [_dagster_executable("dagster-daemon"), "run", *location],
    }
    print(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}", file=sys.stderr)
    # The instance's storage is created (or migrated) once, here: two processes starting on a fresh
    # DAGSTER_HOME race to create the same SQLite tables, and one of them crashes.
    migrate = subprocess.run([_dagster_executable(), "instance", "migrate"], env=env, capture_output=True, text=True)
    if migrate.returncode != 0:
        raise RuntimeError(f"dagster instance migrate failed on {os.environ['DAGSTER_HOME']}: "
                           f"{(migrate.stderr or migrate.stdout).strip()[-2000:]}")
    stopping: list[int] = []

    def stop(signum, _frame) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            print(f"$ {' '.join(command)}", file=sys.stderr)
            procs[name] = subprocess.Popen(command, env=env, start_new_session=True)
        print(f"Dagster UI on http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
        while not stopping and all(p.poll() is None for p in procs.values()):
            time.sleep(0.2)
    finally:
        for proc in procs.values():  # an interrupt, as Ctrl-C in `dagster dev` would give them
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + _UI_STOP_S
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:  # the group: the code servers it started, and the process itself if it hung
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    exited = [f"{name} exited with {p.returncode}" for name, p in procs.items() if not stopping]
    if exited:
        print(f"tradenova ui: {', '.join(exited)}", file=sys.stderr)
        return 1
    return 0


def code_location_args() -> list[str]:
    """How the webserver and the daemon load TradeNova: through the project's workspace.yaml,
    so that the code location has the name the deployment files give it (``tradenova``, as
    ``[tool.dagster]`` in pyproject.toml) and a run a command submits to the queue
    (``ops/launch.py``) names a location the daemon knows; the module if the file is absent
    (a non-editable install)."""
    from pathlib import Path

    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    return ["-w", str(workspace)] if workspace.exists() else ["-m", "tradenova_dagster.definitions"]


def _dagster_executable(name: str = "dagster") -> str:
    """The Dagster command ``name`` installed with this TradeNova (beside its Python), so that
    the command works without an activated virtual environment; else the one on PATH."""
    import shutil
    from pathlib import Path

    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"no {name} command beside {sys.executable} nor on PATH: "
                           'install TradeNova with pip install -e ".[dev]" in this environment')
    return found


def _backtest(args: argparse.Namespace) -> int:
    from ops.backtest_runs import run_backtest_command

    return run_backtest_command(args)


def _sweep(args: argparse.Namespace) -> int:
    from ops.sweep_runs import run_sweep_command

    return run_sweep_command(args)


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
