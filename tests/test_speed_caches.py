"""The caches the session loop's speed rests on must never serve a stale answer.

Each test asks a cached function about one case, then about a case that differs in one
input (another day, another instant, another price, another VIX level, another model),
and checks the second answer against a source the cache does not sit in front of
(exchange_calendars itself, the option model's own ``quote``).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import exchange_calendars as xcals
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradenova_dagster.broker.sim_pricing import Mark, Pricer, SimConfig
from tradenova_dagster.domain import OptionContract, require_symbol
from tradenova_dagster.market import calendar
from tradenova_dagster.market.chain import DEFAULT_MODEL, OptionMarketModel

XNYS = xcals.get_calendar("XNYS", start="2022-01-03", end="2024-12-31")


@pytest.mark.parametrize("days", [
    ("2023-11-22", "2023-11-23", "2023-11-24", "2023-11-27"),  # a normal day, Thanksgiving, an early close
    ("2023-07-03", "2023-07-04", "2023-07-05"),  # an early close, a holiday, a normal day
])
def test_calendar_answers_follow_the_day_asked(days):
    for day in days:
        ts = pd.Timestamp(day)
        assert calendar.is_trading_day(day) is bool(XNYS.is_session(ts)), day
        if XNYS.is_session(ts):
            assert calendar.session_open_close(day) == (XNYS.session_open(ts), XNYS.session_close(ts)), day
        else:
            with pytest.raises(ValueError, match=f"day {day} is not a trading day"):
                calendar.session_open_close(day)
    # a New York evening instant is that New York day, not the UTC one
    assert calendar.is_trading_day(pd.Timestamp("2023-07-05 01:00", tz="UTC")) is False
    assert calendar.session_minutes("2023-11-24") == 210 and calendar.session_minutes("2023-11-27") == 390


def _quote(model: OptionMarketModel, symbol: str, spot: float, ts: datetime, vix: float) -> tuple[float, float]:
    q = model.quote(symbol, spot, ts, vix)
    return q.bid, q.ask


def test_option_quotes_follow_spot_instant_vix_and_model():
    call, put = "SPY231124C00455000", "SPY231124P00455000"
    t1 = datetime(2023, 11, 21, 15, 0, tzinfo=timezone.utc)
    t2 = datetime(2023, 11, 21, 19, 0, tzinfo=timezone.utc)
    marks = {"SPY": Mark(t1, 455.0, 14.0)}
    pricer = Pricer(SimConfig(), marks)
    cases = [  # (symbol, spot, instant, vix): each differs from the one before in one input
        (call, 455.0, t1, 14.0), (call, 458.0, t1, 14.0), (put, 458.0, t1, 14.0),
        (put, 458.0, t2, 14.0), (put, 458.0, t2, 30.0), (call, 455.0, t1, 14.0),
    ]
    seen = set()
    for symbol, spot, ts, vix in cases:
        marks["SPY"] = Mark(ts, spot, vix)
        got = pricer.bid_ask_at(symbol, spot, ts)
        assert got == _quote(DEFAULT_MODEL, symbol, spot, ts, vix), (symbol, spot, ts, vix)
        seen.add(got)
    assert len(seen) == 5  # the cases really price differently (the last repeats the first)
    wider = OptionMarketModel(spread=DEFAULT_MODEL.spread.__class__(min_spread=0.5))
    pricer.config = SimConfig(options=wider)  # another model at the same instant and price
    assert pricer.bid_ask_at(call, 455.0, t1) == _quote(wider, call, 455.0, t1, 14.0)
    assert pricer.bid_ask_at(call, 455.0, t1) != _quote(DEFAULT_MODEL, call, 455.0, t1, 14.0)


def test_symbol_and_contract_checks_stay_per_call():
    assert OptionContract.parse("SPY231124C00455000").strike == 455.0
    assert OptionContract.parse(" spy231124p00455500 ").expiry == date(2023, 11, 24)
    assert OptionContract.parse("SPY231124P00455500").strike == 455.5
    for _ in range(2):  # a bad symbol raises every time (an exception is never cached)
        with pytest.raises(ValueError, match="SPY231124X00455000"):
            OptionContract.parse("SPY231124X00455000")
    assert OptionContract.is_option_symbol("SPY231124C00455000") and not OptionContract.is_option_symbol("SPY")
    assert require_symbol("symbol", " spy ") == "SPY"
    with pytest.raises(ValueError, match="^underlying: 'SP\\$Y' is not a valid symbol"):
        require_symbol("underlying", "SP$Y")
    with pytest.raises(ValueError, match="^symbol: 'SP\\$Y' is not a valid symbol"):  # the field named is this one's
        require_symbol("symbol", "SP$Y")


def test_expiry_follows_the_day_and_the_number_of_sessions():
    from tradenova_dagster.rules import expiry_for

    for day, sessions in [("2023-11-22", 1), ("2023-11-22", 3), ("2023-11-24", 3), ("2023-07-03", 2)]:
        start = pd.Timestamp(day)
        expected = XNYS.sessions_window(start, sessions + 1)[-1].date()
        assert expiry_for(start.date(), sessions) == expected, (day, sessions)


def test_a_backtest_opens_its_ledger_once_and_reads_the_shared_database_once_per_read_ahead(store, monkeypatch):
    """A backtest run holds its ledger for all its days and reads the days' bars and
    context ``READ_AHEAD`` days to a connection: 3 days with a read-ahead of 2 open the
    ledger once and the shared database twice — and trade exactly as day-by-day replays do."""
    from tradenova_dagster.ledger.accounts import ledger_store
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.session import backtest
    from tradenova_dagster.strategies import build_strategy

    source = get_source("synthetic")
    days = calendar.trading_days("2026-11-17", "2026-11-19")
    for day in days:  # bars and context stored: what is counted is the replay's reading
        backtest.backtest_day(store, source, day, build_strategy("always-call", store=store), "warm")
    one_by_one = [backtest.backtest_day(store, source, day, build_strategy("always-call", store=store), "single",
                                        fresh=i == 0) for i, day in enumerate(days)]
    monkeypatch.setattr(backtest, "READ_AHEAD", 2)
    ledger = ledger_store("backtest:run")
    shared_before, ledger_before = store.connects, ledger.connects
    reports = [report for _, report in backtest.backtest_days(store, source, days,
                                                             build_strategy("always-call", store=store), "run")]
    assert (store.connects - shared_before, ledger.connects - ledger_before) == (2, 1)
    assert [(r.trades, r.end_equity) for r in reports] == [(r.trades, r.end_equity) for r in one_by_one]
    assert sum(r.trades for r in reports) > 0


@settings(max_examples=300, deadline=None)
@given(instant=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2027, 12, 31),
                            timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-4)),
                                                       timezone(timedelta(hours=9, minutes=30))])))
def test_the_new_york_date_of_a_datetime_is_pandas_answer(instant):
    """``as_date`` reads a tz-aware datetime (the simulator's clock, every bar) without
    pandas; across DST changes and odd offsets it must give pandas' New York date."""
    assert calendar.as_date(instant) == pd.Timestamp(instant).tz_convert(calendar.NEW_YORK).date()
    assert calendar.as_date(instant.replace(tzinfo=None)) == instant.date()
