"""SimBroker's account in DuckDB: the ``sim_*`` tables, read and written through the Store.

One account's rows: ``sim_accounts`` (what fills cannot tell: initial cash, last equity,
market time, trading blocked, and a ``version`` that goes up on every write, so a process
can tell whether its copy in memory is still current), ``sim_orders`` (every order and
leg), ``sim_fills`` (every execution and expiry settlement, in ``seq`` order: the only
source of positions, cash and P&L) and ``sim_marks`` (the latest price of each symbol).

Every read and write goes through a connection the caller got from ``store.transaction()``
(or ``store.connect()``), so a broker call inside a session's ``unit_of_work()`` joins
that unit's transaction; nothing here opens DuckDB itself.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from datetime import datetime, timezone
from typing import Callable, ContextManager, Iterator

import pandas as pd

from tradenova_dagster.broker.base import BrokerError
from tradenova_dagster.broker.sim_account import FILL_COLUMNS, SimAccount
from tradenova_dagster.broker.sim_orders import OrderBook, SimOrder
from tradenova_dagster.broker.sim_pricing import Mark
from tradenova_dagster.domain import OrderClass, OrderStatus, OrderType, Side, TimeInForce, require_aware, require_price
from tradenova_dagster.store import insert_rows, upsert_row

TABLES = ("sim_orders", "sim_fills", "sim_marks", "sim_accounts")

ORDER_COLUMNS = (
    "account", "id", "client_order_id", "run_id", "symbol", "asset_class", "side", "order_type",
    "time_in_force", "order_class", "leg_role", "parent_id", "qty", "filled_qty", "filled_avg_price",
    "limit_price", "stop_price", "status", "triggered", "eligible_after", "expires_at", "created_at",
    "updated_at", "filled_at", "canceled_at", "expired_at", "replaced_by", "replaces",
)
ACCOUNT_COLUMNS = ("account", "initial_cash", "last_equity", "last_equity_day", "market_time", "trading_blocked",
                   "version", "created_at", "updated_at")
MARK_COLUMNS = ("account", "symbol", "ts", "price", "vix")
_TIMES = ("eligible_after", "expires_at", "filled_at", "canceled_at", "expired_at")
_NOTHING = nullcontext()  # a call inside a batch (reusable: it holds no state)
_ENUMS = {"side": Side, "order_type": OrderType, "time_in_force": TimeInForce, "order_class": OrderClass,
          "status": OrderStatus}


def as_utc(value) -> datetime:
    """A timezone-aware UTC datetime from a datetime or pandas Timestamp."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if type(value) is datetime and value.tzinfo is timezone.utc:  # already one: every bar, every call
        return value
    return require_aware("timestamp", value).astimezone(timezone.utc)


def _opt_utc(value) -> datetime | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    return as_utc(pd.Timestamp(value))


class SimState:
    """An account as one process holds it: the account view, the orders, the marks."""

    def __init__(self, name: str, initial_cash: float, now: Callable[[], datetime]):
        self.account = SimAccount(name, initial_cash)
        self.orders = OrderBook(now)
        self.marks: dict[str, Mark] = {}
        self.marks_dirty = False
        self.version = 0

    @property
    def has_changes(self) -> bool:
        return bool(self.orders.dirty or self.account.new_fills or self.marks_dirty or self.account.dirty)


def stored_version(con, name: str) -> int | None:
    row = con.execute("SELECT version FROM sim_accounts WHERE account = ?", [name]).fetchone()
    return None if row is None else row[0]


