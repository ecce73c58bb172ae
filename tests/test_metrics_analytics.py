"""calculate_metrics / get_agent_performance / metrics_for_windows against independent
answers: a hand-checked small case, quantstats on synthetic series (whole span, trailing
windows, months) and on real SPY daily returns, and pandas on random trades (hypothesis);
and every kind of change to the ledger seen by the next call (the tracker keeps per-day
partials between calls)."""

from __future__ import annotations

import math
import subprocess
import sys
import uuid
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradenova_dagster.market import calendar
from tradenova_dagster.metrics import MetricsTracker
from tradenova_dagster.store import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import quantstats as qs

NY = "America/New_York"
TOL = 1e-9  # relative, for ratios computed two ways in floating point
CAPITAL = 100_000.0


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory) -> Store:
    """One database for the module; each test or example writes its own account."""
    return Store(tmp_path_factory.mktemp("metrics") / "tradenova.duckdb")


def new_tracker(store: Store, capital: float = CAPITAL) -> MetricsTracker:
    return MetricsTracker(store=store, initial_capital=capital, account=f"backtest:{uuid.uuid4().hex[:12]}")


def exit_at(day, clock: str = "15:00") -> pd.Timestamp:
    return pd.Timestamp(f"{day} {clock}", tz=NY)


def record_returns(tracker: MetricsTracker, returns: pd.Series, rng: np.random.Generator,
                   max_trades_per_day: int = 3) -> None:
    """Trades whose P&L per day is exactly return × start-of-day equity (split across a
    few trades and agents); days with return 0 get no trade at all."""
    equity = tracker.initial_capital
    with tracker.batch():
        for day, r in returns.items():
            pnl = r * equity
            equity += pnl
            if r == 0:
                continue
            n = int(rng.integers(1, max_trades_per_day + 1))
            weights = rng.dirichlet(np.ones(n)) if n > 1 else np.ones(1)
            parts = pnl * weights
            parts[-1] = pnl - parts[:-1].sum()
            for i, part in enumerate(parts):
                tracker.record_trade("SPY", 1.0, 1.1, 1, "long", float(part),
                                     ["ppo", "grpo", "rules"][i % 3],
                                     exit_time=exit_at(day.date(), f"1{i}:00"))


def quantstats_reference(returns: pd.Series) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "sharpe_ratio": qs.stats.sharpe(returns, rf=0.0, periods=252),
            "sortino_ratio": qs.stats.sortino(returns, rf=0.0, periods=252),
            "max_drawdown": -qs.stats.max_drawdown(returns),
            "total_return": qs.stats.comp(returns),
        }


def assert_matches_quantstats(metrics: dict, returns: pd.Series) -> dict:
    """Asserts agreement and returns the absolute differences (for the record)."""
    reference = quantstats_reference(returns)
    diffs = {}
    for key, expected in reference.items():
        assert metrics[key] == pytest.approx(expected, rel=TOL, abs=1e-12), key
        diffs[key] = abs(metrics[key] - expected)
    assert metrics["num_days"] == len(returns)
    return diffs


