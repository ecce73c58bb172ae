"""Market data from Alpaca through alpaca-py's ``StockHistoricalDataClient``.

Keys come from the caller (the Dagster resource reads them with ``dg.EnvVar``); they
are never logged or stored. alpaca-py follows ``next_page_token`` itself, so a day of
1-minute bars arrives whole whatever the server's page size. Alpaca serves no index
data, so the VIX comes from a Cboe history file when one is configured, else from the
synthetic VIX (stated in the resource's docs, visible in ``market_context.source``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import (
    DAILY_COLUMNS,
    MarketDataError,
    MarketDataSource,
    finish_bars,
    normalise_request,
)


class AlpacaMarketData(MarketDataSource):
    name = "alpaca"

    def __init__(
        self,
        api_key: str | None = None,
        secret_key: str | None = None,
        feed: str = "iex",
        url_override: str | None = None,
        vix_file: str | None = None,
        timeout_s: float = 10.0,
    ):
        if not api_key or not secret_key:
            raise MarketDataError(
                "market_data.source 'alpaca' needs the ALPACA_API_KEY and ALPACA_SECRET_KEY "
                "environment variables (or use source 'synthetic' to run offline)"
            )
        from alpaca.data.enums import DataFeed
        from alpaca.data.historical import StockHistoricalDataClient

        try:
            self._feed = DataFeed(feed.lower())
        except ValueError:
            choices = ", ".join(f.value for f in DataFeed)
            raise MarketDataError(f"market_data.feed: unknown value {feed!r}; expected one of {choices}") from None
        from tradenova_dagster.broker.alpaca import TimeoutSession

        self._client = StockHistoricalDataClient(api_key, secret_key, url_override=url_override)
        # A bars request that never answers must not hang a session: a timeout on every
        # request (alpaca-py's own retries on 429/5xx stay; the live feed polls again anyway).
        self._client._session = TimeoutSession(timeout_s)
        self._vix_file = vix_file

    def __repr__(self) -> str:  # never show the keys
        return f"AlpacaMarketData(feed={self._feed.value!r})"

    def _bars(self, symbol: str, timeframe, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        from alpaca.common.exceptions import APIError
        from alpaca.data.enums import Adjustment
        from alpaca.data.requests import StockBarsRequest

        request = StockBarsRequest(
            symbol_or_symbols=symbol,
            timeframe=timeframe,
            start=start.to_pydatetime(),
            end=end.to_pydatetime(),
            feed=self._feed,
            adjustment=Adjustment.RAW,
        )
        try:
            barset = self._client.get_stock_bars(request)
        except APIError as exc:
            raise MarketDataError(f"Alpaca refused bars for {symbol} (HTTP {exc.status_code}): {exc}") from None
        rows = barset.data.get(symbol, [])
        return pd.DataFrame(
            {
                "timestamp": [b.timestamp for b in rows],
                "open": [b.open for b in rows],
                "high": [b.high for b in rows],
                "low": [b.low for b in rows],
                "close": [b.close for b in rows],
                "volume": [b.volume for b in rows],
            }
        )

    def bars(self, symbol: str, day) -> pd.DataFrame:
        from alpaca.data.timeframe import TimeFrame

        symbol, day = normalise_request(symbol, day)
        open_, close = calendar.session_open_close(day)
        frame = self._bars(symbol, TimeFrame.Minute, open_, close - pd.Timedelta(seconds=1))
        if frame.empty:
            raise MarketDataError(f"Alpaca returned no bars for {symbol} on {day} (feed {self._feed.value})")
        return finish_bars(frame)

    def bars_since(self, symbol: str, day, after: pd.Timestamp) -> pd.DataFrame:
        """The day's minute bars starting at or after ``after`` (the live feed asks for only
        what is new); empty when there are none yet."""
        from alpaca.data.timeframe import TimeFrame

        symbol, day = normalise_request(symbol, day)
        _, close = calendar.session_open_close(day)
        frame = self._bars(symbol, TimeFrame.Minute, pd.Timestamp(after).tz_convert("UTC"), close - pd.Timedelta(seconds=1))
        return finish_bars(frame) if not frame.empty else frame

    def daily_bars(self, symbol: str, start, end) -> pd.DataFrame:
        from alpaca.data.timeframe import TimeFrame

        start, end = calendar.as_date(start, "start"), calendar.as_date(end, "end")
        frame = self._bars(
            symbol.upper(), TimeFrame.Day, pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC") + pd.Timedelta(days=1)
        )
        if frame.empty:
            return pd.DataFrame(columns=DAILY_COLUMNS)
        frame["day"] = pd.to_datetime(frame["timestamp"], utc=True).dt.tz_convert(calendar.NEW_YORK).dt.normalize().dt.tz_localize(None)
        return frame.set_index("day")[DAILY_COLUMNS]

    def vix_history(self, start, end) -> pd.Series:
        if self._vix_file:
            from tradenova_dagster.market.files import FileMarketData

            vix_path = Path(self._vix_file)
            return FileMarketData(vix_path.parent, vix_file=vix_path).vix_history(start, end)
        from tradenova_dagster.market.synthetic import SyntheticMarketData

        return SyntheticMarketData().vix_history(start, end)
