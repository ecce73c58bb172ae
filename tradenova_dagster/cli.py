"""The ``tradenova`` command.

Each area of the system contributes its sub-commands from a module of its own that
defines ``register(subparsers)``; those modules keep heavy imports (torch, Dagster)
inside their command functions so that ``tradenova --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMAND_MODULES = (
    "tradenova_dagster.commands",
    "tradenova_dagster.risk.commands",
    "tradenova_dagster.metrics.commands",
    "tradenova_dagster.rl.commands",
    "tradenova_dagster.deploy.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradenova",
        description="TradeNova: autonomous options trading on Alpaca, orchestrated by Dagster.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _quiet_known_dagster_warnings() -> None:
    """Silence the two Dagster BetaWarnings users cannot act on (``commands.DAGSTER_WARNING_FILTERS``
    says why each), here and in every Dagster process a command starts; nothing else."""
    import re
    import warnings

    from tradenova_dagster.commands import DAGSTER_WARNING_FILTERS

    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS", ""),
                                                          *DAGSTER_WARNING_FILTERS]))
    for spec in DAGSTER_WARNING_FILTERS:
        warnings.filterwarnings("ignore", message=re.escape(spec.split(":", 1)[1]))


def main(argv: list[str] | None = None) -> int:
    _quiet_known_dagster_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, RuntimeError) as exc:
        print(f"tradenova {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: one line and the shell's status, not a traceback
        print(f"tradenova {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
