"""``tradenova kill-switch on --reason "..." | off | status``.

The switch is a file replaced atomically (``$TRADENOVA_HOME/controls/kill_switch/``, with
its history beside it): setting it never waits on a database, and every running session
sees it on its next bar, stops entering and closes its positions. The Dagster
``kill_switch_job`` does the same from the web UI.
"""

from __future__ import annotations

import argparse

from tradenova_dagster.risk.kill_switch import GLOBAL


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "kill-switch",
        help="stop (or allow again) every new entry: on --reason ... | off | status",
        description="The global kill switch. When on, no account takes a new entry (backtests "
        "excepted, unless switched on by their own account); exits stay allowed.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    on = actions.add_parser("on", help="turn the switch on (a reason is required)")
    on.add_argument("--reason", required=True, help="why; recorded in the history")
    off = actions.add_parser("off", help="turn the switch off")
    off.add_argument("--reason", default="turned off from the command line", help="why; recorded in the history")
    status = actions.add_parser("status", help="show the switch and its recent history")
    status.add_argument("--history", type=int, default=5, metavar="N", help="changes to list (default 5)")
    for sub in (on, off, status):
        sub.add_argument("--account", default=GLOBAL,
                         help=f"account, e.g. sim:default (default {GLOBAL!r}: every account)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tradenova_dagster.risk.kill_switch import KillSwitch, switch_folder

    switch = KillSwitch(account=args.account, folder=switch_folder())
    if args.action == "on":
        print(switch.turn_on(args.reason, set_by="cli").describe())
    elif args.action == "off":
        print(switch.turn_off(args.reason, set_by="cli").describe())
    else:
        print(switch.state().describe())
        for change in switch.history(limit=max(args.history, 1)) if args.history > 0 else []:
            print(f"  {change.set_at:%Y-%m-%d %H:%M:%S} {change.account:<12} {'ON ' if change.on else 'off'} "
                  f"by {change.set_by}: {change.reason}")
    return 0
