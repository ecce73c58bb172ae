"""calculate_metrics over 1,000,000 trades: DuckDB SQL against pandas + quantstats.

Both sides compute the same metrics with the same definitions (tracker.py docstring):
trade statistics, and Sharpe, Sortino, max drawdown and total return on daily returns
(day P&L / start-of-day equity, every trading day, flat days 0). The peer starts from
the trades already in a pandas DataFrame (its most favourable case) and, separately,
from reading them out of the same DuckDB file. Same process, same data; the script
prints the times, the ratios and the largest difference between the two answers.

calculate_metrics keeps the account's per-day partials and re-reads only what changed
(metrics/partials.py docstring), so its cost depends on what happened since the last
call; each case is timed: nothing changed (the ledger held open, as the report and the
tearsheet call it; or no connection held: with the ledger idle for 2 s a stat of the
file answers, and with it written just before, as touching it fakes, a connect does),
one trade recorded since the last call, and a fresh tracker (every trade aggregated
again, as after a delete or in a new process).

    python bench/metrics.py [--trades 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.store import Store
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

        def all_history(t=tracker):
            return t.calculate_metrics(lookback_days=None, as_of=as_of)

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

        def written_just_before():
            os.utime(store.path)  # as a commit would: the stat cannot vouch, so it connects
            return all_history()

        as_of_time = pd.Timestamp(f"{as_of} 15:00", tz=calendar.NEW_YORK)
        t_connect, _ = timed(written_just_before, args.repeat)
        time.sleep(max(0.0, 2.1 - (time.time() - store.path.stat().st_mtime)))  # the ledger idle 2 s
        t_idle, _ = timed(all_history, args.repeat)
        with store.hold():
            t_duck, duck = timed(all_history, args.repeat)
            t_duck30, _ = timed(lambda: tracker.calculate_metrics(lookback_days=30, as_of=as_of), args.repeat)
            t_agents, _ = timed(lambda: tracker.get_agent_performance(as_of=as_of), args.repeat)
            t_cold, _ = timed(lambda: all_history(MetricsTracker(store=store, initial_capital=CAPITAL,
                                                                 account=ACCOUNT)), args.repeat)
            t_rolling, rolling = timed(lambda: tracker.metrics_for_windows([(30, d) for d in days]), 1)
            t_added = after_one_trade()  # last: it changes the ledger
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
        ("calculate_metrics, all history, one trade added since (held)", t_added),
        ("calculate_metrics, all history, fresh tracker (held)", t_cold),
        ("calculate_metrics, last 30 days (held)", t_duck30),
        (f"metrics_for_windows, 30 days trailing each of {len(rolling)} days", t_rolling),
        ("get_agent_performance, all history (held)", t_agents),
    ]
    for label, seconds in rows:
        print(f"  {label:62s} {seconds * 1000:8.1f} ms")
    print(f"  {'pandas + quantstats (in memory)':62s} {t_pandas * 1000:8.1f} ms")
    print(f"  {'pandas + quantstats (read + calc)':62s} {t_read_pandas * 1000:8.1f} ms")
    print(f"  ratio pandas+quantstats in memory / calculate_metrics: {t_pandas / t_duck:.1f}x held, "
          f"{t_pandas / t_idle:.1f}x not held (idle), {t_pandas / t_connect:.1f}x one connect per call, "
          f"{t_pandas / t_added:.1f}x after one new trade, "
          f"{t_pandas / t_cold:.1f}x fresh tracker; reading from the same file: "
          f"{t_read_pandas / t_duck:.1f}x held")
    worst = max(diffs, key=diffs.get)
    print(f"  largest |difference| between the two answers: {diffs[worst]:.2e} ({worst}); "
          + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items() if k in (
              "sharpe_ratio", "sortino_ratio", "max_drawdown", "total_return", "win_rate")))


if __name__ == "__main__":
    main()
