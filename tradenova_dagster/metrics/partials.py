"""An account's trades as per-day partial sums, kept between calls and re-read only as
far as the ledger changed (the tracker's module docstring gives the definitions).

Why each piece is the way it is (``bench/metrics.py`` measures each case):

- **Unchanged ledger, or a trade just recorded:** one statement (``_CHANGES_SQL``)
  returns the row counts and the trades recorded after the newest ``recorded_at``
  already seen, as partials. If the count grew by exactly those rows, they are folded
  into the kept partials in numpy; if nothing is new, the kept partials stand. The old
  path took four statements; a round trip, not the arithmetic, is what a call costs.
- **A first read** is the same statement, everything being "added since" an empty
  ledger: the one scan of the trades is the aggregation.
- **Anything else** (``clear_day`` deleting a replayed day): every trade of the
  account is aggregated again. ``GROUP BY day, sign(pnl)`` with five plain
  aggregates is much cheaper in DuckDB than one group per day with FILTER aggregates;
  numpy folds the (at most three) sign groups of a day into the day's partials. A day's
  P&L is then the sum of its sign groups' sums: the same numbers, summed in another
  order (within float rounding, as DuckDB's parallel sums already were).
- **No connection held:** opening the file costs tens of milliseconds, far more than the
  metrics. Every commit to a DuckDB file changes the file or its ``.wal`` (size or
  modification time), so a stat of both taken before the last read says whether the
  ledger can have changed since; only a stat the file system cannot date apart from a
  later write is refused (``_SETTLED_S``: the ledger was written less than 2 s before
  it, as git treats a "racily clean" file). Inside ``hold()``/``unit_of_work()`` the
  connection is used instead: it can see its own uncommitted rows, which no stat shows.
- **A fresh tracker** (a new process: the daily report, the monitor, ``tradenova
  report``) would otherwise aggregate every trade again (tens of ms for 1M trades, as
  much as the connect). So the partials are also kept beside the ledger, as a snapshot
  (``<ledger>.partials/<account>.npy``, replaced atomically) with the ledger state they
  were read at: a stat that matches it answers without a connect, as the idle shortcut
  does within a process; otherwise it is the base that the rows added since are folded
  onto, exactly as kept partials are. A snapshot is written after a read that took a
  settled stat or aggregated every trade, never from a held connection (its uncommitted
  rows may yet roll back). It is a cache of facts the trades own: deleting it, or a
  snapshot from another version, a file that is not one or a folder that cannot be
  written, only costs the next read an aggregation.

Unseen, as before, would be only a delete plus an insert of as many rows with an older
``recorded_at`` between two reads, e.g. a ledger file replaced by an older copy that holds
as many trades (delete its ``.partials`` folder then); no writer does that
(``recorded_at`` is ``now()``).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tradenova_dagster.market import calendar
from tradenova_dagster.store import Store

TRADING_DAYS_PER_YEAR = 252
_SETTLED_S = 2.0  # a stat taken this long after the last write cannot miss a later one
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # "since" before anything was read

# The partials of one group of trades (a day, or an agent's day); every trade statistic
# is a sum over them, so the account totals and the per-agent table share one definition.
PARTIALS_SQL = """
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
PARTIAL_NAMES = ("n", "wins", "losses", "pnl", "gross_profit", "gross_loss", "best", "worst", "commission")
# The same partials, by day and sign of the P&L (folded per day by ``_fold_signs``).
_BY_DAY_SIGN_SQL = """
SELECT day, sign(pnl)::TINYINT AS sign, count(*) AS n, sum(pnl) AS pnl, max(pnl) AS best,
       min(pnl) AS worst, sum(commission) AS commission
FROM trades WHERE account = $account GROUP BY ALL
"""
# What changed since the newest rows seen, in one round trip (a round trip, not the
# arithmetic, is what a call costs): a first row with the row counts (the tables'
# metadata) and the equity rows recorded since (how many, the newest, the account's
# first day among them), then the trades recorded since, as partials
# by account (mine or not), day and sign. The zone maps on recorded_at (rows are appended
# in time order) skip every row group recorded before $since: 1M trades cost what 10 do.
_CHANGES_SQL = """
SELECT NULL::BOOLEAN AS mine, NULL::DATE AS day, NULL::TINYINT AS sign, (SELECT count(*) FROM trades) AS n,
       NULL::DOUBLE AS pnl, NULL::DOUBLE AS best, NULL::DOUBLE AS worst, NULL::DOUBLE AS commission,
       NULL::TIMESTAMPTZ AS latest, (SELECT count(*) FROM equity_curve) AS equity_n,
       equity_new.n AS equity_added, equity_new.latest AS equity_latest, equity_new.first AS equity_first
FROM (SELECT count(*) AS n, max(recorded_at) AS latest, min(day) FILTER (WHERE account = $account) AS first
      FROM equity_curve WHERE recorded_at > $equity_since) AS equity_new
UNION ALL
SELECT account = $account, day, sign(pnl)::TINYINT, count(*), sum(pnl), max(pnl), min(pnl), sum(commission),
       max(recorded_at), NULL, NULL, NULL, NULL
FROM trades WHERE recorded_at > $since GROUP BY ALL
"""
_NEW_NAMES = ("mine", "day", "sign", "n", "pnl", "best", "worst", "commission")
_EMPTY = {"day": np.array([], dtype="datetime64[D]"), "sign": np.array([], dtype=np.int8),
          **{name: np.array([], dtype=np.int64) for name in ("n", "wins", "losses")},
          **{name: np.array([]) for name in PARTIAL_NAMES if name not in ("n", "wins", "losses")}}
