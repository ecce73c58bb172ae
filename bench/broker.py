"""Broker throughput: SimBroker orders/s, and BrokerExecutor round trips through alpaca-py.

Figures, all in one process on one DuckDB file in a temporary folder:

1. SimBroker, market orders: submit, then the next bar fills it. In a ``batch()`` (a
   replay: the account in memory, one write at the end) against per-call persistence
   (every call one DuckDB transaction, what separate processes sharing an account need).
2. SimBroker, bracket orders: submit, the entry fills on the next bar, the take-profit on
   the bar after, the stop is canceled. Same two modes.
3. A replayed day: 390 one-minute bars, an option entry and exit every 20 minutes through
   the BrokerExecutor (routing included) — seconds per day, batch against per call.
4. BrokerExecutor → alpaca-py TradingClient → local Alpaca server (SimBroker behind it):
   round trips per second, against the peer of a bare ``requests.post`` of the same order
   JSON to the same server (the HTTP floor), and against the same executor on the
   SimBroker directly (what the HTTP layer costs).

    python bench/broker.py [--orders 300] [--http-orders 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_alpaca_trading import API_KEY, SECRET_KEY, FakeAlpacaTrading  # noqa: E402
from tradenova_dagster.broker import BrokerExecutor, SimBroker  # noqa: E402
from tradenova_dagster.domain import Order  # noqa: E402
from tradenova_dagster.market import calendar  # noqa: E402
from tradenova_dagster.market.chain import select_contract  # noqa: E402
from tradenova_dagster.store import Store  # noqa: E402

START = pd.Timestamp("2024-03-04 14:30", tz="UTC")


class Clock:
    def __init__(self, t=START):
        self.t = t

    def now(self):
        return self.t


def _bar(price: float, up: float = 0.0) -> dict:
    return {"open": price, "high": price + max(up, 0.05), "low": price - 0.05, "close": price}


def market_orders(store: Store, n: int, batch: bool) -> float:
    clock = Clock()
    sim = SimBroker(f"backtest:market-{batch}-{n}", store, clock=clock)
    sim.on_bar(clock.t, "SPY", 500.0)
    started = time.perf_counter()
    context = sim.batch() if batch else _null()
    with context:
        for i in range(n):
            sim.submit_order(Order("SPY", 1, "buy" if i % 2 == 0 else "sell", f"m{i}"))
            clock.t += pd.Timedelta(seconds=30)
            sim.on_bar(clock.t, "SPY", _bar(500.0))
    elapsed = time.perf_counter() - started
    assert len(sim.get_fills()) == n
    return n / elapsed


def bracket_orders(store: Store, n: int, batch: bool) -> float:
    clock = Clock()
    sim = SimBroker(f"backtest:bracket-{batch}", store, clock=clock)
    sim.on_bar(clock.t, "SPY", 500.0)
    started = time.perf_counter()
    context = sim.batch() if batch else _null()
    with context:
        for i in range(n):
            sim.submit_order(Order("SPY", 1, "buy", f"b{i}", order_class="bracket", take_profit_price=500.5,
                                   stop_loss_price=499))
            clock.t += pd.Timedelta(seconds=20)
            sim.on_bar(clock.t, "SPY", _bar(500.0))  # the entry fills
            clock.t += pd.Timedelta(seconds=20)
            sim.on_bar(clock.t, "SPY", _bar(500.0, up=0.6))  # the take-profit fills, the stop is canceled
    elapsed = time.perf_counter() - started
    assert len(sim.get_fills()) == 2 * n and sim.get_positions() == []
    return n / elapsed


def replay_day(store: Store, batch: bool) -> float:
    day = pd.Timestamp("2024-03-05").date()
    bars = calendar.session_bar_starts(day)
    clock = Clock(bars[0])
    sim = SimBroker(f"backtest:day-{batch}", store, clock=clock)
    executor = BrokerExecutor(sim, run_id=f"day-{batch}", clock=clock)
    started = time.perf_counter()
    context = sim.batch() if batch else _null()
    held = None
    with context:
        for i, ts in enumerate(bars):
            clock.t = ts
            price = 500.0 + 2.0 * ((i % 60) - 30) / 30
            sim.on_bar(ts, "SPY", _bar(price), vix=15)
            if i % 20 == 5 and held is None and i < 380:
                contract = select_contract("SPY", price, ts, "call", 15, min_days=1)
                held = executor.execute_order(contract.symbol, 1, "buy").order.symbol
            elif i % 20 == 15 and held is not None:
                executor.execute_order(held, 1, "sell", intent="exit")
                held = None
    return time.perf_counter() - started


def http_round_trips(store: Store, n: int) -> tuple[float, float, float]:
    clock = Clock()
    sim = SimBroker("alpaca_paper:bench", store, clock=clock)
    sim.on_bar(clock.t, "SPY", 500.0)
    with FakeAlpacaTrading(sim) as fake:
        from alpaca.trading.client import TradingClient

        executor = BrokerExecutor(TradingClient(API_KEY, SECRET_KEY, paper=True, url_override=fake.url), clock=clock)
        executor.execute_market_order("SPY", 1, "buy", intent="warmup")
        started = time.perf_counter()
        for i in range(n):
            result = executor.execute_market_order("SPY", 1, "buy", intent=f"rt{i}")
            assert result.outcome == "submitted"
        executor_rate = n / (time.perf_counter() - started)
        headers = {"APCA-API-KEY-ID": API_KEY, "APCA-API-SECRET-KEY": SECRET_KEY}
        started = time.perf_counter()
        for i in range(n):
            body = {"symbol": "SPY", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day",
                    "client_order_id": f"raw-{i}"}
            assert requests.post(f"{fake.url}/v2/orders", json=body, headers=headers, timeout=10).status_code == 200
        raw_rate = n / (time.perf_counter() - started)
    direct = BrokerExecutor(sim, clock=clock)
    started = time.perf_counter()
    for i in range(n):
        assert direct.execute_market_order("SPY", 1, "buy", intent=f"direct{i}").outcome == "submitted"
    direct_rate = n / (time.perf_counter() - started)
    return executor_rate, raw_rate, direct_rate


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--http-orders", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "bench.duckdb")
        market_orders(store, 10, True)  # warm imports and the calendar
        print(f"SimBroker, {args.orders} market orders (submit + fill on the next bar):")
        batch = market_orders(store, args.orders, batch=True)
        per_call = market_orders(store, max(args.orders // 5, 20), batch=False)
        print(f"  in a batch (replay): {batch:9.0f} orders/s")
        print(f"  persisted per call:  {per_call:9.1f} orders/s   batch/per-call = {batch / per_call:.0f}x")
        print(f"SimBroker, {args.orders} bracket orders (entry, take-profit fill, stop canceled):")
        batch = bracket_orders(store, args.orders, batch=True)
        per_call = bracket_orders(store, max(args.orders // 5, 20), batch=False)
        print(f"  in a batch (replay): {batch:9.0f} brackets/s")
        print(f"  persisted per call:  {per_call:9.1f} brackets/s   batch/per-call = {batch / per_call:.0f}x")
        print("A replayed day (390 bars, an option round trip every 20 minutes, routed by the executor):")
        day_batch = replay_day(store, batch=True)
        day_per_call = replay_day(store, batch=False)
        print(f"  in a batch:          {day_batch:9.2f} s/day")
        print(f"  persisted per call:  {day_per_call:9.2f} s/day   ratio = {day_per_call / day_batch:.0f}x")
        print(f"BrokerExecutor round trips, {args.http_orders} market orders:")
        executor_rate, raw_rate, direct_rate = http_round_trips(store, args.http_orders)
        print(f"  executor -> alpaca-py -> local Alpaca server: {executor_rate:7.1f} orders/s")
        print(f"  bare requests.post, same server (the floor):  {raw_rate:7.1f} orders/s   "
              f"executor/raw = {executor_rate / raw_rate:.2f}")
        print(f"  executor -> SimBroker directly:               {direct_rate:7.1f} orders/s   "
              f"http/direct = {executor_rate / direct_rate:.2f}")


if __name__ == "__main__":
    main()
