"""MetricsTracker: record what the trading system does, and measure how it went.

Everything lands in the DuckDB store (tables from ``migrations/0300_metrics.sql``), one
row per event, each tagged with the account (``sim:default``, ``backtest:<id>``,
``alpaca_paper:<id>``, ...) and the run that wrote it, so that a backtest never mixes
with paper or live. Analytics are SQL over those tables (window functions), so they
stay fast on millions of trades and give the same answer from any process.

Definitions used by ``calculate_metrics`` (and the daily report):

- A trade counts towards the New York date of its exit time (its ``day``).
- Window: the calendar days ``(as_of - lookback_days, as_of]``; ``lookback_days=None``
  means all history. The days of the window are the NYSE trading days in it, from the
  account's first recorded day (a trade or an equity row) on, plus any other day that
  has a trade; a day without trades has P&L 0 and return 0.
- Daily return = that day's P&L / start-of-day equity, where start-of-day equity =
  initial capital + the P&L of every trade of the account before that day (before the
  window included). Undefined (NULL) once start-of-day equity is <= 0.
- Sharpe = mean / standard deviation (sample, ddof=1) of daily returns × √252,
  risk-free rate 0. Undefined (None) with fewer than 2 days or a zero standard deviation
  (no variation: a ratio there would be noise, not information).
- Sortino = mean / downside deviation × √252, downside deviation =
  √(Σ min(r, 0)² / number of days) (quantstats' definition). Undefined with fewer than
  2 days or no losing day.
- Max drawdown = the largest fall of end-of-day equity from its running peak, as a
  fraction of that peak (0.1 = 10%, reported positive); the peak starts at the
  window's start-of-day equity. 0 when equity never fell.
- Trade statistics over the window's trades: win rate = trades with pnl > 0 / all
  trades; avg_win = mean pnl of winning trades; avg_loss = mean pnl of losing trades
  (pnl < 0, a negative number); profit factor = gross profit / |gross loss| (undefined
  without a losing trade); expectancy = mean pnl per trade. Undefined values are None.

Writes are short transactions (DESIGN.md §5). A hot loop (a session replay writes
several rows per bar) wraps its writes in ``with tracker.batch(): ...``: rows are
validated on the call, buffered, and committed together in one transaction.
"""

from __future__ import annotations

import math
import re
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from tradenova_dagster.domain import (
    Decision,
    Fill,
    OptionContract,
    Side,
    require_finite,
    require_non_negative,
    require_price,
    require_quantity,
    require_symbol,
)
from tradenova_dagster.market import calendar
from tradenova_dagster.store import Store

DEFAULT_ACCOUNT = "sim:default"
TRADING_DAYS_PER_YEAR = 252

# `<kind>:<id>`: sim:default, backtest:2024-01-05_ab12, alpaca_paper:PA3XYZ, ...
_ACCOUNT_RE = re.compile(r"^[a-z][a-z0-9_]*:[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$")
# Agent names end up in tables, chart labels and file names: a short identifier.
_AGENT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:\-]{0,63}$")
_MAX_TEXT = 500

_COLUMNS: dict[str, tuple[str, ...]] = {
    "fills": (
        "account", "run_id", "ts", "day", "order_id", "client_order_id", "symbol", "side",
        "qty", "price", "commission", "notional", "fill_id", "reason",
    ),
    "trades": (
        "trade_id", "account", "run_id", "day", "symbol", "contract", "side", "qty",
        "entry_time", "exit_time", "entry_price", "exit_price", "pnl", "commission", "agent",
        "exit_reason",
    ),
    "equity_curve": ("account", "run_id", "ts", "day", "equity", "cash", "positions_value"),
    "rl_predictions": (
        "account", "run_id", "ts", "day", "model", "symbol", "raw_action", "smoothed_action",
        "decision",
    ),
    "agent_decisions": (
        "account", "run_id", "ts", "day", "agent", "symbol", "signal", "allowed", "reason",
        "risk_level",
    ),
}

