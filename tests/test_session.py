"""The trading day on Dagster with real DuckDB: a replayed day, the kill switch, a crash."""

import os
import re
import signal
import subprocess
import sys
import time

import dagster as dg
import pandas as pd
import pytest
import yaml

from conftest import REPO_ROOT
from session_helpers import crafted_model
from tradenova_dagster.definitions import defs
from tradenova_dagster.domain import Decision, Signal
from tradenova_dagster.ledger.accounts import ledger_store
from tradenova_dagster.ledger.lease import SESSION, lease_holder
from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import get_source
from tradenova_dagster.session import day as trading_day

DAY = "2026-11-20"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _run(job: str, instance, ops: dict, **kwargs):
    return defs.resolve_job_def(job).execute_in_process(run_config={**QUIET, "ops": ops}, instance=instance, **kwargs)


def _open_positions(store, account):
    return store.query("SELECT symbol, qty FROM (SELECT symbol, sum(CASE WHEN side = 'buy' THEN qty ELSE -qty END) AS qty FROM fills WHERE account = ? GROUP BY symbol) WHERE abs(qty) > 1e-9", [account])


def test_a_replayed_day_end_to_end(store):
    crafted_model(store, bias=0.8)  # a real PPO pinned to CALL, promoted (models live in the shared store)
    with dg.DagsterInstance.ephemeral() as instance:
        bars = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            partition_key=DAY, asset_selection=[dg.AssetKey("market_bars")], instance=instance, run_config=QUIET)
        assert bars.success
        assert _run("warmup_job", instance, {"warmup": {"config": {"date": DAY}}}).success
        assert _run("trading_session_job", instance,
                    {"trading_session": {"config": {"date": DAY, "mode": "replay"}}}).success
        assert _run("flatten_job", instance, {"flatten": {"config": {"reason": "end of test day"}}}).success
        report = defs.resolve_job_def("reporting_job").execute_in_process(
            partition_key=DAY, instance=instance, run_config=QUIET)
        assert report.success

    ledger = ledger_store("sim:default")  # the account's rows live in its own ledger file
    trades = ledger.query_df("SELECT * FROM trades WHERE account = 'sim:default'")
    assert len(trades) > 0 and trades["contract"].str.startswith("SPY").all()
    exits = pd.to_datetime(trades["exit_time"], utc=True).dt.tz_convert("America/New_York")
    assert (exits.dt.strftime("%H:%M") <= "15:51").all()  # nothing trades after the flatten
    assert _open_positions(ledger, "sim:default") == []
    assert ledger.query("SELECT count(*) FROM sim_orders WHERE account = 'sim:default' AND status IN "
                        "('new', 'accepted', 'partially_filled')") == [(0,)]
    decisions = ledger.query_df("SELECT allowed, reason FROM agent_decisions WHERE account = 'sim:default'")
    assert decisions["reason"].str.len().gt(0).all()
    events = [k for j, k in ledger.query("SELECT job, kind FROM session_events ORDER BY ts")]
    assert events == ["ok", "started", "stopped", "flat"]
    html = store.path.parent / "reports" / f"{DAY}.html"
    assert html.exists() and f"{len(trades)}" in html.read_text()


class KillSwitchAt:
    """A scripted signal (always CALL) that turns the kill switch on at one bar."""

    def __init__(self, kill_switch, at_bar: int):
        self.kill_switch, self.at_bar, self.i, self.model_id = kill_switch, at_bar, -1, "scripted"
        self.switched_at = None

    def reset(self, day=None, context=None):
        self.i = -1

    def on_bar(self, bar, position=None):
        self.i += 1
        if self.i == self.at_bar:
            self.kill_switch.turn_on("test: operator pulled the switch", set_by="test")
            self.switched_at = pd.Timestamp(bar.timestamp)
        return Signal(bar.timestamp, bar.symbol, 0.9, 0.9, Decision.BUY_CALL, self.model_id)


def _sim_runtime(store, account="sim:default"):
    from ops.trading import build_runtime
    from resources.broker import BrokerResource
    from resources.risk import RiskResource
    from resources.store import StoreResource

    return build_runtime(account, BrokerResource(), RiskResource(), StoreResource(db_path=str(store.path)),
                         run_id="test", session_day=pd.Timestamp(DAY).date())


