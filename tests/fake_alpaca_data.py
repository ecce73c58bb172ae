"""A local HTTP server that speaks Alpaca's Market Data API for stock bars.

Shapes follow ``../shared/specs/alpaca-market-data-api.json`` (``GET /v2/stocks/bars``:
``{"bars": {SYMBOL: [{t, o, h, l, c, v, n, vw}]}, "next_page_token": ...}``). Bars come
from the synthetic source, and pages are small (``PAGE_SIZE``) so that alpaca-py's
pagination is exercised on every day. Requests are recorded for assertions.

With a ``clock`` (anything with ``now()``, e.g. the ``ShiftedClock`` an end-to-end test
shares with the session it drives), only the minute bars that have completed by the
clock's now are served (a bar stamped t is complete at t + 1 minute), as a live feed
does; without one (the default) every bar of the asked range is served.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.market.synthetic import SyntheticMarketData

PAGE_SIZE = 100
KNOWN_SYMBOLS = {"SPY", "QQQ"}
API_KEY = "test-key-id"
SECRET_KEY = "test-secret"


def _rfc3339(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeAlpacaData:
    def __init__(self, clock=None, api_key: str = API_KEY, secret_key: str = SECRET_KEY):
        self.source = SyntheticMarketData()
        self.clock = clock
        self.api_key, self.secret_key = api_key, secret_key
        self.requests: list[dict] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeAlpacaData":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def bars_between(self, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> list[dict]:
        if timeframe not in ("1Min", "1Day"):
            raise ValueError(timeframe)
        days = calendar.trading_days(start.tz_convert(calendar.NEW_YORK).date(), end.tz_convert(calendar.NEW_YORK).date())
        rows = []
        for day in days:
            bars = self.source.bars(symbol, day)
            if timeframe == "1Day":
                bars = pd.DataFrame(
                    [{
                        "timestamp": pd.Timestamp(day).tz_localize(calendar.NEW_YORK).tz_convert("UTC"),
                        "open": bars["open"].iloc[0], "high": bars["high"].max(), "low": bars["low"].min(),
                        "close": bars["close"].iloc[-1], "volume": bars["volume"].sum(),
                    }]
                )
            bars = bars[(bars["timestamp"] >= start) & (bars["timestamp"] <= end)]
            if self.clock is not None:  # only what has happened by now
                now = pd.Timestamp(self.clock.now()).tz_convert("UTC")
                if timeframe == "1Min":
                    bars = bars[bars["timestamp"] + pd.Timedelta(minutes=1) <= now]
                elif calendar.session_open_close(day)[1] > now:
                    bars = bars.iloc[:0]  # today's daily bar is not complete yet
            rows += [
                {"t": _rfc3339(r.timestamp), "o": r.open, "h": r.high, "l": r.low, "c": r.close,
                 "v": int(r.volume), "n": 100, "vw": round((r.high + r.low + r.close) / 3, 4)}
                for r in bars.itertuples()
            ]
        return rows

    def bars_reply(self, query: dict) -> tuple[int, dict]:
        """(status, body) of ``GET /v2/stocks/bars`` for ``query`` (one page)."""
        symbols = query.get("symbols", "").split(",")
        unknown = [s for s in symbols if s not in KNOWN_SYMBOLS]
        if unknown:
            return 400, {"code": 40010001, "message": f"invalid symbol: {unknown[0]}"}
        start = pd.Timestamp(query["start"]).tz_convert("UTC")
        end = pd.Timestamp(query["end"]).tz_convert("UTC")
        rows = self.bars_between(symbols[0], query.get("timeframe", "1Min"), start, end)
        offset = int(query.get("page_token") or 0)
        limit = min(int(query.get("limit") or PAGE_SIZE), PAGE_SIZE)
        page = rows[offset : offset + limit]
        next_token = str(offset + limit) if offset + limit < len(rows) else None
        return 200, {"bars": {symbols[0]: page}, "next_page_token": next_token}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, body: dict) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append({"path": url.path, "query": query, "headers": dict(self.headers)})
                if (self.headers.get("APCA-API-KEY-ID") != fake.api_key
                        or self.headers.get("APCA-API-SECRET-KEY") != fake.secret_key):
                    return self._send(401, {"code": 40110000, "message": "request is not authorized"})
                if url.path != "/v2/stocks/bars":
                    return self._send(404, {"code": 40410000, "message": "endpoint not found"})
                return self._send(*fake.bars_reply(query))

        return Handler
