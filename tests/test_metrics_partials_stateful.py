"""The kept partials (in memory and in the snapshot beside the ledger) against the trades
themselves, over random sequences of what happens to a ledger: trades recorded by another
writer (for this account and another), replayed days (cleared, recorded again), equity
rows, the ledger idle or just written, a new process (a fresh tracker), the snapshot
deleted or spoiled. After every read the tracker's trade statistics and day series must
equal those of the trades as they stand, computed here with pandas. P&L are multiples of
1/4, so a sum is exact in any order and the comparison can be exact."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pandas as pd
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from tradenova_dagster.market import calendar
from tradenova_dagster.metrics import MetricsTracker
from tradenova_dagster.metrics.partials import snapshot_path
from tradenova_dagster.store import Store

NY = "America/New_York"
ACCOUNT, OTHER = "backtest:mine", "backtest:other"
DAYS = calendar.trading_days("2024-03-04", "2024-03-07")
AS_OF = DAYS[-1]
CAPITAL = 1_000_000.0

days = st.integers(0, len(DAYS) - 1)
trades = st.lists(st.tuples(days, st.integers(-4000, 4000), st.integers(0, 8), st.booleans()), min_size=1, max_size=4)


class LedgerAndKeptPartials(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.folder = tempfile.TemporaryDirectory()
        self.store = Store(Path(self.folder.name) / "ledger.duckdb")
        self.writer = MetricsTracker(store=Store(self.store.path), account=ACCOUNT)  # another writer
        self.reader = self._new_reader()
        self.idle_since = time.time() - 3600
        self.n = 0

    def teardown(self):
        self.folder.cleanup()

    def _new_reader(self) -> MetricsTracker:
        return MetricsTracker(store=self.store, initial_capital=CAPITAL, account=ACCOUNT)

    def _then(self, idle: bool) -> None:
        """After a write: left as it is (written just now), or as if nothing had been written
        for an hour (a stat then vouches), each time a little later, as the clock moves."""
        if idle:
            self.idle_since += 0.01
            for part in (self.store.path, self.store.path.with_name(self.store.path.name + ".wal")):
                if part.exists():
                    os.utime(part, (self.idle_since, self.idle_since))

    def _record(self, rows) -> None:
        with self.writer.batch():
            for day, quarters, commission, mine in rows:
                self.n += 1
                exit_time = pd.Timestamp(f"{DAYS[day]} 10:00", tz=NY) + pd.Timedelta(minutes=self.n)
                self.writer.record_trade("SPY", 1.0, 2.0, 1, "long", quarters / 4, "ppo", exit_time, exit_time,
                                         commission=commission / 4, account=ACCOUNT if mine else OTHER)

    @rule(rows=trades, idle=st.booleans())
    def record(self, rows, idle):
        self._record(rows)
        self._then(idle)

    @rule(day=days, replay=st.lists(st.tuples(st.integers(-4000, 4000), st.integers(0, 8)), max_size=3),
          idle=st.booleans())
    def replay_day(self, day, replay, idle):
        """A replayed day: cleared, then (maybe) recorded again, between two reads."""
        self.writer.clear_day(DAYS[day])
        self._record([(day, quarters, commission, True) for quarters, commission in replay])
        self._then(idle)

    @rule(day=days, idle=st.booleans())
    def record_equity(self, day, idle):
        self.n += 1
        ts = pd.Timestamp(f"{DAYS[day]} 09:31", tz=NY) + pd.Timedelta(seconds=self.n)
        self.writer.record_equity(ts, CAPITAL, CAPITAL, 0.0)
        self.writer.flush()
        self._then(idle)

    @rule(how=st.sampled_from(["delete", "garbage", "truncate"]))
    def spoil_snapshot(self, how):
        path = snapshot_path(self.store.path, ACCOUNT)
        if not path.exists():
            return
        if how == "delete":
            path.unlink()
        elif how == "garbage":
            path.write_bytes(b"\x93NUMPY garbage")
        else:
            path.write_bytes(path.read_bytes()[:-8])

    @rule(new_process=st.booleans())
    def read(self, new_process):
        if new_process:  # a fresh tracker: nothing kept in memory, the snapshot on disk
            self.reader = self._new_reader()
        m = self.reader.calculate_metrics(lookback_days=None, as_of=AS_OF)
        series = self.reader.daily_series(lookback_days=None, as_of=AS_OF)
        frame = self.store.query_df("SELECT day, pnl, commission FROM trades WHERE account = ?", [ACCOUNT])
        first_equity = self.store.query("SELECT min(day) FROM equity_curve WHERE account = ?", [ACCOUNT])[0][0]
        pnl = frame["pnl"]
        wanted = {
            "num_trades": len(pnl), "wins": int((pnl > 0).sum()), "losses": int((pnl < 0).sum()),
            "total_pnl": float(pnl.sum()), "gross_profit": float(pnl[pnl > 0].sum()),
            "gross_loss": float(pnl[pnl < 0].sum()), "commission": float(frame["commission"].sum()),
            "best_trade": float(pnl.max()) if len(pnl) else None,
            "worst_trade": float(pnl.min()) if len(pnl) else None,
        }
        assert {key: m[key] for key in wanted} == wanted
        firsts = [d for d in (frame["day"].min().date() if len(frame) else None, first_equity) if d is not None]
        assert m["start"] == (min(firsts) if firsts else AS_OF).isoformat()
        by_day = frame.assign(day=frame["day"].dt.date).groupby("day")["pnl"].agg(["sum", "count"])
        traded = series[series["trades"] > 0].set_index("day")
        assert traded["pnl"].to_dict() == by_day["sum"].to_dict()
        assert traded["trades"].to_dict() == by_day["count"].to_dict()
        assert float(series["pnl"].sum()) == wanted["total_pnl"]


LedgerAndKeptPartials.TestCase.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
TestKeptPartialsAgainstTheTrades = LedgerAndKeptPartials.TestCase
