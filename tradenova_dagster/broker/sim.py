"""SimBroker: a paper broker driven by market updates, its account kept in DuckDB.

It is not a mock: it keeps open orders and fills, derives positions, cash, fees and P&L
from those fills, refuses what Alpaca refuses with Alpaca's error shape, and fills only
on prices it has been shown *after* an order arrived, so a backtest cannot trade on the
bar that made it decide.

How it is driven
    ``on_bar(ts, symbol, bar, vix=...)`` hands it the next market update. Orders
    submitted before an update fill on that update (``sim_matching``). Day orders expire
    at their session's close; options still held at their expiry's close settle at
    intrinsic value. ``advance(ts)`` moves time on without new prices (a flatten run in
    another process fills against the latest stored prices this way).

The parts
    ``sim_rules``     Alpaca's order rules: what a new order must satisfy.
    ``sim_matching``  fills against quotes, t+1, and what time does to orders and options.
    ``sim_pricing``   ``SimConfig``, quotes (options from ``market.chain``'s model), costs.
    ``sim_orders``    the orders, whose status changes only through
                      ``ledger.orders.advance`` (Alpaca's state machine).
    ``sim_account``   positions, cash, equity and P&L folded from the fills
                      (``ledger.book.Book``); every position is long-only.
    ``sim_store``     the ``sim_*`` tables, and one call = one transaction.

Costs (defaults; ``SimConfig``)
    Options: ``rules.OPTION_COMMISSION_PER_CONTRACT`` ($0.65) per contract on every buy
    and sell. Alpaca charges no commission on options but passes on regulatory and
    clearing fees (ORF, OCC, FINRA TAF: a few cents a contract); $0.65 errs on the
    expensive side, so that simulated results are never better than Alpaca's. Set
    ``option_commission_per_contract=0.05`` to approximate Alpaca's fees alone.
    Equities: no commission, SEC fee of 0.00278% of the notional of sales.

State and processes
    The account (``account``: ``sim:default``, ``backtest:<id>``...) lives in the
    ``sim_*`` tables. Each public call is one ``store.transaction()`` (joining the
    session's unit of work when one is open): it reloads the account if another process
    changed it (a version counter), applies the call and writes what changed. Inside
    ``with sim.batch():`` the account stays in memory and is written once at the end —
    for replays, where one process owns a ``backtest:`` account and a day must run in
    seconds.

Time
    ``clock`` (anything with ``now()``, or a callable) stamps orders in replays; without
    one the broker's time is that of the latest market update (the wall clock before
    the first).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Sequence

import pandas as pd

from tradenova_dagster.broker.base import Asset, BrokerError, MarketClock, NotFound, unprocessable
from tradenova_dagster.broker.sim_matching import Matcher
from tradenova_dagster.broker.sim_orders import SimOrder
from tradenova_dagster.broker.sim_pricing import Mark, Prices, Pricer, SimConfig, as_prices, underlying_of
from tradenova_dagster.broker.sim_rules import OrderRules
from tradenova_dagster.broker.sim_store import ConcurrentAccountUpdate, SimState, StoredAccount, as_utc
from tradenova_dagster.domain import (
    Account,
    AssetClass,
    Fill,
    Order,
    OrderStatus,
    Position,
    Quote,
    asset_class_of,
    require_price,
    require_quantity,
    require_symbol,
)
from tradenova_dagster.ledger.accounts import ledger_store, require_account
from tradenova_dagster.ledger.orders import IllegalTransition
from tradenova_dagster.market import calendar
from tradenova_dagster.store import Store

__all__ = ["ConcurrentAccountUpdate", "SimBroker", "SimConfig"]


class SimBroker(StoredAccount):
    """A simulated Alpaca account (see the module docstring)."""

    name = "sim"

    def __init__(self, account: str = "sim:default", store: Store | None = None, config: SimConfig | None = None,
                 clock: Any = None, run_id: str | None = None):
        self.account = require_account(account)
        self.store = store if store is not None else ledger_store(self.account)
        self.config = config or SimConfig()
        self.run_id = run_id
        self._clock = clock
        self._clock_read: Any = None  # the clock's latest answer, and it in UTC (see ``now``)
        self._clock_utc: datetime | None = None
        self._open_account()

    def __repr__(self) -> str:
        return f"SimBroker(account={self.account!r}, store={self.store!r})"

    def _adopt(self, state: SimState, version: int | None = None) -> None:
        """Hold ``state``, with the parts that work on it."""
        super()._adopt(state, version)
        self._acct, self._orders = state.account, state.orders
        self._pricer = Pricer(self.config, state.marks)
        self._rules = OrderRules(self.config, state.account, state.orders, self._pricer)
        self._matcher = Matcher(self.config, state.account, state.orders, self._pricer)

    # ------------------------------------------------------------------ time

    def now(self) -> datetime:
        """The broker's time: the injected clock, else the latest market update, else the wall clock."""
        if self._clock is not None:
            read = self._clock.now() if hasattr(self._clock, "now") else self._clock()
            if read is not self._clock_read:  # a replay clock answers the same Timestamp until time moves
                self._clock_read, self._clock_utc = read, as_utc(read)
            return self._clock_utc
        return self._acct.market_time or datetime.now(timezone.utc)

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
        return self._acct.market_time

    # ------------------------------------------------------------------ market updates

    def on_bar(self, timestamp, symbol: str, bar: Any, vix: float | None = None) -> list[Fill]:
        """Apply one market update for ``symbol`` (a Bar, a row with OHLC, or a price).

        ``timestamp`` is the bar's start; orders submitted before this call fill at the
        bar's open or when its range crosses their price. ``vix`` (the index level, e.g.
        18.5) prices the symbol's options from now on. Returns the fills it made.
        """
        ts = as_utc(timestamp)
        symbol = require_symbol("symbol", symbol)
        p = as_prices(symbol, bar)
        if vix is not None:
            vix = require_price("vix", vix)
        with self._session(write=True):
            self._require_forward(ts)
            self._matcher.pass_time(ts, self.run_id)
            old = self._state.marks.get(symbol)
            mark = self._state.marks[symbol] = Mark(ts, p.open, vix if vix is not None else (old.vix if old else None))
            fills = self._moved_to(ts, {symbol: p})
            mark.price = p.close
            return fills

    def advance(self, timestamp=None) -> list[Fill]:
        """Move time to ``timestamp`` without new prices.

        Expires day orders whose close has passed and settles expired options, then fills
        open orders against the latest stored prices — what a flatten run in a process
        with no market feed uses to close positions. ``None`` means the injected clock, or
        the wall clock.
        """
        ts = as_utc(timestamp) if timestamp is not None else (
            self.now() if self._clock is not None else datetime.now(timezone.utc))
        with self._session(write=True):
            self._require_forward(ts)
            self._matcher.pass_time(ts, self.run_id)
            for mark in self._state.marks.values():
                mark.ts = ts
            return self._moved_to(ts, {s: Prices.flat(m.price) for s, m in self._state.marks.items()})

    def _require_forward(self, ts: datetime) -> None:
        latest = self._acct.market_time
        if latest is not None and ts < latest:
            raise ValueError(f"timestamp {ts.isoformat()} is before the latest market update {latest.isoformat()} "
                             f"for account {self.account!r}; updates must go forward")

    def _moved_to(self, ts: datetime, prices: dict[str, Prices]) -> list[Fill]:
        self._acct.market_time = ts
        self._state.marks_dirty = self._acct.dirty = True
        return self._matcher.match(ts, prices, self.run_id)

    def get_quote(self, symbol: str) -> Quote:
        """The bid/ask the simulator shows now for an equity or an option contract."""
        symbol = require_symbol("symbol", symbol)
        with self._session(write=False):
            quote = self._pricer.quote(symbol, self.now())
        if quote is None:
            raise NotFound(f"no market data for {underlying_of(symbol)} in account {self.account!r} yet")
        return quote

    # ------------------------------------------------------------------ orders

    def submit_order(self, order: Order) -> Order:
        """Accept an order (or refuse it as Alpaca would) — it fills on a later update."""
        if not isinstance(order, Order):
            raise ValueError(f"order must be a domain Order, got {order!r}")
        with self._session(write=True):
            now = self.now()
            self._rules.validate_new(order, now)
            return self._accept(order, now)

    def _accept(self, order: Order, now: datetime) -> Order:
        mark = self._state.marks.get(underlying_of(order.symbol))
        parent = self._orders.create(order, now, self.run_id, mark.ts if mark else None)
        return self._orders.to_domain(parent)

    def _find(self, order_id: str) -> SimOrder:
        order = self._orders.get(order_id)
        if order is None:
            raise NotFound("order not found")
        return order

    def get_order(self, order_id: str) -> Order:
        with self._session(write=False):
            return self._orders.to_domain(self._find(order_id))

    def get_order_by_client_id(self, client_order_id: str) -> Order:
        with self._session(write=False):
            order = self._orders.get_by_client_id(client_order_id)
            if order is None:
                raise NotFound("order not found")
            return self._orders.to_domain(order)

    def order_details(self, order_ids: Sequence[str]) -> dict[str, dict]:
        """Timestamps and links Alpaca reports but the domain Order does not carry, by id."""
        with self._session(write=False):
            found = {}
            for order_id in order_ids:
                o = self._find(order_id)
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
            after = as_utc(after)
        wanted = {require_symbol("symbols", s) for s in symbols} if symbols else None
        with self._session(write=False):
            chosen = [
                o for o in self._orders
                if (status == "all" or (status == "open") == o.is_open)
                and (wanted is None or o.symbol in wanted) and (after is None or o.created_at > after)
            ]
            chosen.sort(key=lambda o: (o.created_at, o.id), reverse=True)
            return [self._orders.to_domain(o) for o in chosen[:limit]]

    def cancel_order(self, order_id: str) -> None:
        """Cancel an open order (and the other side of its pair); a final order is refused
        with Alpaca's 422 and keeps its status."""
        with self._session(write=True):
            order = self._find(order_id)
            try:
                if not order.is_open:  # final: Alpaca answers 422 (advance would let it "stay put")
                    raise IllegalTransition(order.status.value)
                self._orders.end(order, OrderStatus.CANCELED, market_time=self._acct.market_time)
            except IllegalTransition:
                raise unprocessable(f'order is already in "{order.status.value}" state') from None
            self._orders.cancel_siblings(order)

    def cancel_all_orders(self) -> list[str]:
        """Cancel every open order; returns the ids canceled."""
        with self._session(write=True):
            canceled = []
            for order in sorted(self._orders.open_orders(), key=lambda o: (o.leg_role is not None, o.created_at)):
                if order.is_open:
                    self._orders.end(order, OrderStatus.CANCELED, market_time=self._acct.market_time)
                    canceled.append(order.id)
            return canceled

    # ------------------------------------------------------------------ positions and account

    def get_positions(self) -> list[Position]:
        with self._session(write=False):
            return self._acct.position_list(self._pricer, self.now())

    def get_position(self, symbol: str) -> Position | None:
        symbol = require_symbol("symbol", symbol)
        with self._session(write=False):
            return self._acct.position(symbol, self._pricer, self.now())

    def close_position(self, symbol: str, qty: float | None = None) -> Order:
        """A market sell of the position (all of it by default)."""
        symbol = require_symbol("symbol", symbol)
        with self._session(write=True):
            held = self._acct.held(symbol)
            if held <= 0:
                raise NotFound(f"position does not exist: {symbol}")
            size = held if qty is None else require_quantity("qty", qty)
            self._rules.require_can_sell(symbol, size)
            return self._accept(Order(symbol, size, "sell", str(uuid.uuid4())), self.now())

    def get_account(self) -> Account:
        with self._session(write=False):
            now = self.now()
            return Account(
                account_id=self.account, cash=self._acct.cash, equity=self._acct.equity(self._pricer, now),
                buying_power=self._rules.buying_power(now), status="ACTIVE",
                trading_blocked=self._acct.trading_blocked, account_blocked=False,
                last_equity=self._acct.last_equity,
            )

    def account_snapshot(self) -> dict:
        """Everything about the account in one dict (Alpaca's account fields, and P&L)."""
        with self._session(write=False):
            now = self.now()
            return self._acct.snapshot(self._pricer, now, self._rules.buying_power(now),
                                       len(self._orders.open))

    def set_trading_blocked(self, blocked: bool) -> None:
        """Block (or unblock) new orders, as Alpaca does to an account under review."""
        with self._session(write=True):
            self._acct.trading_blocked = bool(blocked)
            self._acct.dirty = True

    def get_fills(self) -> pd.DataFrame:
        """Every execution and expiry settlement of the account, in the order they happened."""
        self.flush()
        return self.store.query_df("SELECT * FROM sim_fills WHERE account = ? ORDER BY seq", [self.account])

    # ------------------------------------------------------------------ market facts

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
                self._rules.require_asset(symbol, self.now())
            except BrokerError as exc:
                raise NotFound(exc.message) from None
        cls = asset_class_of(symbol)
        return Asset(symbol, cls, tradable=True, fractionable=cls is AssetClass.EQUITY)