# The window's trades are aggregated once into partial sums per group (per day, or per
# agent and day); every trade statistic is then a sum over those partials, so the
# account totals and the per-agent table share one definition and one pass.
_PARTIALS = """
    count(*)                                     AS n,
    count(*) FILTER (WHERE pnl > 0)              AS wins,
    count(*) FILTER (WHERE pnl < 0)              AS losses,
    sum(pnl)                                     AS pnl,
    coalesce(sum(pnl) FILTER (WHERE pnl > 0), 0) AS gross_profit,
    coalesce(sum(pnl) FILTER (WHERE pnl < 0), 0) AS gross_loss,
    max(pnl)                                     AS best,
    min(pnl)                                     AS worst,
    sum(commission)                              AS commission
"""
_TRADE_STATS = """
    coalesce(sum(n), 0)                                            AS num_trades,
    coalesce(sum(wins), 0)                                         AS wins,
    coalesce(sum(losses), 0)                                       AS losses,
    coalesce(sum(pnl), 0)                                          AS total_pnl,
    coalesce(sum(gross_profit), 0)                                 AS gross_profit,
    coalesce(sum(gross_loss), 0)                                   AS gross_loss,
    sum(wins) / nullif(sum(n), 0)                                  AS win_rate,
    sum(gross_profit) / nullif(sum(wins), 0)                       AS avg_win,
    sum(gross_loss) / nullif(sum(losses), 0)                       AS avg_loss,
    sum(gross_profit) / nullif(-sum(gross_loss), 0)                AS profit_factor,
    sum(pnl) / nullif(sum(n), 0)                                   AS expectancy,
    max(best)                                                      AS best_trade,
    min(worst)                                                     AS worst_trade,
    coalesce(sum(commission), 0)                                   AS commission
"""

# One row per day of the window: P&L, start/end equity, return, running peak, drawdown.
# $start is the window's first day (NULL: all history, from the account's first day);
# the days are the weekdays that are not in $holidays (XNYS closures), from the later of
# $start and the account's first recorded day, plus any day that has a trade.
_DAILY_SERIES = f"""
WITH bounds AS (
    SELECT coalesce($start, first_day) AS start,
           -- greatest() skips NULLs: without any history there is no series at all
           CASE WHEN first_day IS NOT NULL THEN greatest($start, first_day) END AS first_series_day
    FROM (SELECT least(
        (SELECT min(day) FROM trades WHERE account = $account AND day <= $as_of),
        (SELECT min(day) FROM equity_curve WHERE account = $account)) AS first_day)
),
prior AS (  -- equity at the start of the window: only a sum is needed before it
    SELECT $capital + coalesce(sum(pnl), 0) AS equity
    FROM trades WHERE account = $account AND day < (SELECT start FROM bounds)
),
by_day AS (
    SELECT day, {_PARTIALS}
    FROM trades
    WHERE account = $account AND day >= (SELECT start FROM bounds) AND day <= $as_of
    GROUP BY day
),
days AS (
    SELECT CAST(g.d AS DATE) AS day
    FROM bounds, generate_series(bounds.first_series_day, $as_of, INTERVAL 1 DAY) AS g(d)
    WHERE bounds.first_series_day IS NOT NULL AND isodow(g.d) <= 5
      AND CAST(g.d AS DATE) NOT IN (SELECT unnest($holidays::DATE[]))
    UNION
    SELECT day FROM by_day
),
daily AS (
    SELECT d.day, coalesce(b.pnl, 0) AS pnl, coalesce(b.n, 0) AS trades
    FROM days d LEFT JOIN by_day b USING (day)
),
equity AS (
    SELECT day, pnl, trades,
           (SELECT equity FROM prior) + coalesce(sum(pnl) OVER (
               ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS start_equity
    FROM daily
),
peaks AS (
    SELECT day, pnl, trades, start_equity, start_equity + pnl AS end_equity,
           CASE WHEN start_equity > 0 THEN pnl / start_equity END AS daily_return,
           greatest((SELECT equity FROM prior),
                    max(start_equity + pnl) OVER (ORDER BY day ROWS UNBOUNDED PRECEDING)) AS peak
    FROM equity
),
daily_series AS (
    SELECT day, pnl, trades, start_equity, end_equity, daily_return, peak,
           CASE WHEN peak > 0 THEN (peak - end_equity) / peak END AS drawdown
    FROM peaks
)
"""

