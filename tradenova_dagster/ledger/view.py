"""The ledger view: what an account's ledger says it holds, readable while a run holds it.

A session holds its account's ledger file open for the whole day (DESIGN.md §2, §5), and
DuckDB lets no other process read a file that one process holds. So the lease holder
publishes a small **view** of the ledger beside it, ``<ledger>.view.json``, replaced
atomically (a temporary file, then ``os.replace``) every bar: the book's cash and
positions and the ledger's open orders. Whoever wants to compare the ledger with the
broker (the ``live_account`` asset's check, people) reads that view while the account is
held, and the ledger file itself when nobody holds it.

- ``write_view(account, book, open_orders, ts)``: publish (the lease holder only; the
  session calls it after each bar's commit). ``ts`` is the time the view is as of (the
  bar's end, simulated time in a replay); ``written_at`` records the wall clock, so a
  view left by an earlier run is never taken for the current holder's.
- ``read_view(account)``: the published view as a dict, None when none was published;
  a file that is not a view raises ValueError naming it.
- ``current_view(account)``: the view to trust now: the holder's published view while a
  run holds the account (None until the holder has published one), else a view built
  from the ledger file, read only (``ledger_view``).
- ``differences(positions, open_orders, view)``: where a broker's positions and open
  orders differ from a view (one row per symbol or order), empty when they agree.

A view's ``cash`` is the ledger's cash: the money the fills moved (the ledger keeps no
deposit, so an account that bought for 500 and sold for 600 shows 100). Positions and
open orders are the facts to compare with a broker.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from tradenova_dagster.ledger.accounts import ledger_path, ledger_store, require_account
from tradenova_dagster.ledger.lease import lease_holder

__all__ = ["VIEW_VERSION", "current_view", "differences", "ledger_view", "read_view", "view_path", "write_view"]

VIEW_VERSION = 1
SOURCE_PUBLISHED = "published"  # ``source`` of a view: written by the lease holder
SOURCE_LEDGER = "ledger"  # built from the ledger file while nobody held it
LEDGER_LOCK_TIMEOUT_S = 10.0  # how long current_view waits for the ledger file's lock


def view_path(account: str) -> Path:
    """``<ledger path>.view.json`` (a sub-account shares its parent's file, as it shares the
    ledger; the view names the account it describes)."""
    path = ledger_path(require_account(account))
    return path.with_name(path.name + ".view.json")


def _value(x: Any) -> Any:
    return getattr(x, "value", x)  # an enum (Side, OrderStatus) as its string


def _iso(ts: Any) -> str | None:
    if ts is None:
        return None
    return ts.isoformat() if hasattr(ts, "isoformat") else str(ts)


def _content(account: str, book, open_orders: Iterable, ts: Any) -> dict:
    positions = sorted(book.positions.values(), key=lambda p: p.symbol)
    orders = sorted(open_orders, key=lambda o: o.client_order_id)
    return {
        "version": VIEW_VERSION,
        "account": account,
        "ts": _iso(ts),
        "cash": float(book.cash),
        "positions": [{"symbol": p.symbol, "qty": float(p.qty), "avg_entry_price": float(p.avg_entry_price)}
                      for p in positions if p.qty > 1e-9],
        "open_orders": [{"client_order_id": o.client_order_id, "symbol": o.symbol, "side": _value(o.side),
                         "qty": float(o.qty), "filled_qty": float(o.filled_qty or 0.0), "status": _value(o.status)}
                        for o in orders],
    }


def write_view(account: str, book, open_orders: Iterable, ts: Any) -> Path:
    """Publish ``account``'s view: ``book`` (``ledger.Book``: cash, positions), its
    ``open_orders`` (``LedgerOrder``s) as of ``ts``. Atomic: a reader sees the previous
    view or this one, never part of one. Returns the file's path."""
    account = require_account(account)
    view = {**_content(account, book, open_orders, ts),
            "written_at": datetime.now(timezone.utc).isoformat(), "pid": os.getpid(), "host": socket.gethostname()}
    path = view_path(account)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(view))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_view(account: str) -> dict | None:
    """The view published for ``account`` (None: none published, or the file describes
    another account of the same ledger file). ValueError if the file is not a view."""
    account = require_account(account)
    path = view_path(account)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        view = json.loads(text)
        if not isinstance(view, dict) or not {"account", "positions", "open_orders"} <= set(view):
            raise ValueError("missing account, positions or open_orders")
    except ValueError as exc:
        raise ValueError(f"{path} is not a ledger view ({exc}); the lease holder rewrites it every bar") from None
    if view["account"] != account:
        return None
    return {**view, "source": SOURCE_PUBLISHED}


