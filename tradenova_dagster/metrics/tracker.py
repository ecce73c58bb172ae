"""MetricsTracker: measure how the trading went, from the account's ledger.

The metrics read the records an account's ledger holds (``ledger/records.py``: trades,
equity, predictions, decisions), each row tagged with the account (``sim:default``,
``backtest:<id>``, ``alpaca_paper:<id>``, ...), so that a backtest never mixes with paper
or live. This module writes nothing of its own: ``record_trade`` and the other writers
are the ledger's (``AccountRecords``), inherited so that the seed's usage works as
documented.

Why it is fast (``bench/metrics.py``): every metric is a function of per-day partial sums
of the account's trades (count, wins, losses, P&L, gross profit and loss, best, worst,
commission), a few thousand rows however many trades there are. SQL aggregates the trades
into those partials (``GROUP BY day``); the tracker keeps them, with the account's first
equity day, and the day series and the ratios are numpy over days, not rows. Every call
first reads whether the ledger changed, in one cheap statement (row count and latest
``recorded_at`` of ``trades`` and ``equity_curve``), so a trade written by any process is
seen by the next call. Rows only added since (the count grew by exactly the rows with a
later ``recorded_at``) are aggregated alone and folded in; anything else (``clear_day``
deleting a replayed day) means aggregating every trade again. Unseen would be only a
delete plus an insert of as many rows with an older ``recorded_at`` between two calls;
no writer does that (``recorded_at`` is the database's ``now()``).

Definitions used by ``calculate_metrics`` (and the daily report):

- A trade counts towards the New York date of its exit time (its ``day``).
- Window: the calendar days ``(as_of - lookback_days, as_of]``; ``lookback_days=None``
  means all history. The days of the window are the NYSE trading days in it, from the
  account's first recorded day (a trade or an equity row, on or before ``as_of``) on,
  plus any other day that has a trade; a day without trades has P&L 0 and return 0.
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
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tradenova_dagster.domain import require_price
from tradenova_dagster.ledger.accounts import ledger_store, require_account
from tradenova_dagster.ledger.records import AccountRecords
from tradenova_dagster.market import calendar
from tradenova_dagster.store import Store

DEFAULT_ACCOUNT = "sim:default"
TRADING_DAYS_PER_YEAR = 252

# The partials of one group of trades (a day, or an agent's day); every trade statistic
# is a sum over them, so the account totals and the per-agent table share one definition.
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
_PARTIAL_NAMES = ("n", "wins", "losses", "pnl", "gross_profit", "gross_loss", "best", "worst", "commission")
_BY_DAY_SQL = f"SELECT day, {_PARTIALS} FROM trades WHERE account = $account GROUP BY day ORDER BY day"
# Only the rows recorded after a point in time (the ledger's zone maps skip the rest).
_NEW_ROWS_SQL = "SELECT count(*) FROM trades WHERE recorded_at > $since"
_NEW_BY_DAY_SQL = (f"SELECT day, {_PARTIALS} FROM trades WHERE account = $account AND recorded_at > $since"
                   " GROUP BY day ORDER BY day")
_FIRST_EQUITY_DAY_SQL = "SELECT min(day) FROM equity_curve WHERE account = $account"
# What tells the tracker its partials are stale (module docstring); no scan of the rows.
_CHANGES_SQL = """
SELECT (SELECT count(*) FROM trades), (SELECT max(recorded_at) FROM trades),
       (SELECT count(*) FROM equity_curve), (SELECT max(recorded_at) FROM equity_curve)
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
def _exchange_days() -> np.busdaycalendar:
    """Weekdays minus the weekdays NYSE is closed, over the whole calendar (built once).
    Beyond the calendar's range every weekday counts."""
    xnys = calendar.xnys()
    holidays = calendar.non_trading_weekdays(xnys.first_session.date(), xnys.last_session.date())
    return np.busdaycalendar(weekmask="1111100", holidays=np.array(list(holidays), dtype="datetime64[D]"))


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


