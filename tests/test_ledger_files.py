"""One DuckDB file per account (DESIGN.md §2, §5): where each ledger lives, the one-time
move of account rows out of an older shared database, the account lease across real
processes, two backtests side by side, and the session's one ledger connection."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types

import dagster as dg
import pytest
from process_helpers import LineProcess

from broker_helpers import MONDAY_OPEN, StepClock
from conftest import REPO_ROOT
from session_helpers import crafted_model
from tradenova_dagster.domain import Order
from tradenova_dagster.ledger import accounts as accounts_mod
from tradenova_dagster.ledger import lease as lease_mod
from tradenova_dagster.ledger.accounts import ACCOUNT_TABLES, ledger_path, shared_store, split_legacy_ledgers
from tradenova_dagster.ledger.lease import AccountBusy, AccountLease, lease_holder
from tradenova_dagster.store import Store

DAY = "2026-11-20"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


# --------------------------------------------------------------------------- ledger_path


def test_each_account_has_its_own_file_and_a_day_lives_in_its_backtests(tradenova_home):
    ledgers = tradenova_home / "ledgers"
    assert ledger_path("sim:default") == ledgers / "sim+default.duckdb"
    assert ledger_path("backtest:abc") == ledgers / "backtest+abc.duckdb"
    assert ledger_path("backtest:abc:2023-01-03") == ledgers / "backtest+abc.duckdb"
    assert ledger_path("alpaca_paper:PA123") == ledgers / "alpaca_paper+PA123.duckdb"
    assert ledger_path("sim:a") != ledger_path("sim:b")


@pytest.mark.parametrize("bad", ["nocolon", "sim:", "../x:y", "sim:../x", ":x", "Sim:x", "", None])
def test_a_bad_account_name_is_refused_naming_the_field_and_value(tradenova_home, bad):
    with pytest.raises(ValueError) as err:
        ledger_path(bad)
    assert "account" in str(err.value) and repr(bad) in str(err.value)
    assert not list(tradenova_home.glob("ledgers/*.duckdb"))  # nothing was created for it


# --------------------------------------------------------------------------- legacy split


def _account_rows(store: Store) -> dict[tuple[str, str], int]:
    """{(table, account): rows} over every account table of ``store``."""
    out = {}
    for table in ACCOUNT_TABLES:
        for account, n in store.query(f"SELECT account, count(*) FROM {table} GROUP BY account"):
            out[(table, account)] = n
    return out


def _write_old_shared_db(shared: Store) -> None:
    """What an older TradeNova left: every account's rows in the shared file."""
    from tradenova_dagster.broker import SimBroker
    from tradenova_dagster.metrics import MetricsTracker

    for i, account in enumerate(["sim:alpha", "backtest:bt1"]):
        tracker = MetricsTracker(store=shared, account=account)
        for n in range(2 + i):
            tracker.record_trade("SPY", 1.0, 1.5, 1, "long", 50.0, "ppo", trade_id=f"{account}-t{n}")
        clock = StepClock(MONDAY_OPEN)
        sim = SimBroker(account if i == 0 else f"{account}:{DAY}", shared, clock=clock)
        sim.on_bar(clock.t, "SPY", 500.0, vix=15)
        sim.submit_order(Order("SPY", 1 + i, "buy", f"old-{i}"))
        sim.on_bar(clock.minutes(1), "SPY", 501.0)
        shared.execute("INSERT INTO session_events (account, run_id, job, kind, detail) VALUES (?, 'old', "
                       "'session', 'started', '{}')", [account])
    shared.execute("INSERT INTO market_bars (symbol, day, ts, open, high, low, close, volume, source) VALUES "
                   "('SPY', DATE '2026-11-20', TIMESTAMPTZ '2026-11-20 14:30:00+00', 1, 1, 1, 1, 10, 'test')")
    shared.execute("INSERT INTO models (model_id, agent, symbol, path, timesteps, train_start, train_end, "
                   "n_train_days, meta) VALUES ('m1', 'ppo', 'SPY', '/x', 0, DATE '2026-01-05', "
                   "DATE '2026-01-05', 1, '{}')")


