"""BrokerExecutor: sends orders so that no failure ever produces a second order.

``BrokerExecutor(client)`` takes a SimBroker, an AlpacaBroker, or an alpaca-py
``TradingClient`` (wrapped in an AlpacaBroker with a timeout and alpaca-py's own POST
retries switched off, so that retrying is decided here and only here).

Every order carries a deterministic ``client_order_id`` (``make_client_order_id``): the
same intent for the same symbol, side, quantity and bar always gets the same id. The
submission rule, for up to ``max_attempts`` (3) attempts with exponential backoff:

- accepted → ``submitted``;
- refused (HTTP 4xx) → ``rejected``, never retried — except a 422 "client_order_id must
  be unique", which means the order already exists: it is looked up and returned
  (``duplicate``);
- unknown (timeout, connection reset, 5xx, a reply that is not JSON) → the order is looked
  up by its ``client_order_id`` first; found → ``recovered``; not found → wait, send again
  with the same id (if the first attempt did land meanwhile, the broker answers
  "duplicate" and the lookup finds it);
- 429 (rate limited; nothing was created) → wait, send again.

When every attempt fails the answer is ``failed`` (nothing was created) or ``unknown``
(an attempt may have landed and no lookup could tell). An ``unknown`` is settled by
``resolve(client_order_ids)`` — at the next bar and at start — which looks each order up
by its ``client_order_id`` and never sends anything: found → the order; ``None`` → the
broker never got it, and the decision may be taken again.

Options are long-only (DESIGN.md §5): a sell of an option above what the broker holds,
less what open sell orders for that symbol already claim, is ``refused`` before any
broker sees it (``check_option_sell``; ``AlpacaBroker`` repeats the check in its own
submit path). A re-send of the *same* order (same ``client_order_id``) is not a new
sell: it is answered with the order the broker already has (``duplicate``). Equities are
not checked here (the broker's own short-sale rules apply).

Bad input (zero or negative quantity, NaN price, a take-profit below the entry of a buy,
a stop above it, a bracket or OCO on an option, a fraction of a contract, an unknown
symbol) raises ``ValueError`` before anything is sent.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from tradenova_dagster.broker.base import (
    CODE_FORBIDDEN,
    Broker,
    BrokerError,
    BrokerRejected,
    NotFound,
    TransientBrokerError,
)
from tradenova_dagster.broker.routing import RoutingPolicy, route_order
from tradenova_dagster.domain import (
    Account,
    AssetClass,
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
    require_price,
    require_quantity,
    require_symbol,
)
from tradenova_dagster.ledger.book import LongOnlyViolation

OK_OUTCOMES = ("submitted", "recovered", "duplicate")
_SAFE = re.compile(r"[^A-Za-z0-9._]+")
_EPS = 1e-9


class UnknownSymbol(ValueError):
    """The broker does not list the symbol (raised before any order is sent)."""


class LongOnlyRefused(BrokerRejected, LongOnlyViolation):
    """A sell of an option above what the account holds less what open sells claim.

    Refused client-side, before the order is sent: a ``BrokerRejected`` shaped like
    Alpaca's own refusal (HTTP 403, code 40310000) and a ledger ``LongOnlyViolation``, so
    either ``except`` catches it."""

    def __init__(self, symbol: str, qty: float, held: float, pending_sells: float):
        self.symbol, self.qty, self.held, self.pending_sells = symbol, qty, held, pending_sells
        free = max(held - pending_sells, 0.0)
        super().__init__(
            f"sell {qty:g} {symbol} refused: options are long-only here; the account holds {held:g} and open "
            f"sell orders already claim {pending_sells:g}, so at most {free:g} can be sold (more would open "
            "a naked short)", 403, CODE_FORBIDDEN)


class OutcomeStillUnknown(TransientBrokerError):
    """``resolve`` could not get an answer for some orders (the broker kept failing).

    ``resolved``: the answers it did get (client_order_id → Order or None);
    ``unresolved``: the ids still unknown — ask again later, and do not decide again."""

    def __init__(self, resolved: dict[str, Order | None], unresolved: dict[str, str]):
        self.resolved, self.unresolved = resolved, unresolved
        detail = "; ".join(f"{coid}: {error}" for coid, error in unresolved.items())
        super().__init__(f"the broker could not say whether {len(unresolved)} order(s) exist: {detail}",
                         kind="lookup", maybe_sent=False)


def check_option_sell(broker: Broker, order: Order) -> None:
    """Raise ``LongOnlyRefused`` if ``order`` sells more of an option than is free to sell.

    Free = the broker's long quantity less the unfilled quantity of its open sell orders
    for the symbol (an OCO pair or a bracket's exits count once, held bracket legs not at
    all, as Alpaca counts them). An open order with the same ``client_order_id`` is this
    very order sent before, not a competing sell, and is left out. Anything but a sell of
    an option passes. Broker errors while reading propagate (nothing has been sent)."""
    if order.side is not Side.SELL or asset_class_of(order.symbol) is not AssetClass.OPTION:
        return
    position = broker.get_position(order.symbol)
    held = max(position.qty, 0.0) if position is not None else 0.0
    claims: dict[str, float] = {}
    for other in broker.list_orders(status="open", symbols=[order.symbol]):
        if (other.symbol != order.symbol or other.side is not Side.SELL or other.status is OrderStatus.HELD
                or other.client_order_id == order.client_order_id):
            continue
        group = other.parent_id or other.id or other.client_order_id
        claims[group] = max(claims.get(group, 0.0), other.remaining_qty)
    pending = sum(claims.values())
    if order.qty > held - pending + _EPS:
        raise LongOnlyRefused(order.symbol, order.qty, held, pending)


def make_client_order_id(symbol: str, side: Side | str, qty: float, intent: str = "entry",
                         bar_time: datetime | None = None, strategy: str = "tradenova",
                         run_id: str | None = None, extra: Sequence[Any] = ()) -> str:
    """The deterministic ``client_order_id`` of an order.

    Scheme: ``tn-<intent>-<symbol>-<side>-<qty>-<bar time, YYYYMMDDTHHMM UTC>-<hash>``,
    where ``hash`` is the first 12 hex digits of SHA-256 over strategy, run id, symbol,
    side, qty, intent, bar time (to the second) and ``extra`` (prices, for instance). The
    readable part lets a person find an order in Alpaca's dashboard; the hash keeps ids
    of different strategies or runs apart. The same inputs always give the same id — a
    retry of the same decision cannot create a second order — and a new decision (another
    bar, another intent such as ``tp1``/``flatten``) gets a new one. At most 128
    characters (Alpaca's limit).
    """
    symbol = require_symbol("symbol", symbol)
    side = Side.parse(side)
    qty = require_quantity("qty", qty)
    if bar_time is None:
        raise ValueError("bar_time is required for a deterministic client_order_id")
    bar = pd.Timestamp(require_aware("bar_time", bar_time)).tz_convert("UTC")
    intent_part = _SAFE.sub("_", str(intent))[:24] or "order"
    material = "|".join(str(x) for x in (strategy, run_id or "", symbol, side.value, repr(float(qty)), intent,
                                         bar.isoformat(), *extra))
    digest = hashlib.sha256(material.encode()).hexdigest()[:12]
    coid = f"tn-{intent_part}-{symbol}-{side.value}-{qty:g}-{bar:%Y%m%dT%H%M}-{digest}"
    return coid[:128]


@dataclass(frozen=True)
class ExecutionResult:
    """What happened to one order request.

    ``outcome``: ``submitted`` | ``recovered`` (an attempt's reply was lost, the order
    was found by its client_order_id) | ``duplicate`` (the broker already had an order
    with this client_order_id; it is returned) | ``refused`` (refused client-side,
    nothing was sent: a sell of an option above what is held) | ``rejected`` (4xx: see
    ``error``) | ``failed`` (every attempt failed; nothing was created) | ``unknown``
    (every attempt failed and one may have landed: settle it with ``resolve``).
    ``attempts``: how many times the order was sent (0: nothing was sent).
    """

    outcome: str
    client_order_id: str
    order: Order | None
    attempts: int
    error: str | None = None
    status_code: int | None = None
    route: str | None = None
    events: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """The broker holds the order (whatever its status now is)."""
        return self.outcome in OK_OUTCOMES


@dataclass(frozen=True)
class AccountStatus:
    """Account health at a glance, for the monitor job and the risk checks."""

    account_id: str
    equity: float
    cash: float
    buying_power: float
    last_equity: float | None
    day_pl: float | None
    trading_blocked: bool
    account_blocked: bool
    can_trade: bool
    open_orders: int
    positions: int
    position_value: float
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _is_exit_leg(order: Order) -> bool:
    """An exit that protects a position: a bracket/OTO leg, or either side of an OCO.

    A bracket's entry comes with its legs; a bracket-class order seen without legs is
    itself a leg (Alpaca's order JSON names no parent)."""
    if order.parent_id is not None or order.order_class is OrderClass.OCO:
        return True
    return order.order_class in (OrderClass.BRACKET, OrderClass.OTO) and not order.legs


def as_broker(client: Any, timeout_s: float = 10.0) -> Broker:
    """A Broker from a Broker, or from an alpaca-py ``TradingClient`` (wrapped)."""
    try:
        from alpaca.trading.client import TradingClient
    except ImportError:  # pragma: no cover - alpaca-py is a dependency
        TradingClient = ()
    if TradingClient and isinstance(client, TradingClient):
        from tradenova_dagster.broker.alpaca import AlpacaBroker

        return AlpacaBroker.from_trading_client(client, timeout_s=timeout_s)
    if isinstance(client, Broker):
        return client
    raise ValueError(f"client must be a SimBroker, an AlpacaBroker or an alpaca-py TradingClient, got {client!r}")


@dataclass
class BrokerExecutor:
    """The seed's order API over any Broker, with retries that never duplicate an order."""

    client: Any
    strategy: str = "tradenova"
    run_id: str | None = None
    max_attempts: int = 3
    backoff_s: float = 0.5
    stale_order_age_s: float = 300.0
    timeout_s: float = 10.0
    routing: RoutingPolicy = field(default_factory=RoutingPolicy)
    clock: Any = None
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if not (isinstance(self.max_attempts, int) and self.max_attempts >= 1):
            raise ValueError(f"max_attempts must be a whole number >= 1, got {self.max_attempts!r}")
        for name in ("backoff_s", "stale_order_age_s", "timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{name} must be >= 0 seconds, got {value!r}")
        self.broker: Broker = as_broker(self.client, self.timeout_s)
        self._assets: dict[str, bool] = {}

    # ------------------------------------------------------------------ time and ids

    def now(self) -> datetime:
        """The executor's clock: the injected one, else the broker's (SimBroker), else UTC now."""
        source = self.clock if self.clock is not None else getattr(self.broker, "now", None)
        if source is None:
            return datetime.now(timezone.utc)
        value = source.now() if hasattr(source, "now") else source()
        return pd.Timestamp(value).tz_convert("UTC").to_pydatetime()

    def client_order_id(self, symbol: str, side: Side | str, qty: float, intent: str = "entry",
                        bar_time: datetime | None = None, extra: Sequence[Any] = ()) -> str:
        """The id ``make_client_order_id`` gives with this executor's strategy and run; the
        bar time defaults to the current minute."""
        if bar_time is None:
            bar_time = pd.Timestamp(self.now()).floor("min").to_pydatetime()
        return make_client_order_id(symbol, side, qty, intent, bar_time, self.strategy, self.run_id, extra)

    # ------------------------------------------------------------------ validation

    def _check_symbol(self, symbol: str) -> str:
        symbol = require_symbol("symbol", symbol)
        if symbol not in self._assets:
            try:
                asset = self.broker.get_asset(symbol)
                self._assets[symbol] = bool(asset.tradable)
            except NotFound as exc:
                raise UnknownSymbol(f"symbol {symbol!r} is not known to the broker ({exc.message})") from None
            except TransientBrokerError:
                return symbol  # cannot tell now; the broker will refuse an unknown symbol itself
        if not self._assets[symbol]:
            raise UnknownSymbol(f"symbol {symbol!r} is not tradable at the broker")
        return symbol

    @staticmethod
    def _check_qty(symbol: str, qty: float) -> float:
        qty = require_quantity("qty", qty)
        if asset_class_of(symbol) is AssetClass.OPTION and abs(qty - round(qty)) > 1e-9:
            raise ValueError(f"qty must be a whole number of option contracts, got {qty!r}")
        return float(round(qty)) if asset_class_of(symbol) is AssetClass.OPTION else qty

    @staticmethod
    def _check_tif(symbol: str, time_in_force: str | TimeInForce) -> TimeInForce:
        tif = TimeInForce.parse(time_in_force)
        if asset_class_of(symbol) is AssetClass.OPTION and tif is not TimeInForce.DAY:
            raise ValueError(f"time_in_force {tif.value!r} is not accepted for options (Alpaca takes only 'day')")
        return tif

    # ------------------------------------------------------------------ submission

    def submit(self, order: Order, route: str | None = None) -> ExecutionResult:
        """Send a prepared order under the retry rule of the module docstring."""
        events: list[str] = []
        coid = order.client_order_id
        try:
            check_option_sell(self.broker, order)
        except LongOnlyRefused as exc:
            events.append(f"refused before sending: {exc}")
            return self._refused(exc, coid, route, events, attempts=0, maybe_exists=False)
        except BrokerError as exc:  # could not read what is held: send nothing (fail closed)
            events.append(f"long-only check could not read the account: {exc}")
            return ExecutionResult("failed", coid, None, 0, f"not sent: could not check what the account holds of "
                                   f"{order.symbol}: {exc}", exc.status_code, route, tuple(events))
        maybe_exists = False  # an attempt may have created the order and no lookup has said otherwise
        attempt = 0
        last_error: BrokerError | None = None
        while attempt < self.max_attempts:
            attempt += 1
            try:
                placed = self.broker.submit_order(order)
                events.append(f"attempt {attempt}: accepted")
                return ExecutionResult("submitted", coid, placed, attempt, route=route, events=tuple(events))
            except LongOnlyRefused as exc:  # the broker's own client-side check (AlpacaBroker)
                events.append(f"attempt {attempt}: refused by the broker's long-only check: {exc}")
                return self._refused(exc, coid, route, events, attempt, maybe_exists)
            except BrokerRejected as exc:
                if not exc.is_duplicate_client_order_id:
                    events.append(f"attempt {attempt}: rejected: {exc}")
                    return ExecutionResult("rejected", coid, None, attempt, str(exc), exc.status_code, route,
                                           tuple(events))
                events.append(f"attempt {attempt}: duplicate client_order_id; looking the order up")
                found, answered = self._lookup(coid, events)
                if found is not None:
                    outcome = "recovered" if maybe_exists else "duplicate"
                    return ExecutionResult(outcome, coid, found, attempt, route=route, events=tuple(events))
                if answered:  # "duplicate", yet no such order: take the broker at its first word
                    return ExecutionResult("rejected", coid, None, attempt, str(exc), exc.status_code, route,
                                           tuple(events))
                last_error, maybe_exists = exc, True  # it exists, but could not be read: ask again
            except TransientBrokerError as exc:
                last_error = exc
                events.append(f"attempt {attempt}: {exc.kind} error: {exc}")
                if exc.maybe_sent and exc.status_code != 429:  # a 429 or a refused connection created nothing
                    maybe_exists = True
                if maybe_exists:  # this attempt or an earlier one may have landed
                    found, answered = self._lookup(coid, events)
                    if found is not None:
                        return ExecutionResult("recovered", coid, found, attempt, route=route, events=tuple(events))
                    maybe_exists = not answered
            if attempt < self.max_attempts:
                delay = self.backoff_s * (2 ** (attempt - 1))
                events.append(f"waiting {delay:g}s before attempt {attempt + 1}")
                self.sleep(delay)
        outcome = "unknown" if maybe_exists else "failed"
        status = last_error.status_code if last_error else None
        return ExecutionResult(outcome, coid, None, attempt, str(last_error), status, route, tuple(events))

    def _refused(self, exc: LongOnlyRefused, coid: str, route: str | None, events: list[str], attempts: int,
                 maybe_exists: bool) -> ExecutionResult:
        """A long-only refusal, unless the broker already has this very order (a re-send of
        the same decision, whose sell no longer fits because it has filled): then that order."""
        found, answered = self._lookup(coid, events)
        if found is not None:
            outcome = "recovered" if maybe_exists else "duplicate"
            return ExecutionResult(outcome, coid, found, attempts, route=route, events=tuple(events))
        outcome = "unknown" if maybe_exists and not answered else "refused"
        return ExecutionResult(outcome, coid, None, attempts, str(exc), exc.status_code, route, tuple(events))

    def _lookup(self, client_order_id: str, events: list[str]) -> tuple[Order | None, bool]:
        """(the order or None, whether the broker answered the question at all)."""
        try:
            found = self.broker.get_order_by_client_id(client_order_id)
            events.append(f"lookup: found order {found.id} ({found.status.value})")
            return found, True
        except NotFound:
            events.append("lookup: no such order")
            return None, True
        except BrokerError as exc:
            events.append(f"lookup failed: {exc}")
            return None, False

    def _order(self, symbol: str, qty: float, side, order_type: OrderType, time_in_force, intent: str,
               client_order_id: str | None, bar_time: datetime | None, **fields) -> Order:
        """A validated Order with its deterministic id (prices and class are part of the id)."""
        symbol = self._check_symbol(symbol)
        qty = self._check_qty(symbol, qty)
        side = Side.parse(side)
        tif = self._check_tif(symbol, time_in_force)
        extra = (order_type.value,) + tuple(f"{k}={getattr(v, 'value', v)}" for k, v in sorted(fields.items())
                                            if v is not None)
        coid = client_order_id or self.client_order_id(symbol, side, qty, intent, bar_time, extra)
        return Order(symbol, qty, side, coid, order_type, tif, **fields)

    def execute_market_order(self, symbol: str, qty: float, side: Side | str, *, intent: str = "entry",
                             client_order_id: str | None = None, bar_time: datetime | None = None,
                             time_in_force: str = "day") -> ExecutionResult:
        order = self._order(symbol, qty, side, OrderType.MARKET, time_in_force, intent, client_order_id, bar_time)
        return self.submit(order)

    def execute_limit_order(self, symbol: str, qty: float, side: Side | str, limit_price: float, *,
                            intent: str = "entry", client_order_id: str | None = None,
                            bar_time: datetime | None = None, time_in_force: str = "day") -> ExecutionResult:
        limit_price = require_price("limit_price", limit_price)
        order = self._order(symbol, qty, side, OrderType.LIMIT, time_in_force, intent, client_order_id, bar_time,
                            limit_price=limit_price)
        return self.submit(order)

    def execute_order(self, symbol: str, qty: float, side: Side | str, *, quote: Quote | None = None,
                      intent: str = "entry", client_order_id: str | None = None,
                      bar_time: datetime | None = None) -> ExecutionResult:
        """Route by the rule in ``broker.routing`` (market, limit at mid, or marketable limit)
        using ``quote``, or the broker's current quote when none is given."""
        symbol = self._check_symbol(symbol)
        if quote is None:
            try:
                quote = self.broker.get_quote(symbol)
            except BrokerError:
                quote = None
        route = route_order(symbol, Side.parse(side), quote, self.routing)
        order = self._order(symbol, qty, side, route.order_type, "day", intent, client_order_id, bar_time,
                            limit_price=route.limit_price)
        return self.submit(order, route=route.reason)

    def execute_bracket_order(self, symbol: str, qty: float, side: Side | str, entry_price: float | None = None,
                              take_profit: float | None = None, stop_loss: float | None = None, *,
                              stop_loss_limit: float | None = None, intent: str = "entry",
                              client_order_id: str | None = None, bar_time: datetime | None = None,
                              time_in_force: str = "day") -> ExecutionResult:
        """Entry (a limit at ``entry_price``, or market) with a take-profit and a stop-loss
        that go live when the entry fills; one exit cancels the other. Equities only:
        Alpaca takes no bracket orders for options (the ladder runs client-side)."""
        symbol = require_symbol("symbol", symbol)
        if asset_class_of(symbol) is AssetClass.OPTION:
            raise ValueError(f"bracket orders are not accepted for options ({symbol}): Alpaca takes only simple "
                             "orders for options; run the take-profit ladder and stop client-side (ProfitManager)")
        side = Side.parse(side)
        if take_profit is None or stop_loss is None:
            raise ValueError("a bracket order needs both take_profit and stop_loss")
        take_profit = require_price("take_profit", take_profit)
        stop_loss = require_price("stop_loss", stop_loss)
        if entry_price is not None:
            entry_price = require_price("entry_price", entry_price)
        if stop_loss_limit is not None:
            stop_loss_limit = require_price("stop_loss_limit", stop_loss_limit)
        reference = entry_price
        if reference is None:
            try:
                reference = self.broker.get_quote(symbol).mid
            except BrokerError:
                reference = None
        if side is Side.BUY:
            if not take_profit > stop_loss:
                raise ValueError(f"take_profit {take_profit} must be above stop_loss {stop_loss} for a buy")
            if reference is not None and not take_profit > reference:
                raise ValueError(f"take_profit {take_profit} must be above the entry {reference} for a buy")
            if reference is not None and not stop_loss < reference:
                raise ValueError(f"stop_loss {stop_loss} must be below the entry {reference} for a buy")
        else:
            if not take_profit < stop_loss:
                raise ValueError(f"take_profit {take_profit} must be below stop_loss {stop_loss} for a sell")
            if reference is not None and not take_profit < reference:
                raise ValueError(f"take_profit {take_profit} must be below the entry {reference} for a sell")
            if reference is not None and not stop_loss > reference:
                raise ValueError(f"stop_loss {stop_loss} must be above the entry {reference} for a sell")
        order_type = OrderType.LIMIT if entry_price is not None else OrderType.MARKET
        order = self._order(symbol, qty, side, order_type, time_in_force, intent, client_order_id, bar_time,
                            order_class=OrderClass.BRACKET, limit_price=entry_price, take_profit_price=take_profit,
                            stop_loss_price=stop_loss, stop_loss_limit_price=stop_loss_limit)
        return self.submit(order)

    def execute_oco_order(self, symbol: str, qty: float, side: Side | str, take_profit: float, stop_loss: float, *,
                          stop_loss_limit: float | None = None, intent: str = "exit",
                          client_order_id: str | None = None, bar_time: datetime | None = None,
                          time_in_force: str = "day") -> ExecutionResult:
        """Two exits for a position already held (``side`` is the exit side: sell for a
        long): a take-profit limit and a stop; one filling cancels the other. Equities only."""
        symbol = require_symbol("symbol", symbol)
        if asset_class_of(symbol) is AssetClass.OPTION:
            raise ValueError(f"OCO orders are not accepted for options ({symbol}): Alpaca takes only simple "
                             "orders for options; run the exits client-side (ProfitManager)")
        side = Side.parse(side)
        take_profit = require_price("take_profit", take_profit)
        stop_loss = require_price("stop_loss", stop_loss)
        if stop_loss_limit is not None:
            stop_loss_limit = require_price("stop_loss_limit", stop_loss_limit)
        if side is Side.SELL and not take_profit > stop_loss:
            raise ValueError(f"take_profit {take_profit} must be above stop_loss {stop_loss} to exit a long")
        if side is Side.BUY and not take_profit < stop_loss:
            raise ValueError(f"take_profit {take_profit} must be below stop_loss {stop_loss} to exit a short")
        order = self._order(symbol, qty, side, OrderType.LIMIT, time_in_force, intent, client_order_id, bar_time,
                            order_class=OrderClass.OCO, limit_price=take_profit, take_profit_price=take_profit,
                            stop_loss_price=stop_loss, stop_loss_limit_price=stop_loss_limit)
        return self.submit(order)

    # ------------------------------------------------------------------ housekeeping

    def cancel_stale_orders(self, max_age_s: float | None = None, now: datetime | None = None) -> list[Order]:
        """Cancel open orders older than ``max_age_s`` (default ``stale_order_age_s``).

        Exit legs of a bracket or OCO are left alone: they protect a position, however old.
        An order that fills or ends while being canceled is skipped. Returns what was canceled.
        """
        age = self.stale_order_age_s if max_age_s is None else max_age_s
        if not (isinstance(age, (int, float)) and age >= 0):
            raise ValueError(f"max_age_s must be >= 0 seconds, got {age!r}")
        now = require_aware("now", now) if now is not None else self.now()
        cutoff = now - timedelta(seconds=age)
        canceled = []
        for order in self.broker.list_orders(status="open"):
            if _is_exit_leg(order) or order.created_at is None or order.created_at > cutoff:
                continue
            try:
                self.broker.cancel_order(order.id)
            except BrokerRejected:
                continue  # filled or already ended meanwhile
            canceled.append(order)
        return canceled

    def cancel_all_orders(self) -> list[str]:
        return self.broker.cancel_all_orders()

    def get_positions(self) -> list[Position]:
        """The broker's positions (not kept here: one owner per fact)."""
        return self.broker.get_positions()

    def get_account_status(self) -> AccountStatus:
        account: Account = self.broker.get_account()
        positions = self.get_positions()
        open_orders = self.broker.list_orders(status="open")
        warnings = []
        if not account.can_trade:
            warnings.append(f"account cannot trade (status {account.status}, trading_blocked "
                            f"{account.trading_blocked}, account_blocked {account.account_blocked})")
        if account.buying_power <= 0:
            warnings.append("no buying power left")
        day_pl = account.equity - account.last_equity if account.last_equity is not None else None
        return AccountStatus(
            account.account_id, account.equity, account.cash, account.buying_power, account.last_equity, day_pl,
            account.trading_blocked, account.account_blocked, account.can_trade, len(open_orders), len(positions),
            sum(p.market_value for p in positions), tuple(warnings),
        )

    def flatten(self, intent: str = "flatten", bar_time: datetime | None = None,
                cancel_orders: bool = True) -> list[ExecutionResult]:
        """Cancel open orders, then close every position with a market order.

        Each closing order has a deterministic id (intent ``flatten``, the current minute),
        so a flatten retried within the minute cannot double a closing order.
        """
        if cancel_orders:
            self.broker.cancel_all_orders()
        results = []
        for position in self.get_positions():
            side = Side.SELL if position.qty > 0 else Side.BUY
            results.append(self.execute_market_order(position.symbol, abs(position.qty), side, intent=intent,
                                                     bar_time=bar_time))
        return results

    def resolve(self, client_order_ids: Iterable[str]) -> dict[str, Order | None]:
        """Settle orders whose outcome was ``unknown``: look each up by its client_order_id.

        Returns ``{client_order_id: Order}`` for an order the broker has (whatever its
        status now: the caller records its fills) and ``{client_order_id: None}`` for one
        the broker answered it does not have — nothing was created, the decision may be
        taken again. Nothing is ever sent. The session calls it at start and on the next
        bar for every ``unknown`` result.

        Raises ``OutcomeStillUnknown`` (a ``TransientBrokerError``) when the broker could
        not answer for some id even after its own read retries; the exception carries the
        answers obtained (``resolved``) and the ids still unknown (``unresolved``), which
        must be asked again later, not decided again.

        ``None`` is the broker's answer at the time of asking: a request still in flight
        could in principle land later, so a decision taken again should go out under the
        same client_order_id where it is the same decision (the broker then recognises it).
        """
        if isinstance(client_order_ids, str):
            raise ValueError(f"client_order_ids must be a collection of ids, got the single string "
                             f"{client_order_ids!r}")
        ids = list(dict.fromkeys(client_order_ids))
        for coid in ids:
            if not isinstance(coid, str) or not coid:
                raise ValueError(f"client_order_ids: each must be a non-empty string, got {coid!r}")
        resolved: dict[str, Order | None] = {}
        unresolved: dict[str, str] = {}
        for coid in ids:
            try:
                resolved[coid] = self.broker.get_order_by_client_id(coid)
            except NotFound:
                resolved[coid] = None
            except BrokerError as exc:
                unresolved[coid] = str(exc)
        if unresolved:
            raise OutcomeStillUnknown(resolved, unresolved)
        return resolved
