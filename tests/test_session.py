"""The trading day on Dagster with real DuckDB: a replayed day, the kill switch, a crash."""

import os
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
from tradenova_dagster.market.data import get_source
from tradenova_dagster.session import day as trading_day

DAY = "2026-11-20"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _run(job: str, instance, ops: dict, **kwargs):
    return defs.resolve_job_def(job).execute_in_process(run_config={**QUIET, "ops": ops}, instance=instance, **kwargs)


def _open_positions(store, account):
    return store.query("SELECT symbol, qty FROM (SELECT symbol, sum(CASE WHEN side = 'buy' THEN qty ELSE -qty END) AS qty FROM fills WHERE account = ? GROUP BY symbol) WHERE abs(qty) > 1e-9", [account])


def test_a_replayed_day_end_to_end(store):
    crafted_model(store, bias=0.8)  # a real PPO pinned to CALL, promoted
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

    trades = store.query_df("SELECT * FROM trades WHERE account = 'sim:default'")
    assert len(trades) > 0 and trades["contract"].str.startswith("SPY").all()
    exits = pd.to_datetime(trades["exit_time"], utc=True).dt.tz_convert("America/New_York")
    assert (exits.dt.strftime("%H:%M") <= "15:51").all()  # nothing trades after the flatten
    assert _open_positions(store, "sim:default") == []
    assert store.query("SELECT count(*) FROM sim_orders WHERE account = 'sim:default' AND status IN "
                       "('new', 'accepted', 'partially_filled')") == [(0,)]
    decisions = store.query_df("SELECT allowed, reason FROM agent_decisions WHERE account = 'sim:default'")
    assert decisions["reason"].str.len().gt(0).all()
    events = [k for j, k in store.query("SELECT job, kind FROM session_events ORDER BY ts")]
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
    assert report.stopped.startswith("kill switch on (test: operator pulled the switch)")
    assert report.bars == 121  # the session stopped at the bar the switch came on
    orders = store.query_df("SELECT client_order_id, created_at FROM sim_orders WHERE account = 'sim:default'")
    assert len(orders) >= 1
    assert (pd.to_datetime(orders["created_at"], utc=True) <= scripted.switched_at + pd.Timedelta(minutes=1)).all()
    assert _open_positions(store, "sim:default") != []  # the session leaves closing to the flatten job
    flat = trading_day.flatten(_sim_runtime(store), "kill switch")
    assert flat.flat and _open_positions(store, "sim:default") == []


def _start_paced_session(tradenova_home, tmp_path, pace_s=0.05):
    config = {"ops": {"trading_session": {"config": {"date": DAY, "mode": "replay", "pace_s": pace_s}}}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "TRADENOVA_HOME": str(tradenova_home), "DAGSTER_HOME": str(tradenova_home / "dagster")}
    return subprocess.Popen(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "tradenova_dagster.definitions",
         "-j", "trading_session_job", "-c", str(tmp_path / "run.yaml")],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _wait_mid_session(store, proc, bars: int, orders: int = 0, timeout_s: float = 240) -> None:
    """Wait until the session process has recorded ``bars`` bars and sent ``orders`` orders."""
    deadline = time.time() + timeout_s
    while True:
        done = store.query("SELECT count(*) FROM equity_curve WHERE account = 'sim:default'")[0][0]
        sent = store.query("SELECT count(*) FROM sim_orders WHERE account = 'sim:default'")[0][0]
        if done >= bars and sent >= orders:
            return
        assert proc.poll() is None, "the session ended before it was mid-day"
        assert time.time() < deadline, f"the session recorded {done} bars in {timeout_s} s"
        time.sleep(0.5)


@pytest.mark.slow
def test_a_crashed_session_restarts_without_duplicates_or_loss(tradenova_home, store, tmp_path):
    crafted_model(store, bias=0.8)
    proc = _start_paced_session(tradenova_home, tmp_path)
    try:
        _wait_mid_session(store, proc, bars=40, orders=1)
        os.killpg(proc.pid, signal.SIGKILL)  # the worker dies mid-day, as on a power cut
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    crashed_at = store.query("SELECT market_time FROM sim_accounts WHERE account = 'sim:default'")[0][0]
    before = store.query("SELECT count(*) FROM equity_curve WHERE account = 'sim:default'")[0][0]
    positions_before = _open_positions(store, "sim:default")

    with dg.DagsterInstance.ephemeral() as instance:
        assert _run("trading_session_job", instance,
                    {"trading_session": {"config": {"date": DAY, "mode": "replay"}}}).success
    equity = store.query_df("SELECT ts FROM equity_curve WHERE account = 'sim:default'")
    assert before >= 40 and len(equity) > before
    assert not equity["ts"].duplicated().any()  # the restart continued after the crash, nothing twice
    assert pd.to_datetime(equity["ts"], utc=True).min() < pd.Timestamp(crashed_at)  # nothing before it was lost
    orders = store.query_df("SELECT client_order_id, symbol, side, created_at FROM sim_orders WHERE account = 'sim:default'")
    assert not orders["client_order_id"].duplicated().any()
    entries = orders[orders["client_order_id"].str.startswith("tn-entry-")]
    assert not entries["created_at"].duplicated().any()  # at most one entry per bar, across the restart
    adopted = store.query("SELECT count(*) FROM session_events WHERE job = 'session' AND kind = 'started'")[0][0]
    assert adopted == 2
    # The restart ended the day flat, in the ledger (from fills) and at the broker alike, and
    # every position held at the crash was closed by a recorded exit with its reason.
    assert _open_positions(store, "sim:default") == []
    assert store.query("SELECT symbol, qty FROM sim_positions WHERE account = 'sim:default'") == []
    closed = {s for (s,) in store.query("SELECT contract FROM trades WHERE account = 'sim:default'")}
    assert {symbol for symbol, _ in positions_before} <= closed
    assert store.query("SELECT count(*) FROM trades WHERE account = 'sim:default' AND exit_reason IS NULL") == [(0,)]


@pytest.mark.slow
def test_an_interrupted_session_cancels_its_orders_and_says_why(tradenova_home, store, tmp_path):
    crafted_model(store, bias=0.8)
    proc = _start_paced_session(tradenova_home, tmp_path)
    try:
        _wait_mid_session(store, proc, bars=20)
        os.kill(proc.pid, signal.SIGINT)  # to the run's process, which forwards it to the step, as a termination does
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    kinds = [k for (k,) in store.query("SELECT kind FROM session_events WHERE job = 'session' ORDER BY ts")]
    assert kinds == ["started", "interrupted"]
    detail = store.query("SELECT detail FROM session_events WHERE kind = 'interrupted'")[0][0]
    assert "run terminated (interrupt)" in detail
    assert store.query("SELECT count(*) FROM sim_orders WHERE account = 'sim:default' AND status IN "
                       "('new', 'accepted', 'partially_filled')") == [(0,)]
