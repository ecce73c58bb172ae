"""Risk state in DuckDB, shared by every process that trades or watches an account.

The warmup run, the session run, the monitor and a restarted session are separate
processes; the risk state (start-of-day equity, today's P&L, the loss streak, the equity
peak, a halt) and the kill switch must be the same for all of them, so DuckDB is the
source of truth (tables from migrations 0200-0202).

Reading DuckDB costs ~20 ms per connection, far too much for a check on every bar of a
replayed day. So writers of the state that must be seen at once (a halt, a cleared halt,
a kill-switch change, a new day, a recorded trade) also replace a small *signal file*
beside the database (``<db>.risk-signal``) after their transaction commits. Readers stat
that file (microseconds) and re-read DuckDB only when it changed, or when their copy is
older than ``max_age_s`` (a safety net for a writer that bypasses this module, e.g. SQL
typed by hand). A change made through this module is therefore seen by every other
process on its very next check.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Callable

import duckdb

from tradenova_dagster.store import Store, insert_rows, upsert_row

# Comparisons of ratios against limits tolerate this much floating-point noise, so that a
# loss of exactly 2.00% computed as 0.019999999999999997 still counts as 2.00%.
EPS = 1e-9

Stamp = tuple[int, int, int] | None


class ChangeSignal:
    """A file whose identity changes whenever shared risk state changes.

    ``touch`` writes a fresh file and renames it into place, so every change gives a new
    (inode, mtime, size) stamp; the stamp of our own write is taken from the file we
    wrote, so a concurrent writer's change is never mistaken for ours.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def for_store(cls, store: Store) -> "ChangeSignal":
        return cls(store.path.with_name(store.path.name + ".risk-signal"))

    def stamp(self) -> Stamp:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def touch(self) -> Stamp:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".")
        try:
            os.write(fd, uuid.uuid4().hex.encode())
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)


class SignalWatch:
    """Decides when a cached copy of shared state must be re-read from DuckDB.

    Usage: ``if watch.needs_reload(): stamp = watch.stamp_before_read(); <read>; watch.loaded(stamp)``.
    The stamp is taken *before* the read, so a write landing during the read leaves the
    watch stale and the next check reads again.
    """

    def __init__(self, signal: ChangeSignal, max_age_s: float | None):
        if max_age_s is not None and (not math.isfinite(max_age_s) or max_age_s < 0):
            raise ValueError(f"max_age_s must be a finite number >= 0 or None, got {max_age_s!r}")
        self.signal = signal
        self.max_age_s = max_age_s
        self._seen: Stamp = None
        self._loaded_at: float | None = None

    def needs_reload(self) -> bool:
        if self._loaded_at is None:
            return True
        if self.max_age_s is not None and time.monotonic() - self._loaded_at >= self.max_age_s:
            return True
        return self.signal.stamp() != self._seen

    def stamp_before_read(self) -> Stamp:
        return self.signal.stamp()

    def loaded(self, stamp: Stamp) -> None:
        self._seen = stamp
        self._loaded_at = time.monotonic()

    def invalidate(self) -> None:
        self._loaded_at = None


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class RiskEvent:
    """A refusal, a halt or a cleared halt: the rule, the values it compared, and why."""

    account: str
    ts: datetime
    kind: str  # refusal | halt | clear
    rule: str
    reason: str
    values: dict = field(default_factory=dict)
    symbol: str | None = None
    run_id: str | None = None


_EVENT_COLUMNS = ("account", "run_id", "ts", "kind", "rule", "symbol", "values_json", "reason")


def insert_events(con: duckdb.DuckDBPyConnection, events: list[RiskEvent]) -> None:
    """Write events in one statement (a replayed day refuses on many bars: one row each)."""
    insert_rows(con, "risk_events", _EVENT_COLUMNS, [
        (e.account, e.run_id, e.ts, e.kind, e.rule, e.symbol, json.dumps(e.values, sort_keys=True), e.reason)
        for e in events
    ])


