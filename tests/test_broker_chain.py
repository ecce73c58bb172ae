"""The generated option chain: pricer against py_vollib, expiries, contract choice, spreads,
and the calibration against the real SPY chain of 2026-05-01."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradenova_dagster.domain import OptionContract, OptionType
from tradenova_dagster.market import chain
from tradenova_dagster.market.options import MINUTES_PER_YEAR, bs_delta, bs_price

UTC = "UTC"


@settings(max_examples=200, deadline=None)
@given(
    spot=st.floats(50, 1000), moneyness=st.floats(0.8, 1.2), days=st.floats(0.05, 60),
    vol=st.floats(0.05, 1.0), rate=st.floats(0.0, 0.06), is_call=st.booleans(),
)
def test_black_scholes_matches_py_vollib(spot, moneyness, days, vol, rate, is_call):
    from py_vollib.black_scholes import black_scholes
    from py_vollib.black_scholes.greeks.analytical import delta

    strike, t = spot * moneyness, days / 365
    flag = "c" if is_call else "p"
    # market.options floors a premium at its discounted intrinsic value (SPY options are
    # American: a deep in-the-money put is worth at least that); elsewhere it is vollib's.
    intrinsic = max(spot - strike, 0.0) if is_call else max(strike - spot, 0.0)
    expected = max(black_scholes(flag, spot, strike, t, rate, vol), intrinsic * np.exp(-rate * t))
    assert bs_price(spot, strike, t, vol, rate, is_call) == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert bs_delta(spot, strike, t, vol, rate, is_call) == pytest.approx(
        delta(flag, spot, strike, t, rate, vol), abs=1e-6)


def test_weekly_expiries_are_fridays_or_the_thursday_before_a_friday_holiday():
    # Good Friday 2026 is April 3: that week's options expire on Thursday April 2.
    now = pd.Timestamp("2026-03-31 15:00", tz=UTC)
    assert chain.weekly_expiries(now, 3) == [date(2026, 4, 2), date(2026, 4, 10), date(2026, 4, 17)]
    # On a Friday before the close, that Friday is the nearest expiry; min_days=1 skips it.
    friday = pd.Timestamp("2026-04-10 15:00", tz=UTC)
    assert chain.nearest_weekly_expiry(friday) == date(2026, 4, 10)
    assert chain.nearest_weekly_expiry(friday, min_days=1) == date(2026, 4, 17)
    # After the Friday close it is gone.
    assert chain.nearest_weekly_expiry(pd.Timestamp("2026-04-10 20:30", tz=UTC)) == date(2026, 4, 17)


def test_time_to_expiry_counts_trading_minutes_only():
    friday_close = pd.Timestamp("2026-05-01 20:00", tz=UTC)
    # From Friday's close to the next Friday's close: five full sessions, no weekend decay.
    assert chain.trading_minutes_to_expiry(friday_close, date(2026, 5, 8)) == 5 * 390
    saturday = pd.Timestamp("2026-05-02 15:00", tz=UTC)
    assert chain.trading_minutes_to_expiry(saturday, date(2026, 5, 8)) == 5 * 390
    mid_session = pd.Timestamp("2026-05-08 19:00", tz=UTC)  # 15:00 New York, expiry day
    assert chain.years_to_expiry(mid_session, date(2026, 5, 8)) == pytest.approx(60 / MINUTES_PER_YEAR)
    assert chain.trading_minutes_to_expiry(pd.Timestamp("2026-05-08 20:00", tz=UTC), date(2026, 5, 8)) == 0


def test_select_contract_at_the_money_and_by_delta():
    now = pd.Timestamp("2026-05-04 15:00", tz=UTC)  # a Monday
    atm = chain.select_contract("SPY", 720.49, now, "call", vix=17)
    assert atm == OptionContract("SPY", date(2026, 5, 8), OptionType.CALL, 720.0)
    assert chain.select_contract("SPY", 720.51, now, "put", vix=17).strike == 721.0
    put = chain.select_contract("SPY", 720.0, now, OptionType.PUT, vix=17, target_delta=-0.30)
    frame = chain.generate_chain("SPY", 720.0, now, 17, [put.expiry], strikes_each_side=60)
    puts = frame[frame["option_type"] == "put"]
    chosen = puts[puts["symbol"] == put.symbol]["delta"].iloc[0]
    assert abs(abs(chosen) - 0.30) == pytest.approx(np.min(np.abs(np.abs(puts["delta"]) - 0.30)))
    assert put.strike < 720  # a 30-delta put is out of the money
    with pytest.raises(ValueError, match="target_delta"):
        chain.select_contract("SPY", 720.0, now, "call", vix=17, target_delta=1.5)


def test_quotes_respect_the_spread_model_and_the_tick():
    now = pd.Timestamp("2026-05-04 15:00", tz=UTC)
    frame = chain.generate_chain("SPY", 720.0, now, 17, strikes_each_side=30)
    assert (frame["bid"] >= 0).all() and (frame["ask"] > frame["bid"]).all()
    cents = np.round(frame[["bid", "ask"]].to_numpy() * 100, 6)
    assert np.allclose(cents, np.round(cents))
    width = frame["ask"] - frame["bid"]
    intrinsic = np.where(frame["option_type"] == "call", np.maximum(720 - frame["strike"], 0),
                         np.maximum(frame["strike"] - 720, 0))
    modelled = np.maximum(0.01, 0.005 * frame["mid"] + 0.025 * intrinsic)
    assert (width >= modelled - 1e-9).all() and (width <= modelled + 0.02 + 1e-9).all()
    # Calls get dearer with spot, puts cheaper; puts carry the skew.
    call = OptionContract("SPY", date(2026, 5, 8), "call", 720)
    assert chain.option_quote(call, 725, now, 17).bid > chain.option_quote(call, 715, now, 17).ask
    model = chain.DEFAULT_MODEL
    assert model.smile_vol(700, 720, 0.02, 17) > model.smile_vol(720, 720, 0.02, 17) > model.smile_vol(735, 720, 0.02, 17)


def test_bad_inputs_are_refused_with_the_field_named():
    now = pd.Timestamp("2026-05-04 15:00", tz=UTC)
    with pytest.raises(ValueError, match="spot"):
        chain.option_quote("SPY260508C00720000", float("nan"), now, 17)
    with pytest.raises(ValueError, match="vix"):
        chain.option_quote("SPY260508C00720000", 720, now, -1)
    with pytest.raises(ValueError, match="now"):
        chain.years_to_expiry(pd.Timestamp("2026-05-04 15:00").to_pydatetime(), date(2026, 5, 8))
    with pytest.raises(ValueError, match="pct_of_mid"):
        chain.SpreadModel(pct_of_mid=2)


@pytest.mark.realdata
def test_model_prices_the_real_spy_chain_near_the_money(shared_data):
    """Against the real chain (spot 720.65, VIX 16.99): liquid contracts within 2% of spot."""
    real = pd.read_csv(shared_data / "spy_options_chain_2026-05-01.csv")
    real = real[(real["expiry"] <= "2026-05-22") & (abs(real["strike"] / 720.65 - 1) < 0.02)].copy()
    real["mid"] = (real["bid"] + real["ask"]) / 2
    real = real[(real["ask"] - real["bid"]) / real["mid"] < 0.05]
    now = pd.Timestamp("2026-05-01 19:59", tz=UTC)
    model_mid = np.array([float(chain.DEFAULT_MODEL.mid(OptionContract.parse(s), 720.65, now, 16.99))
                          for s in real["contractSymbol"]])
    errors = model_mid / real["mid"].to_numpy() - 1
    assert len(errors) > 100
    assert np.median(np.abs(errors)) < 0.04
    assert np.max(np.abs(errors)) < 0.12
    # Spreads: the model's at-the-money width is within a few cents of the market's.
    atm = real[abs(real["strike"] - 721) < 0.5]
    for row in atm.itertuples():
        quote = chain.option_quote(row.contractSymbol, 720.65, now, 16.99)
        assert abs((quote.ask - quote.bid) - (row.ask - row.bid)) <= 0.05
