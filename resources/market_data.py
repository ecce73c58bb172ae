"""Where market data comes from, as a Dagster resource."""

from __future__ import annotations

from typing import Optional

import dagster as dg
from pydantic import field_validator

from tradenova_dagster.market.data import SOURCES, MarketDataSource, get_source


class MarketDataResource(dg.ConfigurableResource):
    """``source``: ``synthetic`` (offline default), ``file`` or ``alpaca``.

    - ``file`` reads CSV/Parquet bars from ``data_dir`` (files named ``<symbol>_...``) and
      the Cboe VIX history (``VIX_History*.csv``) from the same folder or ``vix_file``.
    - ``alpaca`` needs ``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY``; wire them with
      ``dg.EnvVar`` so they never appear in run config or logs. Alpaca serves no index
      data, so VIX comes from ``vix_file`` if set, else from the synthetic VIX.
    """

    source: str = "synthetic"
    data_dir: Optional[str] = None
    vix_file: Optional[str] = None
    api_key: Optional[str] = None
    secret_key: Optional[str] = None
    feed: str = "iex"
    data_url: Optional[str] = None  # override of Alpaca's data URL (a local server in tests)

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value not in SOURCES:
            raise ValueError(f"market_data.source: unknown value {value!r}; expected one of {', '.join(SOURCES)}")
        return value

    def get_source(self) -> MarketDataSource:
        if self.source == "synthetic":
            return get_source("synthetic")
        if self.source == "file":
            return get_source("file", data_dir=self.data_dir, vix_file=self.vix_file)
        return get_source(
            "alpaca",
            api_key=self.api_key,
            secret_key=self.secret_key,
            feed=self.feed,
            url_override=self.data_url,
            vix_file=self.vix_file,
        )
