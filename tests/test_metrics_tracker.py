"""MetricsTracker recording: every recorder round-trips through a real DuckDB file, bad
input is refused with a message naming the field, and nothing is partially written."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pytest

from tradenova_dagster.domain import Decision, Signal
from tradenova_dagster.metrics import MetricsTracker
from tradenova_dagster.store import Store

NY = "America/New_York"


def ny(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=NY)


def count(store: Store, table: str, account: str | None = None) -> int:
    if account is None:
        return store.query(f"SELECT count(*) FROM {table}")[0][0]
    return store.query(f"SELECT count(*) FROM {table} WHERE account = ?", [account])[0][0]


@pytest.fixture
def tracker(store) -> MetricsTracker:
    return MetricsTracker(store=store, initial_capital=100_000)


def test_seed_usage_as_documented(tradenova_home):
    """DESIGN §3: MetricsTracker() on the default account's ledger file (ledger/accounts.py),
    times defaulting to now."""
    tracker = MetricsTracker()
    assert tracker.store.path == tradenova_home / "ledgers" / "sim+default.duckdb"
    before = pd.Timestamp.now(tz="UTC")
    tracker.record_trade("SPY", 1.00, 1.40, 2, "long", 80.0, "ppo")
    row = tracker.store.query_df("SELECT * FROM trades").iloc[0]
    assert row["account"] == "sim:default" and row["agent"] == "ppo" and row["side"] == "long"
    assert row["entry_time"] == row["exit_time"]
    assert pd.Timestamp(row["exit_time"]) >= before - pd.Timedelta(seconds=1)
    assert row["day"].date() == pd.Timestamp.now(tz=NY).date()
    metrics = tracker.calculate_metrics()
    assert metrics["num_trades"] == 1 and metrics["total_pnl"] == 80.0
    for key in ("total_pnl", "win_rate", "sharpe_ratio", "max_drawdown", "num_trades"):
        assert key in metrics
    assert tracker.get_agent_performance()["ppo"]["total_pnl"] == 80.0


def test_importing_the_store_and_tracker_does_not_import_matplotlib():
    code = (
        "import sys\n"
        "from tradenova_dagster.metrics import MetricsTracker\n"
        "import tradenova_dagster.store\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
        "assert 'dagster' not in sys.modules, 'dagster imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_record_trade_stores_every_field(tracker, store):
    entry, exit_ = ny("2024-03-05 10:01"), ny("2024-03-05 15:59:30")
    trade_id = tracker.record_trade(
        "spy", 2.10, 3.15, 4, "buy", 412.5, "grpo", entry, exit_,
        contract="SPY240315C00510000", commission=2.6, exit_reason="tp2", run_id="run-1",
    )
    row = store.query_df("SELECT * FROM trades WHERE trade_id = ?", [trade_id]).iloc[0]
    assert row["symbol"] == "SPY" and row["contract"] == "SPY240315C00510000"
    assert row["side"] == "long" and row["qty"] == 4 and row["pnl"] == 412.5
    assert row["entry_price"] == 2.10 and row["exit_price"] == 3.15 and row["commission"] == 2.6
    assert row["exit_reason"] == "tp2" and row["run_id"] == "run-1"
    assert pd.Timestamp(row["entry_time"]) == entry and pd.Timestamp(row["exit_time"]) == exit_
    assert row["day"].date() == date(2024, 3, 5)


def test_trade_day_is_the_new_york_date_of_the_exit(tracker, store):
    # 00:30 UTC on the 6th is 19:30 on the 5th in New York: it counts for the 5th.
    tracker.record_trade("SPY", 1, 2, 1, "long", 1.0, "ppo",
                         exit_time=datetime(2024, 3, 6, 0, 30, tzinfo=timezone.utc))
    assert store.query("SELECT day FROM trades")[0][0] == date(2024, 3, 5)


def test_an_occ_symbol_is_split_into_underlying_and_contract(tracker, store):
    tracker.record_trade("SPY240315P00500000", 3.0, 2.0, 1, "short", 100.0, "ppo",
                         exit_time=ny("2024-03-05 11:00"))
    assert store.query("SELECT symbol, contract, side FROM trades")[0] == (
        "SPY", "SPY240315P00500000", "short")


def test_recorders_for_equity_predictions_decisions(tracker, store):
    ts = ny("2024-03-05 10:00")
    assert not hasattr(tracker, "record_fill")  # fills have one writer: the ledger (AccountLedger)
    tracker.record_equity(ts, 100_010.0, 99_582.0, 428.0)
    tracker.log_prediction("ppo_v1", 0.52, 0.41, symbol="SPY", timestamp=ts)
    tracker.log_prediction("ppo_v1", -0.9, timestamp=ts + pd.Timedelta(minutes=1))
    tracker.log_signal(Signal(ts, "SPY", 0.1, 0.05, Decision.FLAT, model="grpo_v2"))
    tracker.log_decision("ppo", "BUY_CALL", False, "VIX 33.1 > 32", symbol="SPY",
                         timestamp=ts, risk_level="HIGH")
    tracker.log_decision("ppo", 0.8, True, timestamp=ts)

    assert store.query("SELECT equity, cash, positions_value FROM equity_curve") == [
        (100_010.0, 99_582.0, 428.0)]
    predictions = store.query(
        "SELECT model, raw_action, smoothed_action, decision FROM rl_predictions ORDER BY ts, model")
    assert predictions == [("grpo_v2", 0.1, 0.05, "FLAT"), ("ppo_v1", 0.52, 0.41, "BUY_CALL"),
                           ("ppo_v1", -0.9, -0.9, "BUY_PUT")]
    decisions = store.query(
        "SELECT signal, allowed, reason, risk_level FROM agent_decisions ORDER BY allowed")
    assert decisions == [("BUY_CALL", False, "VIX 33.1 > 32", "HIGH"), ("BUY_CALL", True, "", None)]
    for table in ("equity_curve", "rl_predictions", "agent_decisions"):
        assert store.query(f"SELECT DISTINCT day, account FROM {table}") == [
            (date(2024, 3, 5), "sim:default")]


GOOD = dict(symbol="SPY", entry_price=1.0, exit_price=1.5, qty=1, side="long", pnl=50.0,
            agent="ppo", exit_time=datetime(2024, 3, 5, 15, 0, tzinfo=timezone.utc))


@pytest.mark.parametrize(
    "change, field",
    [
        ({"pnl": float("nan")}, "pnl"),
        ({"pnl": float("inf")}, "pnl"),
        ({"pnl": "12"}, "pnl"),
        ({"qty": -1}, "qty"),
        ({"qty": 0}, "qty"),
        ({"entry_price": 0}, "entry_price"),
        ({"exit_price": float("nan")}, "exit_price"),
        ({"agent": ""}, "agent"),
        ({"agent": "ppo agent"}, "agent"),
        ({"agent": "1ppo"}, "agent"),
        ({"agent": "ppo;DROP TABLE trades"}, "agent"),
        ({"agent": "p" * 65}, "agent"),
        ({"agent": None}, "agent"),
        ({"agent": 7}, "agent"),
        ({"side": "sideways"}, "side"),
        ({"symbol": ""}, "symbol"),
        ({"exit_time": datetime(2024, 3, 5, 15, 0)}, "exit_time"),
        ({"entry_time": datetime(2024, 3, 5, 16, 0, tzinfo=timezone.utc)}, "entry_time"),
        ({"exit_time": "not a time"}, "exit_time"),
        ({"commission": -1.0}, "commission"),
        ({"contract": "SPY-CALL"}, "SPY-CALL"),
        ({"contract": "QQQ240315C00400000"}, "does not match"),
        ({"account": "default"}, "account"),
        ({"account": "sim:"}, "account"),
    ],
)
def test_bad_trades_are_refused_naming_the_field_and_nothing_is_written(tracker, store, change, field):
    with pytest.raises(ValueError, match=field):
        tracker.record_trade(**{**GOOD, **change})
    assert count(store, "trades") == 0


def test_other_recorders_refuse_bad_input(tracker, store):
    ts = ny("2024-03-05 10:00")
    with pytest.raises(ValueError, match="equity"):
        tracker.record_equity(ts, float("nan"), 1.0, 1.0)
    with pytest.raises(ValueError, match="ts"):
        tracker.record_equity(datetime(2024, 3, 5, 10), 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="raw_action"):
        tracker.log_prediction("ppo", float("nan"), timestamp=ts)
    with pytest.raises(ValueError, match="decision"):
        tracker.log_prediction("ppo", 0.5, decision="SELL_EVERYTHING", timestamp=ts)
    with pytest.raises(ValueError, match="model"):
        tracker.log_prediction("", 0.5, timestamp=ts)
    with pytest.raises(ValueError, match="allowed"):
        tracker.log_decision("ppo", "FLAT", "yes", timestamp=ts)
    with pytest.raises(ValueError, match="agent"):
        tracker.log_decision("my agent!", "FLAT", True, timestamp=ts)
    with pytest.raises(ValueError, match="initial_capital"):
        MetricsTracker(store=store, initial_capital=0)
    with pytest.raises(ValueError, match="account"):
        MetricsTracker(store=store, account="paper")
    for table in ("equity_curve", "rl_predictions", "agent_decisions", "orders", "fills"):
        assert count(store, table) == 0


def test_batch_writes_once_at_the_end_and_reads_see_pending_rows(tracker, store, tradenova_home):
    other = Store(tradenova_home / "tradenova.duckdb")  # a second reader, e.g. another process
    start = ny("2024-03-05 09:30")
    with tracker.batch():
        for minute in range(390):
            ts = start + pd.Timedelta(minutes=minute)
            tracker.record_equity(ts, 100_000 + minute, 90_000, 10_000 + minute)
            tracker.log_prediction("ppo_v1", 0.0, timestamp=ts)
        tracker.record_trade(**{**GOOD, "exit_time": start + pd.Timedelta(hours=2)})
        assert count(other, "equity_curve") == 0  # nothing committed yet
        # A read through the tracker flushes first: it sees its own writes.
        assert tracker.calculate_metrics(as_of="2024-03-05")["num_trades"] == 1
        assert count(other, "equity_curve") == 390
        tracker.record_equity(start + pd.Timedelta(hours=7), 1.0, 1.0, 0.0)
        assert count(other, "equity_curve") == 390
    assert count(other, "equity_curve") == 391 and count(other, "rl_predictions") == 390


def test_batch_flushes_every_n_rows(tracker, store):
    ts = ny("2024-03-05 10:00")
    with tracker.batch(flush_every=100):
        for i in range(250):
            tracker.record_equity(ts + pd.Timedelta(seconds=i), 1.0, 1.0, 0.0)
        assert count(store, "equity_curve") == 200
    assert count(store, "equity_curve") == 250
    with pytest.raises(ValueError, match="flush_every"):
        with tracker.batch(flush_every=0):
            pass


def test_a_bad_row_in_a_batch_is_refused_at_the_call_and_the_good_rows_still_land(tracker, store):
    with tracker.batch():
        tracker.record_trade(**GOOD)
        with pytest.raises(ValueError, match="pnl"):
            tracker.record_trade(**{**GOOD, "pnl": float("nan")})
        tracker.record_trade(**GOOD)
    assert count(store, "trades") == 2


def test_a_batch_that_cannot_be_written_writes_nothing(tracker, store):
    """The flush is one transaction: a constraint failure rolls back every table."""
    with pytest.raises(Exception, match="(?i)duplicate|constraint"):
        with tracker.batch():
            tracker.record_equity(ny("2024-03-05 10:00"), 1.0, 1.0, 0.0)
            tracker.record_trade(**GOOD, trade_id="same")
            tracker.record_trade(**GOOD, trade_id="same")
    assert count(store, "trades") == 0 and count(store, "equity_curve") == 0


def test_a_batch_interrupted_by_an_error_keeps_what_happened_before(tracker, store):
    with pytest.raises(RuntimeError, match="feed died"):
        with tracker.batch():
            tracker.record_trade(**GOOD)
            raise RuntimeError("feed died")
    assert count(store, "trades") == 1


def test_accounts_never_mix(store):
    sim = MetricsTracker(store=store)
    backtest = MetricsTracker(store=store, account="backtest:2024-03-05", run_id="bt-run")
    sim.record_trade(**{**GOOD, "pnl": 100.0})
    backtest.record_trade(**{**GOOD, "pnl": -40.0})
    backtest.record_trade(**{**GOOD, "pnl": -10.0, "account": "alpaca_paper:PA1"})
    assert sim.calculate_metrics(as_of="2024-03-05")["total_pnl"] == 100.0
    assert backtest.calculate_metrics(as_of="2024-03-05")["total_pnl"] == -40.0
    assert sim.calculate_metrics(as_of="2024-03-05", account="alpaca_paper:PA1")["total_pnl"] == -10.0
    assert store.query("SELECT run_id FROM trades WHERE account = 'backtest:2024-03-05'") == [("bt-run",)]
    assert list(backtest.get_agent_performance(as_of="2024-03-05")) == ["ppo"]


def test_clear_day_removes_one_accounts_day_so_a_replay_does_not_double(store):
    tracker = MetricsTracker(store=store, account="backtest:bt1")
    other = MetricsTracker(store=store)
    day = ny("2024-03-05 10:00")
    for t in (tracker, other):
        t.record_trade(**{**GOOD, "exit_time": day})
        t.record_equity(day, 1.0, 1.0, 0.0)
        t.log_prediction("ppo", 0.5, timestamp=day)
    tracker.record_trade(**{**GOOD, "exit_time": day + timedelta(days=1)})
    assert tracker.clear_day("2024-03-05") == 3
    assert count(store, "trades", "backtest:bt1") == 1  # the next day stays
    assert count(store, "trades", "sim:default") == 1  # other accounts stay
    assert count(store, "rl_predictions", "backtest:bt1") == 0


def fresh_answer(store: Store, account: str) -> dict:
    """What a tracker that never read the ledger says (no partials kept)."""
    return MetricsTracker(store=store, account=account).calculate_metrics(lookback_days=None, as_of="2024-03-08")


def test_a_replayed_day_cleared_and_recorded_again_between_two_calls_is_seen(store):
    """Same row count before and after (one trade deleted, one recorded): the kept
    partials must not survive, nor be folded onto."""
    tracker = MetricsTracker(store=store, account="backtest:bt1")
    replay = MetricsTracker(store=Store(store.path), account="backtest:bt1")  # the next run
    tracker.record_trade(**{**GOOD, "pnl": 100.0, "exit_time": ny("2024-03-05 10:00")})
    tracker.record_trade(**{**GOOD, "pnl": -30.0, "exit_time": ny("2024-03-06 10:00")})
    before = tracker.calculate_metrics(lookback_days=None, as_of="2024-03-08")
    assert (before["num_trades"], before["total_pnl"], before["best_trade"]) == (2, 70.0, 100.0)
    assert replay.clear_day("2024-03-05") == 1
    replay.record_trade(**{**GOOD, "pnl": 20.0, "exit_time": ny("2024-03-05 11:00")})
    replay.flush()
    after = tracker.calculate_metrics(lookback_days=None, as_of="2024-03-08")
    assert (after["num_trades"], after["total_pnl"], after["best_trade"]) == (2, -10.0, 20.0)
    assert after == fresh_answer(store, "backtest:bt1")


def test_an_idle_ledger_is_answered_without_a_connect_and_the_next_write_is_still_seen(store):
    """No connection held: a stat of the ledger's files vouches for an unchanged ledger
    (metrics/partials.py); a write by another process must still show at once."""
    tracker = MetricsTracker(store=store, account="backtest:bt1")
    tracker.record_trade(**{**GOOD, "pnl": 100.0, "exit_time": ny("2024-03-05 10:00")})
    tracker.flush()
    idle = time.time() - 60  # as if written a minute ago, instead of waiting for it
    for part in (store.path, store.path.with_name(store.path.name + ".wal")):
        if part.exists():
            os.utime(part, (idle, idle))
    first = tracker.calculate_metrics(lookback_days=None, as_of="2024-03-08")
    connects = store.connects
    assert tracker.calculate_metrics(lookback_days=None, as_of="2024-03-08") == first
    assert store.connects == connects  # answered from the kept partials
    code = ("import pandas as pd\n"
            "from tradenova_dagster.metrics import MetricsTracker\n"
            f"t = MetricsTracker({str(store.path)!r}, account='backtest:bt1')\n"
            "at = pd.Timestamp('2024-03-06 15:00', tz='America/New_York')\n"
            "t.record_trade('SPY', 1, 2, 1, 'long', -40.0, 'grpo', at, at)\n"
            "t.flush()\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    after = tracker.calculate_metrics(lookback_days=None, as_of="2024-03-08")
    assert (after["num_trades"], after["total_pnl"], after["worst_trade"]) == (2, 60.0, -40.0)
    assert after == fresh_answer(store, "backtest:bt1")