def test_kill_switch_during_a_replayed_session(store):
    from tradenova_dagster.risk import KillSwitch

    runtime = _sim_runtime(store)
    scripted = KillSwitchAt(KillSwitch(store, account="*"), at_bar=120)
    report = trading_day.run_session(runtime, DAY, get_source("synthetic"), scripted, mode="replay")
    assert report.stopped.startswith("kill switch on (test: operator pulled the switch): flat")
    assert report.bars == 122  # sold at market on the bar the switch came on, filled on the next, stopped
    ledger = ledger_store("sim:default")  # the account's rows; the kill switch is a file, not in any store
    assert runtime.store.path == ledger.path and runtime.market.path == store.path
    orders = ledger.query_df("SELECT intent, side, decision_ts FROM orders WHERE account = 'sim:default'")
    entries, kills = orders[orders["intent"] == "entry"], orders[orders["intent"] == "kill"]
    assert len(entries) >= 1 and len(kills) == 1 and kills["side"].iloc[0] == "sell"
    switched = scripted.switched_at + pd.Timedelta(minutes=1)
    assert (pd.to_datetime(entries["decision_ts"], utc=True) <= switched).all()
    assert _open_positions(ledger, "sim:default") == []  # the session closed its own position
    flat = trading_day.flatten(_sim_runtime(store), "kill switch")  # the backstop finds nothing to do
    assert flat.flat and flat.closing_orders == []


def _start_paced_session(tradenova_home, tmp_path, pace_s=0.05):
    config = {"ops": {"trading_session": {"config": {"date": DAY, "mode": "replay", "pace_s": pace_s}}}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "TRADENOVA_HOME": str(tradenova_home), "DAGSTER_HOME": str(tradenova_home / "dagster")}
    return subprocess.Popen(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "tradenova_dagster.definitions",
         "-j", "trading_session_job", "-c", str(tmp_path / "run.yaml")],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _committed_bars(account: str = "sim:default") -> int:
    """How many of DAY's bars the session holding ``account`` has committed, read from its
    lease heartbeat ("committed bar HH:MM UTC", written after each bar's commit); 0 while no
    session holds the account. A running session holds its ledger file (connection and
    lock) until it ends, so the test cannot read the ledger itself mid-session."""
    holder = lease_holder(account)
    match = re.search(r"committed bar (\d\d):(\d\d) UTC", holder.note) if holder and holder.job == SESSION else None
    if match is None:
        return 0
    bar = pd.Timestamp(f"{DAY} {match[1]}:{match[2]}", tz="UTC")
    # Minutes since the open: the bars up to this one, never more (a bar is stamped at its end).
    return int((bar - calendar.session_open_close(DAY)[0]) / pd.Timedelta(minutes=1))


def _wait_mid_session(proc, bars: int, timeout_s: float = 240) -> None:
    """Wait until the session process has committed ``bars`` bars (by its heartbeat)."""
    deadline = time.time() + timeout_s
    while True:
        done = _committed_bars()
        if done >= bars:
            return
        assert proc.poll() is None, "the session ended before it was mid-day"
        assert time.time() < deadline, f"the session committed {done} bars in {timeout_s} s"
        time.sleep(0.2)


def _recorded_mid_session(ledger, bars: int, orders: int = 0) -> None:
    """Once the session process has stopped: the ledger holds the ``bars`` bars and the
    ``orders`` orders it was waited for."""
    done = ledger.query("SELECT count(*) FROM equity_curve WHERE account = 'sim:default'")[0][0]
    sent = ledger.query("SELECT count(*) FROM sim_orders WHERE account = 'sim:default'")[0][0]
    assert done >= bars and sent >= orders, f"the session recorded {done} bars and {sent} orders"


