"""calculate_metrics over 1,000,000 trades: DuckDB SQL against pandas + quantstats.

Both sides compute the same metrics with the same definitions (tracker.py docstring):
trade statistics, and Sharpe, Sortino, max drawdown and total return on daily returns
(day P&L / start-of-day equity, every trading day, flat days 0). The peer starts from
the trades already in a pandas DataFrame (its most favourable case) and, separately,
from reading them out of the same DuckDB file. Same process, same data; the script
prints the times, the ratios and the largest difference between the two answers.

calculate_metrics keeps the account's per-day partials, in memory and in a snapshot beside
the ledger, and re-reads only what changed (metrics/partials.py docstring), so its cost
depends on what happened since the last call; each case is timed: nothing changed (the
ledger held open, as the report and the tearsheet call it; or no connection held: with
the ledger idle for 2 s a stat of the file answers, and with it written just before, as
touching it fakes, a connect does), one trade recorded since the last call, and a fresh
tracker (a new process: the report, the monitor): the ledger idle (the snapshot answers),
just written (a connect, the snapshot as the base) and with no snapshot at all (every
trade aggregated: a ledger's first read). A bare connect is timed too: it is what a call
that must look into the file cannot go below. Finally a new process times its first call.

    python bench/metrics.py [--trades 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.store import Store
from tradenova_dagster.metrics.partials import snapshot_path
from tradenova_dagster.metrics.tracker import MetricsTracker
from tradenova_dagster.rules import OPTION_COMMISSION_PER_CONTRACT

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import quantstats as qs

ACCOUNT = "backtest:bench"
CAPITAL = 1_000_000.0
AGENTS = ["ppo", "grpo", "rules", "ppo:v2", "grpo:v2"]


def make_trades(n: int, days: list, seed: int = 0) -> pd.DataFrame:
    """n trades spread over the trading days, exits during the session (UTC)."""
    rng = np.random.default_rng(seed)
    day_index = np.sort(rng.integers(0, len(days), n))
    exit_ny = pd.to_datetime(np.array(days, dtype="datetime64[D]")[day_index]) + pd.to_timedelta(
        rng.integers(10 * 60, 15 * 60 + 59, n), unit="min")
    exit_time = exit_ny.tz_localize(calendar.NEW_YORK).tz_convert("UTC")
    return pd.DataFrame({
        "trade_id": [uuid.UUID(int=i).hex for i in range(n)],
        "account": ACCOUNT,
        "run_id": "bench",
        "day": exit_ny.normalize(),
        "symbol": "SPY",
        "contract": "SPY260116C00600000",
        "side": "long",
        "qty": 1.0,
        "entry_time": exit_time - pd.Timedelta(minutes=5),
        "exit_time": exit_time,
        "entry_price": 2.0,
        "exit_price": 2.1,
        "pnl": rng.normal(1.0, 60.0, n).round(2),
        "commission": OPTION_COMMISSION_PER_CONTRACT,
        "agent": np.array(AGENTS)[rng.integers(0, len(AGENTS), n)],
        "exit_reason": "tp1",
    })


def load(store: Store, trades: pd.DataFrame) -> None:
    with store.transaction() as con:
        con.register("bench_trades", trades)
        con.execute("INSERT INTO trades (trade_id, account, run_id, day, symbol, contract, side, qty,"
                    " entry_time, exit_time, entry_price, exit_price, pnl, commission, agent,"
                    " exit_reason) SELECT trade_id, account, run_id, CAST(day AS DATE), symbol,"
                    " contract, side, qty, entry_time, exit_time, entry_price, exit_price, pnl,"
                    " commission, agent, exit_reason FROM bench_trades")
        con.unregister("bench_trades")


def pandas_quantstats(trades: pd.DataFrame, days: list) -> dict:
    """The same metrics, the usual way: pandas for the trade statistics and the daily
    series, quantstats for the ratios and the drawdown."""
    pnl = trades["pnl"]
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    daily_pnl = pnl.groupby(trades["day"]).sum().reindex(pd.DatetimeIndex(days), fill_value=0.0)
    end_equity = CAPITAL + daily_pnl.cumsum()
    returns = daily_pnl / (end_equity - daily_pnl)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "num_trades": len(pnl),
            "total_pnl": pnl.sum(),
            "win_rate": len(wins) / len(pnl),
            "avg_win": wins.mean(),
            "avg_loss": losses.mean(),
            "profit_factor": wins.sum() / -losses.sum(),
            "expectancy": pnl.mean(),
            "sharpe_ratio": qs.stats.sharpe(returns, rf=0.0, periods=252),
            "sortino_ratio": qs.stats.sortino(returns, rf=0.0, periods=252),
            "max_drawdown": -qs.stats.max_drawdown(returns),
            "total_return": qs.stats.comp(returns),
        }


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


# A new process (the report, the monitor) on an idle ledger: its first call, and the
# connects it made (0 where the snapshot beside the ledger answers).
NEW_PROCESS = """
import sys, time
from tradenova_dagster.metrics.partials import exchange_days
from tradenova_dagster.metrics.tracker import MetricsTracker
exchange_days()  # the NYSE calendar, built once per process (also by the peer's trading days)
tracker = MetricsTracker(sys.argv[1], float(sys.argv[2]), account=sys.argv[3])
connects = tracker.store.connects
start = time.perf_counter()
tracker.calculate_metrics(lookback_days=None, as_of=sys.argv[4])
print(time.perf_counter() - start, tracker.store.connects - connects)
"""


def settle(store: Store) -> None:
    """Wait until the ledger has been idle for 2 s (partials.py: a stat then vouches)."""
    last = max(p.stat().st_mtime for p in (store.path, store.path.with_name(store.path.name + ".wal"))
               if p.exists())
    time.sleep(max(0.0, 2.1 - (time.time() - last)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    days = calendar.trading_days("2022-01-03", "2025-12-31")
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "bench.duckdb")
        trades = make_trades(args.trades, days)
        load(store, trades)
        tracker = MetricsTracker(store=store, initial_capital=CAPITAL, account=ACCOUNT)
        as_of = days[-1]
        tracker.calculate_metrics(lookback_days=None, as_of=as_of)  # warm the calendar cache
        snapshot = snapshot_path(store.path, ACCOUNT)

        def all_history(t=tracker):
            return t.calculate_metrics(lookback_days=None, as_of=as_of)

        def fresh_tracker():
            return MetricsTracker(store=store, initial_capital=CAPITAL, account=ACCOUNT)

        def after_one_trade() -> float:
            """Median time of the first call after a trade is recorded (and committed)."""
            times = []
            for _ in range(args.repeat):
                tracker.record_trade("SPY", 2.0, 2.1, 1, "long", 10.0, "ppo", as_of_time, as_of_time)
                tracker.flush()
                start = time.perf_counter()
                all_history()
                times.append(time.perf_counter() - start)
            return statistics.median(times)

        def timed_fresh(prepare) -> tuple[float, float, dict]:
            """Median time of a fresh tracker's first call, connects per call, its answer."""
            times, connects, answer = [], store.connects, None
            for _ in range(args.repeat):
                prepare()
                fresh = fresh_tracker()
                start = time.perf_counter()
                answer = all_history(fresh)
                times.append(time.perf_counter() - start)
            return statistics.median(times), (store.connects - connects) / args.repeat, answer

        def written_just_before():
            os.utime(store.path)  # as a commit would: the stat cannot vouch, so it connects
            return all_history()

        def bare_connect():
            with store.connect():
                pass

        as_of_time = pd.Timestamp(f"{as_of} 15:00", tz=calendar.NEW_YORK)
        t_connect, _ = timed(written_just_before, args.repeat)
        t_bare, _ = timed(bare_connect, args.repeat)
        t_fresh_written = timed_fresh(lambda: os.utime(store.path))
        settle(store)
        t_idle, _ = timed(all_history, args.repeat)  # the first one connects once and keeps the snapshot
        t_fresh_idle = timed_fresh(lambda: None)
        with store.hold():
            t_duck, duck = timed(all_history, args.repeat)
            t_duck30, _ = timed(lambda: tracker.calculate_metrics(lookback_days=30, as_of=as_of), args.repeat)
            t_agents, _ = timed(lambda: tracker.get_agent_performance(as_of=as_of), args.repeat)
            t_cold = timed_fresh(lambda: snapshot.unlink(missing_ok=True))  # held: none is written back
            t_rolling, rolling = timed(lambda: tracker.metrics_for_windows([(30, d) for d in days]), 1)
            t_added = after_one_trade()  # last: it changes the ledger
        settle(store)
        all_history()  # not held, the ledger idle: the snapshot is written again
        process = [subprocess.run([sys.executable, "-c", NEW_PROCESS, str(store.path), str(CAPITAL), ACCOUNT,
                                   str(as_of)], check=True, capture_output=True, text=True).stdout.split()
                   for _ in range(3)]
        t_process, process_connects = statistics.median(float(p[0]) for p in process), max(int(p[1]) for p in process)
        in_memory = trades[["day", "pnl", "agent"]].copy()
        t_pandas, peer = timed(lambda: pandas_quantstats(in_memory, days), args.repeat)

        def read_then_pandas():
            frame = store.query_df("SELECT day, pnl, agent FROM trades WHERE account = ? AND run_id = 'bench'",
                                   [ACCOUNT])
            frame["day"] = pd.to_datetime(frame["day"])
            return pandas_quantstats(frame, days)

        t_read_pandas, _ = timed(read_then_pandas, args.repeat)

    diffs = {key: abs(float(duck[key]) - float(value)) for key, value in peer.items()}
    print(f"calculate_metrics over {args.trades:,} trades, {len(days)} trading days "
          f"(median of {args.repeat})")
    rows = [
        ("calculate_metrics, all history, unchanged ledger held open", t_duck),
        ("calculate_metrics, all history, unchanged, not held, idle 2 s", t_idle),
        ("calculate_metrics, all history, unchanged, not held, connects", t_connect),
        ("  of which a bare connect + close (DuckDB's file open)", t_bare),
        ("calculate_metrics, all history, one trade added since (held)", t_added),
        (f"fresh tracker, ledger idle ({t_fresh_idle[1]:.0f} connects: the snapshot)", t_fresh_idle[0]),
        (f"fresh tracker, just written ({t_fresh_written[1]:.0f} connect + rows since)", t_fresh_written[0]),
        ("fresh tracker, no snapshot (held: every trade aggregated)", t_cold[0]),
        (f"new process, first call, ledger idle ({process_connects} connects)", t_process),
        ("calculate_metrics, last 30 days (held)", t_duck30),
        (f"metrics_for_windows, 30 days trailing each of {len(rolling)} days", t_rolling),
        ("get_agent_performance, all history (held)", t_agents),
    ]
    for label, seconds in rows:
        print(f"  {label:62s} {seconds * 1000:8.1f} ms")
    print(f"  {'pandas + quantstats (in memory)':62s} {t_pandas * 1000:8.1f} ms")
    print(f"  {'pandas + quantstats (read + calc)':62s} {t_read_pandas * 1000:8.1f} ms")
    print(f"  ratio pandas+quantstats in memory / calculate_metrics: {t_pandas / t_duck:.1f}x held, "
          f"{t_pandas / t_idle:.1f}x not held (idle), {t_pandas / t_connect:.1f}x one connect per call "
          f"({t_pandas / t_bare:.1f}x a bare connect), {t_pandas / t_added:.1f}x after one new trade; "
          f"fresh tracker: {t_pandas / t_fresh_idle[0]:.1f}x idle, {t_pandas / t_process:.1f}x in a new process, "
          f"{t_pandas / t_fresh_written[0]:.1f}x just written, {t_pandas / t_cold[0]:.1f}x no snapshot; "
          f"reading from the same file: {t_read_pandas / t_duck:.1f}x held")
    worst = max(diffs, key=diffs.get)
    print(f"  largest |difference| between the two answers: {diffs[worst]:.2e} ({worst}); "
          + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items() if k in (
              "sharpe_ratio", "sortino_ratio", "max_drawdown", "total_return", "win_rate")))
    fresh_diff = {label: max(abs(float(duck[key]) - float(answer[key])) for key in peer)
                  for label, answer in (("idle", t_fresh_idle[2]), ("just written", t_fresh_written[2]),
                                        ("no snapshot", t_cold[2]))}
    print("  largest |difference| of a fresh tracker's answer to the kept tracker's: "
          + ", ".join(f"{label} {value:.1e}" for label, value in fresh_diff.items()))


if __name__ == "__main__":
    main()
