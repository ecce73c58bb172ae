"""End-to-end paper days: the real jobs as ``dagster job execute`` processes against a local
server that speaks Alpaca's Trading and Market Data APIs, through alpaca-py's own clients,
on a clock the test controls.

The test process runs the fake server (``FakeAlpacaTrading`` backed by a real SimBroker,
serving the synthetic bars of ``FakeAlpacaData`` too) on a ``ShiftedClock``: a chosen
start time (14:30 New York, 11:00 ...) running tens of times faster than the wall clock.
The session process gets the same clock through ``TRADENOVA_CLOCK`` (start, speed and the
wall-clock origin), so both agree on "now": the server serves only the bars completed by
now and fills orders on the next bar's prices, the session polls for them as they come.

Every case checks what matters at the broker: no two orders share a client_order_id, the
account is flat at the end, and the ledger's fills, orders and positions equal the
server's. ``PaperDay`` is also what ``bench/paper_soak.py`` drives for a simulated week.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO_ROOT
from fake_alpaca_data import FakeAlpacaData
from fake_alpaca_trading import API_KEY, SECRET_KEY, FakeAlpacaTrading
from tradenova_dagster.broker.sim import SimBroker
from tradenova_dagster.market import calendar
from tradenova_dagster.session.clock import CLOCK_ENV, ShiftedClock
from tradenova_dagster.store import Store

DAY = "2026-11-20"  # a normal Friday
ACCOUNT = "alpaca_paper:e2e"


def ny(day: str, hhmm: str) -> pd.Timestamp:
    return pd.Timestamp(f"{day} {hhmm}", tz=calendar.NEW_YORK)


class PaperDay:
    """One fake Alpaca (trading + data) on a shared accelerated clock, and the jobs as
    subprocesses against it, in the TRADENOVA_HOME ``home``."""

    def __init__(self, home: Path, start: pd.Timestamp, speed: float, broker_timeout_s: float = 1.0,
                 hang_s: float = 1.5, sim: SimBroker | None = None):
        self.home = Path(home)
        self.clock = ShiftedClock(start, speed)
        if sim is None:  # the broker's own account, outside TRADENOVA_HOME (a later day passes it on)
            sim = SimBroker("sim:alpaca", Store(self.home.parent / "fake_alpaca_broker.duckdb"))
        self.sim = sim
        self.market = FakeAlpacaData(self.clock, api_key=API_KEY, secret_key=SECRET_KEY)
        self.server = FakeAlpacaTrading(self.sim, hang_s=hang_s, clock=self.clock, market=self.market)
        self.broker_timeout_s = broker_timeout_s
        self.runs: list[subprocess.CompletedProcess] = []

    def __enter__(self) -> "PaperDay":
        self.server.__enter__()
        self.server.catch_up()  # the day so far, before any process asks
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)

    # ------------------------------------------------------------------ processes

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "ALPACA_", "TRADENOVA_"))}
        env.update({
            "TRADENOVA_HOME": str(self.home), "DAGSTER_HOME": str(self.home / "dagster"),
            "TRADENOVA_BROKER_MODE": "alpaca_paper", "TRADENOVA_DATA_SOURCE": "alpaca",
            "APCA_API_BASE_URL": self.server.url, "APCA_API_DATA_URL": self.server.url,
            "ALPACA_API_KEY": API_KEY, "ALPACA_SECRET_KEY": SECRET_KEY,
            CLOCK_ENV: self.clock.spec(),
        })
        return env

    def _config(self, job: str, day: str | None) -> Path:
        broker = {"timeout_s": self.broker_timeout_s, "backoff_s": 0.05}
        op = {"trading_session_job": "trading_session", "flatten_job": "flatten", "monitor_job": "monitor",
              "reporting_job": "daily_report"}[job]
        config = {"account": ACCOUNT}
        if job == "trading_session_job":
            config.update({"date": day or DAY, "mode": "live"})
        run = {"ops": {op: {"config": config}}}
        if job != "reporting_job":  # the report reads the ledger; it has no broker
            run["resources"] = {"broker": {"config": broker}}
        path = self.home / f"{job}.yaml"
        (self.home / "dagster").mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(run))
        return path

    def start(self, job: str, day: str | None = None) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "dagster", "job", "execute", "-m", "tradenova_dagster.definitions",
               "-j", job, "-c", str(self._config(job, day))]
        if job == "reporting_job":  # an asset job over trading days: the partition is a tag
            cmd += ["--tags", json.dumps({"dagster/partition": day or DAY})]
        log = open(self.home / f"{job}.{len(self.runs)}.log", "w")
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)  # its own process group: a SIGKILL takes the op's child too
        proc.log_path = log.name
        self.runs.append(proc)
        return proc

    def run(self, job: str, day: str | None = None, timeout: float = 300) -> tuple[int, str]:
        return self.finish(self.start(job, day), timeout)

    def finish(self, proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = -9
        return rc, Path(proc.log_path).read_text()

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL the run and every process it started (a power cut)."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def wait_for(self, what, proc: subprocess.Popen, timeout: float = 240, step: float = 0.05):
        """Poll ``what()`` until it is truthy (returns it); fails if ``proc`` ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = what()
            if value:
                return value
            if proc.poll() is not None:
                raise AssertionError(f"the run ended first (rc {proc.returncode}): "
                                     f"{_log_tail(Path(proc.log_path).read_text())}")
            time.sleep(step)
        raise AssertionError("timed out waiting")

    def view_ts(self) -> pd.Timestamp | None:
        """The end of the last bar the session published its ledger view for (None: none yet)."""
        from tradenova_dagster.ledger.view import read_view

        try:
            view = read_view(ACCOUNT)
        except (ValueError, OSError):
            return None
        return pd.Timestamp(view["ts"]).tz_convert("UTC") if view and view.get("ts") else None

    def broker_positions_now(self) -> dict[str, float]:
        with self.server._market_lock:  # between two requests
            return self.positions()

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tradenova_dagster.cli", *args], cwd=REPO_ROOT, env=self.env(),
                              capture_output=True, text=True, timeout=120)

    # ------------------------------------------------------------------ facts

    def ledger(self) -> Store:
        return Store(self.home / "ledgers" / (ACCOUNT.replace(":", "+") + ".duckdb"))

    def duplicates(self) -> dict[str, int]:
        """client_order_ids that more than one order carries at the broker."""
        return {coid: n for coid, n in Counter(self.server.client_order_ids()).items() if n > 1}

    def positions(self) -> dict[str, float]:
        return {p.symbol: p.qty for p in self.sim.get_positions() if abs(p.qty) > 1e-9}

    def open_orders(self) -> list[str]:
        return [o.client_order_id for o in self.sim.list_orders(status="open", limit=10_000)]

    def server_fills(self) -> list[tuple]:
        fills = self.sim.get_fills()
        fills = fills[fills["kind"] == "trade"]
        return sorted((r.client_order_id, r.symbol, r.side, float(r.qty), round(float(r.price), 4))
                      for r in fills.itertuples())

    def ledger_fills(self) -> list[tuple]:
        rows = self.ledger().query("SELECT client_order_id, symbol, side, qty, price FROM fills WHERE account = ?",
                                   [ACCOUNT])
        return sorted((c, s, side, float(q), round(float(p), 4)) for c, s, side, q, p in rows)

    def ledger_orders(self) -> list[str]:
        return sorted(r[0] for r in self.ledger().query(
            "SELECT client_order_id FROM orders WHERE account = ?", [ACCOUNT]))

    def ledger_positions(self) -> dict[str, float]:
        from tradenova_dagster.ledger.view import ledger_view

        view = ledger_view(ACCOUNT)
        return {p["symbol"]: p["qty"] for p in view["positions"]}

    def committed_bars(self) -> list[pd.Timestamp]:
        rows = self.ledger().query("SELECT bar_ts FROM session_bars WHERE account = ? ORDER BY bar_ts", [ACCOUNT])
        return [pd.Timestamp(r[0]).tz_convert("UTC") for r in rows]

    def decision_times(self) -> list[pd.Timestamp]:
        rows = self.ledger().query("SELECT decision_ts FROM orders WHERE account = ? ORDER BY decision_ts", [ACCOUNT])
        return [pd.Timestamp(r[0]).tz_convert("UTC") for r in rows]

    def check_books_agree(self) -> None:
        """Flat at the broker, no duplicate order, and the ledger equals the broker."""
        self.server.wait_idle()
        assert self.duplicates() == {}, "the broker holds two orders with one client_order_id"
        assert self.positions() == {}, f"not flat at the broker: {self.positions()}"
        assert self.open_orders() == [], f"orders still open at the broker: {self.open_orders()}"
        assert self.ledger_positions() == {}, f"the ledger holds positions: {self.ledger_positions()}"
        assert self.ledger_fills() == self.server_fills(), "the ledger's fills differ from the broker's"
        assert self.ledger_orders() == sorted(self.server.client_order_ids()), \
            "the ledger's orders differ from the broker's"