def ledger_view(account: str, store=None, lock_timeout_s: float = LEDGER_LOCK_TIMEOUT_S) -> dict:
    """The view built from the ledger itself (``store``: the ledger's Store, default the
    account's file). Reads only; an account with no ledger file yet has an empty view and
    no file is created. The caller must be the lease holder or know that nobody holds it:
    a held file cannot be opened (the wait ends in ``filelock.Timeout``)."""
    from tradenova_dagster.ledger.account import AccountLedger

    account = require_account(account)
    if store is None:
        if not ledger_path(account).exists():
            return {"version": VIEW_VERSION, "account": account, "ts": None, "cash": 0.0, "positions": [],
                    "open_orders": [], "source": SOURCE_LEDGER}
        store = ledger_store(account, lock_timeout_s=lock_timeout_s)
    ledger = AccountLedger(store, account)
    return {**_content(account, ledger.book, ledger.open_orders(), datetime.now(timezone.utc)), "source": SOURCE_LEDGER}


def _published_by(view: dict | None, holder) -> dict | None:
    """``view`` if the current ``holder`` wrote it (not an earlier run), else None."""
    if view is None:
        return None
    try:
        written = datetime.fromisoformat(view.get("written_at") or "")
        since = datetime.fromisoformat(holder.since)
    except (TypeError, ValueError):
        return None
    return {**view, "holder": holder.describe()} if written >= since else None


def current_view(account: str, lock_timeout_s: float = LEDGER_LOCK_TIMEOUT_S) -> dict | None:
    """The ledger's view now: while a run holds ``account``'s lease, the view it published
    (None until it has published one; the ledger file is not touched); otherwise a view
    built from the ledger file (``ledger_view``). ``source`` says which."""
    from filelock import Timeout

    account = require_account(account)
    holder = lease_holder(account)
    if holder is not None:
        return _published_by(read_view(account), holder)
    try:
        return ledger_view(account, lock_timeout_s=lock_timeout_s)
    except Timeout:
        holder = lease_holder(account)  # taken between the look and the open
        if holder is not None:
            return _published_by(read_view(account), holder)
        raise


def _fmt_order(o: dict) -> str:
    return f"{o['side']} {o['qty']:g} {o['symbol']}, filled {o['filled_qty']:g}"


def differences(positions: Iterable, open_orders: Iterable, view: dict, eps: float = 1e-9) -> list[dict]:
    """Where the broker (its ``positions``: ``domain.Position``s, and ``open_orders``:
    ``domain.Order``s) differs from ``view``: one row per symbol whose quantity differs
    and per open order that one side lacks or that differs in symbol, side, quantity or
    filled quantity. Bracket and OCO legs (``parent_id`` set) are the broker's own and are
    left out; an order's status is not compared (new and accepted are both open).
    Each row: ``what`` (position | open order), ``symbol``, ``client_order_id``,
    ``broker``, ``ledger``."""
    rows: list[dict] = []
    broker_qty: dict[str, float] = {}
    for p in positions:
        broker_qty[p.symbol] = broker_qty.get(p.symbol, 0.0) + float(p.qty)
    ledger_qty = {p["symbol"]: float(p["qty"]) for p in view.get("positions", [])}
    for symbol in sorted(set(broker_qty) | set(ledger_qty)):
        b, led = broker_qty.get(symbol, 0.0), ledger_qty.get(symbol, 0.0)
        if abs(b - led) > eps:
            rows.append({"what": "position", "symbol": symbol, "client_order_id": "",
                         "broker": f"qty {b:g}" if symbol in broker_qty else "none",
                         "ledger": f"qty {led:g}" if symbol in ledger_qty else "none"})
    broker_orders = {o.client_order_id: {"symbol": o.symbol, "side": _value(o.side), "qty": float(o.qty),
                                         "filled_qty": float(o.filled_qty or 0.0)}
                     for o in open_orders if getattr(o, "parent_id", None) is None}
    ledger_orders = {o["client_order_id"]: o for o in view.get("open_orders", [])}
    for coid in sorted(set(broker_orders) | set(ledger_orders)):
        b, led = broker_orders.get(coid), ledger_orders.get(coid)
        if b is not None and led is not None:
            fields = [k for k in ("symbol", "side") if b[k] != led[k]]
            fields += [k for k in ("qty", "filled_qty") if abs(b[k] - float(led[k])) > eps]
            if not fields:
                continue
        rows.append({"what": "open order", "symbol": (b or led)["symbol"], "client_order_id": coid,
                     "broker": _fmt_order(b) if b else "not open", "ledger": _fmt_order(led) if led else "not open"})
    return rows
