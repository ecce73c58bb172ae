"""The parts one account trades with, in one typed, frozen value.

Every job of the day (warmup, session, flatten, monitor, a backtest day) starts from a
``Runtime``; the session takes it whole instead of a dozen loose parameters.

Two stores: ``store`` is the account's ledger file (``ledger/accounts.py``), shared by
every part that writes the account, so a session bar's writes, whichever part makes them,
join one transaction (``Store.unit_of_work``); ``shared`` is the database every account
reads market data, market context and models from (``None``: the ledger file itself,
for tests and one-file set-ups). ``lease`` is the account's lease when the run holds it;
the session heartbeats it every bar. ``ledger``: the account's ``AccountLedger`` when the
caller keeps one across days (a backtest: its days follow one another on one ledger,
which would otherwise be read whole again each day); ``None``: each session reads its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the annotations only; importing the parts here would import the world
    from tradenova_dagster.alerts import Alerter
    from tradenova_dagster.broker.base import Broker
    from tradenova_dagster.broker.executor import BrokerExecutor
    from tradenova_dagster.broker.sim import SimBroker
    from tradenova_dagster.ledger.account import AccountLedger
    from tradenova_dagster.ledger.lease import AccountLease
    from tradenova_dagster.ledger.records import AccountRecords
    from tradenova_dagster.risk.kill_switch import KillSwitch
    from tradenova_dagster.risk.manager import AdvancedRiskManager
    from tradenova_dagster.risk.profit import ProfitManager
    from tradenova_dagster.store import Store


@dataclass(frozen=True)
class Runtime:
    store: "Store"
    account: str
    broker: "Broker"
    executor: "BrokerExecutor"
    risk: "AdvancedRiskManager"
    profit: "ProfitManager"
    records: "AccountRecords"
    kill_switch: "KillSwitch"
    sim: "SimBroker | None" = None  # the simulated broker, which needs the market's bars
    run_id: str | None = None
    shared: "Store | None" = None
    lease: "AccountLease | None" = None
    alerts: "Alerter | None" = None  # None: alerts are recorded, not sent (backtests)
    ledger: "AccountLedger | None" = None

    def account_ledger(self) -> "AccountLedger":
        """The account's ledger: the one this runtime carries, else a fresh read of the file."""
        if self.ledger is not None:
            return self.ledger
        from tradenova_dagster.ledger.account import AccountLedger

        return AccountLedger(self.store, self.account, run_id=self.run_id, fee_per_contract=self.fee_per_contract)

    @property
    def market(self) -> "Store":
        """Where market data, market context and models are read (the shared database)."""
        return self.shared if self.shared is not None else self.store

    @property
    def fee_per_contract(self) -> float:
        """What the broker charges per option contract (the sim's commission; Alpaca: none)."""
        return float(self.sim.config.option_commission_per_contract) if self.sim is not None else 0.0

    def book_exit(self, fill, part, reason: str, agent: str, underlying: str, levels: tuple = (),
                  remaining: int = 0) -> None:
        """What an exit fill means beyond the ledger: the round trip in ``trades`` (keyed by
        the fill, so it cannot be recorded twice), the ladder (levels fired only now that the
        exit filled), and, when the position closed, the trade in the risk state."""
        self.records.record_trade(
            underlying, part.entry_price, fill.price, fill.qty, "long", part.pnl, agent,
            entry_time=part.entry_time or fill.ts, exit_time=fill.ts, contract=fill.symbol, commission=part.fees,
            exit_reason=reason, trade_id=fill.fill_id,
        )
        if levels and fill.symbol in self.profit.positions():
            self.profit.exit_filled(fill.symbol, levels, remaining)
        self.profit.forget_closed()
        if part.closes_position:
            self.risk.record_trade(fill.symbol, fill.qty, part.entry_price, fill.price, part.position_pnl, "buy")

    def alert(self, kind: str, title: str, detail: dict) -> None:
        """Something a person must know: a ``session_events`` row (job ``alert``) and, where
        configured, a webhook post and/or an email (``alerts.Alerter``; it never raises)."""
        from tradenova_dagster.alerts import Alert

        self.record("alert", kind, {"title": title, **detail})
        if self.alerts is not None:
            self.alerts.send(Alert(kind, self.account, title, json.loads(json.dumps(detail, default=str))))

    def record(self, job: str, kind: str, detail: dict) -> None:
        """One row in ``session_events``: what a job did, for the UI, the report and people."""
        self.store.execute(
            "INSERT INTO session_events (account, run_id, job, kind, detail) VALUES (?, ?, ?, ?, ?)",
            [self.account, self.run_id, job, kind, json.dumps(detail, default=str)],
        )