def load(con, name: str, initial_cash: float, now: Callable[[], datetime]) -> SimState:
    """The account as stored (a fresh one, to be written, if it has no row yet)."""
    state = SimState(name, initial_cash, now)
    row = con.execute(
        "SELECT initial_cash, last_equity, last_equity_day, market_time, trading_blocked, version, created_at"
        " FROM sim_accounts WHERE account = ?", [name]
    ).fetchone()
    if row is None:
        state.account.dirty = True
        return state
    initial, last_equity, last_day, market_time, blocked, state.version, created_at = row
    account = state.account = SimAccount(name, initial, as_utc(created_at))
    account.last_equity, account.last_equity_day, account.trading_blocked = last_equity, last_day, bool(blocked)
    account.market_time = _opt_utc(market_time)
    account.replay(
        (seq, fill_id, kind, symbol, side, qty, price, fee, as_utc(ts), coid)
        for seq, fill_id, kind, symbol, side, qty, price, fee, ts, coid in con.execute(
            "SELECT seq, fill_id, kind, symbol, side, qty, price, commission, ts, client_order_id FROM sim_fills"
            " WHERE account = ? ORDER BY seq", [name]).fetchall()
    )
    columns = ORDER_COLUMNS[1:]
    for values in con.execute(f"SELECT {', '.join(columns)} FROM sim_orders WHERE account = ?", [name]).fetchall():
        rec = dict(zip(columns, values))
        for key, kind in _ENUMS.items():
            rec[key] = kind(rec[key])
        for key in _TIMES:
            rec[key] = _opt_utc(rec[key])
        rec["created_at"], rec["updated_at"] = as_utc(rec["created_at"]), as_utc(rec["updated_at"])
        rec["triggered"] = bool(rec["triggered"])
        state.orders.index(SimOrder(**rec))
    for symbol, ts, price, vix in con.execute(
            "SELECT symbol, ts, price, vix FROM sim_marks WHERE account = ?", [name]).fetchall():
        state.marks[symbol] = Mark(as_utc(ts), price, vix)
    return state


def _order_row(name: str, o: SimOrder) -> tuple:
    return (name, o.id, o.client_order_id, o.run_id, o.symbol, o.asset_class, o.side.value, o.order_type.value,
            o.time_in_force.value, o.order_class.value, o.leg_role, o.parent_id, o.qty, o.filled_qty,
            o.filled_avg_price, o.limit_price, o.stop_price, o.status.value, o.triggered, o.eligible_after,
            o.expires_at, o.created_at, o.updated_at, o.filled_at, o.canceled_at, o.expired_at, o.replaced_by,
            o.replaces)


def _write_orders(con, name: str, rows: list[tuple]) -> None:
    """Insert the new orders in one statement and update the stored ones row by row.

    What one INSERT OR REPLACE of every row would write, at under half its cost: a
    replace on ``sim_orders`` (a primary key and a second index) costs ~10 ms for a
    handful of rows, an INSERT ~4 ms; a replayed day's orders are nearly all new."""
    ids = [row[1] for row in rows]
    stored = {r[0] for r in con.execute(
        f"SELECT id FROM sim_orders WHERE account = ? AND id IN ({', '.join('?' for _ in ids)})",
        [name, *ids]).fetchall()}
    insert_rows(con, "sim_orders", ORDER_COLUMNS, [row for row in rows if row[1] not in stored])
    for row in rows:
        if row[1] in stored:
            upsert_row(con, "sim_orders", ORDER_COLUMNS, row, key=ORDER_COLUMNS[:2], update=ORDER_COLUMNS[2:])


def persist(con, state: SimState) -> None:
    """Write what changed (and the account row, with the next version)."""
    account, name = state.account, state.account.name
    state.version += 1
    # One row each (the account; the marks, one per underlying): an UPDATE, or an INSERT
    # when the row is not there yet, costs a quarter of an INSERT OR REPLACE (``upsert_row``).
    upsert_row(con, "sim_accounts", ACCOUNT_COLUMNS,
               (name, account.initial_cash, account.last_equity, account.last_equity_day, account.market_time,
                account.trading_blocked, state.version, account.created_at, datetime.now(timezone.utc)),
               key=ACCOUNT_COLUMNS[:1], update=ACCOUNT_COLUMNS[1:])
    if state.orders.dirty:
        _write_orders(con, name, [_order_row(name, state.orders.by_id[i]) for i in sorted(state.orders.dirty)])
    if account.new_fills:
        insert_rows(con, "sim_fills", FILL_COLUMNS, [tuple(f[c] for c in FILL_COLUMNS) for f in account.new_fills])
    if state.marks_dirty:  # marks are never removed: an upsert is enough
        for symbol, m in state.marks.items():
            upsert_row(con, "sim_marks", MARK_COLUMNS, (name, symbol, m.ts, m.price, m.vix),
                       key=MARK_COLUMNS[:2], update=MARK_COLUMNS[2:])
    state.orders.dirty.clear()
    account.new_fills.clear()
    state.marks_dirty = account.dirty = False


