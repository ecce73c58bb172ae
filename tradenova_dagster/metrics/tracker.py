"""MetricsTracker: measure how the trading went, from the account's ledger.

The metrics read the records an account's ledger holds (``ledger/records.py``: trades,
equity, predictions, decisions), each row tagged with the account (``sim:default``,
``backtest:<id>``, ``alpaca_paper:<id>``, ...), so that a backtest never mixes with paper
or live. This module writes nothing into the ledger: ``record_trade`` and the other
writers are the ledger's (``AccountRecords``), inherited so that the seed's usage works as
documented.

Why it is fast (``bench/metrics.py``): every metric is a function of per-day partial sums
of the account's trades (count, wins, losses, P&L, gross profit and loss, best, worst,
commission), a few thousand rows however many trades there are. The tracker keeps them,
with the account's first equity day, and the day series and the ratios are numpy over
days, not rows. Every call first asks whether the ledger changed, so a trade written by
any process is seen by the next call, and re-reads only as far as it did: nothing, the
rows added since, or (after a delete) every trade. A fresh tracker (a new process: the
daily report, the monitor) starts from a snapshot of the partials kept beside the ledger
(``<ledger>.partials/``, a cache it may delete), not from every trade.
``metrics/partials.py`` says how.

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
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from tradenova_dagster.domain import require_price
from tradenova_dagster.ledger.accounts import ledger_store, require_account
from tradenova_dagster.ledger.records import AccountRecords
from tradenova_dagster.market import calendar
from tradenova_dagster.metrics.partials import PARTIALS_SQL, DayPartials
from tradenova_dagster.store import Store

DEFAULT_ACCOUNT = "sim:default"

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
    SELECT agent, day, {PARTIALS_SQL}
    FROM trades
    WHERE account = $account AND day <= $as_of AND ($start IS NULL OR day >= $start)
    GROUP BY agent, day
)
SELECT agent, {_TRADE_STATS}
FROM per_agent_day
GROUP BY agent
ORDER BY total_pnl DESC, agent
"""


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
    arguments too. Pass ``store`` to share an open :class:`Store`. Each call asks the
    ledger what changed: through the held connection inside ``store.hold()``, else by a
    stat of its files and, when they changed in the last 2 s or since the last call (or
    since the snapshot beside the ledger was kept), one short connection (a connect costs
    far more than the metrics: metrics/partials.py).
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
        self._partials: dict[str, DayPartials] = {}  # account -> its partials (module docstring)

    def __repr__(self) -> str:
        return f"MetricsTracker({str(self.store.path)!r}, account={self.account!r})"

    # ------------------------------------------------------------------ analytics

    def _account(self, account: str | None) -> str:
        return require_account(account) if account is not None else self.account

    def _day_partials(self, account: str) -> DayPartials:
        """The account's per-day partials, re-read only as far as the ledger changed."""
        self.flush()
        fresh = DayPartials.read(self.store, account, self._partials.get(account), self.store.is_held)
        self._partials[account] = fresh
        return fresh

    def _window(self, partials: DayPartials, lookback_days: Any, as_of: Any) -> tuple[date, date | None, dict, dict]:
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
