"""``tradenova kill-switch on --reason "..." | off | status`` and ``tradenova risk status | clear``.

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

    risk = subparsers.add_parser(
        "risk", help="an account's risk state: status | clear --reason ... (lift a halt, with an audit row)",
        description="Show an account's risk state, or lift a halt by hand. Clearing writes a 'clear' row to "
        "risk_events with the reason; a daily-loss halt cannot be cleared while the loss stands; a drawdown stop "
        "takes today's equity as the new peak. The account must not be held by a running session.",
    )
    risk_actions = risk.add_subparsers(dest="action", metavar="ACTION", required=True)
    risk_status = risk_actions.add_parser("status", help="the risk state and recent events")
    risk_clear = risk_actions.add_parser("clear", help="lift the account's halt (a reason is required)")
    risk_clear.add_argument("--reason", required=True, help="why; recorded in risk_events")
    for sub in (risk_status, risk_clear):
        sub.add_argument("--account", default="sim:default", help="account, e.g. sim:default (default)")
    risk.set_defaults(func=_risk)


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


def _risk(args: argparse.Namespace) -> int:
    from tradenova_dagster.ledger.accounts import ledger_path, ledger_store
    from tradenova_dagster.ledger.lease import AccountLease, lease_holder
    from tradenova_dagster.risk.manager import AdvancedRiskManager

    if not ledger_path(args.account).exists():
        raise ValueError(f"account {args.account}: no ledger at {ledger_path(args.account)} (nothing has traded it)")
    if args.action == "status":
        holder = lease_holder(args.account)
        if holder is not None:
            print(f"{args.account} is held by {holder.describe()}; its risk state is the session's until it ends")
            return 0
        manager = AdvancedRiskManager(store=ledger_store(args.account), account=args.account)
        print(_describe(manager))
        return 0
    with AccountLease(args.account, None, "risk-clear", wait_s=5.0):
        manager = AdvancedRiskManager(store=ledger_store(args.account), account=args.account)
        if not manager.is_halted:
            print(f"{args.account} is not halted: nothing to clear\n{_describe(manager)}")
            return 0
        manager.clear_halt(f"{args.reason.strip()} (cleared from the command line)")
        print(f"cleared\n{_describe(manager)}")
    return 0


def _describe(manager) -> str:
    s = manager.state
    halt = f"HALTED ({s.halt_rule}, {s.halt_scope}): {s.halt_reason}" if s.halted else "not halted"
    return (f"risk state of {manager.account} on {s.day}: {halt}; level {manager.risk_level.value}; start-of-day "
            f"equity {s.start_of_day_equity:,.2f}, peak {s.peak_equity:,.2f}, realised {s.realized_pnl:+,.2f}, "
            f"trades {s.trades_today}, loss streak {s.loss_streak}")