def test_hand_checked_small_case(shared_store):
    """Capital 1000. Day 1: +150 and -50 (r = +10%); day 2: -55 (r = -5%)."""
    t = new_tracker(shared_store, capital=1000)
    t.record_trade("SPY", 1, 2, 1, "long", 150.0, "ppo", exit_time=exit_at("2024-03-04"))
    t.record_trade("SPY", 2, 1, 1, "long", -50.0, "grpo", exit_time=exit_at("2024-03-04", "15:30"))
    t.record_trade("SPY", 2, 1, 1, "short", -55.0, "ppo", exit_time=exit_at("2024-03-05"))
    m = t.calculate_metrics(lookback_days=30, as_of="2024-03-05")
    assert (m["num_trades"], m["wins"], m["losses"], m["num_days"]) == (3, 1, 2, 2)
    assert m["total_pnl"] == pytest.approx(45.0)
    assert m["win_rate"] == pytest.approx(1 / 3)
    assert m["avg_win"] == pytest.approx(150.0)
    assert m["avg_loss"] == pytest.approx(-52.5)
    assert m["profit_factor"] == pytest.approx(150 / 105)
    assert m["expectancy"] == pytest.approx(15.0)
    # returns 0.10 and -0.05: mean 0.025, sample std 0.075·√2, downside √(0.05²/2)
    assert m["sharpe_ratio"] == pytest.approx(0.025 / (0.075 * math.sqrt(2)) * math.sqrt(252))
    assert m["sortino_ratio"] == pytest.approx(0.025 / math.sqrt(0.0025 / 2) * math.sqrt(252))
    assert m["max_drawdown"] == pytest.approx(55 / 1100)
    assert (m["start_equity"], m["end_equity"]) == (1000.0, pytest.approx(1045.0))
    assert m["total_return"] == pytest.approx(0.045)
    agents = t.get_agent_performance(as_of="2024-03-05")
    assert list(agents) == ["ppo", "grpo"]  # best total P&L first
    assert agents["ppo"]["total_pnl"] == pytest.approx(95.0)
    assert agents["ppo"]["win_rate"] == pytest.approx(0.5)
    assert agents["ppo"]["profit_factor"] == pytest.approx(150 / 55)
    assert agents["grpo"]["win_rate"] == 0.0 and agents["grpo"]["profit_factor"] == 0.0
    assert agents["grpo"]["avg_win"] is None


def test_days_without_trades_count_as_zero_return_and_earlier_pnl_sets_start_equity(shared_store):
    t = new_tracker(shared_store, capital=1000)
    t.record_trade("SPY", 1, 2, 1, "long", 200.0, "ppo", exit_time=exit_at("2024-01-02"))
    t.record_trade("SPY", 1, 2, 1, "long", 60.0, "ppo", exit_time=exit_at("2024-03-04"))
    t.record_trade("SPY", 1, 2, 1, "long", -120.0, "ppo", exit_time=exit_at("2024-03-06"))
    m = t.calculate_metrics(lookback_days=7, as_of="2024-03-08")  # Sat 2 .. Fri 8 March
    series = t.daily_series(lookback_days=7, as_of="2024-03-08")
    assert [d.isoformat() for d in series["day"]] == [
        "2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08"]
    assert series["start_equity"].tolist() == [1200.0, 1260.0, 1260.0, 1140.0, 1140.0]
    returns = pd.Series([60 / 1200, 0, -120 / 1260, 0, 0])
    assert series["daily_return"].tolist() == pytest.approx(returns.tolist())
    assert m["start_equity"] == 1200.0 and m["total_pnl"] == pytest.approx(-60.0)
    assert m["sharpe_ratio"] == pytest.approx(returns.mean() / returns.std() * math.sqrt(252))
    assert m["max_drawdown"] == pytest.approx(120 / 1260)


def test_empty_account_gives_zeros_and_undefined_ratios(shared_store):
    m = new_tracker(shared_store).calculate_metrics(as_of="2024-03-05")
    assert (m["num_trades"], m["num_days"], m["total_pnl"], m["max_drawdown"]) == (0, 0, 0.0, 0.0)
    for key in ("win_rate", "avg_win", "avg_loss", "profit_factor", "expectancy",
                "sharpe_ratio", "sortino_ratio", "best_trade", "worst_trade"):
        assert m[key] is None, key
    assert m["end_equity"] == m["start_equity"] == CAPITAL and m["total_return"] == 0.0


def test_one_trade_has_no_sharpe(shared_store):
    t = new_tracker(shared_store)
    t.record_trade("SPY", 1, 2, 1, "long", 250.0, "ppo", exit_time=exit_at("2024-03-05"))
    m = t.calculate_metrics(as_of="2024-03-05")
    assert (m["num_trades"], m["num_days"], m["win_rate"], m["expectancy"]) == (1, 1, 1.0, 250.0)
    assert m["sharpe_ratio"] is None and m["sortino_ratio"] is None
    assert m["profit_factor"] is None and m["avg_loss"] is None and m["max_drawdown"] == 0.0


