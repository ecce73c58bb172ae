"""The account's records beside its orders and fills: round trips (``trades``), the equity
curve, the signal's predictions and the agent's decisions (DESIGN.md §5).

They are written into the account's ledger file, each row tagged with the account and the
run that wrote it, and keyed so that a replayed bar cannot add a second copy (a trade by
the id of the fill that closed it; equity and predictions by (account, bar)). Orders and
fills have their own writer (``account.AccountLedger``); positions, cash and P&L are
never recorded here, they are folded from fills.

Writes are short transactions, or join the session's unit of work. A hot loop (a session
replay writes several rows per bar) wraps its writes in ``with records.batch(): ...``:
rows are validated on the call, buffered (as tuples in column order), and committed
together in one transaction. A :class:`~tradenova_dagster.domain.Signal` was validated
when it was built, so ``log_signal`` stores its fields without checking them again.
``metrics.MetricsTracker`` reads these tables (it inherits the writers for the seed's
``record_trade``).
"""

from __future__ import annotations

import re
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator

import pandas as pd

from tradenova_dagster.domain import (
    Decision,
    OptionContract,
    Side,
    Signal,
    position_side,
    require_finite,
    require_non_negative,
    require_price,
    require_probabilities,
    require_quantity,
    require_symbol,
)
from tradenova_dagster.ledger.accounts import require_account
from tradenova_dagster.market import calendar
from tradenova_dagster.store import Store, insert_rows

# Agent names end up in tables, chart labels and file names: a short identifier.
_AGENT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:\-]{0,63}$")
_MAX_TEXT = 500

_COLUMNS: dict[str, tuple[str, ...]] = {
    "trades": (
        "trade_id", "account", "run_id", "day", "symbol", "contract", "side", "qty",
        "entry_time", "exit_time", "entry_price", "exit_price", "pnl", "commission", "agent",
        "exit_reason",
    ),
    "equity_curve": ("account", "run_id", "ts", "day", "equity", "cash", "positions_value"),
    "rl_predictions": (
        "account", "run_id", "ts", "day", "model", "symbol", "raw_action", "smoothed_action",
        "decision", "p_put", "p_flat", "p_call",
    ),
    "agent_decisions": (
        "account", "run_id", "ts", "day", "agent", "symbol", "signal", "allowed", "reason",
        "risk_level",
    ),
    # The bars a session acted on (the restart point); buffered with the bar's other rows
    # so that a replayed day writes them in one statement, not one INSERT per bar.
    "session_bars": (
        "account", "day", "bar_ts", "run_id", "position_direction", "position_pnl", "position_bars",
    ),
}

# What a replayed day replaces (``clear_day``): every record of the day, the ledger's too.
DAY_TABLES = ("fills", "orders", *_COLUMNS)  # session_bars is one of _COLUMNS


def require_agent(value: Any, field_name: str = "agent") -> str:
    """An agent name: a letter, then up to 63 letters, digits, '_', '.', ':' or '-'."""
    if not isinstance(value, str) or not _AGENT_RE.match(value):
        raise ValueError(
            f"{field_name}: {value!r} is not a valid agent name (a letter, then up to 63 "
            "letters, digits, '_', '.', ':' or '-'; e.g. 'ppo', 'grpo', 'ppo:v2')"
        )
    return value


def _optional_text(field_name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field_name} must be a string, got {value!r}")
    if len(value) > _MAX_TEXT:
        raise ValueError(f"{field_name} is {len(value)} characters; at most {_MAX_TEXT} allowed")
    return value


def _require_text(field_name: str, value: Any) -> str:
    text = _optional_text(field_name, value)
    if text is None or not text.strip():
        raise ValueError(f"{field_name} must be a non-empty string, got {value!r}")
    return text


def _utc(field_name: str, value: Any, default: pd.Timestamp | None = None) -> pd.Timestamp:
    """A timezone-aware instant as a UTC Timestamp; None gives ``default`` (or now)."""
    if value is None:
        return default if default is not None else pd.Timestamp.now(tz="UTC")
    if isinstance(value, datetime) and value.tzinfo is timezone.utc:  # what the session passes: no conversion
        return value if isinstance(value, pd.Timestamp) else pd.Timestamp(value)
    if not isinstance(value, (datetime, pd.Timestamp, str)):
        raise ValueError(f"{field_name} must be a timezone-aware datetime, got {value!r}")
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ValueError(f"{field_name}: {value!r} is not a date and time") from None
    if ts is pd.NaT or pd.isna(ts):
        raise ValueError(f"{field_name} must be a timezone-aware datetime, got {value!r}")
    if ts.tzinfo is None:
        raise ValueError(f"{field_name} must be timezone-aware, got naive {value!r}")
    return ts.tz_convert("UTC")