_FIRST_EQUITY_DAY_SQL = "SELECT min(day) FROM equity_curve WHERE account = $account"
# The snapshot beside the ledger (module docstring): an int64 header (_SNAPSHOT_VERSION,
# what was seen, the first equity day, the file state), then one record per day.
_SNAPSHOT_VERSION = 1
_HEADER_SIZE = 15
_NO_DAY = np.iinfo(np.int64).min
_RECORD = np.dtype([("day", "datetime64[D]"), *((name, np.int64) for name in PARTIAL_NAMES[:3]),
                    *((name, np.float64) for name in PARTIAL_NAMES[3:])])


@lru_cache(maxsize=1)
def exchange_days() -> np.busdaycalendar:
    """Weekdays minus the weekdays NYSE is closed, over the whole calendar (built once).
    Beyond the calendar's range every weekday counts."""
    xnys = calendar.xnys()
    holidays = calendar.non_trading_weekdays(xnys.first_session.date(), xnys.last_session.date())
    return np.busdaycalendar(weekmask="1111100", holidays=np.array(list(holidays), dtype="datetime64[D]"))


def _file_state(path: Path) -> tuple | None:
    """(size, mtime) of the database file and its WAL, or None when the last write is too
    recent for a later one to be told apart (module docstring)."""
    now = time.time_ns()
    state = []
    for part in (path, path.with_name(path.name + ".wal")):
        try:
            stat = os.stat(part)
        except FileNotFoundError:
            state.append(None)
            continue
        if now - stat.st_mtime_ns < _SETTLED_S * 1e9:
            return None
        state.append((stat.st_ino % (1 << 63), stat.st_size, stat.st_mtime_ns))  # int64 in a snapshot
    return tuple(state)


def snapshot_path(ledger: Path, account: str) -> Path:
    """Where the account's partials are kept beside its ledger: ``<ledger>.partials/<account>.npy``
    (``:`` written ``+``, as in the ledgers' own names)."""
    return ledger.with_name(ledger.name + ".partials") / (account.replace(":", "+") + ".npy")


def _micros(instant: datetime) -> int:
    return (instant - _EPOCH) // timedelta(microseconds=1)  # exact: TIMESTAMPTZ counts microseconds


def _encode_state(state: tuple | None) -> list[int]:
    if state is None:
        return [0] * 9
    return [1, *(value for part in state for value in ((0, 0, 0, 0) if part is None else (1, *part)))]


def _decode_state(values: np.ndarray) -> tuple | None:
    if not values[0]:
        return None
    return tuple(tuple(int(v) for v in values[at + 1:at + 4]) if values[at] else None for at in (1, 5))


