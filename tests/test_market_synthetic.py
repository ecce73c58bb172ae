"""The synthetic source: deterministic, complete sessions, valid bars, shaped like real SPY."""

import numpy as np
import pandas as pd
import pytest

from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import get_source
from tradenova_dagster.market.profile import real_and_synthetic_profiles
from tradenova_dagster.market.quality import check_bars
from tradenova_dagster.market.synthetic import SyntheticMarketData, _synthetic_bars


def test_same_symbol_and_day_give_the_same_bars_in_any_order():
    source = get_source("synthetic")
    first = source.bars("SPY", "2026-11-20")
    source.bars("QQQ", "2026-11-19")
    _synthetic_bars.cache_clear()
    again = SyntheticMarketData().bars("SPY", "2026-11-20")
    pd.testing.assert_frame_equal(first, again)
    assert not first["close"].equals(source.bars("SPY", "2026-11-19")["close"])
    assert not first["close"].equals(source.bars("QQQ", "2026-11-20")["close"])


@pytest.mark.parametrize("day,count", [("2026-11-20", 390), ("2026-11-27", 210), ("2026-12-24", 210), ("2026-03-09", 390)])
def test_a_full_session_of_valid_one_minute_bars(day, count):
    bars = get_source("synthetic").bars("SPY", day)
    assert len(bars) == count
    open_, close = calendar.session_open_close(day)
    assert bars["timestamp"].iloc[0] == open_ and bars["timestamp"].iloc[-1] == close - pd.Timedelta(minutes=1)
    assert str(bars["timestamp"].dt.tz) == "UTC"
    assert all(outcome.passed for outcome in check_bars(bars, calendar.as_date(day)))
    # Consecutive bars join: each bar opens at the previous close.
    np.testing.assert_allclose(bars["open"].iloc[1:].to_numpy(), bars["close"].iloc[:-1].to_numpy())


def test_daily_bars_agree_with_the_minute_bars_and_vix_is_positive():
    source = get_source("synthetic")
    daily = source.daily_bars("SPY", "2026-11-16", "2026-11-20")
    minute = source.bars("SPY", "2026-11-18")
    row = daily.loc[pd.Timestamp("2026-11-18")]
    assert row["high"] == minute["high"].max() and row["close"] == minute["close"].iloc[-1]
    assert len(daily) == 5
    np.testing.assert_allclose(source.daily_closes("SPY", "2026-11-16", "2026-11-20").to_numpy(), daily["close"].to_numpy())
    vix = source.vix_history("2000-01-01", "2026-11-20")
    assert (vix >= 9).all() and source.vix("2026-11-20") == vix.iloc[-1]


def test_unknown_symbols_get_their_own_deterministic_series_and_bad_requests_are_refused():
    source = get_source("synthetic")
    assert len(source.bars("XYZ", "2026-11-20")) == 390
    with pytest.raises(ValueError, match="not a trading day"):
        source.bars("SPY", "2026-11-26")
    with pytest.raises(ValueError, match="symbol"):
        source.bars("", "2026-11-20")
    with pytest.raises(ValueError, match="unknown value 'yahoo'"):
        get_source("yahoo")


@pytest.mark.realdata
def test_synthetic_spy_is_calibrated_to_real_spy(shared_data):
    real_p, synth_p = real_and_synthetic_profiles(shared_data)

    def close(name, rel):
        assert synth_p[name] == pytest.approx(real_p[name], rel=rel), (name, synth_p[name], real_p[name])

    close("daily_vol", 0.3)
    close("open_abs_ret_ratio", 0.25)
    close("close_abs_ret_ratio", 0.25)
    close("open_volume_ratio", 0.35)
    close("close_volume_ratio", 0.35)
    close("vix_mean", 0.15)
    close("vix_std", 0.35)
    close("vix_log_change_std", 0.2)
    assert synth_p["open_abs_ret_ratio"] > 1.3 and synth_p["close_volume_ratio"] > 3  # the U shapes are there
    close("intraday_vol_to_vix", 0.1)
    close("overnight_variance_share", 0.3)  # one year of gaps: a noisy figure on both sides


@pytest.mark.realdata
def test_the_market_models_volatility_parameters_are_real_spys(shared_data):
    """The two realised-volatility figures the env, SimBroker and the synthetic source share
    (``market.model``) are what real SPY and VIX show (``bench/calibration.py`` prints them)."""
    from tradenova_dagster.market.files import FileMarketData
    from tradenova_dagster.market.model import MarketModel
    from tradenova_dagster.market.profile import volatility_calibration

    source = FileMarketData(shared_data)
    bars = pd.concat([source.bars("SPY", d) for d in calendar.trading_days("2022-09-30", "2023-09-29")])
    measured = volatility_calibration(bars, source.vix_history("2022-01-01", "2023-12-31"))
    model = MarketModel()
    assert model.intraday_vol_to_vix == pytest.approx(measured["intraday_vol_to_vix"], abs=0.01)
    assert model.overnight_variance_share == pytest.approx(measured["overnight_variance_share"], abs=0.01)
