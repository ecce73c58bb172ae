"""AlpacaBroker: the Broker protocol on alpaca-py's ``TradingClient``.

Requests are built with alpaca-py's request classes (``MarketOrderRequest``,
``LimitOrderRequest`` with ``order_class`` BRACKET/OCO/OTO, ``TakeProfitRequest``,
``StopLossRequest``, ``GetOrdersRequest``, ``ClosePositionRequest``,
``GetOptionContractsRequest``), and sent by alpaca-py. What
alpaca-py does by itself that a trading system must not, and what is done about it:

- **It retries POSTs on 429 and 504** (3 times, 3 s apart). A retried POST whose first
  copy landed is a second order. The client this class uses has those retries off;
  reads are retried here (they are idempotent), order submissions only by the
  ``BrokerExecutor``, which looks an order up before it sends it again.
- **It has no HTTP timeout**: a request that never gets an answer hangs the session. Its
  session is replaced by one with a timeout (``timeout_s``, 10 s by default).
- **``APIError.code`` raises on a non-JSON body** (a gateway's HTML 502 page). Errors are
  classified here by HTTP status; the JSON body, when there is one, only adds detail.
- **An enum value it does not know breaks its response models** (a new order status).
  The client runs with ``raw_data=True`` and this class parses the JSON itself,
  tolerating unknown values (an unknown status counts as an open order).
- **Naive datetimes are sent as UTC.** Every datetime given to this class must be
  timezone-aware (ValueError otherwise) and is converted to UTC explicitly.
- **Nothing stops it from selling an option the account does not hold** (a naked
  short, where the account's options level allows it). ``submit_order`` refuses a sell
  of an option above the position less what open sell orders claim, before sending it
  (``LongOnlyRefused``, a ``BrokerRejected`` like Alpaca's 403; DESIGN.md §5: options are
  long-only). The ``BrokerExecutor`` checks the same before it calls this.

Live trading (``paper=False``) needs ``TRADENOVA_ALLOW_LIVE=1`` in the environment.
"""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timezone
from typing import Any, Callable, Sequence

import pandas as pd
import requests

from tradenova_dagster.broker.base import (
    Asset,
    BrokerError,
    MarketClock,
    NotFound,
    TransientBrokerError,
    classify_http_error,
)
from tradenova_dagster.broker.executor import check_option_sell
from tradenova_dagster.domain import (
    Account,
    AssetClass,
    OptionContract,
    Order,
    OrderClass,
    OrderStatus,
    OrderType,
    Position,
    Quote,
    Side,
    TimeInForce,
    asset_class_of,
    require_aware,
    require_symbol,
)

LIVE_OPT_IN = "TRADENOVA_ALLOW_LIVE"

# Statuses Alpaca documents beyond the ones TradeNova acts on, mapped to the nearest one.
_STATUS_ALIASES = {
    "done_for_day": OrderStatus.NEW,
    "pending_replace": OrderStatus.PENDING_CANCEL,
    "pending_review": OrderStatus.PENDING_NEW,
    "accepted_for_bidding": OrderStatus.ACCEPTED,
    "stopped": OrderStatus.ACCEPTED,
    "calculated": OrderStatus.ACCEPTED,
    "suspended": OrderStatus.HELD,
}


class LiveTradingRefused(RuntimeError):
    """Live trading was asked for without the explicit opt-in."""


def require_live_opt_in() -> None:
    if os.environ.get(LIVE_OPT_IN) != "1":
        raise LiveTradingRefused(
            f"live trading refused: set {LIVE_OPT_IN}=1 (and use the alpaca_live mode) to trade real money"
        )


class TimeoutSession(requests.Session):
    """A requests Session that never waits forever (alpaca-py passes no timeout)."""

    def __init__(self, timeout_s: float):
        super().__init__()
        self.timeout_s = timeout_s

    def request(self, method, url, **kwargs):
        kwargs.setdefault("timeout", self.timeout_s)
        return super().request(method, url, **kwargs)


def harden(client: Any, timeout_s: float) -> Any:
    """Give an alpaca-py REST client a timeout and switch off its own retries."""
    client._session = TimeoutSession(timeout_s)
    client._retry = 0
    client._retry_codes = []
    return client