def test_a_legacy_shared_db_is_split_into_ledgers_once(tradenova_home, monkeypatch):
    shared_file = tradenova_home / "tradenova.duckdb"
    old = Store(shared_file)
    _write_old_shared_db(old)
    before = _account_rows(old)
    assert {a for _, a in before} == {"sim:alpha", "backtest:bt1", f"backtest:bt1:{DAY}"}
    assert {t for t, _ in before} >= {"trades", "sim_orders", "sim_fills", "sim_accounts", "session_events"}
    backup = tradenova_home / "before-split.duckdb"
    shutil.copy(shared_file, backup)

    monkeypatch.setattr(accounts_mod, "_SPLIT_CHECKED", set())
    shared = shared_store(shared_file)
    assert _account_rows(shared) == {}  # nothing of any account is left in the shared file
    assert shared.query("SELECT count(*) FROM market_bars") == [(1,)]
    assert shared.query("SELECT model_id FROM models") == [("m1",)]

    alpha, bt = Store(ledger_path("sim:alpha")), Store(ledger_path("backtest:bt1"))
    assert _account_rows(alpha) == {k: v for k, v in before.items() if k[1] == "sim:alpha"}
    assert _account_rows(bt) == {k: v for k, v in before.items() if k[1].startswith("backtest:bt1")}
    assert alpha.query("SELECT count(*) FROM market_bars") == [(0,)]
    assert sorted(p.name for p in (tradenova_home / "ledgers").glob("*.duckdb")) == \
        ["backtest+bt1.duckdb", "sim+alpha.duckdb"]

    # Again (a fresh process, or by hand): nothing moves and nothing doubles.
    monkeypatch.setattr(accounts_mod, "_SPLIT_CHECKED", set())
    shared_store(shared_file)
    assert split_legacy_ledgers(shared) == {}
    assert _account_rows(alpha) == {k: v for k, v in before.items() if k[1] == "sim:alpha"}
    assert _account_rows(bt) == {k: v for k, v in before.items() if k[1].startswith("backtest:bt1")}

    # Interrupted after the copies committed, before the shared rows were deleted: the
    # shared file still has everything; a new split deletes it and copies nothing twice.
    shutil.copy(backup, shared_file)
    split_legacy_ledgers(shared)
    assert _account_rows(shared) == {}
    assert _account_rows(alpha) == {k: v for k, v in before.items() if k[1] == "sim:alpha"}
    assert _account_rows(bt) == {k: v for k, v in before.items() if k[1].startswith("backtest:bt1")}


# --------------------------------------------------------------------------- lease, across processes

HOLDER = textwrap.dedent("""
    import sys
    from tradenova_dagster.ledger.lease import AccountLease
    account, run_id, job = sys.argv[1:4]
    with AccountLease(account, run_id, job) as lease:
        print("held", flush=True)
        for line in sys.stdin:
            if line.strip() == "beat":
                lease.heartbeat("beat")
                print("beat", flush=True)
            elif line.strip() == "release":
                break
    print("released", flush=True)
""")


class Holder(LineProcess):
    """A real process holding an account's lease until told to release it (or killed)."""

    def __init__(self, account: str, run_id: str, job: str = "session"):
        super().__init__(HOLDER, account, run_id, job)


@pytest.fixture
def holder(tradenova_home):
    made = []

    def start(account="sim:default", run_id="run-1", job="session"):
        made.append(Holder(account, run_id, job))
        return made[-1]

    yield start
    for h in made:
        h.close()


def _no_waiting(monkeypatch):
    """The lease may not sleep: a refusal must come at once."""
    def sleep(_):
        raise AssertionError("the lease waited")
    monkeypatch.setattr(lease_mod, "time", types.SimpleNamespace(monotonic=time.monotonic, sleep=sleep))


def test_a_second_session_refuses_at_once_naming_the_holder(holder, monkeypatch):
    h = holder("sim:default", "run-1")
    _no_waiting(monkeypatch)
    with pytest.raises(AccountBusy) as err:
        AccountLease("sim:default", "run-2", "session", wait_s=600).acquire()
    assert "sim:default" in str(err.value) and "session run run-1" in str(err.value)
    assert f"pid {h.proc.pid}" in str(err.value)
    assert err.value.holder.run_id == "run-1" and err.value.holder.job == "session"
    with AccountLease("sim:other", "run-3", "session") as other:  # another account is not blocked
        assert other.held and lease_holder("sim:other").run_id == "run-3"
    assert lease_holder("sim:default").run_id == "run-1"


def test_another_job_waits_for_the_holder_and_then_gets_the_lease(holder):
    h = holder("sim:default", "run-1")
    with pytest.raises(AccountBusy, match=r"session run run-1 .* after waiting 0.3 s"):
        AccountLease("sim:default", "flat-1", "flatten", wait_s=0.3, poll_s=0.05).acquire()
    threading.Timer(1.0, h.say, ["release"]).start()
    with AccountLease("sim:default", "flat-2", "flatten", wait_s=60, poll_s=0.05) as lease:
        assert lease.held
        h.expect("released")  # the holder had let go before the flatten got it
        held = lease_holder("sim:default")
        assert (held.run_id, held.job, held.pid) == ("flat-2", "flatten", os.getpid())
    assert lease_holder("sim:default") is None


def test_a_killed_holder_frees_the_account_at_once(holder):
    h = holder("sim:default", "run-1")
    assert lease_holder("sim:default").pid == h.proc.pid
    os.kill(h.proc.pid, signal.SIGKILL)
    h.proc.wait(timeout=30)
    assert lease_holder("sim:default") is None  # its name is still on disk, its process is gone
    with AccountLease("sim:default", "run-2", "session") as lease:
        assert lease.held and lease_holder("sim:default").run_id == "run-2"


