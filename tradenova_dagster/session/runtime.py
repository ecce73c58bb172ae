"""The parts one account trades with, in one typed, frozen value.

Every job of the day (warmup, session, flatten, monitor, a backtest day) starts from a
``Runtime``; the session takes it whole instead of a dozen loose parameters. The parts
share one ``Store``, so a session bar's writes, whichever part makes them, join one
transaction (``Store.unit_of_work``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the annotations only; importing the parts here would import the world
    from tradenova_dagster.broker.base import Broker
    from tradenova_dagster.broker.executor import BrokerExecutor
    from tradenova_dagster.broker.sim import SimBroker
    from tradenova_dagster.metrics.tracker import MetricsTracker
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
    tracker: "MetricsTracker"
    kill_switch: "KillSwitch"
    sim: "SimBroker | None" = None  # the simulated broker, which needs the market's bars
    run_id: str | None = None

    @property
    def fee_per_contract(self) -> float:
        """What the broker charges per option contract (the sim's commission; Alpaca: none)."""
        return float(self.sim.config.option_commission_per_contract) if self.sim is not None else 0.0

    def record(self, job: str, kind: str, detail: dict) -> None:
        """One row in ``session_events``: what a job did, for the UI, the report and people."""
        self.store.execute(
            "INSERT INTO session_events (account, run_id, job, kind, detail) VALUES (?, ?, ?, ?, ?)",
            [self.account, self.run_id, job, kind, json.dumps(detail, default=str)],
        )
