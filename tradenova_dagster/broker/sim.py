"""SimBroker: a paper broker driven by market updates, its account kept in DuckDB.

It is not a mock: it keeps cash, positions, open orders, fills, fees and P&L, refuses
what Alpaca refuses with Alpaca's error shape, and fills only on prices it has been
shown *after* an order arrived, so a backtest cannot trade on the bar that made it decide.

How it is driven
    ``on_bar(ts, symbol, bar, vix=...)`` (or ``on_bars``) hands it the next market
    update. Orders submitted before an update fill on that update: market orders at its
    open (buy at the ask, sell at the bid, plus configured slippage); limit, stop and
    stop-limit orders when the bar's range crosses their prices. Day orders expire at
    their session's close; options still held at their expiry's close settle at
    intrinsic value. ``advance(ts)`` moves time on without new prices (a flatten run in
    another process fills against the latest stored prices this way).

Prices
    Equities are quoted ``max($0.01, equity_spread_bps × price)`` wide around the bar
    price. Options are quoted by ``market.chain.OptionMarketModel`` from the underlying's
    price, the VIX level and the time to expiry (Black-Scholes on a fitted smile, with a
    bid/ask spread model). Displayed size caps what one update can fill (partial fills).

Costs (defaults; ``SimConfig``)
    Options: **$0.65 per contract** on every buy and sell. Alpaca charges no commission on
    options but passes on regulatory and clearing fees (ORF, OCC, FINRA TAF: a few cents a
    contract); $0.65 is the typical retail commission and errs on the expensive side, so
    that simulated results are never better than Alpaca's. Set
    ``option_commission_per_contract=0.05`` to approximate Alpaca's fees alone. Equities:
    no commission, SEC fee of 0.00278% of the notional of sales.

Alpaca's rules it enforces (DESIGN.md §4)
    Options: only ``simple`` orders (no bracket, OCO, OTO), only ``day`` time in force,
    whole contracts, no uncovered short sales. Everyone: buying power (a cash account:
    open buy orders reserve their cost, market buys at the ask + 4% like Alpaca's
    estimate), quantity available to sell, unique ``client_order_id`` (422, 40010001).

State and processes
    The account (``account``: ``sim:default``, ``backtest:<id>``...) lives in the
    ``sim_*`` tables. Each public call is one transaction under the store's
    cross-process lock: it reloads the account if another process changed it (a version
    counter), applies the call and writes what changed. Inside ``with sim.batch():``
    the account stays in memory and is written once at the end — for replays, where one
    process owns a ``backtest:`` account and a day must run in seconds.

Time
    ``clock`` (anything with ``now()``, or a callable) stamps orders in replays; without
    one the broker's time is that of the latest market update (the wall clock before
    the first).
"""

from __future__ import annotations

import math
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any, Iterator, Mapping, Sequence

import pandas as pd

from tradenova_dagster.broker.base import (
    DUPLICATE_CLIENT_ORDER_ID,
    Asset,
    BrokerError,
    MarketClock,
    NotFound,
    forbidden,
    invalid,
    unprocessable,
)
from tradenova_dagster.domain import (
    OPTION_MULTIPLIER,
    Account,
    AssetClass,
    Fill,
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
    require_non_negative,
    require_price,
    require_quantity,
    require_symbol,
)
from tradenova_dagster.market import calendar
from tradenova_dagster.market.chain import DEFAULT_MODEL, OptionMarketModel, expiry_close, intrinsic_value
from tradenova_dagster.metrics.store import Store

EPS = 1e-9


class ConcurrentAccountUpdate(BrokerError):
    """Another process wrote the account while this one held it in a ``batch()``."""


@dataclass(frozen=True)
class SimConfig:
    """Everything about the simulated market and account that a user may want to change."""

    initial_cash: float = 100_000.0
    option_commission_per_contract: float = 0.65
    equity_commission_per_share: float = 0.0
    sec_fee_rate: float = 0.0000278  # of the notional of equity sales
    equity_spread_bps: float = 0.1  # quoted width, in basis points of price (min $0.01)
    equity_slippage_bps: float = 0.0  # market and stop orders, against you
    option_slippage: float = 0.0  # dollars per share, market and stop orders, against you
    equity_displayed_size: float = 10_000.0  # shares one update can fill
    market_buy_buffer: float = 0.04  # buying power reserved above the ask for a market buy
    allow_short_equity: bool = False
    default_vix: float = 19.0  # option quotes before any VIX level has been given
    symbols: tuple[str, ...] = ("SPY", "QQQ", "IWM", "DIA")  # equities (and underlyings) it lists
    options: OptionMarketModel = field(default_factory=lambda: DEFAULT_MODEL)

    def __post_init__(self) -> None:
        require_price("initial_cash", self.initial_cash)
        for name in ("option_commission_per_contract", "equity_commission_per_share", "sec_fee_rate",
                     "equity_spread_bps", "equity_slippage_bps", "option_slippage", "market_buy_buffer"):
            require_non_negative(name, getattr(self, name))
        require_quantity("equity_displayed_size", self.equity_displayed_size)
        require_price("default_vix", self.default_vix)
        object.__setattr__(self, "symbols", tuple(require_symbol("symbols", s) for s in self.symbols))


@dataclass
class _Order:
    """An order as the simulator holds it (mutable; ``to_domain`` gives the frozen view)."""

    id: str
    client_order_id: str
    symbol: str
    asset_class: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    order_class: OrderClass
    qty: float
    created_at: datetime
    updated_at: datetime
    run_id: str | None = None
    leg_role: str | None = None
    parent_id: str | None = None
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    status: OrderStatus = OrderStatus.NEW
    triggered: bool = False
    eligible_after: datetime | None = None
    expires_at: datetime | None = None
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    replaced_by: str | None = None
    replaces: str | None = None

    @property
    def remaining(self) -> float:
        return self.qty - self.filled_qty

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    @property
    def multiplier(self) -> int:
        return OPTION_MULTIPLIER if self.asset_class == AssetClass.OPTION.value else 1


_ORDER_COLUMNS = (
    "account", "id", "client_order_id", "run_id", "symbol", "asset_class", "side", "order_type",
    "time_in_force", "order_class", "leg_role", "parent_id", "qty", "filled_qty", "filled_avg_price",
    "limit_price", "stop_price", "status", "triggered", "eligible_after", "expires_at", "created_at",
    "updated_at", "filled_at", "canceled_at", "expired_at", "replaced_by", "replaces",
)


@dataclass
class _Position:
    qty: float
    avg_entry_price: float
    opened_at: datetime


@dataclass
class _Mark:
    ts: datetime
    price: float
    vix: float | None


@dataclass(frozen=True)
class _Prices:
    """One update's prices for a symbol: the open is where orders waiting for it fill."""

    open: float
    high: float
    low: float
    close: float


