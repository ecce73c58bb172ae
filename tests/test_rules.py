"""One of each rule (issue 12, item 5): every part that applies a rule applies the one
definition — ``tradenova_dagster.rules`` for the decision threshold, the commission, the
contract (strike rounding, expiry) and intrinsic value; ``risk.profit`` for the ladder;
``risk.manager.RiskLimits`` for the risk limits; ``session.timetable`` for the flatten time.

The checks run each consumer (the RL env, the option chain, the pricing, the resources,
the schedules) and compare what it does with the single definition, on inputs where the
old copies disagreed (spots exactly half a strike step apart, 5-minute bars).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from dagster._utils.schedules import cron_string_iterator

from tradenova_dagster import rules
from tradenova_dagster.domain import Decision, OptionContract, OptionType
from tradenova_dagster.market import calendar, chain
from tradenova_dagster.market.options import bs_price
from tradenova_dagster.rl.env import EnvConfig, TradingEnv
from tradenova_dagster.rl.features import DayContext, DayData
from tradenova_dagster.session.timetable import FLATTEN_BEFORE_CLOSE, DayPlan

REGULAR, EARLY = "2024-03-05", "2024-11-29"  # a 16:00 and a 13:00 close
NO_SHAPING = {"direction": 0, "whipsaw": 0, "early_exit": 0, "theta": 0}


def _day(day: str, opens, interval_minutes: int = 1, low_below: float = 0.3) -> DayData:
    """A session whose bar opens cycle through ``opens`` (closes = opens)."""
    starts = calendar.session_bar_starts(day, interval_minutes)
    o = np.resize(np.asarray(opens, dtype=float), len(starts))
    bars = pd.DataFrame({"timestamp": starts, "open": o, "high": o + 0.3, "low": o - low_below, "close": o,
                         "volume": 1.0})
    bars.attrs["interval_minutes"] = interval_minutes
    return DayData.from_bars("SPY", day, bars, DayContext(20.0, 50.0))


# ------------------------------------------------------------------ decision threshold


ACTIONS = [-1.0, -0.5, -0.30000001, -0.3, -0.29999999, 0.0, 0.29999999, 0.3, 0.30000001, 0.5, 1.0]


def test_the_decision_threshold_is_one_constant():
    for a in ACTIONS:
        expected = rules.direction_for(a, rules.DECISION_THRESHOLD)
        decision = Decision.from_action(a)  # its default threshold is the rules' constant
        assert decision is {1: Decision.BUY_CALL, -1: Decision.BUY_PUT, 0: Decision.FLAT}[expected], a
        assert rules.decision_for(a) is decision
    assert EnvConfig().threshold == rules.DECISION_THRESHOLD


def test_the_env_decides_with_the_rules_comparison():
    day = _day(REGULAR, [600.0])
    env = TradingEnv([day], config=EnvConfig(rewards=NO_SHAPING))
    for a in ACTIONS:
        env.reset(options={"day": 0, "start": 0})
        action = np.array([a], dtype=np.float32)  # what SB3 passes: the rule sees the float32 value
        info = env.step(action)[4]
        assert info["position"] == rules.direction_for(float(action[0])), a


def test_the_signal_model_defaults_to_the_rules_threshold():
    import inspect

    from tradenova_dagster.rl.signal import SignalModel

    assert inspect.signature(SignalModel).parameters["threshold"].default == rules.DECISION_THRESHOLD


# ------------------------------------------------------------------ contract selection

# spots on both sides of half a $1 step, and exactly on it (where round-half-even, the
# chain's old "tie goes down" and the env's old rounding from its grid's edge differed)
SPOTS = [600.5, 600.49, 600.51, 601.0, 601.5, 602.5, 603.5, 603.25, 604.75, 605.5]


@pytest.mark.parametrize("base", [0.0, 1.0])  # shifts the env's strike grid by one step
@pytest.mark.parametrize("expiry_days", [0, 2])
def test_the_env_buys_the_rules_contract(base, expiry_days):
    spots = [s + base for s in SPOTS]
    day = _day(REGULAR, spots)
    env = TradingEnv([day], config=EnvConfig(expiry_days=expiry_days))
    for bar, spot in enumerate(spots):
        for direction in (1, -1):
            expected = rules.select_contract("SPY", day.day, spot, direction, expiry_sessions=expiry_days)
            assert env.contract_at(0, bar, direction) == expected, (spot, direction)


def test_the_env_prices_the_rules_strike():
    spot = 600.5  # round-half-even: the 600 strike
    day = _day(REGULAR, [spot])
    env = TradingEnv([day], config=EnvConfig(rewards=NO_SHAPING))
    env.reset(options={"day": 0, "start": 0})
    info = env.step(np.array([1.0], dtype=np.float32))[4]
    contract = rules.select_contract("SPY", day.day, spot, 1)
    assert contract.strike == 600.0
    opened = pd.Timestamp(int(day.timestamps[1]), tz="UTC")  # filled at bar 1's open, marked at its close
    ask = chain.DEFAULT_MODEL.quote(contract, spot, opened, 20.0).ask  # SimBroker's quote: one market model
    mark = chain.DEFAULT_MODEL.quote(contract, spot, opened + pd.Timedelta(minutes=1), 20.0).mid
    assert info["pnl"] == pytest.approx((mark - ask) * 100 - rules.OPTION_COMMISSION_PER_CONTRACT, rel=1e-9)


def test_the_chain_rounds_at_the_money_as_the_rules_do():
    now = pd.Timestamp("2026-05-01 14:00", tz="America/New_York").to_pydatetime()
    for spot in SPOTS:
        contract = chain.select_contract("SPY", spot, now, "call", vix=17)
        assert contract.strike == rules.atm_strike(spot), spot
        frame = chain.generate_chain("SPY", spot, now, 17, strikes_each_side=0)
        assert set(frame["strike"]) == {rules.atm_strike(spot)}
    assert chain.OptionMarketModel().strike_step == rules.STRIKE_STEP == EnvConfig().strike_step
    assert EnvConfig().expiry_days == rules.EXPIRY_SESSIONS


def test_select_contract_counts_sessions_to_expiry():
    friday = date(2024, 3, 28)  # Good Friday (03-29) is a holiday
    assert rules.select_contract("SPY", friday, 520.5, 1) == OptionContract("SPY", date(2024, 4, 2), OptionType.CALL, 520.0)
    assert rules.select_contract("SPY", friday, 521.5, -1, 0).expiry == friday
    assert rules.select_contract("SPY", friday, 521.5, -1, 0).strike == 522.0


# ------------------------------------------------------------------ commission


def test_every_default_commission_is_the_rules_one():
    from resources.broker import BrokerResource
    from tradenova_dagster.broker.sim import SimConfig

    assert EnvConfig().commission == rules.OPTION_COMMISSION_PER_CONTRACT
    assert BrokerResource().option_commission_per_contract == rules.OPTION_COMMISSION_PER_CONTRACT
    assert SimConfig().option_commission_per_contract == rules.OPTION_COMMISSION_PER_CONTRACT


def test_the_env_charges_the_rules_commission_once_per_fill():
    day = _day(REGULAR, [600.0])
    pnl = {}
    for fee in (rules.OPTION_COMMISSION_PER_CONTRACT, 0.0):
        env = TradingEnv([day], config=EnvConfig(commission=fee, rewards=NO_SHAPING))
        env.reset(options={"day": 0, "start": 0})
        pnl[fee] = sum(env.step(np.array([a], dtype=np.float32))[4]["pnl"] for a in (1.0, 1.0, 0.0))
    default = TradingEnv([day], config=EnvConfig(rewards=NO_SHAPING))
    default.reset(options={"day": 0, "start": 0})
    assert sum(default.step(np.array([a], dtype=np.float32))[4]["pnl"] for a in (1.0, 1.0, 0.0)) == pnl[
        rules.OPTION_COMMISSION_PER_CONTRACT]
    assert pnl[0.0] - pnl[rules.OPTION_COMMISSION_PER_CONTRACT] == pytest.approx(
        2 * rules.OPTION_COMMISSION_PER_CONTRACT, abs=1e-9)


# ------------------------------------------------------------------ flatten time


@pytest.mark.parametrize("interval", [1, 5])
@pytest.mark.parametrize("day", [REGULAR, EARLY])
def test_the_env_ends_flat_at_the_timetables_flatten_time(day, interval):
    data = _day(day, [600.0, 600.2, 599.9], interval_minutes=interval)
    env = TradingEnv([data])
    plan = DayPlan.for_day(day)
    assert env.flatten_time(0) == plan.flatten  # 15:50 / 12:50, in real time whatever the bar
    _, info = env.reset(options={"day": 0, "start": 0})
    done, step = False, None
    while not done:
        _, _, done, _, step = env.step(np.array([1.0], dtype=np.float32))
    end = pd.Timestamp(int(data.timestamps[step["bar"]]), tz="UTC") + pd.Timedelta(minutes=interval)
    assert end == plan.flatten == plan.close - FLATTEN_BEFORE_CLOSE
    assert step["trades"] == 1 and env.position_state().direction == 0


@pytest.mark.parametrize("day", [REGULAR, EARLY])
def test_with_bars_longer_than_the_flatten_margin_the_env_ends_as_the_session_does(day):
    # 15-minute bars: none ends at 15:50; the session flattens on the first bar that
    # completes at or after flatten time (the 15:45 bar, at the close), and so does the env
    data = _day(day, [600.0], interval_minutes=15)
    plan = DayPlan.for_day(day)
    ends = pd.to_datetime(data.timestamps, utc=True) + pd.Timedelta(minutes=15)
    assert TradingEnv([data]).flatten_time(0) == min(e for e in ends if e >= plan.flatten) == plan.close


def test_a_day_with_a_gap_at_flatten_time_ends_on_the_first_bar_after_it():
    data = _day(REGULAR, [600.0])
    starts = pd.to_datetime(data.timestamps, utc=True)
    keep = starts + pd.Timedelta(minutes=1) != DayPlan.for_day(REGULAR).flatten  # drop the 15:49 bar
    bars = pd.DataFrame({"timestamp": starts[keep], "open": 600.0, "high": 600.3, "low": 599.7, "close": 600.0})
    gappy = DayData.from_bars("SPY", REGULAR, bars, DayContext(20.0, 50.0))
    env = TradingEnv([gappy])
    assert env.flatten_time(0) == DayPlan.for_day(REGULAR).flatten + pd.Timedelta(minutes=1)


@pytest.mark.parametrize("day", [REGULAR, EARLY])
def test_the_flatten_schedule_ticks_at_the_timetables_flatten_time(day):
    from schedules.trading_day import flatten_schedule

    flatten = DayPlan.for_day(day).flatten
    begin = (flatten - pd.Timedelta(hours=8)).timestamp()
    ticks = cron_string_iterator(begin, flatten_schedule.cron_schedule, flatten_schedule.execution_timezone)
    first_ticks = []
    for t in ticks:
        if t > (flatten + pd.Timedelta(hours=8)).to_pydatetime():
            break
        first_ticks.append(pd.Timestamp(t))
    assert flatten in first_ticks


def test_old_models_flatten_bars_is_ignored():
    assert EnvConfig.from_dict({"flatten_bars": 10, "threshold": 0.4}) == EnvConfig(threshold=0.4)
    assert "flatten_bars" not in EnvConfig().as_dict()


# ------------------------------------------------------------------ intrinsic value


def test_intrinsic_value_is_one_definition():
    assert chain.intrinsic_value is rules.intrinsic_value  # still importable from the chain
    spots = np.array([590.0, 599.99, 600.0, 600.01, 610.0])
    for kind in OptionType:
        contract = OptionContract("SPY", date(2024, 3, 8), kind, 600.0)
        scalar = [rules.intrinsic_value(contract, s) for s in spots]
        np.testing.assert_array_equal(rules.intrinsic(spots, 600.0, kind is OptionType.CALL), scalar)
        # Black-Scholes at expiry is the intrinsic value
        np.testing.assert_allclose(bs_price(spots, 600.0, 0.0, 0.2, 0.0, kind is OptionType.CALL), scalar)


def test_the_chain_quotes_spreads_on_the_rules_intrinsic_value():
    now = pd.Timestamp("2026-05-01 14:00", tz="America/New_York").to_pydatetime()
    frame = chain.generate_chain("SPY", 720.65, now, 17, strikes_each_side=5)
    model = chain.DEFAULT_MODEL
    for row in frame.itertuples():
        contract = OptionContract.parse(row.symbol)
        bid, ask = model.spread.bid_ask(row.mid, rules.intrinsic_value(contract, 720.65))
        assert (row.bid, row.ask) == pytest.approx((bid, ask))


# ------------------------------------------------------------------ ladder and risk limits


def test_the_ladder_numbers_have_one_home():
    from resources.risk import RiskResource
    from tradenova_dagster.risk import DEFAULT_LEVELS, LadderConfig, ProfitManager

    assert RiskResource().ladder() == LadderConfig()
    assert LadderConfig().levels == DEFAULT_LEVELS
    assert ProfitManager().config == LadderConfig()


def test_the_risk_limits_have_one_home():
    from resources.risk import RiskResource
    from tradenova_dagster.risk import AdvancedRiskManager, RiskLimits

    assert RiskResource().limits() == RiskLimits()
    assert AdvancedRiskManager().limits == RiskLimits()