def _log_tail(text: str, n: int = 40) -> str:
    return "\n".join(text.splitlines()[-n:])


@pytest.fixture
def promoted_model(store):
    from session_helpers import crafted_model

    return crafted_model(store)


def _normal_day(tradenova_home, start: str, speed: float) -> PaperDay:
    return PaperDay(tradenova_home, ny(DAY, start), speed)


@pytest.mark.slow
def test_a_normal_paper_day_ends_flat_with_the_ledger_equal_to_the_broker(tradenova_home, promoted_model):
    with _normal_day(tradenova_home, "14:00", 60) as day:
        rc, log = day.run("trading_session_job")
        assert rc == 0, _log_tail(log)
        assert day.clock.now() >= ny(DAY, "15:50"), "the session ended before flatten time"
        assert len(day.server.client_order_ids()) >= 2, "the crafted model should have traded"
        bars = day.committed_bars()  # every bar from the session's first to flatten time, once each
        assert len(bars) >= 20 and bars[-1] >= ny(DAY, "15:49")
        assert bars == list(pd.date_range(bars[0], bars[-1], freq="1min")), "a bar was skipped or doubled"
        day.check_books_agree()
        for job in ("flatten_job", "monitor_job"):
            rc, log = day.run(job)
            assert rc == 0, f"{job}: {_log_tail(log)}"
        day.check_books_agree()
        rc, log = day.run("reporting_job")  # the evening report, on the day's ledger
        assert rc == 0, f"reporting_job: {_log_tail(log)}"
        trades = day.ledger().query("SELECT count(*), sum(pnl) FROM trades WHERE account = ?", [ACCOUNT])[0]
        html, reported_trades, reported_pnl = day.ledger().query(
            "SELECT html_path, day_trades, day_pnl FROM daily_reports WHERE account = ? AND day = ?", [ACCOUNT, DAY])[0]
        assert (reported_trades, reported_pnl) == (trades[0], pytest.approx(trades[1]))
        assert Path(html).is_file() and ACCOUNT in Path(html).read_text()


