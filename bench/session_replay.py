"""The session loop's speed: one replayed day against real time, and a year-long backtest.

1. One trading day (390 one-minute bars) of synthetic SPY through the full loop (signal,
   risk, ladder, simulated broker, DuckDB records) — printed as a multiple of real time
   (390 minutes), the peer every live session runs against (target >= 5,000x).
2. The persisted path (what paper and live trading run): the same day with every bar
   committed in its own transaction, as a crash-safe session does — median and p99 time
   per committed bar (everything the bar does, its commit included; goal <= 20 ms) and
   DuckDB connections opened per bar (goal: 0 after start; today 1, see the printout).
3. Every day of the real SPY 1-minute year in ../shared/data (251 sessions) through the
   ``backtest_days`` path, the same code a Dagster backfill runs (target: 251 days in
   <= 60 s), with the time per day of the first days against the last days (the cost of a
   day must stay flat as the ledger fills).
4. The same days through the Dagster path: ``tradenova backtest`` in a new process (a
   Dagster run of ``backtest_job``), end to end (target: 251 days in <= 60 s).
5. The peer: backtrader (``backtrader`` 1.9, the dev extra) runs the same real bars, read
   through the same ``file`` source, in the same process, with a simple strategy that
   decides on every bar (long above its 20-bar average, flat below) — printed as bars/s of
   the session loop, bars/s of backtrader and their ratio (target: the session loop at
   least as fast, >= 1.0x).

The model is a real stable-baselines3 PPO pinned to buy calls (``tests/session_helpers``),
so every day trades: the slowest realistic case, more orders than a trained model sends.

    python bench/session_replay.py [--days N]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=0, help="limit the real-data backtest to N days (0 = all)")
    args = parser.parse_args()
    os.environ["TRADENOVA_HOME"] = tempfile.mkdtemp(prefix="tn-bench-")
    sys.path.insert(0, str(ROOT / "tests"))
    from session_helpers import crafted_model

    from tradenova_dagster.market import calendar
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.ledger.accounts import shared_store
    from tradenova_dagster.rl import SignalModel
    from tradenova_dagster.session.day import backtest_day, backtest_days

    store = shared_store()
    model_path = crafted_model(store, bias=0.8, promote=False).path
    signal = SignalModel.load(model_path)
    synthetic = get_source("synthetic")
    synthetic.bars("SPY", "2026-11-19")  # warm the generator's caches
    backtest_day(store, synthetic, "2026-11-19", signal, "warmup")

    timings = []
    for _ in range(3):
        start = time.perf_counter()
        report = backtest_day(store, synthetic, "2026-11-20", signal, "one-day")
        timings.append(time.perf_counter() - start)
    best = min(timings)
    print(f"one day, {report.bars} bars, {report.trades} trades: {best:.3f} s "
          f"= {390 * 60 / best:,.0f}x real time (best of 3; target >= 5,000x)")

    persisted(store, synthetic, signal)

    if not DATA.is_dir():
        print(f"real-data backtest skipped: {DATA} is absent")
        return
    files = get_source("file", data_dir=DATA)
    days = calendar.trading_days("2022-09-30", "2023-09-29")
    days = days[: args.days] if args.days else days
    per_day, trades, bars = [], 0, 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for _, report in backtest_days(store, files, days, signal, "real-year"):  # one account, one run
        per_day.append(time.perf_counter() - start)
        trades, bars = trades + report.trades, bars + report.bars
        start = time.perf_counter()
    cpu = time.process_time() - cpu_start
    elapsed = sum(per_day)
    print(f"real SPY backtest: {len(days)} days, {bars} bars, {trades} trades in {elapsed:.1f} s "
          f"({elapsed / len(days):.3f} s/day; target: 251 days in <= 60 s); CPU time {cpu:.1f} s "
          "(what a shared machine's wall clock hides)")
    k = max(1, min(10, len(days) // 2))
    first, last = sum(per_day[:k]) / k, sum(per_day[-k:]) / k
    print(f"per day as the ledger fills: first {k} days {first:.3f} s/day, last {k} days {last:.3f} s/day "
          f"(last/first {last / first:.2f}; target: flat, ~1.0)")
    loop_rate, loop_cpu_rate = bars / elapsed, bars / cpu
    peer_bars, peer_s, peer_cpu = backtrader_peer(files, days)
    peer_rate, peer_cpu_rate = peer_bars / peer_s, peer_bars / peer_cpu
    print(f"bars/s on the same real bars: session loop {loop_rate:,.0f}, backtrader {peer_rate:,.0f} "
          f"({peer_bars} bars in {peer_s:.1f} s); session/backtrader {loop_rate / peer_rate:.2f}x (target >= 1.0x); "
          f"by CPU time {loop_cpu_rate:,.0f} vs {peer_cpu_rate:,.0f} bars/s, {loop_cpu_rate / peer_cpu_rate:.2f}x")
    dagster_path(days, model_path)


def dagster_path(days, model_path) -> None:
    """The same days as a user runs them: ``tradenova backtest`` (a Dagster run of
    ``backtest_job`` on a fresh instance, in a new process), timed from the command's start
    to its end, process start, imports and run launch included."""
    import subprocess

    home = tempfile.mkdtemp(prefix="tn-bench-cli-")
    env = {**os.environ, "TRADENOVA_HOME": home, "DAGSTER_HOME": os.path.join(home, "dagster")}
    command = [sys.executable, "-m", "tradenova_dagster.cli", "backtest", "--source", "file", "--data-dir", str(DATA),
               "--start", str(days[0]), "--end", str(days[-1]), "--model", str(model_path), "--no-progress"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        print(f"tradenova backtest failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
        return
    print(f"the same {len(days)} days through the Dagster path (`tradenova backtest`, a new process and a fresh "
          f"instance): {elapsed:.1f} s (target for 251 days: <= 60 s)")


def backtrader_peer(source, days) -> tuple[int, float]:
    """backtrader over the same days' bars, read through the same source: a strategy that
    decides every bar (long one share above its 20-bar average, flat below), orders filled
    by backtrader's broker. Returns (bars, wall seconds and CPU seconds of ``cerebro.run``)."""
    import backtrader as bt
    import pandas as pd

    frame = pd.concat([source.bars("SPY", day) for day in days], ignore_index=True)
    frame = frame.set_index(pd.DatetimeIndex(frame["timestamp"]).tz_convert(None))[
        ["open", "high", "low", "close", "volume"]]

    class EveryBar(bt.Strategy):
        def __init__(self):
            self.average = bt.indicators.SimpleMovingAverage(self.data.close, period=20)

        def next(self):
            self.order_target_size(target=1 if self.data.close[0] > self.average[0] else 0)

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame, timeframe=bt.TimeFrame.Minutes, compression=1))
    cerebro.addstrategy(EveryBar)
    cerebro.broker.setcash(100_000.0)
    start, cpu_start = time.perf_counter(), time.process_time()
    cerebro.run()
    return len(frame), time.perf_counter() - start, time.process_time() - cpu_start


