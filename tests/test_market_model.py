"""The one market model: its theta against py_vollib, the environment pricing exactly as
SimBroker quotes, and the synthetic source drawing its moves from the model's parameters.

py_vollib's Black-Scholes is independent of ``market.options``. Its analytical theta is
∂V/∂t divided by 365, a *calendar* day, with ``t`` in years of whatever clock the volatility
is annualised on. TradeNova's clock is the trading minute (a year = 252 × 390 = 98,280 of
them, vol annualised on it), so with ``t`` given in those years, ∂V/∂t per year is
``theta × 365`` and per trading minute ``theta × 365 / 98,280``. A naive reading of
py_vollib's figure as "per day" and of a trading day as 390 minutes would be off by
365/252 = 1.45.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from py_vollib.black_scholes.greeks.analytical import theta as vollib_theta

from tradenova_dagster.broker.sim_pricing import Mark, Pricer, SimConfig
from tradenova_dagster.domain import OptionType
from tradenova_dagster.market import calendar
from tradenova_dagster.market.chain import DEFAULT_MODEL
from tradenova_dagster.market.model import MarketModel, SpreadModel
from tradenova_dagster.rl.env import EnvConfig, RewardWeights, TradingEnv
from tradenova_dagster.rl.features import DayContext, DayData

YEAR_MINUTES = 98_280
NO_SHAPING = RewardWeights(direction=0, whipsaw=0, early_exit=0, theta=0)


def _vollib_theta_per_minute(flag, spot, strike, t, rate, vol) -> float:
    return vollib_theta(flag, spot, strike, t, rate, vol) * 365 / YEAR_MINUTES


# spot, moneyness, minutes to expiry (30 minutes .. 10 sessions), VIX
GRID = list(itertools.product((120.0, 600.0), (0.97, 1.0, 1.03), (30, 390, 1170, 3900), (11.0, 20.0, 45.0)))


def test_model_theta_matches_py_vollib_per_trading_minute():
    model = MarketModel()
    for (spot, moneyness, minutes, vix), is_call in itertools.product(GRID, (True, False)):
        strike, t = spot * moneyness, minutes / YEAR_MINUTES
        vol = model.smile_vol(strike, spot, t, vix)
        expected = _vollib_theta_per_minute("c" if is_call else "p", spot, strike, t, model.rate, vol)
        got = model.theta_per_minute(spot, strike, t, vix, is_call)
        assert got == pytest.approx(expected, rel=0.01), (spot, moneyness, minutes, vix, is_call)


def _flat_day(day: str, spot_before: float, spot_after: float, jump_bar: int, vix: float) -> DayData:
    starts = calendar.session_bar_starts(day)
    prices = np.where(np.arange(len(starts)) < jump_bar, spot_before, spot_after)
    bars = pd.DataFrame({"timestamp": starts, "open": prices, "high": prices, "low": prices, "close": prices,
                         "volume": 1.0})
    return DayData.from_bars("SPY", day, bars, DayContext(vix, 50.0))


def test_bars_in_microseconds_as_the_file_source_gives_them_make_the_same_day():
    """Real SPY bars read from Parquet carry microsecond timestamps; the day's clock (and
    so every option's time to expiry) must be the same as with nanoseconds. It was not:
    read as nanoseconds, every bar sat before the open and options never decayed."""
    day = "2024-03-05"
    in_nanos = _flat_day(day, 500.0, 500.0, 0, 20.0)
    starts = pd.DatetimeIndex(calendar.session_bar_starts(day))
    bars = pd.DataFrame({"timestamp": starts.as_unit("us"), "open": 500.0, "high": 500.0, "low": 500.0,
                         "close": 500.0, "volume": 1.0})
    in_micros = DayData.from_bars("SPY", day, bars, DayContext(20.0, 50.0))
    np.testing.assert_array_equal(in_micros.timestamps, in_nanos.timestamps)
    assert in_micros.timestamps[0] == starts[0].value and in_micros.timestamps[1] - in_micros.timestamps[0] == 60 * 10**9
    with pytest.raises(ValueError, match=r"timestamps of SPY on 2024-03-05: \d+ is not UTC epoch nanoseconds"):
        dataclasses.replace(in_nanos, timestamps=in_nanos.timestamps // 1000)  # as an old dataset file holds them


# A surface with one flat vol (VIX / 100) and a quote a micro-dollar wide: the env's marks
# are then the Black-Scholes premium, and their decay at a frozen spot is pure theta.
# (No carry: with a positive rate a deep in-the-money put is floored at its discounted
# intrinsic value, as an American put is, and that floor is not Black-Scholes.)
FLAT = dataclasses.replace(DEFAULT_MODEL, rate=0.0, term_base=1.0, term_slope=0.0, skew=0.0, curvature=0.0,
                           spread=SpreadModel(min_spread=1e-6, pct_of_mid=0.0, pct_of_intrinsic=0.0, tick=1e-6))


@pytest.mark.parametrize("expiry_days", [0, 2, 5])
def test_the_environments_theta_matches_py_vollib(expiry_days):
    """The env's marks lose, over 30 minutes at a frozen spot, what py_vollib's theta says
    they should (at the midpoint), within 1%, on a grid of spot, strike, time and vol."""
    day = "2024-03-05"
    for spot, move, vix, direction in itertools.product((120.4, 600.4), (-0.03, 0.0, 0.03), (12.0, 20.0, 45.0),
                                                        (1, -1)):
        data = _flat_day(day, spot, spot * (1 + move), jump_bar=5, vix=vix)
        env = TradingEnv([data], config=EnvConfig(rewards=NO_SHAPING, commission=0.0, market=FLAT,
                                                  expiry_days=expiry_days))
        env.reset(options={"day": 0, "start": 0})
        for _ in range(100):  # enter at bar 1's open, hold past the jump
            env.step(np.array([float(direction)]))
        decay = -sum(env.step(np.array([float(direction)]))[4]["pnl"] for _ in range(30))  # bars 101..130
        strike = env.contract_at(0, 1, direction).strike
        mid_minutes = 390 - 116 + 390 * expiry_days  # bar 101's close .. bar 130's close: middle 115.5 + 0.5
        theta = _vollib_theta_per_minute("c" if direction > 0 else "p", spot * (1 + move), strike,
                                         mid_minutes / YEAR_MINUTES, FLAT.rate, vix / 100)
        # abs: marks are kept to a micro-dollar a share (deep out-of-the-money 0DTE: no theta left)
        assert decay == pytest.approx(-theta * 30 * 100, rel=0.01, abs=3e-4), (spot, move, vix, direction)


def _sim_pricer(spot: float, ts, vix: float) -> Pricer:
    return Pricer(SimConfig(), {"SPY": Mark(ts, spot, vix)})


@pytest.mark.parametrize("expiry_days", [0, 2])
def test_env_and_simbroker_price_the_same_contract_identically(expiry_days):
    """Every fill and mark of the env equals SimBroker's quote of that contract, at the
    same underlying price, time and VIX — to the cent, commission included."""
    from rl_helpers import synthetic_day

    day = synthetic_day("2024-03-05")
    env = TradingEnv([day], config=EnvConfig(rewards=NO_SHAPING, expiry_days=expiry_days))
    bar_length = pd.Timedelta(minutes=1)
    checked = 0
    for start, direction in itertools.product((0, 57, 200, 377), (1, -1)):
        env.reset(options={"day": 0, "start": start})
        entry = start + 1
        contract = env.contract_at(0, entry, direction)
        assert contract.option_type is (OptionType.CALL if direction > 0 else OptionType.PUT)
        opened = pd.Timestamp(int(day.timestamps[entry]), tz="UTC")
        info = env.step(np.array([float(direction)]))[4]
        sim = _sim_pricer(day.opens[entry], opened, day.context.vix)
        _, ask = sim.bid_ask_at(contract.symbol, day.opens[entry], opened)
        marked = opened + bar_length
        mark = _sim_pricer(day.closes[entry], marked, day.context.vix).mark_price(contract.symbol, marked)
        assert info["pnl"] == pytest.approx((mark - ask) * 100 - 0.65, abs=1e-9)
        assert ask == DEFAULT_MODEL.quote(contract, day.opens[entry], opened, day.context.vix).ask
        # and the sale one bar later, at the next open's bid
        info = env.step(np.array([0.0]))[4]
        sold_at = pd.Timestamp(int(day.timestamps[entry + 1]), tz="UTC")
        bid, _ = _sim_pricer(day.opens[entry + 1], sold_at, day.context.vix).bid_ask_at(
            contract.symbol, day.opens[entry + 1], sold_at)
        assert info["pnl"] == pytest.approx(bid * 100 - 0.65 - mark * 100, abs=1e-9)
        checked += 1
    assert checked == 8


def test_the_synthetic_source_draws_its_moves_from_the_model():
    """Over the synthetic calendar's daily path (thousands of sessions), the open-to-close
    move has the model's intraday volatility (a fraction of the previous VIX) and the
    overnight gap the model's share of the daily variance."""
    from tradenova_dagster.market.synthetic import MARKET, _daily_path

    path = _daily_path("SPY")
    vix = path["vix"].to_numpy()
    open_close = np.log(path["close"] / path["open"]).to_numpy()[1:]
    gap = np.log(path["open"].to_numpy()[1:] / path["close"].to_numpy()[:-1])
    implied = (vix[:-1] / 100) ** 2 / 252
    assert len(gap) > 5000
    ratio = math.sqrt(np.sum(open_close**2) / np.sum(implied))
    share = np.sum(gap**2) / (np.sum(gap**2) + np.sum(open_close**2))
    assert MARKET == MarketModel() and MARKET.intraday_vol_to_vix == DEFAULT_MODEL.intraday_vol_to_vix
    assert ratio == pytest.approx(MARKET.intraday_vol_to_vix, rel=0.05)
    assert share == pytest.approx(MARKET.overnight_variance_share, rel=0.05)


def test_bad_model_parameters_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="overnight_variance_share"):
        MarketModel(overnight_variance_share=1.0)
    with pytest.raises(ValueError, match="intraday_vol_to_vix"):
        MarketModel(intraday_vol_to_vix=-0.1)
    with pytest.raises(ValueError, match="pct_of_mid"):
        SpreadModel(pct_of_mid=1.5)