def delete_account(con, name: str) -> None:
    for table in TABLES:
        con.execute(f"DELETE FROM {table} WHERE account = ?", [name])


class ConcurrentAccountUpdate(BrokerError):
    """Another process wrote the account while this one held it in a ``batch()``."""


class StoredAccount:
    """An account held in memory and kept in step with its ``sim_*`` rows.

    Each call (``_session``) is one ``store.transaction()``: reload if another process
    wrote the account since (its version moved), run, write what changed. ``batch()``
    keeps the account in memory across calls and writes once at the end. Subclasses set
    ``account``, ``store``, ``config`` and ``now``, then call ``_open_account()``.
    """

    def _open_account(self) -> None:
        self._lock = threading.RLock()
        self._batch_depth = 0
        self._batch_thread: int | None = None  # the thread whose batch() holds the lock
        self._session_depth = 0
        self._adopt(SimState(self.account, self.config.initial_cash, self.now), version=-1)
        with self._session(write=True):
            pass

    def _adopt(self, state: SimState, version: int | None = None) -> None:
        if version is not None:
            state.version = version
        self._state = state

    def _load(self, con) -> None:
        self._adopt(load(con, self.account, self.config.initial_cash, self.now))

    def _start_fresh(self, con, initial_cash: float) -> None:
        self._adopt(SimState(self.account, initial_cash, self.now))
        self._state.account.dirty = True
        persist(con, self._state)

    def _sync(self, con) -> None:
        stored = stored_version(con, self.account)
        if stored is None:
            self._start_fresh(con, self.config.initial_cash)
        elif stored != self._state.version:
            self._load(con)

    def _session(self, write: bool) -> ContextManager[None]:
        """One broker call (``_call``); inside this thread's own ``batch()`` there is nothing
        to load or write, and this thread already holds the lock, so nothing at all to do."""
        if self._batch_depth and self._batch_thread == threading.get_ident():
            return _NOTHING
        return self._call(write)

    @contextmanager
    def _call(self, write: bool) -> Iterator[None]:
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
                        if self._state.has_changes:
                            self._load(con)
                        raise
                    if write and self._state.has_changes:
                        persist(con, self._state)
            finally:
                self._session_depth -= 1

    @contextmanager
    def batch(self) -> Iterator["StoredAccount"]:
        """Keep the account in memory until the block ends, then write it once.

        For replays: the process must be the account's only writer meanwhile; if another
        process wrote it, the final write refuses (``ConcurrentAccountUpdate``) rather
        than overwrite what that process did.
        """
        with self._lock:
            if self._batch_depth == 0:
                with self.store.transaction() as con:
                    self._sync(con)
                self._batch_thread = threading.get_ident()
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
            if not self._state.has_changes:
                return
            with self.store.transaction() as con:
                stored = stored_version(con, self.account)
                if stored is not None and stored != self._state.version:
                    self._load(con)
                    raise ConcurrentAccountUpdate(
                        f"account {self.account!r} was changed by another process during a batch "
                        f"(version {stored}, expected {self._state.version}); this batch's changes were dropped"
                    )
                persist(con, self._state)

    def reset(self, initial_cash: float | None = None) -> None:
        """Start the account afresh: all its orders, fills and marks are deleted."""
        cash = require_price("initial_cash", initial_cash) if initial_cash is not None else self.config.initial_cash
        with self._lock:
            if self._batch_depth:
                raise RuntimeError("reset() inside batch() is not allowed")
            with self.store.transaction() as con:
                delete_account(con, self.account)
                self.config = replace(self.config, initial_cash=cash)
                self._start_fresh(con, cash)
