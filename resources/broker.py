"""The broker as a Dagster resource: sim (default, offline), Alpaca paper, or Alpaca live."""

from __future__ import annotations

import os
from typing import Any, Optional
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field, field_validator, model_validator

from resources.secrets import BASE_URL_ENV, DATA_URL_ENV, alpaca_credentials, fill_from_env, normalise_url
from tradenova_dagster.broker import AlpacaBroker, Broker, BrokerExecutor, RoutingPolicy, SimBroker, SimConfig
from tradenova_dagster.broker.alpaca import LIVE_OPT_IN, require_live_opt_in
from tradenova_dagster.rules import OPTION_COMMISSION_PER_CONTRACT
from tradenova_dagster.ledger.accounts import ledger_store
from tradenova_dagster.store import Store

MODES = ("sim", "alpaca_paper", "alpaca_live")
MODE_ENV = "TRADENOVA_BROKER_MODE"
LIVE_HOST = "api.alpaca.markets"  # Alpaca's live Trading API; the paper one is paper-api.alpaca.markets

# field: (environment variable, default when it is unset); run config wins over both
ENV_DEFAULTS = {
    "mode": (MODE_ENV, "sim"),
    "url_override": (BASE_URL_ENV, None),
    "data_url": (DATA_URL_ENV, None),
}


def _host(url: Optional[str]) -> Optional[str]:
    return urlsplit(url).hostname if url else None


class BrokerResource(dg.ConfigurableResource):
    """Where orders go.

    - ``sim`` (default): SimBroker, its account ``account`` (default ``sim:default``) kept
      in the account's ledger file (``$TRADENOVA_HOME/ledgers/``; ``db_path`` names another
      DuckDB file), so the warmup, session and flatten runs share it. Needs no keys.
    - ``alpaca_paper``: Alpaca's paper API; needs ``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY``
      (or Alpaca's ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY``), read from the
      environment when the broker is built, never in run config or logs.
    - ``alpaca_live``: real money; refuses to start unless ``TRADENOVA_ALLOW_LIVE=1``.

    Each field merges on its own: run config > environment variable > default.
    ``mode`` defaults from ``TRADENOVA_BROKER_MODE`` (else ``sim``), ``url_override`` (the
    Trading API endpoint) from ``APCA_API_BASE_URL`` and ``data_url`` (the Market Data
    endpoint, for option quotes) from ``APCA_API_DATA_URL`` (else Alpaca's own URLs). A
    mode that needs keys and lacks them refuses to start, naming the missing variable;
    it never falls back to ``sim``. ``api_key`` / ``secret_key`` may be wired explicitly
    with ``dg.EnvVar`` (never a literal); unset, they come from the environment.

    ``timeout_s``, ``max_attempts``, ``backoff_s`` and ``stale_order_age_s`` configure the
    executor's retry rule and stale-order cleanup; ``option_commission_per_contract`` and
    ``initial_cash`` the simulated account (used when the account is first created).
    """

    mode: Optional[str] = None  # unset: $TRADENOVA_BROKER_MODE, else "sim"
    account: Optional[str] = None
    db_path: Optional[str] = None
    # unset: read from the environment when the broker is built; never shown in repr
    api_key: Optional[str] = Field(default=None, repr=False)
    secret_key: Optional[str] = Field(default=None, repr=False)
    url_override: Optional[str] = None  # unset: $APCA_API_BASE_URL, else Alpaca's own URL
    data_url: Optional[str] = None  # unset: $APCA_API_DATA_URL, else Alpaca's own URL
    timeout_s: float = 10.0
    max_attempts: int = 3
    backoff_s: float = 0.5
    stale_order_age_s: float = 300.0
    option_commission_per_contract: float = OPTION_COMMISSION_PER_CONTRACT  # rules.py, the one home
    initial_cash: float = 100_000.0
    strategy: str = "tradenova"

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_env(cls, data: Any) -> Any:
        return fill_from_env(data, ENV_DEFAULTS)

    @field_validator("url_override", "data_url")
    @classmethod
    def _endpoint(cls, value: Optional[str]) -> Optional[str]:
        return normalise_url(value)

    @model_validator(mode="after")
    def _validate(self) -> "BrokerResource":
        if self.mode not in MODES:
            raise ValueError(f"broker.mode: unknown value {self.mode!r}; expected one of {', '.join(MODES)}")
        if self.mode == "alpaca_live" and os.environ.get(LIVE_OPT_IN) != "1":
            raise ValueError(f"broker.mode 'alpaca_live' refused: set {LIVE_OPT_IN}=1 to trade real money")
        if self.mode == "alpaca_paper" and _host(self.url_override) == LIVE_HOST:
            raise ValueError(f"broker.mode 'alpaca_paper' refused: url_override {self.url_override!r} is Alpaca's "
                             f"live endpoint (from run config or {BASE_URL_ENV}); use the paper endpoint")
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

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A run that needs keys and lacks them stops here, before any op starts."""
        if self.mode != "sim":
            self._credentials()

    def _credentials(self) -> tuple[str, str]:
        return alpaca_credentials(f"broker.mode {self.mode!r}", self.api_key, self.secret_key,
                                  offline_hint="or use mode 'sim' to run offline")

    def account_name(self) -> str:
        """The name every state and record table uses for this account."""
        return self.account or ("sim:default" if self.mode == "sim" else f"{self.mode}:default")

    def get_broker(self, clock: Any = None, run_id: Optional[str] = None, store: Store | None = None) -> Broker:
        if self.mode == "sim":
            config = SimConfig(initial_cash=self.initial_cash,
                               option_commission_per_contract=self.option_commission_per_contract)
            store = store or (Store(self.db_path) if self.db_path else ledger_store(self.account_name()))
            return SimBroker(self.account_name(), store, config, clock=clock, run_id=run_id)
        if self.mode == "alpaca_live":
            require_live_opt_in()
        api_key, secret_key = self._credentials()
        return AlpacaBroker(api_key, secret_key, paper=self.mode == "alpaca_paper",
                            url_override=self.url_override, data_url=self.data_url, timeout_s=self.timeout_s)

    def get_executor(self, clock: Any = None, run_id: Optional[str] = None, store: Store | None = None,
                     routing: RoutingPolicy | None = None) -> BrokerExecutor:
        return BrokerExecutor(
            self.get_broker(clock, run_id, store), strategy=self.strategy, run_id=run_id,
            max_attempts=self.max_attempts, backoff_s=self.backoff_s, stale_order_age_s=self.stale_order_age_s,
            timeout_s=self.timeout_s, routing=routing or RoutingPolicy(), clock=clock,
        )