# --------------------------------------------------------------------------- risk state


@dataclass
class RiskState:
    """One account's risk state. Equity is derived, see ``equity``."""

    account: str
    day: date | None
    start_of_day_equity: float
    realized_pnl: float = 0.0
    unrealized: dict[str, float] = field(default_factory=dict)
    broker_equity: float | None = None
    peak_equity: float = 0.0
    trades_today: int = 0
    loss_streak: int = 0
    halted: bool = False
    halt_rule: str | None = None
    halt_scope: str | None = None
    halt_reason: str | None = None
    halted_at: datetime | None = None
    streak_after: int = 0  # following a ledger: the day's round trips before this one do not count

    def copy(self) -> "RiskState":
        return replace(self, unrealized=dict(self.unrealized))

    @property
    def unrealized_pnl(self) -> float:
        return float(sum(self.unrealized.values()))

    @property
    def ledger_equity(self) -> float:
        """Start-of-day equity + today's realised P&L + the latest unrealised P&L."""
        return self.start_of_day_equity + self.realized_pnl + self.unrealized_pnl

    @property
    def equity(self) -> float:
        """The lower of the ledger's equity and the broker's last report (if any).

        The ledger works with no broker at all (backtests, the seed's usage); the broker's
        figure catches losses the ledger never heard of (fees, a fill recorded by a
        process that crashed). Neither adds to the other, so nothing is counted twice, and
        taking the lower one means a stale figure errs on the side of caution.
        """
        if self.broker_equity is None:
            return self.ledger_equity
        return min(self.ledger_equity, self.broker_equity)

    @property
    def daily_pnl(self) -> float:
        return self.equity - self.start_of_day_equity

    @property
    def daily_loss_pct(self) -> float:
        return max(0.0, -self.daily_pnl) / self.start_of_day_equity

    @property
    def drawdown_pct(self) -> float:
        if self.peak_equity <= 0:
            return 0.0
        return max(0.0, self.peak_equity - self.equity) / self.peak_equity


_STATE_COLUMNS = (
    "account", "day", "start_of_day_equity", "realized_pnl", "unrealized_json", "unrealized_pnl", "broker_equity",
    "peak_equity", "trades_today", "loss_streak", "halted", "halt_rule", "halt_scope", "halt_reason", "halted_at",
    "streak_after",
)


def load_state(con: duckdb.DuckDBPyConnection, account: str) -> RiskState | None:
    row = con.execute(f"SELECT {', '.join(_STATE_COLUMNS)} FROM risk_state WHERE account = ?", [account]).fetchone()
    if row is None:
        return None
    (acct, day, sod, realized, unrealized_json, _total, broker, peak, trades, streak, halted, rule, scope,
     reason, halted_at, streak_after) = row
    return RiskState(
        account=acct,
        day=day,
        start_of_day_equity=float(sod),
        realized_pnl=float(realized),
        unrealized={k: float(v) for k, v in json.loads(unrealized_json).items()},
        broker_equity=None if broker is None else float(broker),
        peak_equity=float(peak),
        trades_today=int(trades),
        loss_streak=int(streak),
        halted=bool(halted),
        halt_rule=rule,
        halt_scope=scope,
        halt_reason=reason,
        halted_at=halted_at,
        streak_after=int(streak_after or 0),
    )


def save_state(con: duckdb.DuckDBPyConnection, state: RiskState, now: datetime) -> None:
    """Write the whole row (callers hold a transaction and merged the row first)."""
    row = (
        state.account, state.day, state.start_of_day_equity, state.realized_pnl,
        json.dumps(state.unrealized, sort_keys=True), state.unrealized_pnl, state.broker_equity,
        state.peak_equity, state.trades_today, state.loss_streak, state.halted, state.halt_rule,
        state.halt_scope, state.halt_reason, state.halted_at, state.streak_after, now,
    )
    columns = (*_STATE_COLUMNS, "updated_at")
    upsert_row(con, "risk_state", columns, row, key=("account",), update=columns[1:])