def persisted(store, source, signal) -> None:
    """One day through TradingSession with a commit per bar, timed bar by bar, as the
    session op runs it: holding the account's lease and one ledger connection for the run."""
    import statistics

    from ops.trading import build_runtime
    from resources.broker import BrokerResource
    from resources.risk import RiskResource
    from resources.store import StoreResource
    from tradenova_dagster.ledger.lease import AccountLease
    from tradenova_dagster.market import calendar
    from tradenova_dagster.market.bars_store import bars_for_day
    from tradenova_dagster.session.clock import SimulatedClock
    from tradenova_dagster.session.day import set_clock, trading_context
    from tradenova_dagster.session.engine import SessionSettings, TradingSession
    from tradenova_dagster.session.feed import ReplayFeed

    day = calendar.as_date("2026-11-20")
    lease = AccountLease("sim:bench", "bench", "session").acquire()
    runtime = build_runtime("sim:bench", BrokerResource(), RiskResource(), StoreResource(db_path=str(store.path)),
                            run_id="bench", session_day=day, lease=lease)
    ledger = runtime.store
    bars = bars_for_day(store, source, "SPY", day)
    clock = SimulatedClock(calendar.session_open_close(day)[0])
    set_clock(runtime, clock)
    durations, connects = [], []

    class Timed(ReplayFeed):
        def __iter__(self):
            last = None
            for tick in super().__iter__():
                now = time.perf_counter()
                if last is not None:
                    durations.append(now - last)
                    connects.append(ledger.connects - before[0])
                before[0] = ledger.connects
                last = now
                yield tick

    before = [ledger.connects]
    session = TradingSession(day, runtime, signal=signal, context=trading_context(store, source, day), clock=clock,
                             feed=Timed(bars, clock), source=source.name, settings=SessionSettings(persist_every_bar=True))
    with ledger.hold():
        start_connects = ledger.connects
        report = session.run()
    lease.release()
    ms = sorted(d * 1000 for d in durations)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    print(f"persisted day, {report.bars} bars, {report.trades} trades: per committed bar median "
          f"{statistics.median(ms):.1f} ms, p99 {p99:.1f} ms (goal <= 20 ms); DuckDB connects per bar "
          f"{statistics.mean(connects):.2f} ({ledger.connects - start_connects} in the day, on one connection held "
          "for the run)")


if __name__ == "__main__":
    main()
