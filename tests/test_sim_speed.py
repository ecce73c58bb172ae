"""The simulator's fast pricing paths equal the vectorised reference bit for bit.

SimBroker prices one contract at a time with plain floats (``options.bs_price``,
``MarketModel.smile_vol``, ``SpreadModel.bid_ask`` take a scalar path) and with a clock
in integer nanoseconds (``model.trading_minutes_to_expiry``); the RL environment prices
whole days with numpy arrays. Both must give the very same numbers, so these tests
compare the scalar answers with one-element arrays through the vector code, with ``==``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from tradenova_dagster.market import calendar
from tradenova_dagster.market import model as market_model
from tradenova_dagster.market.chain import DEFAULT_MODEL
from tradenova_dagster.market.model import SpreadModel, session_minutes_to_expiry, trading_minutes_to_expiry
from tradenova_dagster.market.options import bs_price

spots = st.floats(1.0, 2000.0)
moneyness = st.floats(0.7, 1.3)
years = st.one_of(st.floats(0.0, 0.3), st.sampled_from([0.0, 1e-6, 5e-7, 2e-6, 1 / 252, 1 / (252 * 390)]))
vixes = st.floats(5.0, 90.0)
calls = st.booleans()


def one(array) -> float:
    return float(np.asarray(array).reshape(-1)[0])


@settings(max_examples=3000, deadline=None)
@given(spots, moneyness, years, st.floats(1e-7, 3.0), st.floats(0.0, 0.1), calls)
def test_bs_price_scalar_equals_vector(spot, m, t, vol, rate, is_call):
    strike = spot * m
    scalar = bs_price(spot, strike, t, vol, rate, is_call)
    assert type(scalar) is float
    assert scalar == one(bs_price(np.array([spot]), strike, t, vol, rate, np.array([is_call])))


@settings(max_examples=3000, deadline=None)
@given(spots, moneyness, years, vixes, calls)
def test_premium_and_smile_scalar_equal_vector(spot, m, t, vix, is_call):
    strike = round(spot * m)
    model = DEFAULT_MODEL
    assert model.smile_vol(strike, spot, t, vix) == one(model.smile_vol(np.array([strike]), spot, t, vix))
    vector = model.premium(np.array([spot]), np.array([strike]), np.array([t]), vix, np.array([is_call]))
    assert model.premium(spot, strike, t, vix, is_call) == one(vector)


# Premiums as they come (any float), and ones near the tick grid, where rounding ties live.
premiums = st.one_of(st.floats(0.0, 500.0), st.integers(0, 50_000).map(lambda c: c / 100),
                     st.integers(0, 50_000).map(lambda c: c * 0.01 + 0.005))


@settings(max_examples=5000, deadline=None)
@given(premiums, st.one_of(st.just(0.0), st.floats(0.0, 200.0)),
       st.sampled_from([SpreadModel(), SpreadModel(min_spread=0.05, pct_of_mid=0.02, tick=0.05)]))
def test_bid_ask_scalar_equals_vector(mid, intrinsic, spread):
    bid, ask = spread.bid_ask(mid, intrinsic)
    vbid, vask = spread.bid_ask(np.array([mid]), np.array([intrinsic]))
    assert (bid, ask) == (one(vbid), one(vask))
    assert type(bid) is float and type(ask) is float


@settings(max_examples=3000, deadline=None)
@given(st.floats(-1e9, 1e9))
def test_round6_is_numpys_round(x):
    assert market_model._round6(x) == float(np.round(x, 6))


def reference_minutes(now, expiry: date) -> float:
    """``trading_minutes_to_expiry`` as it was written first: pandas and the vector clock."""
    now = pd.Timestamp(now).tz_convert("UTC")
    if now >= market_model.expiry_close(expiry):
        return 0.0
    today = now.tz_convert(calendar.NEW_YORK).date()
    if not calendar.is_trading_day(today):
        return market_model.full_session_minutes_after(today, expiry)
    return float(session_minutes_to_expiry(today, np.array([now.value]), expiry)[0])


EXPIRIES = [d for d in calendar.trading_days("2022-09-26", "2023-04-14")]


@settings(max_examples=3000, deadline=None)
@given(st.integers(0, 200 * 24 * 3600 * 10**6), st.sampled_from(EXPIRIES), st.booleans(), st.booleans())
def test_minutes_to_expiry_equals_reference(micros, expiry, as_timestamp, in_new_york):
    """Every instant (nights, weekends, DST changes, early closes) of late 2022 / early 2023."""
    now = datetime(2022, 9, 24, tzinfo=timezone.utc) + timedelta(microseconds=micros)
    if in_new_york:
        now = now.astimezone(calendar._NEW_YORK_ZONE)
    if as_timestamp:
        now = pd.Timestamp(now)
    assert trading_minutes_to_expiry(now, expiry) == reference_minutes(now, expiry)


def test_minutes_to_expiry_at_the_edges():
    """Opens, closes, an early close (2022-11-25) and the hours around the DST changes."""
    expiry = date(2022, 12, 2)
    for day in ("2022-11-04", "2022-11-06", "2022-11-07", "2022-11-25", "2022-11-28"):
        base = pd.Timestamp(day, tz="UTC")
        for minutes in range(0, 24 * 60, 15):
            for extra in (0, 1, -1):
                now = base + pd.Timedelta(minutes=minutes, microseconds=extra)
                assert trading_minutes_to_expiry(now, expiry) == reference_minutes(now, expiry)
                plain = now.to_pydatetime()
                assert trading_minutes_to_expiry(plain, expiry) == reference_minutes(plain, expiry)