class _DayPartials:
    """One account's trades as per-day partials (``_PARTIALS``, sorted by day), its first
    equity day, and the ledger state (``_CHANGES_SQL``) they were read at."""

    def __init__(self, changes: tuple, columns: dict[str, np.ndarray], first_equity_day: date | None):
        self.changes = changes
        self.day = columns["day"].astype("datetime64[D]")
        self.columns = {name: np.asarray(columns[name]) for name in _PARTIAL_NAMES}
        self.first_equity_day = None if first_equity_day is None else np.datetime64(first_equity_day, "D")

    def merged(self, new: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """These partials with those of trades added since (``_NEW_BY_DAY_SQL``) folded in."""
        new_day = new["day"].astype("datetime64[D]")
        day = np.union1d(self.day, new_day)
        old_at, new_at = np.searchsorted(day, self.day), np.searchsorted(day, new_day)
        columns = {"day": day}
        for name in _PARTIAL_NAMES:  # best is a max, worst a min, the rest are sums
            kept = self.columns[name]
            column = np.full(len(day), {"best": -np.inf, "worst": np.inf}.get(name, 0), dtype=kept.dtype)
            column[old_at] = kept
            fold = {"best": np.maximum, "worst": np.minimum}.get(name, np.add)
            column[new_at] = fold(column[new_at], np.asarray(new[name]))
            columns[name] = column
        return columns

    def window(self, capital: float, start: date | None, as_of: date) -> tuple[dict, dict]:
        """The window's trade statistics and its day series (definitions: module docstring).

        ``start`` None means from the account's first day. Returns (scalars, series), with
        NaN in the series where a value is undefined.
        """
        end = np.datetime64(as_of, "D")
        hi = int(np.searchsorted(self.day, end, side="right"))
        # The account's first day on or before as_of: nothing after as_of shapes the window.
        firsts = [d for d in (self.day[0] if hi else None, self.first_equity_day) if d is not None and d <= end]
        first_day = min(firsts) if firsts else None
        begin = np.datetime64(start, "D") if start is not None else first_day
        lo = int(np.searchsorted(self.day, begin, side="left")) if begin is not None else hi
        prior = capital + float(self.columns["pnl"][:lo].sum())
        cols = {name: values[lo:hi] for name, values in self.columns.items()}
        trade_days = self.day[lo:hi]
        if first_day is None:
            days = trade_days
        else:
            span = np.arange(max(begin, first_day), end + 1, dtype="datetime64[D]")
            days = np.union1d(span[np.is_busday(span, busdaycal=_exchange_days())], trade_days)
        at = np.searchsorted(days, trade_days)
        pnl = np.zeros(len(days))
        pnl[at] = cols["pnl"]
        trades = np.zeros(len(days), dtype=np.int64)
        trades[at] = cols["n"]
        start_equity = prior + np.concatenate(([0.0], np.cumsum(pnl)[:-1])) if len(days) else pnl
        end_equity = start_equity + pnl
        with np.errstate(divide="ignore", invalid="ignore"):
            daily_return = np.where(start_equity > 0, pnl / start_equity, np.nan)
            peak = np.maximum(prior, np.maximum.accumulate(end_equity)) if len(days) else pnl
            drawdown = np.where(peak > 0, (peak - end_equity) / peak, np.nan)
        series = {"day": days, "pnl": pnl, "trades": trades, "start_equity": start_equity,
                  "end_equity": end_equity, "daily_return": daily_return, "peak": peak, "drawdown": drawdown}
        scalars = _trade_stats(cols)
        scalars.update(_day_stats(daily_return, drawdown))
        scalars.update(start=None if begin is None else begin.item(), start_equity=prior,
                       end_equity=float(end_equity[-1]) if len(days) else None, num_days=len(days))
        return scalars, series


def _trade_stats(cols: dict[str, np.ndarray]) -> dict[str, Any]:
    n, wins, losses = (int(cols[k].sum()) for k in ("n", "wins", "losses"))
    pnl, profit, loss = (float(cols[k].sum()) for k in ("pnl", "gross_profit", "gross_loss"))
    return {
        "num_trades": n, "wins": wins, "losses": losses, "total_pnl": pnl,
        "gross_profit": profit, "gross_loss": loss, "commission": float(cols["commission"].sum()),
        "win_rate": wins / n if n else None,
        "avg_win": profit / wins if wins else None,
        "avg_loss": loss / losses if losses else None,
        "profit_factor": profit / -loss if loss else None,
        "expectancy": pnl / n if n else None,
        "best_trade": float(cols["best"].max()) if n else None,
        "worst_trade": float(cols["worst"].min()) if n else None,
    }


def _day_stats(daily_return: np.ndarray, drawdown: np.ndarray) -> dict[str, Any]:
    returns = daily_return[~np.isnan(daily_return)]
    falls = drawdown[~np.isnan(drawdown)]
    sharpe = sortino = None
    if len(daily_return) >= 2 and len(returns):  # days with no return (equity <= 0) still count
        mean = float(returns.mean())
        std = float(returns.std(ddof=1)) if len(returns) >= 2 else 0.0
        if std > 0 and std > 1e-12 * abs(mean):
            sharpe = mean / std * math.sqrt(TRADING_DAYS_PER_YEAR)
        losing = returns[returns < 0]
        downside = math.sqrt(float((losing * losing).sum()) / len(returns)) if len(losing) else 0.0
        if downside > 0:
            sortino = mean / downside * math.sqrt(TRADING_DAYS_PER_YEAR)
    return {"sharpe_ratio": sharpe, "sortino_ratio": sortino,
            "max_drawdown": float(falls.max()) if len(falls) else 0.0}


class MetricsTracker(AccountRecords):
    """Computes an account's metrics from its ledger (and records trades, equity,
    predictions and decisions through the ledger's writers, for the seed's usage).

    ``MetricsTracker(db_path=None, initial_capital=100_000)`` uses the account's ledger
    file (``$TRADENOVA_HOME/ledgers/``). ``account`` and ``run_id`` set the defaults
    stamped on every row this tracker writes; each recorder takes them as keyword
    arguments too. Pass ``store`` to share an open :class:`Store`. Each call reads the
    ledger (one short connection, or the held one inside ``store.hold()``, which a caller
    making many calls should use: a connect costs far more than the metrics).
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
        account = require_account(account)
        # The account's ledger file unless a database is named (ledger/accounts.py).
        super().__init__(store if store is not None else (Store(db_path) if db_path else ledger_store(account)),
                         account, run_id)
        self._partials: dict[str, _DayPartials] = {}  # account -> its partials (module docstring)

    def __repr__(self) -> str:
        return f"MetricsTracker({str(self.store.path)!r}, account={self.account!r})"

    # ------------------------------------------------------------------ analytics

    def _account(self, account: str | None) -> str:
        return require_account(account) if account is not None else self.account

    def _day_partials(self, account: str) -> _DayPartials:
        """The account's per-day partials, re-read only when the ledger has changed."""
        self.flush()
        cached = self._partials.get(account)
        with self.store.connect() as con:
            changes = con.execute(_CHANGES_SQL).fetchone()
            if cached is not None and cached.changes == changes:
                return cached
            params = {"account": account}
            columns = None
            if cached is not None and cached.changes[:2] == changes[:2]:  # only equity rows changed
                columns = {"day": cached.day, **cached.columns}
            elif cached is not None and cached.changes[1] is not None:
                since = {"since": cached.changes[1]}
                added = con.execute(_NEW_ROWS_SQL, since).fetchone()[0]
                if cached.changes[0] + added == changes[0]:  # rows were only added: fold them in
                    columns = cached.merged(con.execute(_NEW_BY_DAY_SQL, {**params, **since}).fetchnumpy())
            if columns is None:  # first read, or rows were deleted: aggregate every trade again
                columns = con.execute(_BY_DAY_SQL, params).fetchnumpy()
            first_equity = con.execute(_FIRST_EQUITY_DAY_SQL, params).fetchone()[0]
        fresh = _DayPartials(changes, columns, first_equity)
        self._partials[account] = fresh
        return fresh

    def _window(self, partials: _DayPartials, lookback_days: Any, as_of: Any) -> tuple[date, date | None, dict, dict]:
        lookback = _lookback(lookback_days)
        end = _as_of(as_of)
        start = None if lookback is None else end - timedelta(days=lookback - 1)
        scalars, series = partials.window(self.initial_capital, start, end)
        return end, start, scalars, series

    def daily_series(
        self, lookback_days: int | None = 30, as_of: Any = None, *, account: str | None = None
    ) -> pd.DataFrame:
        """The window's days: pnl, trades, start/end equity, daily return, peak, drawdown."""
        account = self._account(account)
        _, _, _, series = self._window(self._day_partials(account), lookback_days, as_of)
        return pd.DataFrame({**series, "day": series["day"].astype(object)})  # datetime.date

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
        return self.metrics_for_windows([(lookback_days, as_of)], account=account)[0]

    def metrics_for_windows(
        self, windows: Sequence[tuple[int | None, Any]], *, account: str | None = None
    ) -> list[dict[str, Any]]:
        """``calculate_metrics(lookback_days, as_of)`` for each ``(lookback_days, as_of)``
        of ``windows``, in order, from one read of the ledger: a rolling Sharpe over every
        day of a year, or each month's return, costs one call instead of one per window."""
        account = self._account(account)
        partials = self._day_partials(account)
        results = []
        for lookback_days, as_of in windows:
            end, _, row, _ = self._window(partials, lookback_days, as_of)
            start_equity = row["start_equity"]
            end_equity = row["end_equity"] if row["end_equity"] is not None else start_equity
            start = row["start"] or end  # no history at all: an empty window
            result = {
                "account": account,
                "as_of": end.isoformat(),
                "start": start.isoformat(),
                "lookback_days": lookback_days,
                "initial_capital": self.initial_capital,
                "num_trades": row["num_trades"],
                "wins": row["wins"],
                "losses": row["losses"],
                "num_days": row["num_days"],
                "start_equity": start_equity,
                "end_equity": end_equity,
                "total_return": end_equity / start_equity - 1 if start_equity > 0 else None,
            }
            for name in ("total_pnl", "gross_profit", "gross_loss", "commission", "win_rate",
                         "avg_win", "avg_loss", "profit_factor", "expectancy", "best_trade",
                         "worst_trade", "sharpe_ratio", "sortino_ratio", "max_drawdown"):
                result[name] = _number(row[name])
            results.append(result)
        return results

    def get_agent_performance(
        self, lookback_days: int | None = None, as_of: Any = None, *, account: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """Trade statistics per agent (all history by default), best total P&L first.

        Each value has ``num_trades``, ``wins``, ``losses``, ``total_pnl``, ``win_rate``,
        ``avg_win``, ``avg_loss``, ``profit_factor``, ``expectancy``, ``best_trade``,
        ``worst_trade``, ``gross_profit``, ``gross_loss``, ``commission`` (definitions as
        in ``calculate_metrics``).
        """
        lookback = _lookback(lookback_days)
        end = _as_of(as_of)
        params = {"account": self._account(account), "as_of": end,
                  "start": None if lookback is None else end - timedelta(days=lookback - 1)}
        self.flush()
        with self.store.connect() as con:
            cursor = con.execute(_AGENT_SQL, params)
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
