"""The Broker protocol and the errors every broker raises.

SimBroker and AlpacaBroker implement the same methods with the same answers (domain
``Order``, ``Position``, ``Account``), so the executor, the session and the flatten job
never know which one they talk to (DESIGN.md §5: one code path for replay, paper, live).

Errors carry Alpaca's shape — an HTTP status and Alpaca's numeric ``code`` with its
``message`` — because the executor's retry rule is written in those terms:

- ``BrokerRejected`` (a 4xx): the broker said no. Never retried; resubmitting the same
  order would only be refused again (or, worse, accepted twice).
- ``TransientBrokerError`` (429, 5xx, timeouts, connection errors): nobody knows whether
  the order exists. The executor looks it up by ``client_order_id`` before trying again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, Sequence, runtime_checkable

from tradenova_dagster.domain import Account, AssetClass, Order, Position, Quote

# Alpaca's error codes (the ``code`` field of its JSON error body).
CODE_INVALID = 40010001  # 422: the request is well-formed but not acceptable
CODE_FORBIDDEN = 40310000  # 403: buying power, quantity available, permissions
CODE_NOT_FOUND = 40410000  # 404: no such order / position / asset
CODE_UNPROCESSABLE = 42210000  # 422: the order is in a state that does not allow this
CODE_RATE_LIMIT = 42910000  # 429

DUPLICATE_CLIENT_ORDER_ID = "client_order_id must be unique"


class BrokerError(Exception):
    """Any failure talking to a broker. ``status_code``/``code`` follow Alpaca's API."""

    def __init__(self, message: str, status_code: int | None = None, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code

    def to_json(self) -> dict:
        """Alpaca's error body: ``{"code": ..., "message": ...}``."""
        return {"code": self.code, "message": self.message}

    def __str__(self) -> str:
        parts = [f"HTTP {self.status_code}" if self.status_code else None,
                 f"code {self.code}" if self.code else None]
        prefix = ", ".join(p for p in parts if p)
        return f"{self.message} ({prefix})" if prefix else self.message


class BrokerRejected(BrokerError):
    """The broker refused the request (HTTP 4xx other than 429). Never retried."""

    @property
    def is_duplicate_client_order_id(self) -> bool:
        return self.status_code == 422 and DUPLICATE_CLIENT_ORDER_ID in (self.message or "")


class NotFound(BrokerRejected):
    """No such order, position or asset (HTTP 404)."""

    def __init__(self, message: str, code: int = CODE_NOT_FOUND):
        super().__init__(message, 404, code)


class TransientBrokerError(BrokerError):
    """The outcome is unknown or the broker is momentarily unable: 429, 5xx, timeout,
    connection error. ``maybe_sent`` is False only when the request certainly did not
    reach the broker (a connection refused), so that no order can exist from it."""

    def __init__(self, message: str, status_code: int | None = None, code: int | None = None,
                 kind: str = "http", maybe_sent: bool = True):
        super().__init__(message, status_code, code)
        self.kind = kind  # http | timeout | connection
        self.maybe_sent = maybe_sent


def invalid(message: str) -> BrokerRejected:
    return BrokerRejected(message, 422, CODE_INVALID)


def forbidden(message: str) -> BrokerRejected:
    return BrokerRejected(message, 403, CODE_FORBIDDEN)


def unprocessable(message: str) -> BrokerRejected:
    return BrokerRejected(message, 422, CODE_UNPROCESSABLE)


def classify_http_error(status_code: int | None, body: str | None, default_message: str) -> BrokerError:
    """Map an HTTP error reply to a BrokerError, whatever its body looks like.

    A gateway error often arrives as an HTML page, not JSON; the status code decides
    the class, the JSON body (when there is one) only adds Alpaca's code and message.
    """
    import json

    code, message = None, None
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            code = parsed.get("code") if isinstance(parsed.get("code"), int) else None
            message = parsed.get("message") if isinstance(parsed.get("message"), str) else None
    if message is None:
        snippet = " ".join((body or "").split())[:120]
        message = f"{default_message}: {snippet}" if snippet else default_message
    if status_code is None or status_code == 429 or status_code >= 500:
        return TransientBrokerError(message, status_code, code, kind="http")
    if status_code == 404:
        return NotFound(message, code or CODE_NOT_FOUND)
    return BrokerRejected(message, status_code, code)


@dataclass(frozen=True)
class MarketClock:
    """Alpaca's ``/v2/clock``: is the market open, and when it next opens and closes."""

    timestamp: datetime
    is_open: bool
    next_open: datetime
    next_close: datetime


@dataclass(frozen=True)
class Asset:
    """What the broker knows about a symbol: whether it exists and can be traded."""

    symbol: str
    asset_class: AssetClass
    tradable: bool = True
    fractionable: bool = False


@runtime_checkable
class Broker(Protocol):
    """What TradeNova needs from a broker. Both SimBroker and AlpacaBroker implement it.

    ``submit_order`` takes a domain ``Order`` whose ``client_order_id`` is set by the
    caller; a second submission with the same id is refused with HTTP 422, code
    40010001, "client_order_id must be unique", as Alpaca does.
    """

    name: str

    def submit_order(self, order: Order) -> Order: ...

    def get_order(self, order_id: str) -> Order: ...

    def get_order_by_client_id(self, client_order_id: str) -> Order: ...

    def list_orders(self, status: str = "open", symbols: Sequence[str] | None = None,
                    limit: int = 500, after: datetime | None = None) -> list[Order]: ...

    def cancel_order(self, order_id: str) -> None: ...

    def cancel_all_orders(self) -> list[str]: ...

    def get_positions(self) -> list[Position]: ...

    def get_position(self, symbol: str) -> Position | None: ...

    def close_position(self, symbol: str, qty: float | None = None) -> Order: ...

    def get_account(self) -> Account: ...

    def get_clock(self) -> MarketClock: ...

    def get_asset(self, symbol: str) -> Asset: ...

    def get_quote(self, symbol: str) -> Quote: ...