def _instant(field_name: str, value: Any) -> datetime:
    """``_utc`` for a stored row's time: a UTC datetime (the session's bar times) is kept as
    it is, not wrapped in a pandas Timestamp per row; DuckDB stores the same instant from
    either. Anything else goes through ``_utc`` (None: now)."""
    if isinstance(value, datetime) and value.tzinfo is timezone.utc:
        return value
    return _utc(field_name, value)


# The New York day last asked for, and its bounds [midnight, next midnight) in UTC, as
# Timestamps and as datetimes: the rows of a replayed day all fall in it, so each costs two
# comparisons with bounds of its own kind (a Timestamp against a datetime costs ~10x more)
# instead of a time-zone conversion.
_LAST_DAY: tuple[date, pd.Timestamp, pd.Timestamp, datetime, datetime] | None = None


def _session_day(ts: datetime) -> date:
    """The New York date of the timezone-aware instant ``ts`` (a datetime or a Timestamp)."""
    global _LAST_DAY
    last = _LAST_DAY
    if last is not None:
        if isinstance(ts, pd.Timestamp):
            if last[1] <= ts < last[2]:
                return last[0]
        elif last[3] <= ts < last[4]:
            return last[0]
    day = calendar.as_date(ts)
    # Midnight always exists in New York (clocks change at 2 am), so the day is [midnight, next midnight).
    start = pd.Timestamp(day, tz=calendar.NEW_YORK).tz_convert("UTC")
    end = pd.Timestamp(day + timedelta(days=1), tz=calendar.NEW_YORK).tz_convert("UTC")
    _LAST_DAY = (day, start, end, start.to_pydatetime(), end.to_pydatetime())
    return day


_DECISIONS = {member.value: member for member in Decision}


def _decision(value: Any, field_name: str = "decision") -> Decision:
    if isinstance(value, Decision):
        return value
    if type(value) is str and value in _DECISIONS:  # the name as the session writes it
        return _DECISIONS[value]
    if isinstance(value, str):
        key = value.strip().upper()
        for member in Decision:
            if member.value == key:
                return member
    allowed = ", ".join(m.value for m in Decision)
    raise ValueError(f"{field_name}: unknown value {value!r}; expected one of {allowed}")