def _sorted_union(kept: np.ndarray, more: np.ndarray) -> np.ndarray:
    """``np.union1d`` of two sorted arrays of distinct days, without its sort and hash
    when ``more`` is already in ``kept`` (the usual case: a trade on a known day)."""
    at = np.searchsorted(kept, more).clip(max=len(kept) - 1) if len(kept) else None
    if at is not None and bool((kept[at] == more).all()):
        return kept
    return np.union1d(kept, more)


def _fold_signs(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-day partials (``PARTIAL_NAMES``, sorted by day) from ``_BY_DAY_SIGN_SQL``'s rows."""
    day, at = np.unique(np.asarray(rows["day"], dtype="datetime64[D]"), return_inverse=True)
    sign, n = np.asarray(rows["sign"], dtype=np.int64), np.asarray(rows["n"], dtype=np.int64)
    pnl = np.asarray(rows["pnl"], dtype=float)
    size = len(day)

    def total(weights, dtype=float):
        return np.bincount(at, weights=weights, minlength=size).astype(dtype)

    best, worst = np.full(size, -np.inf), np.full(size, np.inf)
    np.maximum.at(best, at, np.asarray(rows["best"], dtype=float))
    np.minimum.at(worst, at, np.asarray(rows["worst"], dtype=float))
    return {
        "day": day, "n": total(n, np.int64), "wins": total(np.where(sign > 0, n, 0), np.int64),
        "losses": total(np.where(sign < 0, n, 0), np.int64), "pnl": total(pnl),
        "gross_profit": total(np.where(sign > 0, pnl, 0.0)), "gross_loss": total(np.where(sign < 0, pnl, 0.0)),
        "best": best, "worst": worst, "commission": total(np.asarray(rows["commission"], dtype=float)),
    }


class DayPartials:
    """One account's trades as per-day partials (``PARTIAL_NAMES``, sorted by day), its
    first equity day, and the ledger state they were read at: row counts and newest
    ``recorded_at`` of trades and equity, and the files' stat (``_file_state``)."""

    def __init__(self, columns: dict[str, np.ndarray], first_equity_day: date | None,
                 seen: tuple, file_state: tuple | None):
        self.day = np.asarray(columns["day"]).astype("datetime64[D]")
        self.columns = {name: np.asarray(columns[name]) for name in PARTIAL_NAMES}
        self.first_equity_day = None if first_equity_day is None else np.datetime64(first_equity_day, "D")
        self.seen, self.file_state = seen, file_state
        self._windows: dict[tuple, tuple[dict, dict]] = {}  # (capital, start, as_of) -> window

    @classmethod
    def read(cls, store: Store, account: str, cached: "DayPartials | None", held: bool) -> "DayPartials":
        """The account's partials: ``cached`` (or the snapshot beside the ledger) when the
        ledger cannot have changed, else folded or re-read as far as it did (module docstring)."""
        state = None if held else _file_state(store.path)
        if cached is not None and state is not None and cached.file_state == state:
            return cached
        snapshot = snapshot_path(store.path, account)
        stored = cls.load(snapshot) if cached is None or state is not None else None
        if stored is not None and state is not None and stored.file_state == state:
            return stored
        known = cached if cached is not None else stored
        # A first read is a read of everything "added since" an empty ledger.
        base = known if known is not None else cls(_EMPTY, None, (0, _EPOCH, 0, _EPOCH), None)
        seen, everything = base.seen, known is None
        with store.connect() as con:
            rows = con.execute(_CHANGES_SQL, {"account": account, "since": seen[1],
                                              "equity_since": seen[3]}).fetchall()
            head = next(row for row in rows if row[0] is None)
            new = [row for row in rows if row[0] is not None]
            total, (equity_total, equity_added, equity_latest, equity_first) = head[3], head[9:]
            latest = max((row[8] for row in new), default=None)
            now_seen = (total, latest or seen[1], equity_total, equity_latest or seen[3])
            trades_same = total == seen[0] and not new
            if known is not None and trades_same and equity_total == seen[2] and equity_latest is None:
                known.file_state = state  # nothing changed
                fresh = known
            else:
                columns = {"day": base.day, **base.columns} if trades_same else None
                if new and total == seen[0] + sum(row[3] for row in new):  # rows only added: fold them in
                    mine = [row for row in new if row[0]]
                    columns = base._merged(_fold_signs(dict(zip(_NEW_NAMES, zip(*mine))) if mine else _EMPTY))
                if columns is None:  # rows were deleted: aggregate every trade again
                    columns = _fold_signs(con.execute(_BY_DAY_SIGN_SQL, {"account": account}).fetchnumpy())
                    everything = True
                if equity_total == seen[2] + equity_added:  # equity rows only added (or none)
                    firsts = [np.datetime64(d, "D") for d in (base.first_equity_day, equity_first) if d is not None]
                    first_equity = min(firsts) if firsts else None
                else:
                    first_equity = con.execute(_FIRST_EQUITY_DAY_SQL, {"account": account}).fetchone()[0]
                fresh = cls(columns, first_equity, now_seen, state)
        if not held and (state is not None or everything):  # worth keeping for the next process
            fresh.save(snapshot)
        return fresh

    @classmethod
    def load(cls, path: Path) -> "DayPartials | None":
        """The partials ``save`` wrote (in any process), or None where there are none or the
        file is not a snapshot of this version."""
        try:
            with open(path, "rb") as snapshot:
                header = np.load(snapshot, allow_pickle=False)
                record = np.load(snapshot, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if (header.dtype != np.int64 or header.shape != (_HEADER_SIZE,) or header[0] != _SNAPSHOT_VERSION
                or record.dtype != _RECORD or record.ndim != 1):
            return None
        columns = {name: record[name].copy() for name in _RECORD.names}
        seen = (int(header[1]), _EPOCH + timedelta(microseconds=int(header[2])),
                int(header[3]), _EPOCH + timedelta(microseconds=int(header[4])))
        first_equity = None if header[5] == _NO_DAY else np.datetime64(int(header[5]), "D")
        return cls(columns, first_equity, seen, _decode_state(header[6:]))

    def save(self, path: Path) -> None:
        """Write these partials to ``path`` for ``load``: a temporary file, then a rename, so
        that a reader sees the old snapshot or the new one, never part of one."""
        first_equity = _NO_DAY if self.first_equity_day is None else int(self.first_equity_day.astype(np.int64))
        header = np.array([_SNAPSHOT_VERSION, self.seen[0], _micros(self.seen[1]), self.seen[2],
                           _micros(self.seen[3]), first_equity, *_encode_state(self.file_state)], dtype=np.int64)
        record = np.empty(len(self.day), dtype=_RECORD)
        record["day"] = self.day
        for name in PARTIAL_NAMES:
            record[name] = self.columns[name]
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(exist_ok=True)
            with open(tmp, "wb") as out:
                np.save(out, header)
                np.save(out, record)
            os.replace(tmp, path)
        except OSError:  # a cache (module docstring): without it the next read aggregates
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _merged(self, new: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """These partials with those of trades added since folded in."""
        day = _sorted_union(self.day, new["day"])
        old_at, new_at = np.searchsorted(day, self.day), np.searchsorted(day, new["day"])
        columns = {"day": day}
        for name in PARTIAL_NAMES:  # best is a max, worst a min, the rest are sums
            kept = self.columns[name]
            column = np.full(len(day), {"best": -np.inf, "worst": np.inf}.get(name, 0), dtype=kept.dtype)
            column[old_at] = kept
            fold = {"best": np.maximum, "worst": np.minimum}.get(name, np.add)
            column[new_at] = fold(column[new_at], new[name])
            columns[name] = column
        return columns

    def window(self, capital: float, start: date | None, as_of: date) -> tuple[dict, dict]:
        """The window's trade statistics and its day series (definitions: the tracker's
        module docstring). ``start`` None means from the account's first day. Returns
        (scalars, series), with NaN in the series where a value is undefined. Kept while
        these partials stand (an unchanged ledger asked the same window again)."""
        key = (capital, start, as_of)
        if key not in self._windows:
            if len(self._windows) >= 64:  # e.g. a rolling window over every day of a year
                self._windows.clear()
            self._windows[key] = self._window(capital, start, as_of)
        scalars, series = self._windows[key]
        return dict(scalars), {name: values.copy() for name, values in series.items()}

    def _window(self, capital: float, start: date | None, as_of: date) -> tuple[dict, dict]:
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
            days = _sorted_union(span[np.is_busday(span, busdaycal=exchange_days())], trade_days)
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