_METRICS_SQL = _DAILY_SERIES + f"""
, day_stats AS (
    SELECT count(*)                           AS num_days,
           avg(daily_return)                  AS mean_return,
           stddev_samp(daily_return)          AS std_return,
           sqrt(sum(daily_return * daily_return) FILTER (WHERE daily_return < 0)
                / count(daily_return))        AS downside_deviation,
           coalesce(max(drawdown), 0)         AS max_drawdown,
           arg_max(end_equity, day)           AS end_equity
    FROM daily_series
),
trade_stats AS (
    SELECT {_TRADE_STATS} FROM by_day
)
SELECT trade_stats.*, day_stats.*,
       (SELECT start FROM bounds) AS start,
       (SELECT equity FROM prior) AS start_equity,
       CASE WHEN num_days >= 2 AND std_return > 0 AND std_return > 1e-12 * abs(mean_return)
            THEN mean_return / std_return * sqrt({TRADING_DAYS_PER_YEAR}) END AS sharpe_ratio,
       CASE WHEN num_days >= 2 AND downside_deviation > 0
            THEN mean_return / downside_deviation * sqrt({TRADING_DAYS_PER_YEAR}) END AS sortino_ratio
FROM trade_stats, day_stats
"""

_AGENT_SQL = f"""
WITH per_agent_day AS (
    SELECT agent, day, {_PARTIALS}
    FROM trades
    WHERE account = $account AND day <= $as_of AND ($start IS NULL OR day >= $start)
    GROUP BY agent, day
)
SELECT agent, {_TRADE_STATS}
FROM per_agent_day
GROUP BY agent
ORDER BY total_pnl DESC, agent
"""


@lru_cache(maxsize=1)
def _exchange_holidays() -> tuple[date, ...]:
    """Weekdays on which NYSE is closed, over the whole calendar (computed once)."""
    xnys = calendar.xnys()
    return tuple(calendar.non_trading_weekdays(xnys.first_session.date(), xnys.last_session.date()))


def require_account(value: Any, field_name: str = "account") -> str:
    """An account name ``<kind>:<id>``, e.g. ``sim:default`` or ``backtest:2024-01-05``."""
    if not isinstance(value, str) or not _ACCOUNT_RE.match(value):
        raise ValueError(
            f"{field_name}: {value!r} is not an account name of the form <kind>:<id> "
            "(e.g. 'sim:default', 'backtest:2024-01-05', 'alpaca_paper:PA123')"
        )
    return value


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


def _session_day(ts: pd.Timestamp) -> date:
    return ts.tz_convert(calendar.NEW_YORK).date()


def _trade_side(value: Any) -> str:
    """'long' or 'short': the direction of the round trip's entry."""
    if isinstance(value, str) and value.strip().lower() in ("long", "short"):
        return value.strip().lower()
    try:
        return "long" if Side.parse(value) is Side.BUY else "short"
    except ValueError:
        raise ValueError(f"side: unknown value {value!r}; expected long, short, buy or sell") from None


def _lookback(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"lookback_days must be a whole number of days >= 1 (or None for all history), "
            f"got {value!r}"
        )
    return value


def _as_of(value: Any) -> date:
    if value is None:
        return pd.Timestamp.now(tz=calendar.NEW_YORK).date()
    return calendar.as_date(value, "as_of")


