"""MetricsTracker: measure how the trading went, from the account's ledger.

The metrics read the records an account's ledger holds (``ledger/records.py``: trades,
equity, predictions, decisions), each row tagged with the account (``sim:default``,
``backtest:<id>``, ``alpaca_paper:<id>``, ...), so that a backtest never mixes with paper
or live. Analytics are SQL over those tables (window functions), so they stay fast on
millions of trades and give the same answer from any process. This module owns no state
and writes nothing of its own: ``record_trade`` and the other writers are the ledger's
(``AccountRecords``), inherited so that the seed's usage works as documented.

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
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from tradenova_dagster.domain import require_price
from tradenova_dagster.ledger.accounts import ledger_store, require_account
from tradenova_dagster.ledger.records import AccountRecords
from tradenova_dagster.market import calendar
from tradenova_dagster.store import Store

DEFAULT_ACCOUNT = "sim:default"
TRADING_DAYS_PER_YEAR = 252

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


class MetricsTracker(AccountRecords):
    """Computes an account's metrics from its ledger (and records trades, equity,
    predictions and decisions through the ledger's writers, for the seed's usage).

    ``MetricsTracker(db_path=None, initial_capital=100_000)`` uses the account's ledger
    file (``$TRADENOVA_HOME/ledgers/``). ``account`` and ``run_id`` set the defaults
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
        account = require_account(account)
        # The account's ledger file unless a database is named (ledger/accounts.py).
        super().__init__(store if store is not None else (Store(db_path) if db_path else ledger_store(account)),
                         account, run_id)

    def __repr__(self) -> str:
        return f"MetricsTracker({str(self.store.path)!r}, account={self.account!r})"

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