def test_constant_returns_have_no_sharpe_rather_than_a_huge_number(shared_store):
    t = new_tracker(shared_store, capital=1000)
    t.record_trade("SPY", 1, 2, 1, "long", 100.0, "ppo", exit_time=exit_at("2024-03-04"))
    t.record_trade("SPY", 1, 2, 1, "long", 110.0, "ppo", exit_time=exit_at("2024-03-05"))
    m = t.calculate_metrics(as_of="2024-03-05")
    assert m["num_days"] == 2 and m["sharpe_ratio"] is None
    assert m["sortino_ratio"] is None  # no losing day


def test_flat_days_only_have_no_sharpe(shared_store):
    t = new_tracker(shared_store)
    t.record_equity(exit_at("2024-03-04"), CAPITAL, CAPITAL, 0.0)
    m = t.calculate_metrics(as_of="2024-03-08")
    assert m["num_days"] == 5 and m["sharpe_ratio"] is None and m["max_drawdown"] == 0.0


@pytest.mark.parametrize("lookback", [0, -5, 1.5, "30", True])
def test_bad_lookback_is_refused(shared_store, lookback):
    t = new_tracker(shared_store)
    with pytest.raises(ValueError, match="lookback_days"):
        t.calculate_metrics(lookback_days=lookback)
    with pytest.raises(ValueError, match="lookback_days"):
        t.get_agent_performance(lookback_days=lookback)


def test_bad_as_of_is_refused(shared_store):
    with pytest.raises(ValueError, match="as_of"):
        new_tracker(shared_store).calculate_metrics(as_of="last tuesday")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_quantstats_on_synthetic_returns(shared_store, seed):
    rng = np.random.default_rng(seed)
    days = calendar.trading_days("2023-01-03", "2024-06-28")
    returns = pd.Series(rng.normal(0.0004, 0.012, len(days)), index=pd.DatetimeIndex(days))
    returns[rng.random(len(days)) < 0.15] = 0.0  # flat days: no trade at all
    t = new_tracker(shared_store)
    record_returns(t, returns, rng)
    assert_matches_quantstats(t.calculate_metrics(lookback_days=None, as_of="2024-06-28"), returns)
    # A 30-day window in the middle: returns keep their start-of-day equity from before.
    window = returns["2023-10-03":"2023-11-01"]
    m = t.calculate_metrics(lookback_days=30, as_of="2023-11-01")
    assert_matches_quantstats(m, window)


def test_matches_quantstats_on_real_spy_daily_returns(shared_store, shared_data):
    prices = pd.read_csv(shared_data / "spy_daily_2004-01-02_2026-05-27.csv",
                         parse_dates=["Date"], index_col="Date")["Adj Close"]
    returns = prices.pct_change().dropna()
    t = new_tracker(shared_store, capital=1_000_000)
    record_returns(t, returns, np.random.default_rng(0), max_trades_per_day=1)
    last = returns.index[-1].date()
    diffs = assert_matches_quantstats(t.calculate_metrics(lookback_days=None, as_of=last), returns)
    assert max(diffs.values()) < 1e-9
    # The 2008 crash window: a deep drawdown and strongly negative ratios.
    window = returns["2008-09-01":"2008-12-31"]
    m = t.calculate_metrics(lookback_days=122, as_of="2008-12-31")
    assert_matches_quantstats(m, window)
    assert m["max_drawdown"] > 0.3