def _as_prices(symbol: str, bar: Any) -> _Prices:
    """A Bar, a mapping or row with open/high/low/close, or a single price."""
    if isinstance(bar, (int, float)) and not isinstance(bar, bool):
        price = require_price(f"price of {symbol}", bar)
        return _Prices(price, price, price, price)
    if isinstance(bar, Mapping):
        get = bar.get
    else:
        def get(key, default=None):
            return getattr(bar, key, default)
    values = {k: get(k) for k in ("open", "high", "low", "close")}
    if any(v is None for v in values.values()):
        raise ValueError(f"bar for {symbol}: expected open/high/low/close or a price, got {bar!r}")
    values = {k: require_price(f"{k} of {symbol}", v) for k, v in values.items()}
    if values["low"] > min(values["open"], values["close"]) + EPS or values["high"] < max(values["open"], values["close"]) - EPS:
        raise ValueError(f"bar for {symbol}: need low <= open,close <= high, got {values}")
    return _Prices(values["open"], values["high"], values["low"], values["close"])


def _ts(value) -> datetime:
    """A timezone-aware UTC datetime from a datetime or pandas Timestamp."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    return require_aware("timestamp", value).astimezone(timezone.utc)


def _opt_ts(value) -> datetime | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    return _ts(pd.Timestamp(value))


def _round_price(price: float) -> float:
    return round(price, 6)


class SimBroker:
    """A simulated Alpaca account (see the module docstring)."""

    name = "sim"

    def __init__(self, account: str = "sim:default", store: Store | None = None, config: SimConfig | None = None,
                 clock: Any = None, run_id: str | None = None):
        if not isinstance(account, str) or not account.strip():
            raise ValueError(f"account must be a non-empty name such as 'sim:default', got {account!r}")
        self.account = account.strip()
        self.store = store if store is not None else Store()
        self.config = config or SimConfig()
        self.run_id = run_id
        self._clock = clock
        self._lock = threading.RLock()
        self._batch_depth = 0
        self._session_depth = 0
        self._version = -1
        self._reset_memory()
        with self._session(write=True):
            pass

    def __repr__(self) -> str:
        return f"SimBroker(account={self.account!r}, store={self.store!r})"

    # ------------------------------------------------------------------ state and storage

    def _reset_memory(self) -> None:
        self._initial_cash = self.config.initial_cash
        self._cash = self.config.initial_cash
        self._realized = 0.0
        self._fees = 0.0
        self._last_equity = self.config.initial_cash
        self._last_equity_day: date | None = None
        self._market_time: datetime | None = None
        self._trading_blocked = False
        self._created_at = datetime.now(timezone.utc)
        self._orders: dict[str, _Order] = {}
        self._by_client_id: dict[str, str] = {}
        self._legs: dict[str, list[str]] = {}  # parent id -> leg ids
        self._positions: dict[str, _Position] = {}
        self._marks: dict[str, _Mark] = {}
        self._dirty_orders: set[str] = set()
        self._new_fills: list[dict] = []
        self._positions_dirty = False
        self._marks_dirty = False
        self._account_dirty = False

    @property
    def _has_changes(self) -> bool:
        return bool(self._dirty_orders or self._new_fills or self._positions_dirty or self._marks_dirty
                    or self._account_dirty)

    @contextmanager
    def _session(self, write: bool) -> Iterator[None]:
        """One broker call: fresh state in, changes out, in one transaction.

        A call that fails after changing memory (it should not: calls validate before
        they change anything) reloads the account, so memory never holds what the
        database does not.
        """
        with self._lock:
            if self._batch_depth or self._session_depth:
                yield  # already inside a batch or a call (one public method using another)
                return
            self._session_depth += 1
            try:
                with self.store.transaction() as con:
                    self._sync(con)
                    try:
                        yield
                    except BaseException:
                        if self._has_changes:
                            self._load(con)
                        raise
                    if write and self._has_changes:
                        self._persist(con)
            finally:
                self._session_depth -= 1

    @contextmanager
    def batch(self) -> Iterator["SimBroker"]:
        """Keep the account in memory until the block ends, then write it once.

        For replays: the process must be the account's only writer meanwhile; if another
        process wrote it, the final write refuses (``ConcurrentAccountUpdate``) rather
        than overwrite what that process did.
        """
        with self._lock:
            if self._batch_depth == 0:
                with self.store.transaction() as con:
                    self._sync(con)
            self._batch_depth += 1
            try:
                yield self
            finally:
                self._batch_depth -= 1
                if self._batch_depth == 0:
                    self.flush()

    def flush(self) -> None:
        """Write pending changes now (a no-op outside ``batch()``, where every call writes)."""
        with self._lock:
            if not self._has_changes:
                return
            with self.store.transaction() as con:
                row = con.execute("SELECT version FROM sim_accounts WHERE account = ?", [self.account]).fetchone()
                if row is not None and row[0] != self._version:
                    self._load(con)
                    raise ConcurrentAccountUpdate(
                        f"account {self.account!r} was changed by another process during a batch "
                        f"(version {row[0]}, expected {self._version}); this batch's changes were dropped"
                    )
                self._persist(con)

    def _sync(self, con) -> None:
        row = con.execute("SELECT version FROM sim_accounts WHERE account = ?", [self.account]).fetchone()
        if row is None:
            self._reset_memory()
            self._version = 0
            self._account_dirty = True
            self._persist(con)
        elif row[0] != self._version:
            self._load(con)

    def _load(self, con) -> None:
        self._reset_memory()
        row = con.execute(
            "SELECT initial_cash, cash, realized_pl, fees_paid, last_equity, last_equity_day, market_time,"
            " trading_blocked, version, created_at FROM sim_accounts WHERE account = ?", [self.account]
        ).fetchone()
        if row is None:
            self._version = 0
            self._account_dirty = True
            return
        (self._initial_cash, self._cash, self._realized, self._fees, self._last_equity, self._last_equity_day,
         market_time, self._trading_blocked, self._version, created_at) = row
        self._market_time = _opt_ts(market_time)
        self._created_at = _ts(created_at)
        columns = ", ".join(_ORDER_COLUMNS[1:])
        for values in con.execute(f"SELECT {columns} FROM sim_orders WHERE account = ?", [self.account]).fetchall():
            rec = dict(zip(_ORDER_COLUMNS[1:], values))
            order = _Order(
                id=rec["id"], client_order_id=rec["client_order_id"], symbol=rec["symbol"],
                asset_class=rec["asset_class"], side=Side(rec["side"]), order_type=OrderType(rec["order_type"]),
                time_in_force=TimeInForce(rec["time_in_force"]), order_class=OrderClass(rec["order_class"]),
                qty=rec["qty"], created_at=_ts(rec["created_at"]), updated_at=_ts(rec["updated_at"]),
                run_id=rec["run_id"], leg_role=rec["leg_role"], parent_id=rec["parent_id"],
                filled_qty=rec["filled_qty"], filled_avg_price=rec["filled_avg_price"],
                limit_price=rec["limit_price"], stop_price=rec["stop_price"], status=OrderStatus(rec["status"]),
                triggered=bool(rec["triggered"]), eligible_after=_opt_ts(rec["eligible_after"]),
                expires_at=_opt_ts(rec["expires_at"]), filled_at=_opt_ts(rec["filled_at"]),
                canceled_at=_opt_ts(rec["canceled_at"]), expired_at=_opt_ts(rec["expired_at"]),
                replaced_by=rec["replaced_by"], replaces=rec["replaces"],
            )
            self._index(order)
        for symbol, qty, avg, opened in con.execute(
            "SELECT symbol, qty, avg_entry_price, opened_at FROM sim_positions WHERE account = ?", [self.account]
        ).fetchall():
            self._positions[symbol] = _Position(qty, avg, _ts(opened))
        for symbol, ts, price, vix in con.execute(
            "SELECT symbol, ts, price, vix FROM sim_marks WHERE account = ?", [self.account]
        ).fetchall():
            self._marks[symbol] = _Mark(_ts(ts), price, vix)

    def _persist(self, con) -> None:
        now = datetime.now(timezone.utc)
        self._version += 1
        con.execute(
            "INSERT OR REPLACE INTO sim_accounts (account, initial_cash, cash, realized_pl, fees_paid, last_equity,"
            " last_equity_day, market_time, trading_blocked, version, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [self.account, self._initial_cash, self._cash, self._realized, self._fees, self._last_equity,
             self._last_equity_day, self._market_time, self._trading_blocked, self._version, self._created_at, now],
        )
        if self._dirty_orders:
            rows = [self._order_row(self._orders[i]) for i in sorted(self._dirty_orders)]
            _insert_rows(con, "sim_orders", _ORDER_COLUMNS, rows, replace=True)
        if self._new_fills:
            columns = tuple(self._new_fills[0])
            _insert_rows(con, "sim_fills", columns, [tuple(f[c] for c in columns) for f in self._new_fills])
        if self._positions_dirty:
            con.execute("DELETE FROM sim_positions WHERE account = ?", [self.account])
            _insert_rows(con, "sim_positions", ("account", "symbol", "qty", "avg_entry_price", "opened_at"),
                         [(self.account, s, p.qty, p.avg_entry_price, p.opened_at) for s, p in self._positions.items()])
        if self._marks_dirty:  # marks are never removed: an upsert is enough
            _insert_rows(con, "sim_marks", ("account", "symbol", "ts", "price", "vix"),
                         [(self.account, s, m.ts, m.price, m.vix) for s, m in self._marks.items()], replace=True)
        self._dirty_orders.clear()
        self._new_fills.clear()
        self._positions_dirty = self._marks_dirty = self._account_dirty = False

    def _order_row(self, o: _Order) -> tuple:
        return (self.account, o.id, o.client_order_id, o.run_id, o.symbol, o.asset_class, o.side.value,
                o.order_type.value, o.time_in_force.value, o.order_class.value, o.leg_role, o.parent_id, o.qty,
                o.filled_qty, o.filled_avg_price, o.limit_price, o.stop_price, o.status.value, o.triggered,
                o.eligible_after, o.expires_at, o.created_at, o.updated_at, o.filled_at, o.canceled_at,
                o.expired_at, o.replaced_by, o.replaces)

    def _touch(self, order: _Order) -> None:
        order.updated_at = self.now()
        self._dirty_orders.add(order.id)

    # ------------------------------------------------------------------ time

    def now(self) -> datetime:
        """The broker's time: the injected clock, else the latest market update, else the wall clock."""
        if self._clock is not None:
            value = self._clock.now() if hasattr(self._clock, "now") else self._clock()
            return _ts(value)
        return self._market_time or datetime.now(timezone.utc)

    def _wall_or_clock(self) -> datetime:
        if self._clock is not None:
            return self.now()
        return datetime.now(timezone.utc)

    @property
    def clock(self) -> Any:
        """The injected clock (None: market time). Settable, e.g. when a replay starts."""
        return self._clock

    @clock.setter
    def clock(self, value: Any) -> None:
        self._clock = value

    @property
    def market_time(self) -> datetime | None:
        """Time of the latest market update applied to this account."""
        return self._market_time

    # ------------------------------------------------------------------ market updates

    def on_bar(self, timestamp, symbol: str, bar: Any, vix: float | None = None) -> list[Fill]:
        """Apply one market update for ``symbol`` (a Bar, a row with OHLC, or a price).

        ``timestamp`` is the bar's start; orders submitted before this call fill at the
        bar's open or when its range crosses their price. ``vix`` (the index level, e.g.
        18.5) prices the symbol's options from now on. Returns the fills it made.
        """
        return self.on_bars(timestamp, {symbol: bar}, vix=vix)

    def on_bars(self, timestamp, bars: Mapping[str, Any], vix: float | None = None) -> list[Fill]:
        """Apply one market update for several symbols at once (one write)."""
        ts = _ts(timestamp)
        prices = {require_symbol("symbol", s): _as_prices(s, b) for s, b in bars.items()}
        if vix is not None:
            vix = require_price("vix", vix)
        with self._session(write=True):
            if self._market_time is not None and ts < self._market_time:
                raise ValueError(
                    f"timestamp {ts.isoformat()} is before the latest market update "
                    f"{self._market_time.isoformat()} for account {self.account!r}; updates must go forward"
                )
            self._pass_time(ts)
            for symbol, p in prices.items():
                old = self._marks.get(symbol)
                self._marks[symbol] = _Mark(ts, p.open, vix if vix is not None else (old.vix if old else None))
            self._market_time = ts
            self._marks_dirty = self._account_dirty = True
            fills = self._match(ts, prices)
            for symbol, p in prices.items():
                self._marks[symbol].price = p.close
            return fills

    def set_underlying(self, symbol: str, timestamp, price: float, vix: float | None = None) -> list[Fill]:
        """A single price for ``symbol`` at ``timestamp`` (an update whose bar is flat)."""
        return self.on_bar(timestamp, symbol, price, vix=vix)

    def advance(self, timestamp=None) -> list[Fill]:
        """Move time to ``timestamp`` without new prices.

        Expires day orders whose close has passed and settles expired options, then fills
        open orders against the latest stored prices — what a flatten run in a process
        with no market feed uses to close positions. ``None`` means the injected clock, or
        the wall clock.
        """
        ts = _ts(timestamp) if timestamp is not None else self._wall_or_clock()
        with self._session(write=True):
            if self._market_time is not None and ts < self._market_time:
                raise ValueError(f"timestamp {ts.isoformat()} is before the latest market update "
                                 f"{self._market_time.isoformat()}")
            self._pass_time(ts)
            prices = {s: _Prices(m.price, m.price, m.price, m.price) for s, m in self._marks.items()}
            for mark in self._marks.values():
                mark.ts = ts
            self._market_time = ts
            self._marks_dirty = self._account_dirty = True
            return self._match(ts, prices)

    def _pass_time(self, ts: datetime) -> None:
        """Day rollover (last_equity), day-order expiry and option expiry up to ``ts``."""
        day = calendar.as_date(ts)
        if self._last_equity_day is None:
            self._last_equity_day = day
        elif day > self._last_equity_day:
            self._last_equity = self._equity(at=self._market_time or ts)
            self._last_equity_day = day
        due = [o for o in self._orders.values() if o.is_open and o.expires_at is not None and o.expires_at <= ts]
        for order in sorted(due, key=lambda o: (o.created_at, o.id)):
            if order.is_open:  # its parent's expiry may have settled it already
                self._end_order(order, OrderStatus.EXPIRED, order.expires_at)
        for symbol in list(self._positions):
            if asset_class_of(symbol) is not AssetClass.OPTION:
                continue
            contract = OptionContract.parse(symbol)
            close = expiry_close(contract.expiry).to_pydatetime()
            if close <= ts:
                mark = self._marks.get(contract.underlying)
                value = intrinsic_value(contract, mark.price) if mark else 0.0
                for order in self._orders.values():
                    if order.is_open and order.symbol == symbol:
                        self._end_order(order, OrderStatus.EXPIRED, close)
                self._settle_expiry(symbol, value, close)

    def _settle_expiry(self, symbol: str, value: float, when: datetime) -> None:
        pos = self._positions.pop(symbol)
        pl = (value - pos.avg_entry_price) * pos.qty * OPTION_MULTIPLIER
        self._cash += pos.qty * value * OPTION_MULTIPLIER
        self._realized += pl
        self._positions_dirty = self._account_dirty = True
        self._new_fills.append(self._fill_row(None, "expiry", symbol, Side.SELL if pos.qty > 0 else Side.BUY,
                                              abs(pos.qty), value, 0.0, pl, when))

    # ------------------------------------------------------------------ quotes

    def _underlying_of(self, symbol: str) -> str:
        return OptionContract.parse(symbol).underlying if asset_class_of(symbol) is AssetClass.OPTION else symbol

    def _vix_for(self, underlying: str) -> float:
        mark = self._marks.get(underlying)
        return mark.vix if mark is not None and mark.vix is not None else self.config.default_vix

    def _equity_bid_ask(self, price: float) -> tuple[float, float]:
        half = max(0.01, self.config.equity_spread_bps * 1e-4 * price) / 2
        return _round_price(max(price - half, 0.0)), _round_price(price + half)

    def _bid_ask_at(self, symbol: str, underlying_price: float, ts: datetime) -> tuple[float, float]:
        if asset_class_of(symbol) is AssetClass.OPTION:
            contract = OptionContract.parse(symbol)
            model = self.config.options
            mid = float(model.mid(contract, underlying_price, ts, self._vix_for(contract.underlying)))
            return model.spread.bid_ask(mid, intrinsic_value(contract, underlying_price))
        return self._equity_bid_ask(underlying_price)

    def _quote_now(self, symbol: str) -> Quote | None:
        mark = self._marks.get(self._underlying_of(symbol))
        if mark is None:
            return None
        now = max(self.now(), mark.ts)
        bid, ask = self._bid_ask_at(symbol, mark.price, now)
        size = (self.config.options.displayed_size if asset_class_of(symbol) is AssetClass.OPTION
                else self.config.equity_displayed_size)
        return Quote(symbol, now, bid, ask, size, size)

    def _mark_price(self, symbol: str, at: datetime) -> float | None:
        """What a position is worth a share: the last price, or an option's quoted mid.

        The quoted mid (not the model's raw premium) marks options, as a broker marks
        them: it is never below half a tick, so a nearly worthless contract still has
        the positive price a Position carries, and equity agrees with it."""
        mark = self._marks.get(self._underlying_of(symbol))
        if mark is None:
            return None
        if asset_class_of(symbol) is AssetClass.OPTION:
            bid, ask = self._bid_ask_at(symbol, mark.price, max(at, mark.ts))
            return (bid + ask) / 2
        return mark.price

    def get_quote(self, symbol: str) -> Quote:
        """The bid/ask the simulator shows now for an equity or an option contract."""
        symbol = require_symbol("symbol", symbol)
        with self._session(write=False):
            quote = self._quote_now(symbol)
        if quote is None:
            raise NotFound(f"no market data for {self._underlying_of(symbol)} in account {self.account!r} yet")
        return quote

    # ------------------------------------------------------------------ orders in

    def submit_order(self, order: Order) -> Order:
        """Accept an order (or refuse it as Alpaca would) — it fills on a later update."""
        if not isinstance(order, Order):
            raise ValueError(f"order must be a domain Order, got {order!r}")
        with self._session(write=True):
            self._validate_new(order)
            parent = self._create(order)
            return self._domain(parent)

    def _validate_new(self, order: Order) -> None:
        if order.client_order_id in self._by_client_id:
            raise invalid(DUPLICATE_CLIENT_ORDER_ID)
        if self._trading_blocked:
            raise forbidden("trading is blocked for this account")
        self._require_asset(order.symbol)
        is_option = order.asset_class is AssetClass.OPTION
        if is_option:
            if order.order_class is not OrderClass.SIMPLE:
                raise invalid(f"{order.order_class.value} orders are not supported for options trading; "
                              "options accept simple orders only")
            if order.time_in_force is not TimeInForce.DAY:
                raise invalid("order_time_in_force provided not supported for options trading; only day is accepted")
            if abs(order.qty - round(order.qty)) > EPS:
                raise invalid(f"qty must be a whole number of contracts for options, got {order.qty}")
        elif abs(order.qty - round(order.qty)) > EPS and (
                order.order_class is not OrderClass.SIMPLE or order.time_in_force is not TimeInForce.DAY
                or order.order_type not in (OrderType.MARKET, OrderType.LIMIT)):
            raise invalid("fractional orders must be simple market or limit orders with day time in force")
        if order.time_in_force not in (TimeInForce.DAY, TimeInForce.GTC):
            raise invalid(f"time_in_force {order.time_in_force.value} is not supported by the simulator (day, gtc)")
        quote = self._quote_now(order.symbol)
        if quote is None:
            raise invalid(f"no market data for {self._underlying_of(order.symbol)} yet; "
                          "send a market update (on_bar) before trading it")
        self._validate_class(order, quote)
        self._check_quantity_and_power(order, quote)

    def _require_asset(self, symbol: str) -> None:
        if asset_class_of(symbol) is AssetClass.OPTION:
            contract = OptionContract.parse(symbol)
            if contract.underlying not in self.config.symbols and contract.underlying not in self._marks:
                raise invalid(f'asset "{symbol}" not found')
            if not calendar.is_trading_day(contract.expiry) or expiry_close(contract.expiry) <= self.now():
                raise invalid(f'asset "{symbol}" is not active')
            step = self.config.options.strike_step
            if abs(contract.strike / step - round(contract.strike / step)) > 1e-6:
                raise invalid(f'asset "{symbol}" not found (strikes are listed every {step})')
        elif symbol not in self.config.symbols and symbol not in self._marks:
            raise invalid(f'asset "{symbol}" not found')

    def _validate_class(self, order: Order, quote: Quote) -> None:
        cls = order.order_class
        if cls is OrderClass.SIMPLE:
            return
        tp, sl = order.take_profit_price, order.stop_loss_price
        if cls is OrderClass.BRACKET and (tp is None or sl is None):
            raise invalid("bracket orders require take_profit.limit_price and stop_loss.stop_price")
        if cls is OrderClass.OCO:
            if tp is None or sl is None or order.order_type is not OrderType.LIMIT:
                raise invalid("oco orders must be limit orders with take_profit.limit_price and stop_loss.stop_price")
        if cls is OrderClass.OTO and (tp is None) == (sl is None):
            raise invalid("oto orders require exactly one of take_profit or stop_loss")
        if order.order_type not in (OrderType.MARKET, OrderType.LIMIT):
            raise invalid(f"{cls.value} orders must be market or limit orders")
        if cls is OrderClass.OCO:
            # The exit of an existing position: for a sell, take profit above, stop below.
            exit_side = order.side
            if exit_side is Side.SELL and not tp > sl:
                raise invalid(f"take_profit.limit_price {tp} must be above stop_loss.stop_price {sl} for a sell")
            if exit_side is Side.BUY and not tp < sl:
                raise invalid(f"take_profit.limit_price {tp} must be below stop_loss.stop_price {sl} for a buy")
            return
        base = order.limit_price if order.order_type is OrderType.LIMIT else quote.mid
        if order.side is Side.BUY:
            if tp is not None and not tp >= base + 0.01 - EPS:
                raise invalid(f"take_profit.limit_price must be >= base_price + 0.01 (base {base}, got {tp})")
            if sl is not None and not sl <= base - 0.01 + EPS:
                raise invalid(f"stop_loss.stop_price must be <= base_price - 0.01 (base {base}, got {sl})")
        else:
            if tp is not None and not tp <= base - 0.01 + EPS:
                raise invalid(f"take_profit.limit_price must be <= base_price - 0.01 (base {base}, got {tp})")
            if sl is not None and not sl >= base + 0.01 - EPS:
                raise invalid(f"stop_loss.stop_price must be >= base_price + 0.01 (base {base}, got {sl})")

    def _qty_available(self, symbol: str) -> float:
        """Held quantity (long) not already promised to open sell orders (an OCO pair counts once)."""
        pos = self._positions.get(symbol)
        held = pos.qty if pos is not None and pos.qty > 0 else 0.0
        reserved: dict[str, float] = {}
        for o in self._orders.values():
            if o.symbol == symbol and o.side is Side.SELL and o.is_open and o.status is not OrderStatus.HELD:
                group = o.parent_id or o.id
                reserved[group] = max(reserved.get(group, 0.0), o.remaining)
        return held - sum(reserved.values())

    def _reserved_buying_power(self) -> float:
        total = 0.0
        for o in self._orders.values():
            if o.side is Side.BUY and o.is_open and o.leg_role is None:
                total += o.remaining * self._estimate_price(o.symbol, o.order_type, o.limit_price, o.stop_price) * o.multiplier
        return total

    def _estimate_price(self, symbol: str, order_type: OrderType, limit_price: float | None,
                        stop_price: float | None) -> float:
        if limit_price is not None:
            return limit_price
        quote = self._quote_now(symbol)
        ask = quote.ask if quote is not None else (stop_price or 0.0)
        if stop_price is not None:
            ask = max(ask, stop_price)
        return ask * (1 + self.config.market_buy_buffer)

    def _check_quantity_and_power(self, order: Order, quote: Quote) -> None:
        is_option = order.asset_class is AssetClass.OPTION
        if order.side is Side.SELL:
            pos = self._positions.get(order.symbol)
            available = self._qty_available(order.symbol)
            if order.order_class in (OrderClass.BRACKET, OrderClass.OTO) or pos is None or pos.qty <= 0 \
                    or order.qty > available + EPS:
                # Not (wholly) closing a long: a short sale.
                if is_option:
                    if pos is not None and pos.qty > 0:
                        raise forbidden(f"insufficient qty available for order (requested: {order.qty:g}, "
                                        f"available: {max(available, 0):g})")
                    raise forbidden("account not eligible to trade uncovered option contracts")
                if not self.config.allow_short_equity:
                    raise forbidden(f"insufficient qty available for order (requested: {order.qty:g}, "
                                    f"available: {max(available, 0):g})")
            return
        multiplier = OPTION_MULTIPLIER if is_option else 1
        price = self._estimate_price(order.symbol, order.order_type, order.limit_price, order.stop_price)
        cost = order.qty * price * multiplier + self._fee(order.symbol, Side.BUY, order.qty, price)
        available = self._cash - self._reserved_buying_power()
        if cost > available + EPS:
            raise forbidden(f"insufficient buying power (order cost {cost:.2f}, available {max(available, 0):.2f})")

    @staticmethod
    def _expiry_for(tif: TimeInForce, now: datetime) -> datetime | None:
        """A day order's end: today's close, or the next session's once today's has passed."""
        if tif is not TimeInForce.DAY:
            return None
        today_close, next_close = _closes(calendar.as_date(now))
        return today_close if today_close is not None and now < today_close else next_close

    def _new_order(self, order: Order, now: datetime, **changes) -> _Order:
        underlying = self._underlying_of(order.symbol)
        mark = self._marks.get(underlying)
        created = _Order(
            id=str(uuid.uuid4()), client_order_id=order.client_order_id, symbol=order.symbol,
            asset_class=order.asset_class.value, side=order.side, order_type=order.order_type,
            time_in_force=order.time_in_force, order_class=order.order_class, qty=order.qty,
            created_at=now, updated_at=now, run_id=self.run_id, limit_price=order.limit_price,
            stop_price=order.stop_price, eligible_after=mark.ts if mark else None,
            expires_at=self._expiry_for(order.time_in_force, now),
        )
        for key, value in changes.items():
            setattr(created, key, value)
        self._index(created)
        self._dirty_orders.add(created.id)
        return created

    def _index(self, order: _Order) -> None:
        self._orders[order.id] = order
        self._by_client_id[order.client_order_id] = order.id
        if order.parent_id is not None:
            self._legs.setdefault(order.parent_id, []).append(order.id)

    def _create(self, order: Order) -> _Order:
        now = self.now()
        cls = order.order_class
        parent = self._new_order(order, now)
        exit_side = order.side.opposite
        legs = []
        if cls in (OrderClass.BRACKET, OrderClass.OTO):
            if order.take_profit_price is not None:
                legs.append(("take_profit", exit_side, OrderType.LIMIT, order.take_profit_price, None))
            if order.stop_loss_price is not None:
                sl_type = OrderType.STOP_LIMIT if order.stop_loss_limit_price is not None else OrderType.STOP
                legs.append(("stop_loss", exit_side, sl_type, order.stop_loss_limit_price, order.stop_loss_price))
            status = OrderStatus.HELD
        elif cls is OrderClass.OCO:
            parent.leg_role = "take_profit"
            parent.limit_price = order.take_profit_price
            sl_type = OrderType.STOP_LIMIT if order.stop_loss_limit_price is not None else OrderType.STOP
            legs.append(("stop_loss", order.side, sl_type, order.stop_loss_limit_price, order.stop_loss_price))
            status = OrderStatus.NEW
        for role, side, otype, limit, stop in legs:
            leg_request = Order(order.symbol, order.qty, side, str(uuid.uuid4()), otype,
                                order.time_in_force, limit_price=limit, stop_price=stop)
            self._new_order(leg_request, now, leg_role=role, parent_id=parent.id, order_class=cls, status=status)
        return parent

    # ------------------------------------------------------------------ matching

    def _match(self, ts: datetime, prices: Mapping[str, _Prices]) -> list[Fill]:
        fills: list[Fill] = []
        candidates = sorted(
            (o for o in self._orders.values()
             if o.is_open and o.status is not OrderStatus.HELD and self._underlying_of(o.symbol) in prices
             and (o.eligible_after is None or o.eligible_after < ts)),
            key=lambda o: (o.created_at, o.id),
        )
        for order in candidates:
            if not order.is_open:  # a sibling's fill may have canceled it
                continue
            fill = self._try_fill(order, ts, prices[self._underlying_of(order.symbol)])
            if fill is not None:
                fills.append(fill)
        return fills

    def _try_fill(self, order: _Order, ts: datetime, p: _Prices) -> Fill | None:
        symbol = order.symbol
        is_option = order.asset_class == AssetClass.OPTION.value
        open_bid, open_ask = self._bid_ask_at(symbol, p.open, ts)
        ends = [self._bid_ask_at(symbol, x, ts) for x in (p.low, p.high)]
        low_bid, low_ask = min(ends)
        high_bid, high_ask = max(ends)
        if is_option:
            slip = self.config.option_slippage
        else:
            slip = self.config.equity_slippage_bps * 1e-4 * p.open
        buy = order.side is Side.BUY
        price = None
        otype = order.order_type
        if otype in (OrderType.STOP, OrderType.STOP_LIMIT) and not order.triggered:
            stop = order.stop_price
            open_mid, low_mid, high_mid = (open_bid + open_ask) / 2, (low_bid + low_ask) / 2, (high_bid + high_ask) / 2
            half = (open_ask - open_bid) / 2
            if buy and open_mid >= stop or not buy and open_mid <= stop:
                trigger_ask, trigger_bid = open_ask, open_bid
            elif buy and high_mid >= stop:
                trigger_ask, trigger_bid = stop + half, stop - half
            elif not buy and low_mid <= stop:
                trigger_ask, trigger_bid = stop + half, stop - half
            else:
                return None
            order.triggered = True
            self._dirty_orders.add(order.id)
            if otype is OrderType.STOP:
                price = trigger_ask + slip if buy else trigger_bid - slip
            elif buy and trigger_ask <= order.limit_price:
                price = trigger_ask
            elif not buy and trigger_bid >= order.limit_price:
                price = trigger_bid
            else:
                return None  # a triggered stop-limit now rests as a limit order
        elif otype is OrderType.MARKET:
            price = open_ask + slip if buy else open_bid - slip
        else:  # a limit order, or a stop-limit already triggered
            limit = order.limit_price
            if buy:
                price = open_ask if open_ask <= limit else (limit if low_ask <= limit else None)
            else:
                price = open_bid if open_bid >= limit else (limit if high_bid >= limit else None)
        if price is None or price <= 0:
            return None  # no bid: nothing to sell into
        displayed = self.config.options.displayed_size if is_option else self.config.equity_displayed_size
        qty = min(order.remaining, displayed)
        return self._execute(order, qty, _round_price(price), ts)

    def _fee(self, symbol: str, side: Side, qty: float, price: float) -> float:
        if asset_class_of(symbol) is AssetClass.OPTION:
            return round(self.config.option_commission_per_contract * qty, 6)
        fee = self.config.equity_commission_per_share * qty
        if side is Side.SELL:
            fee += self.config.sec_fee_rate * qty * price
        return round(fee, 6)

    def _execute(self, order: _Order, qty: float, price: float, ts: datetime) -> Fill:
        fee = self._fee(order.symbol, order.side, qty, price)
        realized = self._apply_to_position(order.symbol, order.side, qty, price, order.multiplier, ts)
        self._cash -= order.side.sign * qty * price * order.multiplier + fee
        self._fees += fee
        self._realized += realized
        self._account_dirty = True
        total = order.filled_qty + qty
        order.filled_avg_price = _round_price(((order.filled_avg_price or 0.0) * order.filled_qty + price * qty) / total)
        order.filled_qty = total
        order.status = OrderStatus.FILLED if order.remaining <= EPS else OrderStatus.PARTIALLY_FILLED
        if order.status is OrderStatus.FILLED:
            order.filled_at = ts
        self._touch(order)
        self._new_fills.append(self._fill_row(order, "trade", order.symbol, order.side, qty, price, fee, realized, ts))
        self._after_fill(order, ts)
        return Fill(order.id, order.symbol, qty, price, order.side, ts, fee, order.client_order_id)

    def _apply_to_position(self, symbol: str, side: Side, qty: float, price: float, mult: int, ts: datetime) -> float:
        """Update the position; returns the P&L (before fees) that this fill closed."""
        signed = side.sign * qty
        pos = self._positions.get(symbol)
        self._positions_dirty = True
        if pos is None:
            self._positions[symbol] = _Position(signed, price, ts)
            return 0.0
        if pos.qty * signed > 0:
            new_qty = pos.qty + signed
            pos.avg_entry_price = (pos.avg_entry_price * abs(pos.qty) + price * qty) / abs(new_qty)
            pos.qty = new_qty
            return 0.0
        closing = min(qty, abs(pos.qty))
        realized = (price - pos.avg_entry_price) * closing * (1 if pos.qty > 0 else -1) * mult
        remaining = pos.qty + signed
        if abs(remaining) <= EPS:
            del self._positions[symbol]
        elif remaining * pos.qty > 0:
            pos.qty = remaining
        else:
            self._positions[symbol] = _Position(remaining, price, ts)
        return realized

    def _fill_row(self, order: _Order | None, kind: str, symbol: str, side: Side, qty: float, price: float,
                  fee: float, realized: float, ts: datetime) -> dict:
        return {
            "account": self.account, "fill_id": str(uuid.uuid4()), "run_id": self.run_id,
            "order_id": order.id if order else None, "client_order_id": order.client_order_id if order else None,
            "kind": kind, "symbol": symbol, "side": side.value, "qty": qty, "price": price, "commission": fee,
            "realized_pl": realized, "ts": ts,
        }

    def _legs_of(self, parent_id: str) -> list[_Order]:
        return [self._orders[i] for i in self._legs.get(parent_id, ())]

    def _siblings(self, order: _Order) -> list[_Order]:
        """The other side of a one-cancels-other pair (bracket legs, or an OCO's two orders)."""
        if order.order_class is OrderClass.OCO:
            group = order.parent_id or order.id
            return [o for o in self._orders.values() if o.id != order.id and (o.id == group or o.parent_id == group)]
        if order.parent_id is not None and order.leg_role is not None:
            return [o for o in self._legs_of(order.parent_id) if o.id != order.id]
        return []

    def _after_fill(self, order: _Order, ts: datetime) -> None:
        if order.leg_role is None and order.order_class in (OrderClass.BRACKET, OrderClass.OTO) \
                and order.status is OrderStatus.FILLED:
            for leg in self._legs_of(order.id):
                if leg.status is OrderStatus.HELD:
                    leg.status = OrderStatus.NEW
                    leg.eligible_after = ts  # the exits trade from the next update on
                    self._touch(leg)
        for sibling in self._siblings(order):
            if sibling.is_open:
                self._end_order(sibling, OrderStatus.CANCELED)

    def _end_order(self, order: _Order, status: OrderStatus, when: datetime | None = None) -> None:
        """Cancel or expire an open order, and settle its legs (held exits follow the entry)."""
        now = when or self.now()
        order.status = status
        if status is OrderStatus.CANCELED:
            order.canceled_at = now
        else:
            order.expired_at = now
        self._touch(order)
        if order.leg_role is None and order.order_class in (OrderClass.BRACKET, OrderClass.OTO):
            for leg in self._legs_of(order.id):
                if leg.status is not OrderStatus.HELD:
                    continue
                if order.filled_qty > EPS:
                    # The entry partly filled: its exits protect what did fill.
                    leg.qty = order.filled_qty
                    leg.status = OrderStatus.NEW
                    leg.eligible_after = self._market_time
                else:
                    leg.status = OrderStatus.CANCELED
                    leg.canceled_at = now
                self._touch(leg)

    # ------------------------------------------------------------------ orders out

    def _domain(self, o: _Order) -> Order:
        legs = tuple(self._domain(leg) for leg in sorted(self._legs_of(o.id), key=lambda x: x.leg_role or ""))
        tp = sl = sl_limit = None
        for leg in legs if o.parent_id is None else ():
            if leg.order_type is OrderType.LIMIT:
                tp = leg.limit_price
            else:
                sl, sl_limit = leg.stop_price, leg.limit_price
        if o.order_class is OrderClass.OCO and o.leg_role == "take_profit":
            tp = o.limit_price
        return Order(
            symbol=o.symbol, qty=o.qty, side=o.side, client_order_id=o.client_order_id, order_type=o.order_type,
            time_in_force=o.time_in_force, limit_price=o.limit_price, stop_price=o.stop_price,
            order_class=o.order_class, take_profit_price=tp, stop_loss_price=sl, stop_loss_limit_price=sl_limit,
            id=o.id, status=o.status, filled_qty=o.filled_qty, filled_avg_price=o.filled_avg_price,
            created_at=o.created_at, updated_at=o.updated_at, parent_id=o.parent_id, legs=legs,
        )

    def get_order(self, order_id: str) -> Order:
        with self._session(write=False):
            order = self._orders.get(str(order_id))
            if order is None:
                raise NotFound("order not found")
            return self._domain(order)

    def get_order_by_client_id(self, client_order_id: str) -> Order:
        with self._session(write=False):
            order_id = self._by_client_id.get(client_order_id)
            if order_id is None:
                raise NotFound("order not found")
            return self._domain(self._orders[order_id])

    def order_details(self, order_ids: Sequence[str]) -> dict[str, dict]:
        """Timestamps and links Alpaca reports but the domain Order does not carry, by id."""
        with self._session(write=False):
            found = {}
            for order_id in order_ids:
                o = self._orders.get(str(order_id))
                if o is None:
                    raise NotFound("order not found")
                found[o.id] = {"filled_at": o.filled_at, "canceled_at": o.canceled_at, "expired_at": o.expired_at,
                               "replaced_by": o.replaced_by, "replaces": o.replaces, "expires_at": o.expires_at,
                               "asset_class": o.asset_class, "leg_role": o.leg_role}
            return found

    def list_orders(self, status: str = "open", symbols: Sequence[str] | None = None, limit: int = 500,
                    after: datetime | None = None) -> list[Order]:
        """Orders (legs included, as Alpaca lists them when not nested), newest first."""
        if status not in ("open", "closed", "all"):
            raise ValueError(f"status: unknown value {status!r}; expected open, closed or all")
        if after is not None:
            after = _ts(after)
        wanted = {require_symbol("symbols", s) for s in symbols} if symbols else None
        with self._session(write=False):
            chosen = [
                o for o in self._orders.values()
                if (status == "all" or (status == "open") == o.is_open)
                and (wanted is None or o.symbol in wanted) and (after is None or o.created_at > after)
            ]
            chosen.sort(key=lambda o: (o.created_at, o.id), reverse=True)
            return [self._domain(o) for o in chosen[:limit]]

    def cancel_order(self, order_id: str) -> None:
        with self._session(write=True):
            order = self._orders.get(str(order_id))
            if order is None:
                raise NotFound("order not found")
            if not order.is_open:
                raise unprocessable(f'order is already in "{order.status.value}" state')
            self._end_order(order, OrderStatus.CANCELED)
            for sibling in self._siblings(order):
                if sibling.is_open:
                    self._end_order(sibling, OrderStatus.CANCELED)

    def cancel_all_orders(self) -> list[str]:
        """Cancel every open order; returns the ids canceled."""
        with self._session(write=True):
            canceled = []
            for order in sorted(self._orders.values(), key=lambda o: (o.leg_role is not None, o.created_at)):
                if order.is_open:
                    self._end_order(order, OrderStatus.CANCELED)
                    canceled.append(order.id)
            return canceled

    def replace_order(self, order_id: str, qty: float | None = None, limit_price: float | None = None,
                      stop_price: float | None = None, time_in_force: str | None = None,
                      client_order_id: str | None = None) -> Order:
        """Replace an open order with a new one (Alpaca's PATCH): the old one ends ``replaced``.

        Unspecified fields keep their values; ``qty`` defaults to what the old order had
        left to fill; the replacement gets a fresh random ``client_order_id`` unless one is
        given, as on Alpaca.
        """
        with self._session(write=True):
            old = self._orders.get(str(order_id))
            if old is None:
                raise NotFound("order not found")
            if not old.is_open or old.status is OrderStatus.HELD:
                raise unprocessable(f'order is in "{old.status.value}" state and cannot be replaced')
            new_coid = client_order_id or str(uuid.uuid4())
            if new_coid in self._by_client_id:
                raise invalid(DUPLICATE_CLIENT_ORDER_ID)
            request = Order(
                old.symbol, qty if qty is not None else old.remaining, old.side, new_coid, old.order_type,
                time_in_force or old.time_in_force,
                limit_price=limit_price if limit_price is not None else old.limit_price,
                stop_price=stop_price if stop_price is not None else old.stop_price,
            )
            if old.asset_class == AssetClass.OPTION.value:
                if request.time_in_force is not TimeInForce.DAY:
                    raise invalid("order_time_in_force provided not supported for options trading; only day is accepted")
                if abs(request.qty - round(request.qty)) > EPS:
                    raise invalid(f"qty must be a whole number of contracts for options, got {request.qty}")
            if old.side is Side.BUY and old.leg_role is None:
                quote = self._quote_now(old.symbol)
                price = request.limit_price or (quote.ask * (1 + self.config.market_buy_buffer) if quote else 0.0)
                cost = request.qty * price * old.multiplier
                available = self._cash - self._reserved_buying_power() + old.remaining * self._estimate_price(
                    old.symbol, old.order_type, old.limit_price, old.stop_price) * old.multiplier
                if cost > available + EPS:
                    raise forbidden(f"insufficient buying power (order cost {cost:.2f}, available {max(available, 0):.2f})")
            now = self.now()
            new = self._new_order(request, now, order_class=old.order_class, leg_role=old.leg_role,
                                  parent_id=old.parent_id, replaces=old.id, eligible_after=old.eligible_after,
                                  triggered=old.triggered)
            old.status = OrderStatus.REPLACED
            old.replaced_by = new.id
            self._touch(old)
            for leg in self._legs_of(old.id):
                leg.parent_id = new.id
                self._touch(leg)
            self._legs[new.id] = self._legs.pop(old.id, [])
            return self._domain(new)

    # ------------------------------------------------------------------ positions and account

    def _position(self, symbol: str, pos: _Position, at: datetime) -> Position:
        price = self._mark_price(symbol, at)
        return Position(symbol, pos.qty, pos.avg_entry_price, current_price=price if price and price > 0 else None)

    def get_positions(self) -> list[Position]:
        with self._session(write=False):
            at = self.now()
            return [self._position(s, p, at) for s, p in sorted(self._positions.items())]

    def get_position(self, symbol: str) -> Position | None:
        symbol = require_symbol("symbol", symbol)
        with self._session(write=False):
            pos = self._positions.get(symbol)
            return self._position(symbol, pos, self.now()) if pos is not None else None

    def close_position(self, symbol: str, qty: float | None = None) -> Order:
        """A market order for the opposite side of the position (all of it by default)."""
        symbol = require_symbol("symbol", symbol)
        with self._session(write=True):
            pos = self._positions.get(symbol)
            if pos is None:
                raise NotFound(f"position does not exist: {symbol}")
            size = abs(pos.qty) if qty is None else require_quantity("qty", qty)
            side = Side.SELL if pos.qty > 0 else Side.BUY
            request = Order(symbol, size, side, str(uuid.uuid4()))
            if side is Side.SELL and size > self._qty_available(symbol) + EPS:
                raise forbidden(f"insufficient qty available for order (requested: {size:g}, "
                                f"available: {max(self._qty_available(symbol), 0):g})")
            return self._domain(self._create(request))

    def close_all_positions(self, cancel_orders: bool = True) -> list[Order]:
        """Cancel open orders (by default), then close every position with a market order."""
        with self._session(write=True):
            if cancel_orders:
                self.cancel_all_orders()
            return [self.close_position(symbol) for symbol in sorted(self._positions)]

    def _positions_value(self, at: datetime) -> tuple[float, float]:
        """(long market value, short market value) at mark prices."""
        long_value = short_value = 0.0
        for symbol, pos in self._positions.items():
            price = self._mark_price(symbol, at)
            value = pos.qty * (price if price is not None else pos.avg_entry_price) * (
                OPTION_MULTIPLIER if asset_class_of(symbol) is AssetClass.OPTION else 1)
            if value >= 0:
                long_value += value
            else:
                short_value += value
        return long_value, short_value

    def _equity(self, at: datetime) -> float:
        long_value, short_value = self._positions_value(at)
        return self._cash + long_value + short_value

    def get_account(self) -> Account:
        with self._session(write=False):
            at = self.now()
            return Account(
                account_id=self.account, cash=self._cash, equity=self._equity(at),
                buying_power=max(self._cash - self._reserved_buying_power(), 0.0), status="ACTIVE",
                trading_blocked=self._trading_blocked, account_blocked=False, last_equity=self._last_equity,
            )

    def account_snapshot(self) -> dict:
        """Everything about the account in one dict (Alpaca's account fields, and P&L)."""
        with self._session(write=False):
            at = self.now()
            long_value, short_value = self._positions_value(at)
            cost = sum(p.qty * p.avg_entry_price * (OPTION_MULTIPLIER if asset_class_of(s) is AssetClass.OPTION else 1)
                       for s, p in self._positions.items())
            equity = self._cash + long_value + short_value
            return {
                "account": self.account, "cash": self._cash, "equity": equity, "last_equity": self._last_equity,
                "long_market_value": long_value, "short_market_value": short_value,
                "buying_power": max(self._cash - self._reserved_buying_power(), 0.0),
                "initial_cash": self._initial_cash, "realized_pl": self._realized,
                "unrealized_pl": long_value + short_value - cost, "fees_paid": self._fees,
                "trading_blocked": self._trading_blocked, "market_time": self._market_time,
                "open_orders": sum(1 for o in self._orders.values() if o.is_open),
                "positions": len(self._positions),
            }

    def set_trading_blocked(self, blocked: bool) -> None:
        """Block (or unblock) new orders, as Alpaca does to an account under review."""
        with self._session(write=True):
            self._trading_blocked = bool(blocked)
            self._account_dirty = True

    def get_fills(self) -> pd.DataFrame:
        """Every execution and expiry settlement of the account, oldest first."""
        self.flush()
        return self.store.query_df("SELECT * FROM sim_fills WHERE account = ? ORDER BY ts, fill_id", [self.account])

    def get_clock(self) -> MarketClock:
        now = pd.Timestamp(self.now())
        is_open = calendar.is_market_open(now)
        day = calendar.as_date(now)
        if calendar.is_trading_day(day) and now < calendar.session_open_close(day)[0]:
            next_day = day
        else:
            next_day = calendar.next_session(day)
        next_open = calendar.session_open_close(next_day)[0]
        close_day = day if calendar.is_trading_day(day) and now < calendar.session_open_close(day)[1] else next_day
        next_close = calendar.session_open_close(close_day)[1]
        return MarketClock(now.to_pydatetime(), is_open, next_open.to_pydatetime(), next_close.to_pydatetime())

    def get_asset(self, symbol: str) -> Asset:
        symbol = require_symbol("symbol", symbol)
        with self._session(write=False):
            try:
                self._require_asset(symbol)
            except BrokerError as exc:
                raise NotFound(exc.message) from None
        cls = asset_class_of(symbol)
        return Asset(symbol, cls, tradable=True, fractionable=cls is AssetClass.EQUITY)

    def reset(self, initial_cash: float | None = None) -> None:
        """Start the account afresh: all its orders, fills, positions and marks are deleted."""
        cash = require_price("initial_cash", initial_cash) if initial_cash is not None else self.config.initial_cash
        with self._lock:
            if self._batch_depth:
                raise RuntimeError("reset() inside batch() is not allowed")
            with self.store.transaction() as con:
                for table in ("sim_orders", "sim_fills", "sim_positions", "sim_marks", "sim_accounts"):
                    con.execute(f"DELETE FROM {table} WHERE account = ?", [self.account])
                self.config = replace(self.config, initial_cash=cash)
                self._reset_memory()
                self._version = 0
                self._account_dirty = True
                self._persist(con)


@lru_cache(maxsize=512)
def _closes(day: date) -> tuple[datetime | None, datetime]:
    """(that day's close if it trades, the next session's close), cached per day."""
    today = calendar.session_open_close(day)[1].to_pydatetime() if calendar.is_trading_day(day) else None
    return today, calendar.session_open_close(calendar.next_session(day))[1].to_pydatetime()


def _insert_rows(con, table: str, columns: Sequence[str], rows: list[tuple], replace: bool = False) -> None:
    """Insert rows in one statement: a DataFrame scan for many rows, one multi-row VALUES
    for few (DuckDB's executemany costs milliseconds a row)."""
    if not rows:
        return
    verb = "INSERT OR REPLACE INTO" if replace else "INSERT INTO"
    if len(rows) > 64:
        frame = pd.DataFrame(rows, columns=list(columns))
        con.register("_rows", frame)
        try:
            con.execute(f"{verb} {table} BY NAME SELECT * FROM _rows")
        finally:
            con.unregister("_rows")
    else:
        row = "(" + ", ".join("?" for _ in columns) + ")"
        con.execute(f"{verb} {table} ({', '.join(columns)}) VALUES {', '.join(row for _ in rows)}",
                    [value for r in rows for value in r])


