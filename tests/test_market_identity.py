"""Market data is a fact of its source: a day stored from one source never serves another.

Measured before (issue 15): in a home that had replayed 2022-10-11 on synthetic data, a
later ``--source file`` backtest of the real day reused the synthetic VIX (15.81 instead
of the real prior close 32.45) and entered 5 times through the VIX lockout.
"""

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tradenova_dagster.domain import Decision, Signal
from tradenova_dagster.market.bars_store import bars_for_day, load_stored_bars, quality_verdict, save_day
from tradenova_dagster.market.context import MarketContext, load_context, save_context
from tradenova_dagster.market.data import get_source
from tradenova_dagster.market.quality import CheckOutcome
from tradenova_dagster.store import Store, migrations
from tradenova_dagster.session.day import backtest_day, trading_context

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_DAY = "2022-10-11"  # VIX closed at 32.45 on 2022-10-10


class AlwaysCall:
    """A signal that wants a call on every bar."""

    model_id = "always-call"

    def reset(self, day=None, context=None):
        pass

    def on_bar(self, bar, position=None):
        return Signal(bar.timestamp, bar.symbol, 0.9, 0.9, Decision.BUY_CALL, self.model_id)


def _bars(day: str, price: float) -> pd.DataFrame:
    stamps = pd.date_range(f"{day} 14:30", periods=3, freq="1min", tz="UTC")
    return pd.DataFrame({"timestamp": stamps, "open": price, "high": price + 1, "low": price - 1, "close": price,
                         "volume": 100.0})


def _context(source: str, vix: float) -> MarketContext:
    return MarketContext(pd.Timestamp(REAL_DAY).date(), vix, 50.0, 0.2, "SPY", 360.0, source)


def test_contexts_of_two_sources_for_one_day_are_two_facts(store):
    save_context(store, _context("synthetic", 15.81))
    assert load_context(store, REAL_DAY, "file") is None  # never another source's in its place
    save_context(store, _context("file", 32.45))
    save_context(store, _context("synthetic", 15.9))  # re-materialising one source leaves the other
    assert load_context(store, REAL_DAY, "file").vix == 32.45
    assert load_context(store, REAL_DAY, "synthetic").vix == 15.9


def test_bars_and_verdicts_of_two_sources_for_one_day_are_kept_apart(store):
    day = pd.Timestamp(REAL_DAY).date()
    failed = [CheckOutcome("no_nan", False)]
    save_day(store, day, {"SPY": _bars(REAL_DAY, 100.0)}, "synthetic", {"SPY": failed})
    save_day(store, day, {"SPY": _bars(REAL_DAY, 360.0)}, "file", {"SPY": []})
    assert load_stored_bars(store, "SPY", day, "synthetic")["close"].tolist() == [100.0] * 3
    assert load_stored_bars(store, "SPY", day, "file")["close"].tolist() == [360.0] * 3
    assert quality_verdict(store, "SPY", day, "synthetic")[0] is False  # the synthetic day's failure ...
    assert quality_verdict(store, "SPY", day, "file") == (True, "[]")  # ... does not block the real one
    save_day(store, day, {"SPY": _bars(REAL_DAY, 101.0)}, "synthetic")
    assert store.query("SELECT source, count(*) FROM market_bars GROUP BY source ORDER BY source") == \
        [("file", 3), ("synthetic", 3)]


def test_stored_bars_of_another_source_are_not_served(store):
    synthetic = get_source("synthetic")
    day = pd.Timestamp("2026-11-20").date()
    save_day(store, day, {"SPY": _bars("2026-11-20", 1.0)}, "file")  # another source's day
    bars = bars_for_day(store, synthetic, "SPY", day)
    assert len(bars) == 390 and bars["close"].iloc[0] != 1.0  # the synthetic source's own day


def test_the_migration_keeps_old_rows_under_the_source_they_recorded(tmp_path):
    """A home written before market data was keyed by source keeps every row."""
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
    for version, name, sql in migrations():
        if version != 2:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
    con.execute("INSERT INTO market_bars (symbol, day, ts, open, high, low, close, volume, source) VALUES "
                "('SPY', '2022-10-11', '2022-10-11 13:30:00+00', 1, 2, 0.5, 1.5, 10, 'synthetic')")
    con.execute("INSERT INTO market_bars_quality (symbol, day, passed, failures) VALUES "
                "('SPY', '2022-10-11', false, '[]'), ('QQQ', '2022-10-11', true, '[]')")
    con.execute("INSERT INTO market_context (day, vix, iv_rank, realized_vol, underlying, underlying_close, source)"
                " VALUES ('2022-10-11', 15.81, 40, 0.2, 'SPY', 360, 'synthetic')")
    con.close()

    store = Store(path)
    assert store.query("SELECT source, symbol, close FROM market_bars") == [("synthetic", "SPY", 1.5)]
    assert store.query("SELECT source, symbol, passed FROM market_bars_quality ORDER BY symbol") == \
        [("unknown", "QQQ", True), ("synthetic", "SPY", False)]
    assert load_context(store, REAL_DAY, "synthetic").vix == 15.81
    assert load_context(store, REAL_DAY, "file") is None


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.exists(), reason=f"real SPY/VIX data not found at {DATA}")
def test_a_real_day_after_a_synthetic_replay_of_it_uses_the_real_vix(store):
    """The measured case, end to end: replay the day on synthetic data, then on the real
    files; the real backtest sees VIX 32.45 and the VIX lockout (max 32) refuses every entry."""
    synthetic, files = get_source("synthetic"), get_source("file", data_dir=str(DATA))
    backtest_day(store, synthetic, REAL_DAY, AlwaysCall(), "synthetic-first")
    assert trading_context(store, synthetic, REAL_DAY).vix != 32.45

    report = backtest_day(store, files, REAL_DAY, AlwaysCall(), "real-after")
    assert trading_context(store, files, REAL_DAY).vix == 32.45
    assert report.entries == 0 and report.refusals > 0, f"entered through the VIX lockout: {report.summary()}"