@pytest.mark.slow
def test_a_late_start_at_11_acts_only_on_the_bars_after_it(tradenova_home, promoted_model):
    with _normal_day(tradenova_home, "11:00", 150) as day:
        rc, log = day.run("trading_session_job")
        assert rc == 0, _log_tail(log)
        eleven = ny(DAY, "11:00").tz_convert("UTC")
        bars = day.committed_bars()
        assert bars and min(bars) >= eleven, f"the session acted on a bar before it started: {min(bars)}"
        decided = day.decision_times()
        assert decided, "the crafted model should have traded"
        assert min(decided) >= eleven, f"an order was decided before 11:00: {min(decided)}"
        decisions = day.ledger().query("SELECT min(ts) FROM agent_decisions WHERE account = ?", [ACCOUNT])[0][0]
        assert pd.Timestamp(decisions).tz_convert("UTC") >= eleven
        day.check_books_agree()


@pytest.mark.slow
def test_a_session_killed_at_a_random_bar_restarts_without_a_duplicate_and_ends_flat(tradenova_home,
                                                                                       promoted_model):
    rng = random.Random(13)
    with _normal_day(tradenova_home, "14:30", 60) as day:
        proc = day.start("trading_session_job")
        first = day.wait_for(day.view_ts, proc)
        target = first + pd.Timedelta(minutes=rng.randint(2, 12))
        day.wait_for(lambda: (ts := day.view_ts()) is not None and ts >= target, proc)
        held = day.broker_positions_now()
        day.kill(proc)
        assert day.clock.now() < ny(DAY, "15:48"), "killed too late to mean anything"
        rc, log = day.run("trading_session_job")
        assert rc == 0, _log_tail(log)
        assert held or len(day.server.client_order_ids()) >= 2
        day.check_books_agree()


@pytest.mark.slow
def test_the_kill_switch_mid_position_sells_and_stops_the_session(tradenova_home, promoted_model):
    with _normal_day(tradenova_home, "14:30", 60) as day:
        proc = day.start("trading_session_job")
        day.wait_for(day.broker_positions_now, proc)
        done = day.cli("kill-switch", "on", "--reason", "e2e drill")
        assert done.returncode == 0, done.stderr
        rc, log = day.finish(proc)
        assert rc == 0, _log_tail(log)
        assert day.clock.now() < ny(DAY, "15:50"), "the session ran on to flatten time: the switch was not heard"
        assert "kill switch" in log
        day.check_books_agree()
        sells = day.ledger().query("SELECT count(*) FROM orders WHERE account = ? AND intent = 'kill'", [ACCOUNT])
        assert sells[0][0] >= 1, "no order of the kill switch in the ledger"


# A day of the crafted model sends a handful of orders: four faults on them, all met.
ORDER_FAULTS = [("http_500_html", "before"), ("http_429", "before"), ("timeout", "after"), ("reset", "after")]
MORE_ORDER_FAULTS = [("http_500_html", "after"), ("reset", "before"), ("timeout", "before")]  # for the soak
DATA_FAULTS = [("http_500_html", "before"), ("http_429", "before"), ("reset", "before"), ("timeout", "before")]


@pytest.mark.slow
def test_faults_on_orders_and_data_leave_no_duplicate_and_end_flat(tradenova_home, promoted_model):
    with _normal_day(tradenova_home, "14:30", 60) as day:
        for kind, when in ORDER_FAULTS:
            day.server.inject(kind, when, "POST", "/v2/orders")
        proc = day.start("trading_session_job")
        day.wait_for(day.view_ts, proc)  # trading: the day's faults on data come now
        for kind, when in DATA_FAULTS:
            day.server.inject(kind, when, "GET", "/v2/stocks/bars")
        rc, log = day.finish(proc)
        assert rc == 0, _log_tail(log)
        faulted = Counter(e["path"] for e in day.server.log if e.get("fault"))
        assert faulted["/v2/orders"] == len(ORDER_FAULTS), f"not every order fault was met: {faulted}"
        assert faulted["/v2/stocks/bars"] == len(DATA_FAULTS), f"not every data fault was met: {faulted}"
        day.check_books_agree()
