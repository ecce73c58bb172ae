"""A simulated paper week: the real ``trading_session_job`` (``dagster job execute``) day
after day against the local fake Alpaca (tests/fake_alpaca_trading.py: Trading API on a
real SimBroker, Market Data bars and quotes), through alpaca-py's clients, on an
accelerated shared clock (``TRADENOVA_CLOCK``), with random faults (seeded) injected on
orders and on data while the session trades.

Each day starts at ``--start`` New York (the bars before it are history to the session)
and runs to flatten time at ``--speed`` times real time; one broker account and one
TRADENOVA_HOME carry over from day to day. Printed at the end:

- orders sent (POST /v2/orders requests, and the orders the broker holds),
- duplicates: client_order_ids carried by more than one order at the broker (must be 0),
- rejected: order requests the broker refused (4xx, not an injected fault),
- missed bars: minute bars between a day's first and last committed bar that the session
  did not commit, and the days not flat at the end (must be 0),
- per-bar latency p50/p99: from a bar's completion (on the shared clock, in wall time) to
  its commit in the ledger (``session_bars.committed_at``), in real milliseconds.

    python bench/paper_soak.py [--days 5] [--start 14:00] [--speed 120] [--seed 7]

Runs in about five minutes with the defaults (about 55 s a day: some 20 s of Dagster
start-up, which the clock counts, so trading starts near 14:40, then to 15:50 at 120x).
Needs nothing online.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def _inject_randomly(day, rng: random.Random, every_s: float, stop: threading.Event, injected: Counter) -> None:
    from test_paper_day import DATA_FAULTS, MORE_ORDER_FAULTS, ORDER_FAULTS

    # From the session's first committed bar on: a failed data request while the session
    # computes the day's context at its start fails the run (when no warmup stored it); the
    # soak measures the trading day.
    while not stop.is_set() and not ((ts := day.view_ts()) is not None and ts > day.clock.start):
        stop.wait(0.1)
    while not stop.wait(rng.uniform(0.5, 1.5) * every_s):
        if rng.random() < 0.5:
            kind, when = rng.choice(ORDER_FAULTS + MORE_ORDER_FAULTS)
            day.server.inject(kind, when, "POST", "/v2/orders")
            injected[f"orders {kind}/{when}"] += 1
        else:
            kind, when = rng.choice(DATA_FAULTS)
            day.server.inject(kind, when, "GET", "/v2/stocks/bars")
            injected[f"data {kind}/{when}"] += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--first-day", default="2026-11-16", help="the first trading day (YYYY-MM-DD)")
    parser.add_argument("--start", default="14:00", help="New York time each day's session starts at")
    parser.add_argument("--speed", type=float, default=120.0, help="simulated seconds per real second")
    parser.add_argument("--fault-every", type=float, default=4.0, help="mean real seconds between injected faults")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="paper_soak_"))
    home = work / "tradenova_home"
    home.mkdir()
    os.environ["TRADENOVA_HOME"] = str(home)  # the model registry and the ledger this process reads
    os.environ["DAGSTER_HOME"] = str(home / "dagster")

    import pandas as pd

    from session_helpers import crafted_model
    from test_paper_day import ACCOUNT, PaperDay, ny
    from tradenova_dagster.broker.sim import SimBroker
    from tradenova_dagster.market import calendar
    from tradenova_dagster.store import Store

    crafted_model(Store(home / "tradenova.duckdb"))
    sim = SimBroker("sim:alpaca", Store(work / "fake_alpaca_broker.duckdb"))
    rng = random.Random(args.seed)
    days = []
    day = calendar.as_date(args.first_day)
    while len(days) < args.days:
        if calendar.is_trading_day(day):
            days.append(day)
        day = calendar.next_session(day) if calendar.is_trading_day(day) else day + pd.Timedelta(days=1)

    sent = held = rejected = missed = not_flat = failed = 0
    latencies: list[float] = []
    injected: Counter = Counter()
    coids: Counter = Counter()
    began = time.monotonic()
    for d in days:
        iso = d.isoformat()
        with PaperDay(home, ny(iso, args.start), args.speed, sim=sim) as paper:
            stop = threading.Event()
            thread = threading.Thread(target=_inject_randomly, args=(paper, rng, args.fault_every, stop, injected),
                                      daemon=True)
            thread.start()
            rc, log = paper.run("trading_session_job", iso, timeout=600)
            stop.set()
            thread.join()
            paper.server.clear_faults()
            paper.server.wait_idle()
            if rc != 0:
                failed += 1
                print(f"{iso}: the session failed (rc {rc}):\n" + "\n".join(log.splitlines()[-15:]))
            posts = [e for e in paper.server.log if e["method"] == "POST" and e["path"] == "/v2/orders"]
            sent += len(posts)
            rejected += sum(1 for e in posts if not e.get("fault") and e.get("status", 200) >= 400)
            rows = paper.ledger().query(
                "SELECT bar_ts, committed_at FROM session_bars WHERE account = ? AND day = ? ORDER BY bar_ts",
                [ACCOUNT, d])
            bars = [pd.Timestamp(b).tz_convert("UTC") for b, _ in rows]
            if bars:
                expected = int((bars[-1] - bars[0]) / pd.Timedelta(minutes=1)) + 1
                missed += expected - len(set(bars))
            for bar_ts, committed in rows:
                completed = paper.clock.at(pd.Timestamp(bar_ts) + pd.Timedelta(minutes=1))
                latencies.append((pd.Timestamp(committed).timestamp() - completed) * 1000.0)
            if paper.positions() or paper.open_orders():
                not_flat += 1
            print(f"{iso}: rc {rc}, {len(bars)} bars committed, {len(posts)} order requests, "
                  f"flat {not (paper.positions() or paper.open_orders())}", flush=True)
    coids.update(Counter(
        o.client_order_id for o in sim.list_orders(status="all", limit=100_000) if o.parent_id is None))
    held = sum(coids.values())
    duplicates = sum(n - 1 for n in coids.values() if n > 1)
    statuses = Counter(o.status.value for o in sim.list_orders(status="all", limit=100_000) if o.parent_id is None)
    print()
    print(f"paper soak: {len(days)} days ({days[0]} .. {days[-1]}) from {args.start} New York at {args.speed:g}x, "
          f"seed {args.seed}, {time.monotonic() - began:.0f} s")
    print(f"faults injected:  {sum(injected.values())} ({', '.join(f'{k} x{v}' for k, v in sorted(injected.items()))})")
    print(f"orders sent:      {sent} requests, {held} orders at the broker ({dict(statuses)})")
    print(f"duplicates:       {duplicates} (must be 0)")
    print(f"rejected:         {rejected}")
    print(f"missed bars:      {missed}; days not flat: {not_flat}; failed sessions: {failed}")
    print(f"per-bar latency:  p50 {_percentile(latencies, 50):.0f} ms, p99 {_percentile(latencies, 99):.0f} ms "
          f"(bar completed -> committed, real time; {len(latencies)} bars; a bar lasts {60_000 / args.speed:.0f} ms "
          f"at this speed)")
    return 1 if duplicates or not_flat or failed else 0


if __name__ == "__main__":
    sys.exit(main())