class AccountRecords:
    """Writes one account's records into its ledger ``store`` (see the module docstring).
    ``account`` and ``run_id`` are stamped on every row; each writer takes them too."""

    def __init__(self, store: Store, account: str, run_id: str | None = None):
        self.store = store
        self.account = require_account(account)
        self.run_id = _optional_text("run_id", run_id)
        self._pending: dict[str, list[tuple]] | None = None  # rows in ``_COLUMNS`` order, per table
        self._pending_rows = 0
        self._flush_every = 0

    @contextmanager
    def batch(self, flush_every: int = 10_000) -> Iterator["AccountRecords"]:
        """Buffer every write inside the block; commit them together in one transaction.

        Rows are validated when recorded (a bad one raises at once and is not queued).
        The buffer is written when it holds ``flush_every`` rows and when the block ends,
        also when it ends with an exception: the rows describe things that did happen
        (orders sent, fills received), and losing them would hide them from the report.
        Nested ``batch()`` blocks join the outer one.
        """
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every must be a whole number >= 1, got {flush_every!r}")
        if self._pending is not None:
            yield self
            return
        self._pending, self._pending_rows = {}, 0
        self._flush_every = flush_every
        try:
            yield self
        finally:
            try:
                self.flush()
            finally:
                self._pending = None

    def flush(self) -> int:
        """Write the buffered rows (all of them, in one transaction); returns how many."""
        if not self._pending:
            return 0
        pending = self._pending
        with self.store.transaction() as con:
            count = sum(insert_rows(con, table, _COLUMNS[table], rows) for table, rows in pending.items())
        self._pending, self._pending_rows = {}, 0
        return count

    def _write(self, table: str, row: tuple) -> None:
        """Write (or buffer) one row: a tuple in ``_COLUMNS[table]`` order."""
        if self._pending is None:
            with self.store.transaction() as con:
                insert_rows(con, table, _COLUMNS[table], [row])
            return
        rows = self._pending.get(table)
        if rows is None:
            rows = self._pending[table] = []
        rows.append(row)
        self._pending_rows += 1
        if self._pending_rows >= self._flush_every:
            self.flush()

    def _stamp(self, account: str | None, run_id: str | None) -> tuple[str, str | None]:
        """(account, run_id) of a row: the given ones, checked, or this writer's."""
        return (require_account(account) if account is not None else self.account,
                _optional_text("run_id", run_id) if run_id is not None else self.run_id)

    def record_trade(
        self,
        symbol: str,
        entry_price: float,
        exit_price: float,
        qty: float,
        side: str | Side,
        pnl: float,
        agent: str,
        entry_time: datetime | None = None,
        exit_time: datetime | None = None,
        *,
        contract: str | None = None,
        commission: float = 0.0,
        exit_reason: str | None = None,
        trade_id: str | None = None,
        account: str | None = None,
        run_id: str | None = None,
    ) -> str:
        """Record one closed round trip; returns its ``trade_id``.

        ``side`` is the entry direction (long/short or buy/sell). ``pnl`` is the net
        realised P&L in dollars as the caller computed it (the tracker neither recomputes
        it nor subtracts ``commission``, which is kept for information). ``exit_time``
        defaults to now and ``entry_time`` to the exit time. ``symbol`` may be an OCC
        option symbol (it is then split into underlying and ``contract``), or pass the
        underlying with ``contract=``.
        """
        symbol = require_symbol("symbol", symbol)
        if contract is None and OptionContract.is_option_symbol(symbol):
            contract = symbol
        if contract is not None:
            parsed = OptionContract.parse(contract)
            if symbol not in (parsed.symbol, parsed.underlying):
                raise ValueError(
                    f"symbol {symbol!r} does not match contract {contract!r} "
                    f"(underlying {parsed.underlying!r})"
                )
            symbol, contract = parsed.underlying, parsed.symbol
        exit_ts = _utc("exit_time", exit_time)
        entry_ts = _utc("entry_time", entry_time, default=exit_ts)
        if entry_ts > exit_ts:
            raise ValueError(f"entry_time {entry_ts} is after exit_time {exit_ts}")
        trade_id = _optional_text("trade_id", trade_id) or uuid.uuid4().hex
        self._write("trades", (
            trade_id, *self._stamp(account, run_id), _session_day(exit_ts), symbol, contract, position_side(side),
            require_quantity("qty", qty), entry_ts, exit_ts, require_price("entry_price", entry_price),
            require_price("exit_price", exit_price), require_finite("pnl", pnl),
            require_non_negative("commission", commission), require_agent(agent),
            _optional_text("exit_reason", exit_reason),
        ))
        return trade_id

    def record_equity(
        self,
        ts: datetime | None,
        equity: float,
        cash: float,
        positions_value: float,
        *,
        account: str | None = None,
        run_id: str | None = None,
    ) -> None:
        """Record the account's mark-to-market equity at ``ts`` (None: now)."""
        ts = _instant("ts", ts)
        self._write("equity_curve", (
            *self._stamp(account, run_id), ts, _session_day(ts), require_finite("equity", equity),
            require_finite("cash", cash), require_finite("positions_value", positions_value),
        ))

    def record_session_bar(self, day: date, bar_ts: datetime, direction: int, pnl: float, bars: int,
                           run_id: str | None) -> None:
        """Record that the session acted on the bar starting at ``bar_ts`` (the position the
        signal saw: ``direction``, ``pnl``, ``bars``), in the bar's own unit of work: a
        restart resumes after the last one committed."""
        self._write("session_bars", (
            self.account, day, _instant("bar_ts", bar_ts),
            _optional_text("run_id", run_id),  # the session's run, as given
            int(direction), require_finite("position_pnl", pnl), int(bars),
        ))

    def log_prediction(
        self,
        model: str,
        raw_action: float,
        smoothed_action: float | None = None,
        decision: Decision | str | None = None,
        symbol: str | None = None,
        timestamp: datetime | None = None,
        *,
        p_put: float | None = None,
        p_flat: float | None = None,
        p_call: float | None = None,
        account: str | None = None,
        run_id: str | None = None,
    ) -> None:
        """Record one output of the RL signal.

        ``smoothed_action`` defaults to the raw action (no smoothing) and ``decision`` to
        what the smoothed action maps to (``Decision.from_action``). A categorical policy
        also gives its smoothed probabilities ``p_put``, ``p_flat``, ``p_call`` (all three
        or none; stored NULL for a signal without them).
        """
        probabilities = require_probabilities(p_put, p_flat, p_call) or (None, None, None)
        raw = require_finite("raw_action", raw_action)
        smoothed = raw if smoothed_action is None else require_finite("smoothed_action", smoothed_action)
        choice = Decision.from_action(smoothed) if decision is None else _decision(decision)
        ts = _instant("timestamp", timestamp)
        self._write("rl_predictions", (
            *self._stamp(account, run_id), ts, _session_day(ts), _require_text("model", model),
            require_symbol("symbol", symbol) if symbol is not None else None, raw, smoothed, choice.value,
            *probabilities,
        ))

    def log_signal(self, signal, *, account: str | None = None, run_id: str | None = None) -> None:
        """Record a :class:`tradenova_dagster.domain.Signal` (the session's per-bar output),
        with its probabilities when it has them.

        A ``Signal`` checked its fields when it was built (a finite score in [-1, 1], a
        ``Decision``, a normalised symbol, three probabilities or none, an aware time), so
        its row is written as ``log_prediction`` would write it without checking them
        again; anything else signal-like goes through ``log_prediction``."""
        if type(signal) is Signal:
            ts = _instant("timestamp", signal.timestamp)
            self._write("rl_predictions", (
                *self._stamp(account, run_id), ts, _session_day(ts), _require_text("model", signal.model or "unknown"),
                signal.symbol, signal.raw_action, signal.smoothed_action, signal.decision.value,
                signal.p_put, signal.p_flat, signal.p_call,
            ))
            return
        self.log_prediction(
            signal.model or "unknown", signal.raw_action, signal.smoothed_action,
            signal.decision, signal.symbol, signal.timestamp,
            p_put=getattr(signal, "p_put", None), p_flat=getattr(signal, "p_flat", None),
            p_call=getattr(signal, "p_call", None), account=account, run_id=run_id,
        )

    def log_decision(
        self,
        agent: str,
        signal: Decision | str | float,
        allowed: bool,
        reason: str = "",
        symbol: str | None = None,
        timestamp: datetime | None = None,
        risk_level: Any = None,
        *,
        account: str | None = None,
        run_id: str | None = None,
    ) -> None:
        """Record what an agent asked for and whether risk allowed it (and why not).

        ``signal`` is a Decision (or its name), or an action in [-1, 1] that is mapped
        with ``Decision.from_action``.
        """
        if not isinstance(allowed, bool):
            raise ValueError(f"allowed must be True or False, got {allowed!r}")
        if isinstance(signal, (int, float)) and not isinstance(signal, bool):
            choice = Decision.from_action(signal)
        else:
            choice = _decision(signal, "signal")
        ts = _instant("timestamp", timestamp)
        level = getattr(risk_level, "value", risk_level)
        self._write("agent_decisions", (
            *self._stamp(account, run_id), ts, _session_day(ts), require_agent(agent),
            require_symbol("symbol", symbol) if symbol is not None else None, choice.value, allowed,
            _optional_text("reason", reason) or "", None if level is None else str(level),
        ))

    def clear_day(self, day: date | str, *, account: str | None = None) -> int:
        """Delete one account's records of one New York day, so that a replay of that
        day (a re-materialised backtest partition) replaces them instead of doubling them.
        Returns the number of rows deleted. Reports are left alone.

        A backtest clears each day before replaying it, and the day is usually new: one
        query first finds the tables that hold rows of it, and only those get a DELETE
        (a statement costs ~0.5 ms even when it deletes nothing)."""
        day = calendar.as_date(day, "day")
        acct = require_account(account) if account is not None else self.account
        self.flush()
        wheres = {table: "day = ?" for table in DAY_TABLES}
        wheres["risk_events"] = "CAST(timezone('America/New_York', ts) AS DATE) = ?"  # a time, not a day
        deleted = 0
        with self.store.transaction() as con:
            counts = con.execute(" UNION ALL ".join(
                f"SELECT '{table}', count(*) FROM {table} WHERE account = ? AND {where}"
                for table, where in wheres.items()), [acct, day] * len(wheres)).fetchall()
            for table, count in counts:
                if count:
                    deleted += con.execute(f"DELETE FROM {table} WHERE account = ? AND {wheres[table]}",
                                           [acct, day]).fetchone()[0]
        return deleted