def _num(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None


def _positive(value) -> float | None:
    number = _num(value)
    return number if number is not None and number > 0 else None


def _time(value) -> datetime | None:
    if not value:
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.tz_convert("UTC").to_pydatetime()


def _enum(cls, value, default):
    try:
        return cls(value)
    except ValueError:
        return default


def parse_order(data: dict) -> Order:
    """A domain Order from Alpaca's order JSON, tolerating values alpaca-py does not know."""
    status = _STATUS_ALIASES.get(data.get("status")) or _enum(OrderStatus, data.get("status"), OrderStatus.NEW)
    raw_type = data.get("type") or data.get("order_type")
    order_type = _enum(OrderType, raw_type, None)
    limit_price, stop_price = _positive(data.get("limit_price")), _positive(data.get("stop_price"))
    if order_type is None:  # trailing_stop and anything newer: the nearest we can represent
        order_type = OrderType.STOP if stop_price is not None else OrderType.MARKET
    if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and limit_price is None:
        order_type = OrderType.STOP if stop_price is not None else OrderType.MARKET
    if order_type is OrderType.STOP_LIMIT and stop_price is None:
        order_type = OrderType.LIMIT
    if order_type is OrderType.STOP and stop_price is None:
        order_type = OrderType.MARKET
    order_class = _enum(OrderClass, data.get("order_class") or "simple", OrderClass.SIMPLE)
    legs = tuple(parse_order(leg) for leg in (data.get("legs") or []))
    take_profit = stop_loss = stop_loss_limit = None
    for leg in legs:
        if leg.order_type is OrderType.LIMIT:
            take_profit = leg.limit_price
        elif leg.order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
            stop_loss, stop_loss_limit = leg.stop_price, leg.limit_price
    if order_class is OrderClass.OCO and order_type is OrderType.LIMIT:
        take_profit = limit_price
    qty = _positive(data.get("qty")) or _positive(data.get("filled_qty"))
    if qty is None:
        raise BrokerError(f"order {data.get('id')} has no quantity (a notional order?); TradeNova sends none")
    filled = min(_num(data.get("filled_qty")) or 0.0, qty)
    return Order(
        symbol=data.get("symbol") or "", qty=qty, side=_enum(Side, data.get("side"), Side.BUY),
        client_order_id=data.get("client_order_id") or str(data.get("id")), order_type=order_type,
        time_in_force=_enum(TimeInForce, data.get("time_in_force"), TimeInForce.DAY),
        limit_price=limit_price if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        stop_price=stop_price if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
        order_class=order_class, take_profit_price=take_profit, stop_loss_price=stop_loss,
        stop_loss_limit_price=stop_loss_limit, id=str(data.get("id")), status=status, filled_qty=filled,
        filled_avg_price=_positive(data.get("filled_avg_price")), created_at=_time(data.get("created_at")),
        updated_at=_time(data.get("updated_at")), filled_at=_time(data.get("filled_at")), parent_id=None, legs=tuple(
            Order(**{**leg.__dict__, "parent_id": str(data.get("id"))}) for leg in legs),
    )


def parse_position(data: dict) -> Position:
    qty = float(data["qty"])
    if str(data.get("side", "")).lower() == "short" and qty > 0:
        qty = -qty
    return Position(data["symbol"], qty, float(data["avg_entry_price"]), current_price=_positive(data.get("current_price")))


def parse_account(data: dict) -> Account:
    return Account(
        account_id=str(data.get("account_number") or data.get("id")), cash=float(data.get("cash") or 0.0),
        equity=float(data.get("equity") or 0.0), buying_power=float(data.get("buying_power") or 0.0),
        status=str(data.get("status") or "UNKNOWN"), trading_blocked=bool(data.get("trading_blocked")),
        account_blocked=bool(data.get("account_blocked")), last_equity=_num(data.get("last_equity")),
    )


def _utc(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return require_aware(name, value).astimezone(timezone.utc)


class AlpacaBroker:
    """The Broker protocol over Alpaca's Trading API (paper unless live is allowed)."""

    name = "alpaca"

    def __init__(self, api_key: str | None = None, secret_key: str | None = None, paper: bool = True,
                 url_override: str | None = None, data_url: str | None = None, timeout_s: float = 10.0,
                 read_attempts: int = 3, read_backoff_s: float = 0.5, oauth_token: str | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        from alpaca.trading.client import TradingClient

        if not paper:
            require_live_opt_in()
        if not (api_key and secret_key) and not oauth_token:
            raise ValueError("AlpacaBroker needs api_key and secret_key (ALPACA_API_KEY / ALPACA_SECRET_KEY)")
        if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s!r}")
        self.paper = paper
        self.timeout_s = float(timeout_s)
        self.read_attempts = max(1, int(read_attempts))
        self.read_backoff_s = read_backoff_s
        self._sleep = sleep
        self._keys = (api_key, secret_key, oauth_token)
        self._data_url = data_url
        self._data_clients: dict[str, Any] = {}
        self.client = harden(
            TradingClient(api_key=api_key, secret_key=secret_key, oauth_token=oauth_token, paper=paper,
                          raw_data=True, url_override=url_override),
            self.timeout_s,
        )

    def __repr__(self) -> str:  # never show the keys
        return f"AlpacaBroker(paper={self.paper}, url={self.client._base_url!s})"

    @classmethod
    def from_trading_client(cls, client: Any, timeout_s: float = 10.0, data_url: str | None = None) -> "AlpacaBroker":
        """An AlpacaBroker with the credentials and URL of an existing ``TradingClient``.

        The caller's client is left as it is; this one is configured as the module
        docstring describes (timeout, no POST retries, tolerant parsing). A client pointed
        at a URL other than Alpaca's own (a proxy, a local test server) gets its market
        data from that URL too, unless ``data_url`` says otherwise.
        """
        from alpaca.common.enums import BaseURL

        base_url = str(getattr(client._base_url, "value", client._base_url))
        paper = bool(client._sandbox) and base_url != BaseURL.TRADING_LIVE.value
        official = {BaseURL.TRADING_LIVE.value, BaseURL.TRADING_PAPER.value}
        if data_url is None and base_url not in official:
            data_url = base_url
        return cls(client._api_key, client._secret_key, paper=paper, url_override=base_url, data_url=data_url,
                   timeout_s=timeout_s, oauth_token=client._oauth_token)

    # ------------------------------------------------------------------ transport

    def _call(self, fn: Callable, *args, read: bool = False):
        """Run one alpaca-py call, mapping every failure to a BrokerError.

        Reads (``read=True``) are retried on transient errors; writes never are here.
        """
        from alpaca.common.exceptions import APIError

        attempts = self.read_attempts if read else 1
        for attempt in range(1, attempts + 1):
            try:
                return fn(*args)
            except APIError as exc:
                response = exc.response
                body = response.text if response is not None else str(exc)
                error = classify_http_error(exc.status_code, body, f"Alpaca replied HTTP {exc.status_code}")
            except requests.exceptions.ConnectTimeout as exc:
                error = TransientBrokerError(f"could not connect to Alpaca: {exc}", kind="timeout", maybe_sent=False)
            except requests.exceptions.Timeout as exc:
                error = TransientBrokerError(f"no reply from Alpaca within {self.timeout_s:g}s: {exc}",
                                             kind="timeout")
            except requests.exceptions.ConnectionError as exc:
                refused = "NewConnectionError" in repr(exc) or "Connection refused" in str(exc)
                error = TransientBrokerError(f"connection to Alpaca failed: {exc}", kind="connection",
                                             maybe_sent=not refused)
            except (requests.exceptions.RequestException, ValueError) as exc:
                # A reply that is not JSON (requests' JSONDecodeError is a ValueError), a
                # broken chunked body...: the request may have been acted on.
                error = TransientBrokerError(f"unreadable reply from Alpaca: {exc}", kind="http")
            if not isinstance(error, TransientBrokerError) or attempt == attempts:
                raise error
            self._sleep(self.read_backoff_s * (2 ** (attempt - 1)))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ orders

    @staticmethod
    def order_request(order: Order):
        """The alpaca-py request object for a domain Order."""
        from alpaca.trading import enums
        from alpaca.trading.requests import (
            LimitOrderRequest,
            MarketOrderRequest,
            StopLimitOrderRequest,
            StopLossRequest,
            StopOrderRequest,
            TakeProfitRequest,
        )

        qty: float | int = int(round(order.qty)) if abs(order.qty - round(order.qty)) < 1e-9 else order.qty
        fields: dict[str, Any] = {
            "symbol": order.symbol, "qty": qty, "side": enums.OrderSide(order.side.value),
            "time_in_force": enums.TimeInForce(order.time_in_force.value), "client_order_id": order.client_order_id,
        }
        if order.order_class is not OrderClass.SIMPLE:
            fields["order_class"] = enums.OrderClass(order.order_class.value)
            if order.take_profit_price is not None:
                fields["take_profit"] = TakeProfitRequest(limit_price=order.take_profit_price)
            if order.stop_loss_price is not None:
                fields["stop_loss"] = StopLossRequest(stop_price=order.stop_loss_price,
                                                      limit_price=order.stop_loss_limit_price)
        if order.order_type is OrderType.MARKET:
            return MarketOrderRequest(**fields)
        if order.order_type is OrderType.LIMIT:
            limit = None if order.order_class is OrderClass.OCO else order.limit_price
            return LimitOrderRequest(limit_price=limit, **fields)
        if order.order_type is OrderType.STOP:
            return StopOrderRequest(stop_price=order.stop_price, **fields)
        return StopLimitOrderRequest(stop_price=order.stop_price, limit_price=order.limit_price, **fields)

    def submit_order(self, order: Order) -> Order:
        request = self.order_request(order)
        try:
            check_option_sell(self, order)
        except TransientBrokerError as exc:  # the holdings could not be read: the order is not sent
            raise TransientBrokerError(f"order {order.client_order_id} not sent: could not check what the account "
                                       f"holds of {order.symbol}: {exc.message}", exc.status_code, exc.code,
                                       kind=exc.kind, maybe_sent=False) from exc
        return parse_order(self._call(self.client.submit_order, request))

    def get_order(self, order_id: str) -> Order:
        return parse_order(self._call(self.client.get_order_by_id, str(order_id), read=True))

    def get_order_by_client_id(self, client_order_id: str) -> Order:
        return parse_order(self._call(self.client.get_order_by_client_id, client_order_id, read=True))

    def list_orders(self, status: str = "open", symbols: Sequence[str] | None = None, limit: int = 500,
                    after: datetime | None = None) -> list[Order]:
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        if status not in ("open", "closed", "all"):
            raise ValueError(f"status: unknown value {status!r}; expected open, closed or all")
        request = GetOrdersRequest(
            status=QueryOrderStatus(status), limit=min(int(limit), 500), after=_utc("after", after),
            symbols=[require_symbol("symbols", s) for s in symbols] if symbols else None, nested=True,
        )
        # Nested, so that each leg is known as a leg (Alpaca's order JSON has no parent id);
        # then flattened like SimBroker's listing: parents, and their legs with parent_id.
        found = []
        for item in self._call(self.client.get_orders, request, read=True):
            order = parse_order(item)
            found.append(order)
            found += [leg for leg in order.legs if status == "all" or leg.is_open == (status == "open")]
        return found

    def cancel_order(self, order_id: str) -> None:
        self._call(self.client.cancel_order_by_id, str(order_id))

    def cancel_all_orders(self) -> list[str]:
        replies = self._call(self.client.cancel_orders) or []
        return [str(r.get("id")) for r in replies if 200 <= int(r.get("status", 200)) < 300]

    # ------------------------------------------------------------------ positions and account

    def get_positions(self) -> list[Position]:
        return [parse_position(p) for p in self._call(self.client.get_all_positions, read=True)]

    def get_position(self, symbol: str) -> Position | None:
        try:
            return parse_position(self._call(self.client.get_open_position, require_symbol("symbol", symbol),
                                             read=True))
        except NotFound:
            return None

    def close_position(self, symbol: str, qty: float | None = None) -> Order:
        from alpaca.trading.requests import ClosePositionRequest

        request = ClosePositionRequest(qty=f"{qty:g}") if qty is not None else None
        return parse_order(self._call(self.client.close_position, require_symbol("symbol", symbol), request))

    def get_account(self) -> Account:
        return parse_account(self._call(self.client.get_account, read=True))

    def get_clock(self) -> MarketClock:
        data = self._call(self.client.get_clock, read=True)
        return MarketClock(_time(data["timestamp"]), bool(data["is_open"]), _time(data["next_open"]),
                           _time(data["next_close"]))

    def get_asset(self, symbol: str) -> Asset:
        symbol = require_symbol("symbol", symbol)
        if asset_class_of(symbol) is AssetClass.OPTION:
            data = self._call(self.client.get_option_contract, symbol, read=True)
            return Asset(symbol, AssetClass.OPTION, tradable=bool(data.get("tradable", True))
                         and data.get("status", "active") == "active")
        data = self._call(self.client.get_asset, symbol, read=True)
        return Asset(symbol, _enum(AssetClass, data.get("class"), AssetClass.EQUITY),
                     tradable=bool(data.get("tradable")), fractionable=bool(data.get("fractionable")))

    def list_option_contracts(self, underlying: str, expiration_date: date | None = None,
                              expiration_date_gte: date | None = None, expiration_date_lte: date | None = None,
                              option_type: str | None = None, strike_gte: float | None = None,
                              strike_lte: float | None = None, page_size: int = 100) -> list[OptionContract]:
        """Every listed contract that matches, following ``next_page_token`` to the end."""
        from alpaca.trading.enums import ContractType
        from alpaca.trading.requests import GetOptionContractsRequest

        contracts: list[OptionContract] = []
        token = None
        while True:
            request = GetOptionContractsRequest(
                underlying_symbols=[require_symbol("underlying", underlying)], expiration_date=expiration_date,
                expiration_date_gte=expiration_date_gte, expiration_date_lte=expiration_date_lte,
                type=ContractType(option_type.lower()) if option_type else None,
                strike_price_gte=f"{strike_gte:g}" if strike_gte is not None else None,
                strike_price_lte=f"{strike_lte:g}" if strike_lte is not None else None,
                limit=page_size, page_token=token,
            )
            page = self._call(self.client.get_option_contracts, request, read=True)
            for item in page.get("option_contracts") or []:
                try:
                    contracts.append(OptionContract.parse(item["symbol"]))
                except (KeyError, ValueError):
                    continue  # a contract after a corporate action (non-standard deliverable)
            token = page.get("next_page_token")
            if not token:
                return contracts

    # ------------------------------------------------------------------ market data

    def _data_client(self, kind: str):
        if kind not in self._data_clients:
            if kind == "option":
                from alpaca.data.historical.option import OptionHistoricalDataClient as Client
            else:
                from alpaca.data.historical.stock import StockHistoricalDataClient as Client
            api_key, secret_key, oauth = self._keys
            self._data_clients[kind] = harden(
                Client(api_key=api_key, secret_key=secret_key, oauth_token=oauth, raw_data=True,
                       url_override=self._data_url), self.timeout_s)
        return self._data_clients[kind]

    def get_option_snapshot(self, symbol: str) -> dict:
        """Latest quote, implied volatility and greeks of one contract (OptionHistoricalDataClient)."""
        from alpaca.data.requests import OptionSnapshotRequest

        symbol = require_symbol("symbol", symbol)
        data = self._call(self._data_client("option").get_option_snapshot,
                          OptionSnapshotRequest(symbol_or_symbols=[symbol]), read=True)
        snapshot = (data or {}).get(symbol)
        if not snapshot or not snapshot.get("latestQuote"):
            raise NotFound(f"no option snapshot for {symbol}")
        q = snapshot["latestQuote"]
        quote = Quote(symbol, _time(q.get("t")) or datetime.now(timezone.utc), float(q.get("bp") or 0.0),
                      float(q["ap"]), float(q.get("bs") or 0.0), float(q.get("as") or 0.0))
        return {"quote": quote, "implied_volatility": _num(snapshot.get("impliedVolatility")),
                "greeks": snapshot.get("greeks") or {}}

    def get_quote(self, symbol: str) -> Quote:
        symbol = require_symbol("symbol", symbol)
        if asset_class_of(symbol) is AssetClass.OPTION:
            return self.get_option_snapshot(symbol)["quote"]
        from alpaca.data.requests import StockLatestQuoteRequest

        data = self._call(self._data_client("stock").get_stock_latest_quote,
                          StockLatestQuoteRequest(symbol_or_symbols=[symbol]), read=True)
        q = (data or {}).get(symbol)
        if not q:
            raise NotFound(f"no quote for {symbol}")
        return Quote(symbol, _time(q.get("t")) or datetime.now(timezone.utc), float(q.get("bp") or 0.0),
                     float(q["ap"]), float(q.get("bs") or 0.0), float(q.get("as") or 0.0))

