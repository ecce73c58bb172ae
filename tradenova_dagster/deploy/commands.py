"""``tradenova init [--profile local|production] [--force]`` and ``tradenova init --check``.

``init`` writes DAGSTER_HOME's ``dagster.yaml`` for a profile and says what the profile
needs next; ``--check`` connects to the PostgreSQL the production profile names, so that a
deployment fails at start with the host and port it could not reach.
"""

from __future__ import annotations

import argparse

from tradenova_dagster.deploy import profile


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init",
        help="write DAGSTER_HOME's dagster.yaml: --profile local (SQLite) or production (PostgreSQL, run queue)",
        description="Write dagster.yaml into DAGSTER_HOME ($TRADENOVA_HOME/dagster unless DAGSTER_HOME is "
        "set). local: SQLite storage, one session per account (what TradeNova writes on first use). "
        "production: run, event-log and schedule storage on PostgreSQL, settings read from "
        f"{', '.join(profile.PG_ENV.values())} at run time; the queued run coordinator with one session "
        "per account, at most --max-backtests backfill runs and one training run at once; run monitoring.",
    )
    parser.add_argument("--profile", choices=profile.PROFILES, default="local", help="default: local")
    parser.add_argument("--force", action="store_true", help="replace an existing dagster.yaml")
    parser.add_argument("--max-backtests", type=int, metavar="N",
                        help=f"production: backfill runs at once (default {profile.DEFAULT_MAX_BACKTESTS})")
    parser.add_argument("--max-runs", type=int, metavar="N",
                        help=f"production: runs at once of any kind (default {profile.DEFAULT_MAX_RUNS})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing: connect to the PostgreSQL named by the DAGSTER_PG_* variables")
    parser.set_defaults(func=_init)


def _init(args: argparse.Namespace) -> int:
    if args.check:
        print(f"reachable: {profile.check_postgres()}")
        return 0
    limits = {name: value for name, value in (("max_backtests", args.max_backtests), ("max_runs", args.max_runs))
              if value is not None}
    if limits and args.profile != "production":
        raise ValueError(f"{', '.join(limits)} apply to the production profile only (--profile production), "
                         f"got --profile {args.profile}")
    path = profile.write(args.profile, force=args.force, **limits)
    print(f"wrote {path} ({args.profile} profile)")
    if args.profile == "production":
        print("it reads PostgreSQL's settings from the environment of every Dagster process: "
              f"{', '.join(profile.PG_ENV.values())}")
        print(f"check them with `tradenova init --check`, then run `dagster-daemon run` beside the web UI "
              f"(DAGSTER_HOME={path.parent})")
    return 0