@pytest.mark.slow
def test_a_crashed_session_restarts_without_duplicates_or_loss(tradenova_home, store, tmp_path):
    crafted_model(store, bias=0.8)  # models live in the shared store; the account's rows in its ledger
    ledger = ledger_store("sim:default")
    proc = _start_paced_session(tradenova_home, tmp_path)
    try:
        _wait_mid_session(proc, bars=40)
        os.killpg(proc.pid, signal.SIGKILL)  # the worker dies mid-day, as on a power cut
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    _recorded_mid_session(ledger, bars=40, orders=1)
    crashed_at = ledger.query("SELECT market_time FROM sim_accounts WHERE account = 'sim:default'")[0][0]
    before = ledger.query("SELECT count(*) FROM equity_curve WHERE account = 'sim:default'")[0][0]
    positions_before = _open_positions(ledger, "sim:default")

    with dg.DagsterInstance.ephemeral() as instance:
        assert _run("trading_session_job", instance,
                    {"trading_session": {"config": {"date": DAY, "mode": "replay"}}}).success
    equity = ledger.query_df("SELECT ts FROM equity_curve WHERE account = 'sim:default'")
    assert before >= 40 and len(equity) > before
    assert not equity["ts"].duplicated().any()  # the restart continued after the crash, nothing twice
    assert pd.to_datetime(equity["ts"], utc=True).min() < pd.Timestamp(crashed_at)  # nothing before it was lost
    orders = ledger.query_df("SELECT client_order_id, symbol, side, created_at FROM sim_orders WHERE account = 'sim:default'")
    assert not orders["client_order_id"].duplicated().any()
    entries = orders[orders["client_order_id"].str.startswith("tn-entry-")]
    assert not entries["created_at"].duplicated().any()  # at most one entry per bar, across the restart
    adopted = ledger.query("SELECT count(*) FROM session_events WHERE job = 'session' AND kind = 'started'")[0][0]
    assert adopted == 2
    # The restart ended the day flat, in the ledger (from fills) and at the broker alike, and
    # every position held at the crash was closed by a recorded exit with its reason.
    assert _open_positions(ledger, "sim:default") == []
    assert ledger.query("SELECT symbol, qty FROM sim_positions WHERE account = 'sim:default'") == []
    closed = {s for (s,) in ledger.query("SELECT contract FROM trades WHERE account = 'sim:default'")}
    assert {symbol for symbol, _ in positions_before} <= closed
    assert ledger.query("SELECT count(*) FROM trades WHERE account = 'sim:default' AND exit_reason IS NULL") == [(0,)]


@pytest.mark.slow
def test_an_interrupted_session_cancels_its_orders_and_says_why(tradenova_home, store, tmp_path):
    crafted_model(store, bias=0.8)  # models live in the shared store; the account's rows in its ledger
    ledger = ledger_store("sim:default")
    proc = _start_paced_session(tradenova_home, tmp_path)
    try:
        _wait_mid_session(proc, bars=20)
        os.kill(proc.pid, signal.SIGINT)  # to the run's process, which forwards it to the step, as a termination does
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    _recorded_mid_session(ledger, bars=20)
    kinds = [k for (k,) in ledger.query("SELECT kind FROM session_events WHERE job = 'session' ORDER BY ts")]
    assert kinds == ["started", "interrupted"]
    detail = ledger.query("SELECT detail FROM session_events WHERE kind = 'interrupted'")[0][0]
    assert "run terminated (interrupt)" in detail
    assert ledger.query("SELECT count(*) FROM sim_orders WHERE account = 'sim:default' AND status IN "
                        "('new', 'accepted', 'partially_filled')") == [(0,)]


def test_an_interrupt_is_recognised_behind_what_it_caused():
    """DuckDB reports an interrupt inside a statement as RuntimeError('Query interrupted'), and
    cleanup on the aborted transaction then raises its own error: both are an interrupt."""
    import duckdb

    from ops.trading import _was_interrupted

    try:
        try:
            raise RuntimeError("Query interrupted")
        except RuntimeError:
            raise duckdb.TransactionException("Current transaction is aborted (please ROLLBACK)")
    except duckdb.Error as exc:
        chained = exc
    assert _was_interrupted(RuntimeError("Query interrupted")) and _was_interrupted(chained)
    assert _was_interrupted(KeyboardInterrupt())
    assert not _was_interrupted(ValueError("market_bars for SPY failed their checks"))
