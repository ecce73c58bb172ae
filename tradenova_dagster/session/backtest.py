"""A backtest day: the trading session replayed on a ``backtest:<id>`` account.

Split from ``session.day`` (which re-exports these names, the ones callers import): the
runtime of a backtest account and the day it replays through ``day.run_session``, the
same loop a paper or live session runs. ``day`` is imported inside the functions, as it
imports this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date

from tradenova_dagster.market import calendar
from tradenova_dagster.session.engine import SessionReport, SessionSettings
from tradenova_dagster.session.runtime import Runtime
from tradenova_dagster.store import Store


READ_AHEAD = 25  # days whose bars and context a backtest reads on one connection to the shared database


def backtest_account(backtest_id: str) -> str:
    if not backtest_id or not all(c.isalnum() or c in "-_." for c in backtest_id):
        raise ValueError(f"backtest_id must be letters, digits, '-', '_' or '.', got {backtest_id!r}")
    return f"backtest:{backtest_id}"


def backtest_runtime(store: Store, backtest_id: str, day: date, initial_cash: float = 100_000.0,
                     risk_limits=None, lease=None, fresh: bool = True, *, carried: Runtime | None = None,
                     clear: bool = True) -> Runtime:
    """A runtime for one replayed day of a backtest; ``store`` is the shared database the
    day's bars and context come from.

    A backtest is one account, ``backtest:<id>``, in its own ledger file (never mixed with
    paper or live; two backtests run side by side in two processes), across its days as
    the live account is: the simulated broker's cash and equity, the risk state (peak
    equity, a drawdown halt) and the records carry from one day to the next, while the
    daily rules start afresh each day (``risk.start_day``). ``fresh`` starts the backtest
    over: every record of the account is deleted and the broker starts from
    ``initial_cash`` — the first day of a run; later days continue (a day replayed again
    within them replaces its own records). The ladder runs in memory; only the
    backtest's own kill switch applies, not the global one.

    ``carried``: the previous day's runtime of the same run (``backtest_days``). Its broker,
    risk manager, records, kill switch and ledger go on to this day instead of being built
    and read from the file again (~20 ms a day): each holds what the file holds once the
    previous day committed, and only this run writes the account meanwhile (it holds the
    lease). The ladder is new each day, as before. They are built afresh when clearing the
    day deleted anything, as the ledger and the risk events they know would be stale.
    Without ``carried`` the runtime has no ledger: the session reads its own.
    ``clear=False`` skips clearing the day: for a caller that knows the day has no rows.
    """
    from tradenova_dagster.broker import BrokerExecutor, SimBroker
    from tradenova_dagster.session.day import session_key
    from tradenova_dagster.broker.sim import SimConfig
    from tradenova_dagster.ledger.accounts import clear_account, ledger_store
    from tradenova_dagster.ledger.records import AccountRecords
    from tradenova_dagster.risk import AdvancedRiskManager, KillSwitch, ProfitManager

    account = backtest_account(backtest_id)
    ledger = ledger_store(account)
    if fresh:
        clear_account(ledger, account)
    records = carried.records if carried is not None else AccountRecords(ledger, account)
    if clear and records.clear_day(day):
        carried = None
    if carried is not None:
        sim, switch, risk, account_ledger = carried.sim, carried.kill_switch, carried.risk, carried.ledger
    else:
        sim = SimBroker(account, ledger, SimConfig(initial_cash=initial_cash))
        if fresh:
            sim.reset(initial_cash)
        switch = KillSwitch(store, account=account)  # a backtest's own switch (the global one does not apply)
        # Risk keeps its state and every refusal in the ledger, as it does live (one way in every mode).
        risk = (AdvancedRiskManager.from_limits(risk_limits, initial_cash, account=account, store=ledger,
                                                kill_switch=switch)
                if risk_limits is not None else AdvancedRiskManager(initial_balance=initial_cash, account=account,
                                                                       store=ledger, kill_switch=switch))
        account_ledger = None
    executor = BrokerExecutor(sim, run_id=session_key(account, day), backoff_s=0.0)
    return Runtime(ledger, account, sim, executor, risk, ProfitManager(account=account), records, switch, sim=sim,
                   shared=store, lease=lease, ledger=account_ledger)


def backtest_days(store: Store, source, days, signal, backtest_id: str, *, initial_cash: float = 100_000.0,
                  settings: SessionSettings | None = None, risk_limits=None,
                  fresh: bool = True) -> Iterator[tuple[date, SessionReport]]:
    """Replay ``days`` in order through the full session loop as one backtest (see
    ``backtest_runtime``: ``fresh`` starts the backtest over on the first day, else the
    first day continues it), yielding each day and its report as it is done.

    The backtest account's lease and one ledger connection are held for the whole run,
    not taken again each day: opening and closing a DuckDB file costs tens of
    milliseconds (the close writes the day back to the file), as much as replaying a quiet
    day, and nothing else may write a backtest's ledger while it runs anyway. The shared
    database (bars, market context) is another process's too, so it is not held for the
    run: the days' inputs are read ``READ_AHEAD`` days at a time, one connection each.
    Each day's runtime carries the previous day's parts on (``backtest_runtime``'s
    ``carried``). A run that started ``fresh`` emptied the account and has written only its
    own earlier days since, so a later day has nothing to clear.
    Consume the whole iterator (or close it): the lease is released when it ends.
    """
    from tradenova_dagster.ledger.accounts import ledger_store
    from tradenova_dagster.ledger.lease import AccountLease
    from tradenova_dagster.session.day import replay_inputs, run_session

    days = [calendar.require_trading_day(day, "date") for day in days]
    symbol = (settings or SessionSettings()).symbol
    account = backtest_account(backtest_id)
    with AccountLease(account, None, "backtest") as lease, ledger_store(account).hold():
        # Held from the start: building the runtime (clearing the day, loading the broker's
        # and risk's state) reads and writes the ledger too, on the same connection.
        runtime, latest = None, None  # the previous day's runtime; the latest day replayed
        for start in range(0, len(days), READ_AHEAD):
            chunk = days[start:start + READ_AHEAD]
            with store.hold():
                inputs = [replay_inputs(store, source, day, symbol) for day in chunk]
            for i, (day, day_inputs) in enumerate(zip(chunk, inputs), start):
                clear = not (fresh and latest is not None and day > latest)
                runtime = backtest_runtime(store, backtest_id, day, initial_cash, risk_limits, lease, fresh and i == 0,
                                           carried=runtime, clear=clear)
                latest = day if latest is None else max(latest, day)
                if runtime.ledger is None:  # read here, just before the session: nothing writes in between
                    runtime = replace(runtime, ledger=runtime.account_ledger())
                yield day, run_session(runtime, day, source, signal, mode="replay", settings=settings,
                                       inputs=day_inputs)


def backtest_day(store: Store, source, day, signal, backtest_id: str, *, initial_cash: float = 100_000.0,
                 settings: SessionSettings | None = None, risk_limits=None, fresh: bool = True) -> SessionReport:
    """Replay one ``day`` of a backtest (``backtest_days`` with a single day)."""
    ((_, report),) = backtest_days(store, source, [day], signal, backtest_id, initial_cash=initial_cash,
                                   settings=settings, risk_limits=risk_limits, fresh=fresh)
    return report
