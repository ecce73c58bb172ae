"""The session loop's speed: one replayed day against real time, and a year-long backtest.

1. One trading day (390 one-minute bars) of synthetic SPY through the full loop (signal,
   risk, ladder, simulated broker, DuckDB records) — printed as a multiple of real time
   (390 minutes), the peer every live session runs against (target >= 5,000x).
2. Every day of the real SPY 1-minute year in ../shared/data (251 sessions) through the
   ``backtest_day`` path, the same code a Dagster backfill runs (target: under 10 minutes).

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
    from tradenova_dagster.metrics.store import Store
    from tradenova_dagster.rl import SignalModel
    from tradenova_dagster.session.day import backtest_day

    store = Store()
    signal = SignalModel.load(crafted_model(store, bias=0.8, promote=False).path)
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

    if not DATA.is_dir():
        print(f"real-data backtest skipped: {DATA} is absent")
        return
    files = get_source("file", data_dir=DATA)
    days = calendar.trading_days("2022-09-30", "2023-09-29")
    days = days[: args.days] if args.days else days
    start = time.perf_counter()
    trades = 0
    for day in days:
        trades += backtest_day(store, files, day, signal, "real-year").trades
    elapsed = time.perf_counter() - start
    print(f"real SPY backtest: {len(days)} days, {trades} trades in {elapsed / 60:.2f} min "
          f"({elapsed / len(days):.2f} s/day; target: 251 days under 10 min)")


if __name__ == "__main__":
    main()
