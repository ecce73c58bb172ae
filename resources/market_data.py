"""Where market data comes from, as a Dagster resource."""

from __future__ import annotations

from typing import Any, Optional

import dagster as dg
from pydantic import Field, field_validator, model_validator

from resources.secrets import DATA_URL_ENV, alpaca_credentials, fill_from_env, normalise_url
from tradenova_dagster.market.data import SOURCES, MarketDataSource, get_source

SOURCE_ENV = "TRADENOVA_DATA_SOURCE"
DATA_DIR_ENV = "TRADENOVA_DATA_DIR"

# field: (environment variable, default when it is unset); run config wins over both
ENV_DEFAULTS = {
    "source": (SOURCE_ENV, "synthetic"),
    "data_dir": (DATA_DIR_ENV, None),
    "data_url": (DATA_URL_ENV, None),
}


class MarketDataResource(dg.ConfigurableResource):
    """``source``: ``synthetic`` (offline default), ``file`` or ``alpaca``.

    - ``file`` reads CSV/Parquet bars from ``data_dir`` (files named ``<symbol>_...``) and
      the Cboe VIX history (``VIX_History*.csv``) from the same folder or ``vix_file``.
    - ``alpaca`` needs ``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY`` (or Alpaca's
      ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY``), read from the environment when the
      source is built, never in run config or logs; without them a run refuses to start,
      naming the missing variable. Alpaca serves no index data, so VIX comes from
      ``vix_file`` if set, else from the synthetic VIX.

    Each field merges on its own: run config > environment variable > default.
    ``source`` defaults from ``TRADENOVA_DATA_SOURCE`` (else ``synthetic``), ``data_dir``
    from ``TRADENOVA_DATA_DIR`` and ``data_url`` (the Market Data endpoint) from
    ``APCA_API_DATA_URL`` (else Alpaca's own URL). ``api_key`` / ``secret_key`` may be
    wired explicitly with ``dg.EnvVar`` (never a literal); unset, they come from the
    environment.
    """

    source: Optional[str] = None  # unset: $TRADENOVA_DATA_SOURCE, else "synthetic"
    data_dir: Optional[str] = None  # unset: $TRADENOVA_DATA_DIR
    vix_file: Optional[str] = None
    # unset: read from the environment when the source is built; never shown in repr
    api_key: Optional[str] = Field(default=None, repr=False)
    secret_key: Optional[str] = Field(default=None, repr=False)
    feed: str = "iex"
    data_url: Optional[str] = None  # unset: $APCA_API_DATA_URL, else Alpaca's own URL

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_env(cls, data: Any) -> Any:
        return fill_from_env(data, ENV_DEFAULTS)

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value not in SOURCES:
            raise ValueError(f"market_data.source: unknown value {value!r}; expected one of {', '.join(SOURCES)}")
        return value

    @field_validator("data_url")
    @classmethod
    def _endpoint(cls, value: Optional[str]) -> Optional[str]:
        return normalise_url(value)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A run that needs keys and lacks them stops here, before any op starts."""
        if self.source == "alpaca":
            self._credentials()

    def _credentials(self) -> tuple[str, str]:
        return alpaca_credentials("market_data.source 'alpaca'", self.api_key, self.secret_key,
                                  offline_hint="or use source 'synthetic' to run offline")

    def get_source(self) -> MarketDataSource:
        if self.source == "synthetic":
            return get_source("synthetic")
        if self.source == "file":
            return get_source("file", data_dir=self.data_dir, vix_file=self.vix_file)
        api_key, secret_key = self._credentials()
        return get_source(
            "alpaca",
            api_key=api_key,
            secret_key=secret_key,
            feed=self.feed,
            url_override=self.data_url,
            vix_file=self.vix_file,
        )