trade_lists = st.lists(
    st.tuples(
        st.floats(-5_000, 5_000, allow_nan=False).filter(lambda x: abs(x) > 1e-6),
        st.sampled_from(["ppo", "grpo", "rules:v2"]),
        st.integers(0, 9),  # which trading day of a fixed fortnight
    ),
    min_size=1, max_size=40,
)
FORTNIGHT = calendar.trading_days("2024-03-04", "2024-03-15")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trades=trade_lists)
def test_trade_statistics_and_agent_split_match_pandas(shared_store, trades):
    t = new_tracker(shared_store)
    with t.batch():
        for pnl, agent, day in trades:
            t.record_trade("SPY", 1, 2, 1, "long", pnl, agent, exit_time=exit_at(FORTNIGHT[day]))
    frame = pd.DataFrame(trades, columns=["pnl", "agent", "day"])
    m = t.calculate_metrics(lookback_days=None, as_of="2024-03-15")
    agents = t.get_agent_performance(as_of="2024-03-15")

    def expected(pnl: pd.Series) -> dict:
        wins, losses = pnl[pnl > 0], pnl[pnl < 0]
        return {
            "num_trades": len(pnl), "total_pnl": pnl.sum(), "win_rate": len(wins) / len(pnl),
            "avg_win": wins.mean() if len(wins) else None,
            "avg_loss": losses.mean() if len(losses) else None,
            "profit_factor": wins.sum() / -losses.sum() if len(losses) else None,
            "expectancy": pnl.mean(), "best_trade": pnl.max(), "worst_trade": pnl.min(),
        }

    def check(actual: dict, wanted: dict) -> None:
        for key, value in wanted.items():
            if value is None:
                assert actual[key] is None, key
            else:
                assert actual[key] == pytest.approx(value, rel=1e-9, abs=1e-6), key

    check(m, expected(frame["pnl"]))
    assert set(agents) == set(frame["agent"])
    for agent, group in frame.groupby("agent"):
        check(agents[agent], expected(group["pnl"]))
    assert sum(a["total_pnl"] for a in agents.values()) == pytest.approx(m["total_pnl"], abs=1e-6)
    totals = [a["total_pnl"] for a in agents.values()]
    assert totals == sorted(totals, reverse=True)
    # quantstats' helpers agree on the same P&L, scaled into return-sized numbers (scale does
    # not change either ratio; quantstats takes an all-positive series above 1 for prices).
    pnl = pd.Series(frame["pnl"].to_numpy() / 1e6, index=pd.date_range("2024-03-04", periods=len(frame)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if (pnl < 0).any() and (pnl > 0).any():
            assert m["profit_factor"] == pytest.approx(qs.stats.profit_factor(pnl), rel=1e-9)
        assert m["win_rate"] == pytest.approx(qs.stats.win_rate(pnl, aggregate=None), rel=1e-9)


def test_lookback_window_selects_trades_by_exit_day(shared_store):
    t = new_tracker(shared_store)
    for day, pnl in (("2024-02-01", 10.0), ("2024-02-29", 20.0), ("2024-03-01", 40.0)):
        t.record_trade("SPY", 1, 2, 1, "long", pnl, "ppo", exit_time=exit_at(day))
    assert t.calculate_metrics(lookback_days=1, as_of="2024-03-01")["total_pnl"] == 40.0
    assert t.calculate_metrics(lookback_days=2, as_of="2024-03-01")["total_pnl"] == 60.0
    # 30 calendar days ending 1 March 2024 (a leap year) start on 1 February.
    assert t.calculate_metrics(lookback_days=29, as_of="2024-03-01")["total_pnl"] == 60.0
    assert t.calculate_metrics(lookback_days=30, as_of="2024-03-01")["total_pnl"] == 70.0
    assert t.calculate_metrics(lookback_days=30, as_of="2024-03-01")["start"] == "2024-02-01"
    assert t.calculate_metrics(lookback_days=None, as_of="2024-03-01")["total_pnl"] == 70.0
    assert t.calculate_metrics(lookback_days=None, as_of="2024-02-29")["total_pnl"] == 30.0
    assert t.get_agent_performance(lookback_days=2, as_of="2024-03-01")["ppo"]["num_trades"] == 2


def test_rolling_sharpe_and_monthly_returns_in_one_call_match_quantstats(shared_store):
    rng = np.random.default_rng(7)
    days = calendar.trading_days("2024-01-02", "2024-04-30")
    returns = pd.Series(rng.normal(0.0005, 0.01, len(days)), index=pd.DatetimeIndex(days))
    t = new_tracker(shared_store)
    record_returns(t, returns, rng)
    ends = days[15:]
    rolling = t.metrics_for_windows([(30, day) for day in ends])
    assert [m["as_of"] for m in rolling] == [day.isoformat() for day in ends]
    for day, m in zip(ends, rolling):  # the trailing 30 calendar days, (day - 30, day]
        assert_matches_quantstats(m, returns[pd.Timestamp(day) - pd.Timedelta(days=29):pd.Timestamp(day)])
    months = [(1, "2024-01-31"), (2, "2024-02-29"), (3, "2024-03-31"), (4, "2024-04-30")]
    monthly = t.metrics_for_windows([(int(end[-2:]), end) for _, end in months])
    for (month, _), m in zip(months, monthly):
        assert_matches_quantstats(m, returns[returns.index.month == month])


def test_history_after_as_of_does_not_shape_the_window(shared_store):
    """An account whose records all come after ``as_of`` has nothing to report as of then."""
    t = new_tracker(shared_store, capital=1000)
    t.record_trade("SPY", 1, 2, 1, "long", -300.0, "ppo", exit_time=exit_at("2024-03-04"))
    t.record_equity(exit_at("2024-03-06"), 700.0, 700.0, 0.0)
    m = t.calculate_metrics(lookback_days=None, as_of="2024-03-01")
    assert (m["num_trades"], m["num_days"], m["start"], m["start_equity"], m["total_return"]) == (
        0, 0, "2024-03-01", 1000.0, 0.0)


def test_every_change_to_the_ledger_is_seen_by_the_next_call(shared_store):
    """A trade recorded by another writer or another process, a replayed day cleared, an
    earlier equity row: each shows in the very next answer of a tracker that has already
    read the ledger, equal to the answer of one that never has."""
    t = new_tracker(shared_store, capital=1000)
    other = MetricsTracker(store=Store(shared_store.path), initial_capital=1000, account=t.account)

    def now():
        m = t.calculate_metrics(lookback_days=None, as_of="2024-03-08")
        fresh = MetricsTracker(store=shared_store, initial_capital=1000, account=t.account)
        assert m == fresh.calculate_metrics(lookback_days=None, as_of="2024-03-08")
        return m

    t.record_trade("SPY", 1, 2, 1, "long", 100.0, "ppo", exit_time=exit_at("2024-03-04"))
    m = now()
    assert (m["num_trades"], m["total_pnl"], m["num_days"], m["start"]) == (1, 100.0, 5, "2024-03-04")
    other.record_trade("SPY", 1, 2, 1, "long", -40.0, "ppo", exit_time=exit_at("2024-03-06"))
    other.record_trade("SPY", 1, 2, 1, "long", 10.0, "ppo", exit_time=exit_at("2024-03-04", "15:30"))
    other.flush()
    m = now()
    assert (m["num_trades"], m["total_pnl"], m["best_trade"], m["worst_trade"]) == (3, 70.0, 100.0, -40.0)
    assert m["max_drawdown"] == pytest.approx(40 / 1110)
    assert other.clear_day("2024-03-06") == 1
    m = now()
    assert (m["num_trades"], m["total_pnl"], m["max_drawdown"]) == (2, 110.0, 0.0)
    other.record_equity(exit_at("2024-02-29"), 1000.0, 1000.0, 0.0)
    other.flush()
    m = now()
    assert (m["num_days"], m["start"]) == (7, "2024-02-29")  # Feb 29, Mar 1, Mar 4 .. 8
    code = ("import pandas as pd\n"
            "from tradenova_dagster.metrics import MetricsTracker\n"
            f"t = MetricsTracker({str(shared_store.path)!r}, 1000, account={t.account!r})\n"
            "at = pd.Timestamp('2024-03-07 15:00', tz='America/New_York')\n"
            "t.record_trade('SPY', 1, 2, 1, 'long', 5.0, 'grpo', at, at)\n"
            "t.flush()\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    m = now()
    assert (m["num_trades"], m["total_pnl"], m["worst_trade"]) == (3, 115.0, 5.0)
