"""The broker as a Dagster resource: sim (default, offline), Alpaca paper, or Alpaca live."""

from __future__ import annotations

import os
from typing import Any, Optional

import dagster as dg
from pydantic import model_validator

from tradenova_dagster.broker import AlpacaBroker, Broker, BrokerExecutor, RoutingPolicy, SimBroker, SimConfig
from tradenova_dagster.broker.alpaca import LIVE_OPT_IN, require_live_opt_in
from tradenova_dagster.rules import OPTION_COMMISSION_PER_CONTRACT
from tradenova_dagster.store import Store

MODES = ("sim", "alpaca_paper", "alpaca_live")


class BrokerResource(dg.ConfigurableResource):
    """Where orders go.

    - ``sim`` (default): SimBroker, its account ``account`` (default ``sim:default``) kept
      in DuckDB at ``db_path`` (default ``$TRADENOVA_HOME/tradenova.duckdb``), so the
      warmup, session and flatten runs share it. Needs no keys.
    - ``alpaca_paper``: Alpaca's paper API; needs ``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY``,
      wired with ``dg.EnvVar`` so they never appear in run config or logs.
    - ``alpaca_live``: real money; refuses to start unless ``TRADENOVA_ALLOW_LIVE=1``.

    ``timeout_s``, ``max_attempts``, ``backoff_s`` and ``stale_order_age_s`` configure the
    executor's retry rule and stale-order cleanup; ``option_commission_per_contract`` and
    ``initial_cash`` the simulated account (used when the account is first created).
    """

    mode: str = "sim"
    account: Optional[str] = None
    db_path: Optional[str] = None
    api_key: Optional[str] = None
    secret_key: Optional[str] = None
    url_override: Optional[str] = None  # another Trading API URL (a local server in tests)
    data_url: Optional[str] = None
    timeout_s: float = 10.0
    max_attempts: int = 3
    backoff_s: float = 0.5
    stale_order_age_s: float = 300.0
    option_commission_per_contract: float = OPTION_COMMISSION_PER_CONTRACT  # rules.py, the one home
    initial_cash: float = 100_000.0
    strategy: str = "tradenova"

    @model_validator(mode="after")
    def _validate(self) -> "BrokerResource":
        if self.mode not in MODES:
            raise ValueError(f"broker.mode: unknown value {self.mode!r}; expected one of {', '.join(MODES)}")
        if self.mode == "alpaca_live" and os.environ.get(LIVE_OPT_IN) != "1":
            raise ValueError(f"broker.mode 'alpaca_live' refused: set {LIVE_OPT_IN}=1 to trade real money")
        if not self.timeout_s > 0:
            raise ValueError(f"broker.timeout_s must be > 0 seconds, got {self.timeout_s!r}")
        if not self.max_attempts >= 1:
            raise ValueError(f"broker.max_attempts must be >= 1, got {self.max_attempts!r}")
        for name in ("backoff_s", "stale_order_age_s", "option_commission_per_contract"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"broker.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.initial_cash > 0:
            raise ValueError(f"broker.initial_cash must be > 0, got {self.initial_cash!r}")
        return self

    def account_name(self) -> str:
        """The name every state and record table uses for this account."""
        return self.account or ("sim:default" if self.mode == "sim" else f"{self.mode}:default")

    def get_broker(self, clock: Any = None, run_id: Optional[str] = None, store: Store | None = None) -> Broker:
        if self.mode == "sim":
            config = SimConfig(initial_cash=self.initial_cash,
                               option_commission_per_contract=self.option_commission_per_contract)
            return SimBroker(self.account_name(), store or Store(self.db_path), config, clock=clock, run_id=run_id)
        if self.mode == "alpaca_live":
            require_live_opt_in()
        if not (self.api_key and self.secret_key):
            raise ValueError(f"broker.mode {self.mode!r} needs the ALPACA_API_KEY and ALPACA_SECRET_KEY "
                             "environment variables (or use mode 'sim' to run offline)")
        return AlpacaBroker(self.api_key, self.secret_key, paper=self.mode == "alpaca_paper",
                            url_override=self.url_override, data_url=self.data_url, timeout_s=self.timeout_s)

    def get_executor(self, clock: Any = None, run_id: Optional[str] = None, store: Store | None = None,
                     routing: RoutingPolicy | None = None) -> BrokerExecutor:
        return BrokerExecutor(
            self.get_broker(clock, run_id, store), strategy=self.strategy, run_id=run_id,
            max_attempts=self.max_attempts, backoff_s=self.backoff_s, stale_order_age_s=self.stale_order_age_s,
            timeout_s=self.timeout_s, routing=routing or RoutingPolicy(), clock=clock,
        )