class MetricsTracker:
    """Records trades, orders, fills, equity, predictions and decisions; computes metrics.

    ``MetricsTracker(db_path=None, initial_capital=100_000)`` uses
    ``$TRADENOVA_HOME/tradenova.duckdb``. ``account`` and ``run_id`` set the defaults
    stamped on every row this tracker writes; each recorder takes them as keyword
    arguments too. Pass ``store`` to share an open :class:`Store`.
    """

    def __init__(
        self,
        db_path: str | Path | None = None,
        initial_capital: float = 100_000,
        *,
        account: str = DEFAULT_ACCOUNT,
        run_id: str | None = None,
        store: Store | None = None,
    ):
        self.initial_capital = require_price("initial_capital", initial_capital)
        self.account = require_account(account)
        self.run_id = _optional_text("run_id", run_id)
        self.store = store if store is not None else Store(db_path)
        self._pending: dict[str, list[dict]] | None = None
        self._flush_every = 0

    def __repr__(self) -> str:
        return f"MetricsTracker({str(self.store.path)!r}, account={self.account!r})"

    # ------------------------------------------------------------------ writing

    @contextmanager
    def batch(self, flush_every: int = 10_000) -> Iterator["MetricsTracker"]:
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
        self._pending = {}
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
            count = sum(self._insert(con, table, rows) for table, rows in pending.items())
        self._pending = {}
        return count

    @staticmethod
    def _insert(con, table: str, rows: list[dict]) -> int:
        if not rows:
            return 0
        columns = _COLUMNS[table]
        names = ", ".join(columns)
        if len(rows) <= 64:  # a bar's few rows: plain parameters beat building a DataFrame
            marks = ", ".join("?" for _ in columns)
            con.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})",
                            [[row.get(c) for c in columns] for row in rows])
            return len(rows)
        frame = pd.DataFrame(rows, columns=columns)
        # No try/finally around unregister: after a failed INSERT the transaction is
        # aborted and unregister would raise, hiding the real error; the connection is
        # closed right after anyway.
        con.register("_metrics_rows", frame)
        con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM _metrics_rows")
        con.unregister("_metrics_rows")
        return len(rows)

    def _write(self, table: str, row: dict) -> None:
        if self._pending is None:
            with self.store.transaction() as con:
                self._insert(con, table, [row])
            return
        self._pending.setdefault(table, []).append(row)
        if sum(len(rows) for rows in self._pending.values()) >= self._flush_every:
            self.flush()

    def _stamp(self, account: str | None, run_id: str | None) -> dict:
        return {
            "account": require_account(account) if account is not None else self.account,
            "run_id": _optional_text("run_id", run_id) if run_id is not None else self.run_id,
        }

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
        row = {
            "trade_id": _optional_text("trade_id", trade_id) or uuid.uuid4().hex,
            **self._stamp(account, run_id),
            "day": _session_day(exit_ts),
            "symbol": symbol,
            "contract": contract,
            "side": _trade_side(side),
            "qty": require_quantity("qty", qty),
            "entry_time": entry_ts,
            "exit_time": exit_ts,
            "entry_price": require_price("entry_price", entry_price),
            "exit_price": require_price("exit_price", exit_price),
            "pnl": require_finite("pnl", pnl),
            "commission": require_non_negative("commission", commission),
            "agent": require_agent(agent),
            "exit_reason": _optional_text("exit_reason", exit_reason),
        }
        self._write("trades", row)
        return row["trade_id"]

    def record_fill(self, fill: Fill, *, account: str | None = None, run_id: str | None = None) -> None:
        """Record one execution reported by the broker."""
        if not isinstance(fill, Fill):
            raise ValueError(f"fill must be a tradenova_dagster.domain.Fill, got {fill!r}")
        ts = _utc("fill.timestamp", fill.timestamp)
        self._write("fills", {
            **self._stamp(account, run_id),
            "ts": ts,
            "day": _session_day(ts),
            "order_id": fill.order_id,
            "client_order_id": fill.client_order_id,
            "symbol": fill.symbol,
            "side": fill.side.value,
            "qty": fill.qty,
            "price": fill.price,
            "commission": fill.commission,
            "notional": fill.notional,
            "fill_id": uuid.uuid4().hex,
            "reason": "trade",
        })

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
        ts = _utc("ts", ts)
        self._write("equity_curve", {
            **self._stamp(account, run_id),
            "ts": ts,
            "day": _session_day(ts),
            "equity": require_finite("equity", equity),
            "cash": require_finite("cash", cash),
            "positions_value": require_finite("positions_value", positions_value),
        })

    def log_prediction(
        self,
        model: str,
        raw_action: float,
        smoothed_action: float | None = None,
        decision: Decision | str | None = None,
        symbol: str | None = None,
        timestamp: datetime | None = None,
        *,
        account: str | None = None,
        run_id: str | None = None,
    ) -> None:
        """Record one output of the RL signal.

        ``smoothed_action`` defaults to the raw action (no smoothing) and ``decision`` to
        what the smoothed action maps to (``Decision.from_action``).
        """
        raw = require_finite("raw_action", raw_action)
        smoothed = raw if smoothed_action is None else require_finite("smoothed_action", smoothed_action)
        choice = Decision.from_action(smoothed) if decision is None else _decision(decision)
        ts = _utc("timestamp", timestamp)
        self._write("rl_predictions", {
            **self._stamp(account, run_id),
            "ts": ts,
            "day": _session_day(ts),
            "model": _require_text("model", model),
            "symbol": require_symbol("symbol", symbol) if symbol is not None else None,
            "raw_action": raw,
            "smoothed_action": smoothed,
            "decision": choice.value,
        })

    def log_signal(self, signal, *, account: str | None = None, run_id: str | None = None) -> None:
        """Record a :class:`tradenova_dagster.domain.Signal` (the session's per-bar output)."""
        self.log_prediction(
            signal.model or "unknown", signal.raw_action, signal.smoothed_action,
            signal.decision, signal.symbol, signal.timestamp, account=account, run_id=run_id,
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
        ts = _utc("timestamp", timestamp)
        level = getattr(risk_level, "value", risk_level)
        self._write("agent_decisions", {
            **self._stamp(account, run_id),
            "ts": ts,
            "day": _session_day(ts),
            "agent": require_agent(agent),
            "symbol": require_symbol("symbol", symbol) if symbol is not None else None,
            "signal": choice.value,
            "allowed": allowed,
            "reason": _optional_text("reason", reason) or "",
            "risk_level": None if level is None else str(level),
        })

    def clear_day(self, day: date | str, *, account: str | None = None) -> int:
        """Delete one account's records of one New York day, so that a replay of that
        day (a re-materialised backtest partition) replaces them instead of doubling them.
        Returns the number of rows deleted. Reports are left alone."""
        day = calendar.as_date(day, "day")
        acct = require_account(account) if account is not None else self.account
        self.flush()
        deleted = 0
        with self.store.transaction() as con:
            for table in (*_COLUMNS, "orders", "session_bars"):  # the ledger's rows of the day too
                deleted += con.execute(
                    f"DELETE FROM {table} WHERE account = ? AND day = ?", [acct, day]
                ).fetchone()[0]
            deleted += con.execute(  # risk events carry a time, not a day
                "DELETE FROM risk_events WHERE account = ? AND CAST(timezone('America/New_York', ts) AS DATE) = ?",
                [acct, day]).fetchone()[0]
        return deleted

    # ------------------------------------------------------------------ analytics

    def _params(self, lookback_days: Any, as_of: Any, account: str | None) -> dict:
        """Named parameters of the analytics SQL for one window of one account."""
        lookback = _lookback(lookback_days)
        end = _as_of(as_of)
        return {
            "account": require_account(account) if account is not None else self.account,
            "as_of": end,
            "start": None if lookback is None else end - timedelta(days=lookback - 1),
            "capital": self.initial_capital,
            "holidays": [d for d in _exchange_holidays() if d <= end],
        }

    def daily_series(
        self, lookback_days: int | None = 30, as_of: Any = None, *, account: str | None = None
    ) -> pd.DataFrame:
        """The window's days: pnl, trades, start/end equity, daily return, peak, drawdown."""
        params = self._params(lookback_days, as_of, account)
        self.flush()
        with self.store.connect() as con:
            frame = con.execute(_DAILY_SERIES + " SELECT * FROM daily_series ORDER BY day", params).df()
        frame["day"] = pd.to_datetime(frame["day"]).dt.date
        return frame

    def calculate_metrics(
        self, lookback_days: int | None = 30, as_of: Any = None, *, account: str | None = None
    ) -> dict[str, Any]:
        """Performance of one account over a window of days (definitions: module docstring).

        Returns ``total_pnl``, ``num_trades``, ``win_rate``, ``avg_win``, ``avg_loss``,
        ``profit_factor``, ``expectancy``, ``sharpe_ratio``, ``sortino_ratio``,
        ``max_drawdown`` and context (``num_days``, ``wins``, ``losses``, ``gross_profit``,
        ``gross_loss``, ``best_trade``, ``worst_trade``, ``commission``, ``start_equity``,
        ``end_equity``, ``total_return``, window bounds). Undefined values are None.
        """
        params = self._params(lookback_days, as_of, account)
        self.flush()
        with self.store.connect() as con:
            cursor = con.execute(_METRICS_SQL, params)
            names = [d[0] for d in cursor.description]
            row = dict(zip(names, cursor.fetchone()))
        start_equity = float(row["start_equity"])
        end_equity = float(row["end_equity"]) if row["end_equity"] is not None else start_equity
        start = row["start"] or params["as_of"]  # no history at all: an empty window
        result = {
            "account": params["account"],
            "as_of": params["as_of"].isoformat(),
            "start": start.isoformat(),
            "lookback_days": lookback_days,
            "initial_capital": self.initial_capital,
            "num_trades": int(row["num_trades"]),
            "wins": int(row["wins"]),
            "losses": int(row["losses"]),
            "num_days": int(row["num_days"]),
            "start_equity": start_equity,
            "end_equity": end_equity,
            "total_return": end_equity / start_equity - 1 if start_equity > 0 else None,
        }
        for name in ("total_pnl", "gross_profit", "gross_loss", "commission", "win_rate",
                     "avg_win", "avg_loss", "profit_factor", "expectancy", "best_trade",
                     "worst_trade", "sharpe_ratio", "sortino_ratio", "max_drawdown"):
            result[name] = _number(row[name])
        return result

    def get_agent_performance(
        self, lookback_days: int | None = None, as_of: Any = None, *, account: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """Trade statistics per agent (all history by default), best total P&L first.

        Each value has ``num_trades``, ``wins``, ``losses``, ``total_pnl``, ``win_rate``,
        ``avg_win``, ``avg_loss``, ``profit_factor``, ``expectancy``, ``best_trade``,
        ``worst_trade``, ``gross_profit``, ``gross_loss``, ``commission`` (definitions as
        in ``calculate_metrics``).
        """
        params = self._params(lookback_days, as_of, account)
        self.flush()
        with self.store.connect() as con:
            cursor = con.execute(
                _AGENT_SQL, {key: params[key] for key in ("account", "as_of", "start")}
            )
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        table: dict[str, dict[str, Any]] = {}
        for values in rows:
            row = dict(zip(names, values))
            agent = row.pop("agent")
            table[agent] = {
                name: (int(value) if name in ("num_trades", "wins", "losses") else _number(value))
                for name, value in row.items()
            }
        return table


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) or math.isinf(number) else number


def _decision(value: Any, field_name: str = "decision") -> Decision:
    if isinstance(value, Decision):
        return value
    if isinstance(value, str):
        key = value.strip().upper()
        for member in Decision:
            if member.value == key:
                return member
    allowed = ", ".join(m.value for m in Decision)
    raise ValueError(f"{field_name}: unknown value {value!r}; expected one of {allowed}")
