"""A local HTTP server that speaks Alpaca's Trading API, backed by a real SimBroker.

alpaca-py's real ``TradingClient`` talks to it through ``url_override``. Shapes follow
``../shared/specs/alpaca-trading-api.json`` (Order, Position, Account, Error, clock,
assets, option contracts with ``next_page_token``); the option snapshot and stock
latest-quote endpoints of the Market Data API are served too, for ``get_quote``.

Fault injection (``inject``) makes chosen requests misbehave, ``before`` the request is
acted on or ``after`` it (the order then exists, but the client does not hear so):

- ``http_500_html`` / ``http_502_html``: an HTML error page (not JSON);
- ``http_429``: rate limited (JSON error);
- ``timeout``: no reply within the client's timeout — ``after``: the order was created;
  ``before``: the request is held, then acted on late (a late arrival);
- ``lost``: no reply within the client's timeout, and the request is never acted on (a
  proxy that gave up on it): the broker never got it (``before`` only);
- ``reset``: the connection is reset with no reply;
- ``duplicate_422``: Alpaca's "client_order_id must be unique" reply;
- ``not_json``: HTTP 200 with a body that is not JSON;
- ``unknown_enum``: the reply's order carries a status and type alpaca-py does not know.

A shared clock (end-to-end paper days): given ``clock`` (e.g. the ``ShiftedClock`` the
session process runs on) the SimBroker runs on it, and before each request it is fed the
synthetic bars of ``symbol`` that have completed by the clock's now (``catch_up``), so an
order sent after bar t fills on bar t+1's prices. Given ``market`` (a ``FakeAlpacaData``
on the same clock), ``GET /v2/stocks/bars`` is served too, so one URL serves the Trading
API and every Market Data endpoint the project uses, with faults injectable on both.
Without them (the default) the test drives the SimBroker by hand, as before.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import pandas as pd

from tradenova_dagster.broker.base import BrokerError, NotFound
from tradenova_dagster.broker.sim import SimBroker
from tradenova_dagster.domain import AssetClass, OptionContract, Order
from tradenova_dagster.market.chain import DEFAULT_MODEL, generate_chain, weekly_expiries, years_to_expiry
from tradenova_dagster.market.options import implied_vol

API_KEY = "test-trading-key"
SECRET_KEY = "test-trading-secret"
FAULTS = ("http_500_html", "http_502_html", "http_429", "timeout", "lost", "reset", "duplicate_422", "not_json",
          "unknown_enum")


def _iso(value) -> str | None:
    if value is None:
        return None
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _str(value) -> str | None:
    return None if value is None else f"{value:.10g}"


@dataclass
class Fault:
    kind: str
    when: str
    method: str
    path: str
    times: int


class FakeAlpacaTrading:
    def __init__(self, sim: SimBroker, hang_s: float = 1.0, page_size: int = 25, clock=None, market=None,
                 symbol: str = "SPY"):
        self.sim = sim
        self.clock = clock
        self.market = market
        self.symbol = symbol
        self.fed: list[pd.Timestamp] = []  # the bars fed to the SimBroker (their starts)
        self._fed_day = None
        self._day_bars = None
        self._day_vix = None
        self._market_lock = threading.RLock()
        if clock is not None:
            sim.clock = clock
        self.hang_s = hang_s
        self.page_size = page_size
        self.log: list[dict] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeAlpacaTrading":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def inject(self, kind: str, when: str = "before", method: str = "POST", path: str = "/v2/orders",
               times: int = 1) -> None:
        if kind not in FAULTS or when not in ("before", "after") or (kind == "lost" and when != "before"):
            raise ValueError(f"unknown fault {kind!r}/{when!r}")
        with self._lock:
            self._faults.append(Fault(kind, when, method, path, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.method == method and fault.path == path:
                    fault.times -= 1
                    return fault
        return None

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Wait until no request is being handled (a held request has been acted on)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._in_flight == 0:
                    return
            time.sleep(0.02)
        raise TimeoutError("requests still in flight")

    def requests_to(self, method: str, path: str) -> int:
        return sum(1 for entry in self.log if entry["method"] == method and entry["path"] == path)

    def catch_up(self) -> int:
        """Feed the SimBroker the bars of ``symbol`` completed by the clock's now (none
        without a clock); returns how many it fed."""
        if self.clock is None:
            return 0
        from tradenova_dagster.market import calendar
        from tradenova_dagster.market.synthetic import SyntheticMarketData

        with self._market_lock:
            now = pd.Timestamp(self.clock.now()).tz_convert("UTC")
            day = now.tz_convert(calendar.NEW_YORK).date()
            if day != self._fed_day:
                self._fed_day = day
                source = SyntheticMarketData()
                self._day_bars = source.bars(self.symbol, day) if calendar.is_trading_day(day) else None
                vix = source.vix_history(day, day)
                self._day_vix = float(vix.iloc[-1]) if len(vix) else None
            if self._day_bars is None:
                return 0
            last = self.fed[-1] if self.fed else None
            bars = self._day_bars
            due = bars[(bars["timestamp"] + pd.Timedelta(minutes=1) <= now)
                       & ((bars["timestamp"] > last) if last is not None else True)]
            for row in due.itertuples():
                self.sim.on_bar(row.timestamp, self.symbol,
                                {"open": row.open, "high": row.high, "low": row.low, "close": row.close},
                                vix=self._day_vix)
                self.fed.append(row.timestamp)
            return len(due)

    def client_order_ids(self) -> list[str]:
        """Every top-level order's client_order_id at the broker, in order of arrival."""
        orders = [o for o in self.sim.list_orders(status="all", limit=100_000) if o.parent_id is None]
        return [o.client_order_id for o in sorted(orders, key=lambda o: (o.created_at, o.id))]

    # ------------------------------------------------------------------ JSON shapes

    def order_json(self, order: Order, details: dict[str, dict] | None = None) -> dict:
        details = details if details is not None else self.sim.order_details([order.id, *(l.id for l in order.legs)])
        extra = details[order.id]
        return {
            "id": order.id, "client_order_id": order.client_order_id,
            "created_at": _iso(order.created_at), "updated_at": _iso(order.updated_at),
            "submitted_at": _iso(order.created_at), "filled_at": _iso(extra["filled_at"]),
            "expired_at": _iso(extra["expired_at"]), "canceled_at": _iso(extra["canceled_at"]), "failed_at": None,
            "replaced_at": _iso(order.updated_at) if extra["replaced_by"] else None,
            "replaced_by": extra["replaced_by"], "replaces": extra["replaces"],
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, order.symbol)), "symbol": order.symbol,
            "asset_class": extra["asset_class"], "notional": None, "qty": _str(order.qty),
            "filled_qty": _str(order.filled_qty), "filled_avg_price": _str(order.filled_avg_price),
            "order_class": order.order_class.value, "order_type": order.order_type.value,
            "type": order.order_type.value, "side": order.side.value, "time_in_force": order.time_in_force.value,
            "limit_price": _str(order.limit_price), "stop_price": _str(order.stop_price),
            "status": order.status.value, "extended_hours": False,
            "legs": [self.order_json(leg, details) for leg in order.legs] or None,
            "trail_percent": None, "trail_price": None, "hwm": None,
            "expires_at": _iso(extra["expires_at"]),
        }

    def position_json(self, position) -> dict:
        cls = position.asset_class
        current = position.current_price or position.avg_entry_price
        return {
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, position.symbol)), "symbol": position.symbol,
            "exchange": "ARCA" if cls is AssetClass.EQUITY else "", "asset_class": cls.value,
            "avg_entry_price": _str(position.avg_entry_price), "qty": _str(position.qty),
            "qty_available": _str(position.qty), "side": "long" if position.qty > 0 else "short",
            "market_value": _str(position.market_value), "cost_basis": _str(position.cost_basis),
            "unrealized_pl": _str(position.unrealized_pl),
            "unrealized_plpc": _str(position.unrealized_pl / abs(position.cost_basis)),
            "unrealized_intraday_pl": _str(position.unrealized_pl),
            "unrealized_intraday_plpc": _str(position.unrealized_pl / abs(position.cost_basis)),
            "current_price": _str(current), "lastday_price": _str(current), "change_today": "0",
            "asset_marginable": cls is AssetClass.EQUITY,
        }

    def account_json(self) -> dict:
        snap = self.sim.account_snapshot()
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, snap["account"])), "account_number": snap["account"],
            "status": "ACTIVE", "currency": "USD", "cash": _str(snap["cash"]),
            "portfolio_value": _str(snap["equity"]), "equity": _str(snap["equity"]),
            "last_equity": _str(snap["last_equity"]), "buying_power": _str(snap["buying_power"]),
            "options_buying_power": _str(snap["buying_power"]),
            "non_marginable_buying_power": _str(snap["buying_power"]),
            "long_market_value": _str(snap["long_market_value"]),
            "short_market_value": _str(snap["short_market_value"]), "multiplier": "1",
            "trading_blocked": snap["trading_blocked"], "account_blocked": False, "transfers_blocked": False,
            "trade_suspended_by_user": False, "pattern_day_trader": False, "shorting_enabled": False,
            "daytrade_count": 0, "options_approved_level": 2, "options_trading_level": 2,
            "created_at": "2024-01-02T14:30:00Z", "accrued_fees": "0", "pending_transfer_in": "0",
        }

    # ------------------------------------------------------------------ requests → broker

    def order_from_body(self, body: dict) -> Order:
        take_profit = (body.get("take_profit") or {}).get("limit_price")
        stop_loss = body.get("stop_loss") or {}
        order_class = body.get("order_class") or "simple"
        limit_price = body.get("limit_price")
        if order_class == "oco" and limit_price is None:
            limit_price = take_profit
        return Order(
            symbol=body["symbol"], qty=float(body["qty"]), side=body["side"],
            client_order_id=body.get("client_order_id") or str(uuid.uuid4()), order_type=body["type"],
            time_in_force=body["time_in_force"], limit_price=_float(limit_price),
            stop_price=_float(body.get("stop_price")), order_class=order_class,
            take_profit_price=_float(take_profit), stop_loss_price=_float(stop_loss.get("stop_price")),
            stop_loss_limit_price=_float(stop_loss.get("limit_price")),
        )

    def option_contracts(self, query: dict) -> dict:
        underlying = query.get("underlying_symbols", "SPY").split(",")[0]
        spot = self.sim.get_quote(underlying).mid
        now = self.sim.now()
        chain = generate_chain(underlying, spot, now, 19.0, weekly_expiries(now, 4), strikes_each_side=20)
        if query.get("expiration_date"):
            chain = chain[chain["expiry"].astype(str) == query["expiration_date"]]
        if query.get("expiration_date_gte"):
            chain = chain[chain["expiry"].astype(str) >= query["expiration_date_gte"]]
        if query.get("expiration_date_lte"):
            chain = chain[chain["expiry"].astype(str) <= query["expiration_date_lte"]]
        if query.get("type"):
            chain = chain[chain["option_type"] == query["type"]]
        if query.get("strike_price_gte"):
            chain = chain[chain["strike"] >= float(query["strike_price_gte"])]
        if query.get("strike_price_lte"):
            chain = chain[chain["strike"] <= float(query["strike_price_lte"])]
        offset = int(query.get("page_token") or 0)
        limit = min(int(query.get("limit") or self.page_size), self.page_size)
        rows = chain.iloc[offset: offset + limit]
        contracts = [self.contract_json(r.symbol) for r in rows.itertuples()]
        token = str(offset + limit) if offset + limit < len(chain) else None
        return {"option_contracts": contracts, "next_page_token": token}

    def contract_json(self, symbol: str) -> dict:
        c = OptionContract.parse(symbol)
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, symbol)), "symbol": symbol, "name": symbol,
            "status": "active", "tradable": True, "expiration_date": c.expiry.isoformat(),
            "root_symbol": c.underlying, "underlying_symbol": c.underlying,
            "underlying_asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, c.underlying)),
            "type": c.option_type.value, "style": "american", "strike_price": _str(c.strike),
            "multiplier": "100", "size": "100", "open_interest": "1000", "open_interest_date": None,
            "close_price": None, "close_price_date": None, "deliverables": [],
        }

    def snapshot_json(self, symbol: str) -> dict:
        quote = self.sim.get_quote(symbol)
        contract = OptionContract.parse(symbol)
        spot = self.sim.get_quote(contract.underlying).mid
        iv = implied_vol(quote.mid, spot, contract.strike, years_to_expiry(self.sim.now(), contract.expiry),
                         DEFAULT_MODEL.rate, contract.option_type.value == "call")
        return {
            "latestQuote": {"t": _iso(quote.timestamp), "bp": quote.bid, "ap": quote.ask, "bs": int(quote.bid_size),
                            "as": int(quote.ask_size), "bx": "C", "ax": "C", "c": "A"},
            "impliedVolatility": None if iv != iv else float(iv), "greeks": {},
        }

    def route(self, method: str, path: str, query: dict, body: dict | None):
        """(status, payload) for one request; BrokerErrors become Alpaca's error replies."""
        if self.clock is not None:
            with self._market_lock:  # one request at a time on a shared clock: the market moves in order
                self.catch_up()
                return self._route(method, path, query, body)
        return self._route(method, path, query, body)

    def _route(self, method: str, path: str, query: dict, body: dict | None):
        sim = self.sim
        try:
            if path == "/v2/stocks/bars" and method == "GET" and self.market is not None:
                return self.market.bars_reply(query)
            if path == "/v2/account" and method == "GET":
                return 200, self.account_json()
            if path == "/v2/clock" and method == "GET":
                clock = sim.get_clock()
                return 200, {"timestamp": _iso(clock.timestamp), "is_open": clock.is_open,
                             "next_open": _iso(clock.next_open), "next_close": _iso(clock.next_close)}
            if path == "/v2/orders" and method == "POST":
                try:
                    order = self.order_from_body(body or {})
                except (KeyError, TypeError, ValueError) as exc:
                    return 422, {"code": 40010001, "message": str(exc)}
                return 200, self.order_json(sim.submit_order(order))
            if path == "/v2/orders" and method == "GET":
                symbols = query.get("symbols", "").split(",") if query.get("symbols") else None
                after = pd.Timestamp(query["after"]).to_pydatetime() if query.get("after") else None
                orders = sim.list_orders(query.get("status", "open"), symbols, int(query.get("limit") or 50), after)
                if query.get("nested") in ("true", "True"):
                    orders = [o for o in orders if o.parent_id is None]  # legs roll up under their parent
                return 200, [self.order_json(o) for o in orders]
            if path == "/v2/orders" and method == "DELETE":
                return 207, [{"id": i, "status": 200} for i in sim.cancel_all_orders()]
            if path == "/v2/orders:by_client_order_id" and method == "GET":
                return 200, self.order_json(sim.get_order_by_client_id(query.get("client_order_id", "")))
            if path.startswith("/v2/orders/"):
                order_id = path.rsplit("/", 1)[1]
                if method == "GET":
                    return 200, self.order_json(sim.get_order(order_id))
                if method == "DELETE":
                    sim.cancel_order(order_id)
                    return 204, None
            if path == "/v2/positions" and method == "GET":
                return 200, [self.position_json(p) for p in sim.get_positions()]
            if path.startswith("/v2/positions/"):
                symbol = unquote(path.rsplit("/", 1)[1])
                if method == "GET":
                    position = sim.get_position(symbol)
                    if position is None:
                        return 404, {"code": 40410000, "message": "position does not exist"}
                    return 200, self.position_json(position)
                if method == "DELETE":
                    return 200, self.order_json(sim.close_position(symbol, _float(query.get("qty"))))
            if path.startswith("/v2/assets/") and method == "GET":
                asset = sim.get_asset(unquote(path.rsplit("/", 1)[1]))
                return 200, {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, asset.symbol)), "class": asset.asset_class.value,
                             "exchange": "ARCA", "symbol": asset.symbol, "name": asset.symbol, "status": "active",
                             "tradable": asset.tradable, "marginable": True, "shortable": False,
                             "easy_to_borrow": True, "fractionable": asset.fractionable}
            if path == "/v2/options/contracts" and method == "GET":
                return 200, self.option_contracts(query)
            if path.startswith("/v2/options/contracts/") and method == "GET":
                symbol = unquote(path.rsplit("/", 1)[1])
                sim.get_asset(symbol)
                return 200, self.contract_json(symbol)
            if path == "/v1beta1/options/snapshots" and method == "GET":
                symbols = query.get("symbols", "").split(",")
                return 200, {"snapshots": {s: self.snapshot_json(s) for s in symbols}, "next_page_token": None}
            if path in ("/v2/stocks/quotes/latest",) and method == "GET":
                quotes = {}
                for symbol in query.get("symbols", "").split(","):
                    q = sim.get_quote(symbol)
                    quotes[symbol] = {"t": _iso(q.timestamp), "bp": q.bid, "ap": q.ask, "bs": int(q.bid_size),
                                      "as": int(q.ask_size), "bx": "V", "ax": "V", "c": ["R"], "z": "A"}
                return 200, {"quotes": quotes}
            return 404, {"code": 40410000, "message": f"endpoint not found: {method} {path}"}
        except NotFound as exc:
            return 404, exc.to_json()
        except BrokerError as exc:
            return exc.status_code or 500, exc.to_json()

    # ------------------------------------------------------------------ HTTP

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def finish(self):
                try:
                    super().finish()
                except OSError:
                    pass

            def _send(self, status: int, payload, content_type: str = "application/json") -> None:
                if payload is None:
                    data = b""
                elif isinstance(payload, str):
                    data = payload.encode()
                else:
                    data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    if data:
                        self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout) before the reply

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            def _serve(self, method: str) -> None:
                with fake._lock:
                    fake._in_flight += 1
                try:
                    self._serve_inner(method)
                finally:
                    with fake._lock:
                        fake._in_flight -= 1

            def _serve_inner(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                entry = {"method": method, "path": url.path, "query": query, "body": body, "fault": None}
                fake.log.append(entry)
                if self.headers.get("APCA-API-KEY-ID") != API_KEY or self.headers.get("APCA-API-SECRET-KEY") != SECRET_KEY:
                    return self._send(401, {"code": 40110000, "message": "request is not authorized"})
                fault = fake._take_fault(method, url.path)
                if fault is not None:
                    entry["fault"] = f"{fault.kind}/{fault.when}"
                if fault is not None and fault.when == "before":
                    if fault.kind == "timeout":
                        time.sleep(fake.hang_s)
                        entry["late_status"], _ = fake.route(method, url.path, query, body)  # the client is gone
                        return self._reset()
                    if fault.kind == "lost":
                        time.sleep(fake.hang_s)  # past the client's timeout; never acted on
                        return self._reset()
                    if fault.kind == "reset":
                        return self._reset()
                    return self._fault_reply(fault.kind, None)
                status, payload = fake.route(method, url.path, query, body)
                entry["status"] = status
                if fault is not None:
                    if fault.kind == "timeout":
                        time.sleep(fake.hang_s)
                        return self._reset()
                    if fault.kind == "reset":
                        return self._reset()
                    return self._fault_reply(fault.kind, payload)
                self._send(status, payload)

            def _fault_reply(self, kind: str, payload) -> None:
                if kind == "http_500_html":
                    return self._send(500, "<html><body><h1>500 Internal Server Error</h1></body></html>", "text/html")
                if kind == "http_502_html":
                    return self._send(502, "<html><head><title>502 Bad Gateway</title></head><body>"
                                           "<center><h1>502 Bad Gateway</h1></center></body></html>", "text/html")
                if kind == "http_429":
                    return self._send(429, {"code": 42910000, "message": "rate limit exceeded"})
                if kind == "duplicate_422":
                    return self._send(422, {"code": 40010001, "message": "client_order_id must be unique"})
                if kind == "not_json":
                    return self._send(200, "<html>OK</html>", "text/html")
                if kind == "unknown_enum":
                    payload = dict(payload, status="pending_quantum_review", type="trailing_stop_v2",
                                   order_class="mleg_v2", time_in_force="gtd")
                    return self._send(200, payload)
                raise ValueError(kind)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_DELETE(self):
                self._serve("DELETE")

        return Handler


def _float(value):
    return None if value is None else float(value)


def count_orders(sim: SimBroker, client_order_id: str | None = None) -> int:
    """Top-level orders in the account (legs not counted), or those with one client id."""
    orders = [o for o in sim.list_orders(status="all", limit=10_000) if o.parent_id is None]
    if client_order_id is not None:
        orders = [o for o in orders if o.client_order_id == client_order_id]
    return len(orders)

