"""Account names and where each account's ledger lives (DESIGN.md §2, §5).

Every account (``sim:default``, ``backtest:<id>``, ``paper:<name>``, ...) has a DuckDB file
of its own, ``$TRADENOVA_HOME/ledgers/<name>.duckdb`` with ``:`` written as ``+``
(``sim+default.duckdb``): its orders, fills, risk state, ladder, equity, predictions,
decisions and session records. DuckDB admits one writing process per file, so one file
per account lets two accounts (two backtests, a backtest beside the paper session) run in
two processes at once; within an account the lease (``lease.py``) makes sure only one run
writes. ``tradenova.duckdb`` keeps what every account shares: market data, market
context, models and the kill switch.

Every file carries the same schema (one list of migrations); what a file holds is
decided by its role. A home written before ledgers were split (account rows inside
``tradenova.duckdb``) is moved once, automatically, by ``split_legacy_ledgers``.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from tradenova_dagster import config
from tradenova_dagster.store import Store

# <kind>:<id>: sim:default, backtest:2024-q1, alpaca_paper:PA123, backtest:abc:2023-01-03.
_ACCOUNT = re.compile(r"^[a-z][a-z0-9_]*:[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$")
GLOBAL = "*"  # the kill switch's scope for every account

# The tables whose rows belong to one account (every one has an ``account`` column).
ACCOUNT_TABLES = (
    "sim_accounts", "sim_orders", "sim_fills", "sim_marks", "risk_state", "risk_events", "ladder_state",
    "orders", "fills", "trades", "equity_curve", "rl_predictions", "agent_decisions", "session_events",
    "session_bars",
)
KEYLESS_TABLES = ("risk_events", "agent_decisions", "session_events")  # no unique key to skip copies by


def require_account(value, field_name: str = "account", allow_global: bool = False) -> str:
    """An account name ``<kind>:<id>`` (or ``'*'`` where ``allow_global``), else a
    ValueError naming the field and the value. The one definition every part uses."""
    if allow_global and value == GLOBAL:
        return value
    if not isinstance(value, str) or not _ACCOUNT.match(value):
        raise ValueError(f"{field_name}: {value!r} is not an account name of the form <kind>:<id> "
                         "(e.g. 'sim:default', 'backtest:2024-01-05', 'alpaca_paper:PA123')")
    return value


def ledger_path(account: str) -> Path:
    """The account's ledger file. A sub-account (``backtest:<id>:<day>``, the simulated
    broker of one replayed day) lives in its parent's file: the first two parts name it."""
    account = require_account(account)
    owner = ":".join(account.split(":")[:2])
    return config.ledgers_dir() / (owner.replace(":", "+") + ".duckdb")


def ledger_store(account: str, lock_timeout_s: float = 120.0) -> Store:
    """The account's ledger as a Store (created and migrated on first use)."""
    return Store(ledger_path(account), lock_timeout_s=lock_timeout_s)


def clear_account(store: Store, account: str) -> int:
    """Delete every row of ``account`` in its ledger (one transaction): a backtest started
    again under the same id replaces the old one instead of continuing from it. Returns
    the number of rows deleted."""
    account = require_account(account)
    with store.transaction() as con:
        return sum(con.execute(f"DELETE FROM {table} WHERE account = ?", [account]).fetchone()[0]
                   for table in ACCOUNT_TABLES)


def ledger_accounts() -> list[str]:
    """The accounts that have a ledger file in this home, sorted."""
    return sorted(p.stem.replace("+", ":") for p in config.ledgers_dir().glob("*.duckdb"))


def split_legacy_ledgers(shared: Store) -> dict[str, int]:
    """Move account rows left in the shared database by an older TradeNova into each
    account's ledger file, once; returns the rows moved per account.

    DuckDB writes one database per transaction, so each account moves in two steps: copy
    into the ledger (rows it already has are skipped: by their keys, and for the tables
    without one, row for row with ``EXCEPT ALL``), then delete from the shared file. A move
    interrupted between the two repeats cleanly: the copy adds nothing twice.
    """
    with shared.connect() as con:
        present = [t for t in ACCOUNT_TABLES if con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ? "
            "AND table_type = 'BASE TABLE'", [t]).fetchone()[0]]
        accounts = sorted({r[0] for t in present for r in con.execute(f"SELECT DISTINCT account FROM {t}").fetchall()})
    moved: dict[str, int] = {}
    for account in accounts:
        try:
            target = ledger_path(account)
        except ValueError:
            continue  # a name this version cannot file: it stays where it is, untouched
        Store(target)  # create and migrate the ledger file before attaching it
        with shared.connect() as con:
            con.execute(f"ATTACH '{target}' AS ledger")
            try:
                count = 0
                con.execute("BEGIN TRANSACTION")
                for table in present:
                    rows = con.execute(f"SELECT count(*) FROM main.{table} WHERE account = ?", [account]).fetchone()[0]
                    if rows:
                        ignore = "" if table in KEYLESS_TABLES else "OR IGNORE "
                        con.execute(f"INSERT {ignore}INTO ledger.{table} SELECT * FROM main.{table} WHERE account = ? "
                                    f"EXCEPT ALL SELECT * FROM ledger.{table} WHERE account = ?", [account, account])
                        count += rows
                con.execute("COMMIT")
                con.execute("BEGIN TRANSACTION")
                for table in present:
                    con.execute(f"DELETE FROM main.{table} WHERE account = ?", [account])
                con.execute("COMMIT")
            except BaseException:
                try:
                    con.execute("ROLLBACK")
                except duckdb.Error:
                    pass  # the error came between the two transactions: nothing to roll back
                raise
            finally:
                con.execute("DETACH ledger")
        if count:
            moved[account] = count
    return moved


_SPLIT_CHECKED: set[Path] = set()


def shared_store(db_path: str | Path | None = None) -> Store:
    """The shared database (``$TRADENOVA_HOME/tradenova.duckdb`` unless ``db_path``); the
    first open in a process moves any account rows an older TradeNova left in it."""
    store = Store(db_path)
    if store.path not in _SPLIT_CHECKED:
        split_legacy_ledgers(store)
        _SPLIT_CHECKED.add(store.path)
    return store