def test_the_heartbeat_is_what_lease_holder_reports(holder):
    h = holder("sim:default", "run-1")
    first = lease_holder("sim:default")
    time.sleep(0.05)
    h.say("beat")
    h.expect("beat")
    then = lease_holder("sim:default")
    assert then.heartbeat > first.heartbeat and then.note == "beat" and then.since == first.since


# --------------------------------------------------------------------------- two backtests at once

BACKTEST = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tradenova_dagster.domain import Decision, Signal
    from tradenova_dagster.ledger.accounts import shared_store
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.session.day import backtest_day
    backtest_id, wait_for, done = sys.argv[1], sys.argv[2], sys.argv[3]

    class AlwaysCall:
        model_id = "scripted"
        def reset(self, day=None, context=None):
            self.i = -1
        def on_bar(self, bar, position=None):
            self.i += 1
            if self.i == 30 and wait_for:  # mid-day, holding its ledger: wait until the other has finished
                deadline = time.time() + 120
                while not Path(wait_for).exists():
                    assert time.time() < deadline, "the other backtest did not finish while this one ran"
                    time.sleep(0.05)
            return Signal(bar.timestamp, bar.symbol, 0.9, 0.9, Decision.BUY_CALL, self.model_id)

    report = backtest_day(shared_store(), get_source("synthetic"), "2026-11-20", AlwaysCall(), backtest_id)
    Path(done).write_text(str(report.bars))
""")


def test_two_backtests_run_side_by_side_each_in_its_own_file(tradenova_home, tmp_path):
    done_a, done_b = tmp_path / "a.done", tmp_path / "b.done"
    # a waits mid-day (holding its lease and its ledger connection) until b has run its whole day.
    a = subprocess.Popen([sys.executable, "-c", BACKTEST, "a", str(done_b), str(done_a)], cwd=REPO_ROOT)
    b = subprocess.Popen([sys.executable, "-c", BACKTEST, "b", "", str(done_b)], cwd=REPO_ROOT)
    try:
        assert b.wait(timeout=180) == 0 and a.wait(timeout=180) == 0
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    assert int(done_a.read_text()) > 300 and int(done_b.read_text()) > 300
    for bid in ("a", "b"):
        ledger = Store(ledger_path(f"backtest:{bid}"))
        trades = ledger.query("SELECT account, count(*) FROM trades GROUP BY account")
        assert trades and trades[0][1] > 0 and [acct for acct, _ in trades] == [f"backtest:{bid}"]
        accounts = {acct for (acct,) in ledger.query("SELECT DISTINCT account FROM sim_orders")}
        assert accounts == {f"backtest:{bid}"}  # the backtest account is its broker account too
    shared = Store(tradenova_home / "tradenova.duckdb")
    assert _account_rows(shared) == {}


# --------------------------------------------------------------------------- the session op


def _job(name: str, instance, ops: dict, **kwargs):
    from tradenova_dagster.definitions import defs

    return defs.resolve_job_def(name).execute_in_process(run_config={**QUIET, "ops": ops}, instance=instance,
                                                         **kwargs)


def test_the_session_holds_one_ledger_connection_for_the_day(store):
    crafted_model(store, bias=0.8)
    ledger = Store(ledger_path("sim:default"))
    before = ledger.connects
    # A paced replay commits every bar, as live does (a fast one is one transaction for the day).
    run = {"date": DAY, "mode": "replay", "pace_s": 0.001}
    with dg.DagsterInstance.ephemeral() as instance:
        result = _job("trading_session_job", instance, {"trading_session": {"config": run}})
    assert result.success
    bars = ledger.query("SELECT count(*) FROM equity_curve WHERE account = 'sim:default'")[0][0]
    assert bars > 300 and ledger.query("SELECT count(*) FROM sim_orders")[0][0] > 0
    assert ledger.connects - before <= 10, f"{ledger.connects - before} connects for {bars} bars"  # not one a bar
    assert _account_rows(store) == {}  # the shared file holds no account rows
    assert lease_holder("sim:default") is None  # released when the run ended


def _logs(instance, run_id: str) -> str:
    return "\n".join(e.user_message for e in instance.all_logs(run_id))


def test_the_monitor_leaves_a_held_account_to_its_session(holder, monkeypatch):
    from ops import trading

    h = holder("sim:default", "run-1")
    path = ledger_path("sim:default")
    with dg.DagsterInstance.ephemeral() as instance:
        result = _job("monitor_job", instance, {"monitor": {"config": {"account": "sim:default"}}})
        assert result.success
        assert "held by session run run-1" in _logs(instance, result.run_id)
        assert not path.exists()  # the monitor did not open the ledger
        assert lease_holder("sim:default").pid == h.proc.pid  # nor take the lease

        monkeypatch.setattr(trading, "SESSION_HEARTBEAT_LIMIT_S", 0.0)
        stale = _job("monitor_job", instance, {"monitor": {"config": {"account": "sim:default"}}},
                     raise_on_error=False)
        assert not stale.success
        failure = stale.failure_data_for_node("monitor").error
        assert "has not heartbeaten" in failure.message and "run-1" in failure.message
    assert not path.exists()