def save_marks(con: duckdb.DuckDBPyConnection, state: RiskState, now: datetime) -> None:
    """Write only the mark-to-market columns, and only onto the same day's row.

    Marks are batched (they change every bar), so by the time they are written another
    process may have halted the account or started a new day; this update leaves those
    ledger columns alone, and the peak only ever goes up.
    """
    con.execute(
        "UPDATE risk_state SET unrealized_json = ?, unrealized_pnl = ?, broker_equity = ?,"
        " peak_equity = greatest(peak_equity, ?), updated_at = ?"
        " WHERE account = ? AND day IS NOT DISTINCT FROM ?",
        [
            json.dumps(state.unrealized, sort_keys=True), state.unrealized_pnl, state.broker_equity,
            state.peak_equity, now, state.account, state.day,
        ],
    )


# --------------------------------------------------------------------------- profit ladder


@dataclass
class LadderPosition:
    """One position under the take-profit ladder (see ``profit.py``). ``entry_price`` and
    the quantities are the ledger's when the ladder follows one (read, never stored)."""

    symbol: str
    side: str  # long | short
    entry_price: float
    initial_qty: int
    remaining_qty: int
    fired: tuple[str, ...]
    best_price: float  # most favourable price since entry
    trail_armed: bool
    opened_at: datetime | None
    position_id: str = ""  # the ledger's id of the holding ("" without a ledger)

    @property
    def sign(self) -> int:
        return 1 if self.side == "long" else -1

    def gain(self, price: float) -> float:
        """Profit as a fraction of the entry price: +0.40 = +40% (premium up, for a long option)."""
        return self.sign * (price - self.entry_price) / self.entry_price


@dataclass(frozen=True)
class LadderState:
    """What the ladder itself knows of a position, and all it stores (``ladder_state``)."""

    position_id: str
    symbol: str
    fired: tuple[str, ...]
    best_price: float
    trail_armed: bool


def load_ladder_states(con: duckdb.DuckDBPyConnection, account: str) -> dict[str, LadderState]:
    rows = con.execute("SELECT position_id, symbol, fired_levels, best_price, trail_armed FROM ladder_state"
                       " WHERE account = ?", [account]).fetchall()
    return {pid: LadderState(pid, sym, tuple(json.loads(fired)), float(best), bool(armed))
            for pid, sym, fired, best, armed in rows}


def save_ladder_state(con: duckdb.DuckDBPyConnection, account: str, state: LadderState, now: datetime,
                      run_id: str | None) -> None:
    con.execute(
        "INSERT INTO ladder_state (account, position_id, symbol, fired_levels, best_price, trail_armed,"
        " updated_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account, position_id) DO UPDATE SET"
        " fired_levels = excluded.fired_levels, best_price = excluded.best_price,"
        " trail_armed = excluded.trail_armed, updated_at = excluded.updated_at, run_id = excluded.run_id",
        [account, state.position_id, state.symbol, json.dumps(list(state.fired)), state.best_price,
         state.trail_armed, now, run_id],
    )


def delete_ladder_states(con: duckdb.DuckDBPyConnection, account: str, position_ids) -> None:
    for pid in position_ids:
        con.execute("DELETE FROM ladder_state WHERE account = ? AND position_id = ?", [account, pid])


# --------------------------------------------------------------------------- helpers


class FlushTimer:
    """Says when batched writes are due: every ``interval_s`` seconds of wall time."""

    def __init__(self, interval_s: float):
        if not math.isfinite(interval_s) or interval_s < 0:
            raise ValueError(f"flush_interval_s must be a finite number >= 0, got {interval_s!r}")
        self.interval_s = interval_s
        self._last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.interval_s

    def reset(self) -> None:
        self._last = time.monotonic()


Clock = Callable[[], datetime]
