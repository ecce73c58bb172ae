"""TradingEnv: the gym contract, the contract model's arithmetic, determinism, no look-ahead."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rl_helpers import synthetic_day
from tradenova_dagster.market.data import get_source
from tradenova_dagster.rl.dataset import TrainingDataset, day_context, load_day
from tradenova_dagster.rl.env import EnvConfig, RewardWeights, TradingEnv
from tradenova_dagster.rl.features import (
    FEATURE_NAMES,
    N_MARKET_FEATURES,
    DayContext,
    DayData,
    FeatureBuilder,
    PositionState,
    market_features,
    observation,
)

NO_SHAPING = RewardWeights(direction=0, whipsaw=0, early_exit=0, theta=0)


@pytest.fixture(scope="module")
def day() -> DayData:
    return synthetic_day("2024-03-05")


def _run(env, actions, options):
    obs, _ = env.reset(options=options)
    observations, rewards, infos = [obs], [], []
    for a in actions:
        obs, reward, done, truncated, info = env.step(np.array([a], dtype=np.float32))
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        if done:
            break
    return observations, rewards, infos


def test_default_env_passes_gymnasium_and_sb3_checks():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = TradingEnv()
    check_env(env, skip_render_check=True)
    sb3_check_env(TradingEnv(), warn=True)
    assert env.observation_space.shape == (len(FEATURE_NAMES),)


def test_reset_with_options_reproduces_the_start_state_whatever_the_seed(day):
    other = synthetic_day("2024-03-06")
    env = TradingEnv([day, other], config=EnvConfig(episode_bars=60))
    actions = np.random.default_rng(0).uniform(-1, 1, 60)
    first = _run(env, actions, {"day": "2024-03-06", "start": 100})
    env.reset(seed=123)
    env.step(np.array([1.0], dtype=np.float32))  # leave some state behind
    second = _run(env, actions, {"day": 1, "start": 100})
    for a, b in zip(first[0], second[0]):
        np.testing.assert_array_equal(a, b)
    assert first[1] == second[1]
    assert len(first[1]) == 60  # episode_bars steps exactly


def test_seeded_reset_without_options_is_deterministic(day):
    env = TradingEnv([synthetic_day(d) for d in ("2024-03-04", "2024-03-05", "2024-03-06")],
                     config=EnvConfig(episode_bars=30, random_start=True))
    starts = [env.reset(seed=7)[1] for _ in range(2)]
    assert starts[0] == starts[1]
    seen = {(info["day"], info["bar"]) for info in (env.reset()[1] for _ in range(20))}
    assert len(seen) > 5  # unseeded resets do vary day and start


def test_no_look_ahead_perturbing_future_bars_changes_nothing_up_to_t(day):
    t = 150
    perturbed = dataclasses.replace(day, pricing_cache={}, _features=None)
    rng = np.random.default_rng(1)
    factor = np.exp(np.cumsum(rng.normal(0, 0.002, len(day) - t - 1)))
    for name in ("opens", "highs", "lows", "closes"):
        values = getattr(day, name).copy()
        values[t + 1:] *= factor
        perturbed = dataclasses.replace(perturbed, **{name: values})
    np.testing.assert_array_equal(day.features[: t + 1], perturbed.features[: t + 1])
    assert not np.array_equal(day.features[t + 1:], perturbed.features[t + 1:])

    actions = np.random.default_rng(2).choice([-1.0, 0.0, 1.0], 300)
    config = EnvConfig()
    a_obs, a_rew, a_info = _run(TradingEnv([day], config=config), actions, {"day": 0, "start": 0})
    b_obs, b_rew, b_info = _run(TradingEnv([perturbed], config=config), actions, {"day": 0, "start": 0})
    for k in range(t + 1):  # observations at bars 0..t
        np.testing.assert_array_equal(a_obs[k], b_obs[k])
    assert a_rew[:t] == b_rew[:t]  # steps filling and marking at bars 1..t
    assert a_rew[t:] != b_rew[t:]


@settings(max_examples=40, deadline=None)
@given(
    returns=st.lists(st.floats(-0.01, 0.01), min_size=2, max_size=120),
    vix=st.floats(9, 80),
    cut=st.integers(0, 119),
)
def test_features_of_a_prefix_equal_the_prefix_of_the_features(returns, vix, cut):
    closes = 500 * np.exp(np.cumsum(returns))
    minutes = np.arange(len(closes), dtype=float)
    context = DayContext(vix, 30.0)
    full = market_features(500.0, closes, minutes, 390, context)
    cut = min(cut, len(closes) - 1)
    prefix = market_features(500.0, closes[: cut + 1], minutes[: cut + 1], 390, context)
    np.testing.assert_array_equal(prefix, full[: cut + 1])
    assert np.all(np.abs(full) <= 10.0)


def test_feature_builder_bar_by_bar_matches_the_env_features(day):
    builder = FeatureBuilder(day.day, day.context)
    import pandas as pd

    for t in range(0, len(day)):
        row = builder.add_bar(pd.Timestamp(int(day.timestamps[t]), tz="UTC"), day.opens[t], day.closes[t])
        np.testing.assert_array_equal(row, day.features[t])
    env = TradingEnv([day])
    obs, _ = env.reset(options={"day": 0, "start": 0})
    np.testing.assert_array_equal(obs, observation(day.features[0], PositionState()))


def test_env_observations_equal_the_shared_observation_of_features_and_position(day):
    env = TradingEnv([day])
    obs, _ = env.reset(options={"day": 0, "start": 0})
    actions = np.random.default_rng(5).choice([-1.0, 0.0, 0.5, 1.0], 400, p=[0.1, 0.1, 0.7, 0.1])
    seen_positions = set()
    for a in actions:
        state = env.position_state()
        np.testing.assert_array_equal(obs, observation(day.features[env._t], state))
        seen_positions.add(state.direction)
        obs, _, done, _, _ = env.step(np.array([a], dtype=np.float32))
        if done:
            break
    assert seen_positions == {-1, 0, 1}


def test_feature_builder_refuses_bars_out_of_order_or_outside_the_session(day):
    import pandas as pd

    builder = FeatureBuilder(day.day, day.context)
    first = pd.Timestamp(int(day.timestamps[5]), tz="UTC")
    builder.add_bar(first, 600.0, 600.5)
    with pytest.raises(ValueError, match="not after"):
        builder.add_bar(first, 600.0, 600.5)
    with pytest.raises(ValueError, match="outside the session"):
        builder.add_bar(first + pd.Timedelta(hours=8), 600.0, 600.5)
    with pytest.raises(ValueError, match="timezone-aware"):
        builder.add_bar(first.tz_localize(None), 600.0, 600.5)


# Expected values below come from an independent Black-Scholes (py_vollib, not the env's
# market.options) on a hand-built day, with every convention of the market model that
# SimBroker quotes with (market.model / market.chain) written out as a number: a year is
# 252 x 390 = 98,280 trading minutes; the contract expires two sessions after today's
# close (2 x 390 minutes of carry); a fill at bar b's open has 390 - b minutes of today
# left, a mark at bar b's close 390 - b - 1; implied vol = VIX 20 / 100 x (0.67 + 2.5 T)
# x (1 - 1.46 x + 1.25 x^2), x = ln(K/S)/sqrt(T); rate 1.8%; the quote is max(0.01, 0.5%
# of mid + 2.5% of intrinsic) wide, bid rounded down and ask up to the cent; 1 contract =
# 100 shares; a buy pays the ask, a sale gets the bid, each pays $0.65; a position is
# marked at (bid + ask) / 2; one reward unit is 1% of the $10,000 capital = $100.
YEAR_MINUTES = 98_280
CARRY_MINUTES = 2 * 390


def _sim_quote(flag: str, spot: float, strike: float, minutes_left: float) -> tuple[float, float]:
    """(bid, ask) per share, by the numbers above."""
    import math

    from py_vollib.black_scholes import black_scholes

    t = minutes_left / YEAR_MINUTES
    x = math.log(strike / spot) / math.sqrt(max(t, 1 / 252))
    vol = 0.20 * min(max(0.67 + 2.5 * t, 0.5), 1.2) * min(max(1 - 1.46 * x + 1.25 * x * x, 0.5), 3.0)
    mid = black_scholes(flag, spot, strike, t, 0.018, vol)
    intrinsic = max(spot - strike, 0.0) if flag == "c" else max(strike - spot, 0.0)
    width = max(0.01, 0.005 * mid + 0.025 * intrinsic)
    return math.floor(round((mid - width / 2) * 100, 6)) / 100, math.ceil(round((mid + width / 2) * 100, 6)) / 100


def _hand_built_day(opens: dict[int, float], closes: dict[int, float]) -> DayData:
    """A 390-bar session on 2024-03-05 at 500.00 flat, except the bars given."""
    import pandas as pd

    from tradenova_dagster.market import calendar

    starts = calendar.session_bar_starts("2024-03-05")
    o = np.full(len(starts), 500.0)
    c = np.full(len(starts), 500.0)
    for bar_index, price in opens.items():
        o[bar_index] = price
    for bar_index, price in closes.items():
        c[bar_index] = price
    bars = pd.DataFrame({"timestamp": starts, "open": o, "high": np.maximum(o, c), "low": np.minimum(o, c),
                         "close": c, "volume": 1.0})
    return DayData.from_bars("SPY", "2024-03-05", bars, DayContext(20.0, 50.0))


def test_a_position_opened_at_t_fills_at_the_next_open_and_marks_at_its_close():
    # Bars 10, 11 and 12 all differ, so filling or marking at the wrong bar shows.
    day = _hand_built_day(opens={10: 499.00, 11: 500.30, 12: 502.00}, closes={10: 499.50, 11: 501.10, 12: 503.00})
    env = TradingEnv([day], config=EnvConfig(rewards=NO_SHAPING))
    env.reset(options={"day": 0, "start": 10})
    obs, reward, _, _, info = env.step(np.array([0.9], dtype=np.float32))  # CALL, decided at bar 10

    # Filled at bar 11's open (500.30): strike 500 (ATM on the $1 grid), 1159 minutes left.
    cost = _sim_quote("c", 500.30, 500.0, 379 + CARRY_MINUTES)[1] * 100 + 0.65  # the ask, plus commission
    mark = sum(_sim_quote("c", 501.10, 500.0, 378 + CARRY_MINUTES)) / 2 * 100  # at bar 11's close, quoted mid
    assert cost == pytest.approx(328.65, abs=0.005) and mark == pytest.approx(376.0, abs=0.005)  # ask 3.28, mid (3.73+3.79)/2
    assert info["bar"] == 11 and info["position"] == 1 and not info["trade_closed"]
    assert info["pnl"] == pytest.approx(mark - cost, rel=1e-9)
    assert reward == pytest.approx((mark - cost) / 100.0, rel=1e-9)
    assert obs[N_MARKET_FEATURES] == 1.0  # position feature: a call
    assert obs[N_MARKET_FEATURES + 1] == pytest.approx((mark - cost) / cost, rel=1e-5)
    assert obs[N_MARKET_FEATURES + 2] == 0.0  # held 0 hours

    # Holding keeps the same contract (strike 500, not re-struck at 502): marked at bar 12's close.
    obs, reward, _, _, info = env.step(np.array([0.9], dtype=np.float32))
    mark_12 = sum(_sim_quote("c", 503.00, 500.0, 377 + CARRY_MINUTES)) / 2 * 100
    assert info["bar"] == 12 and info["pnl"] == pytest.approx(mark_12 - mark, rel=1e-9)
    assert reward == pytest.approx((mark_12 - mark) / 100.0, rel=1e-9)
    assert obs[N_MARKET_FEATURES + 1] == pytest.approx((mark_12 - cost) / cost, rel=1e-5)
    assert obs[N_MARKET_FEATURES + 2] == pytest.approx(1 / 60)


def test_a_round_trip_on_a_frozen_market_costs_the_quoted_spread_and_two_commissions():
    frozen = _hand_built_day(opens={}, closes={})
    env = TradingEnv([frozen], config=EnvConfig(rewards=NO_SHAPING))
    env.reset(options={"day": 0, "start": 0})
    pnl = [env.step(np.array([a], dtype=np.float32))[4]["pnl"] for a in (-1.0, -1.0, 0.0)]

    # PUT bought at bar 1's open (389 minutes left today), marked at bar 1's close (388),
    # sold at bar 3's open (387) = bar 2's close; strike 500, spot 500 throughout.
    put = {m: _sim_quote("p", 500.0, 500.0, m + CARRY_MINUTES) for m in (389, 388, 387)}
    bought = put[389][1] * 100 + 0.65
    sold = put[387][0] * 100 - 0.65
    assert pnl[0] == pytest.approx(sum(put[388]) / 2 * 100 - bought, rel=1e-9)
    assert pnl[1] == pytest.approx((sum(put[387]) - sum(put[388])) / 2 * 100, rel=1e-9, abs=1e-9)
    assert sum(pnl) == pytest.approx(sold - bought, rel=1e-9)
    # Two minutes of theta are far less than a cent a share: the quote does not move, and
    # the round trip costs the quoted spread and two commissions, as SimBroker charges.
    assert put[389] == put[387]
    assert sum(pnl) == pytest.approx(-((put[389][1] - put[389][0]) * 100 + 2 * 0.65), abs=1e-9)


def test_episodes_end_flat_before_the_close_and_report_trades(day):
    env = TradingEnv([day])
    env.reset(options={"day": 0, "start": 0})
    done, steps = False, 0
    while not done:
        _, _, done, truncated, info = env.step(np.array([1.0], dtype=np.float32))
        steps += 1
    assert not truncated
    # 390 one-minute bars from 09:30; the session flattens at 15:50, the close of bar 379 (15:49-15:50)
    assert len(day) == 390 and steps == 379
    assert info["trades"] == 1 and info["bars_in_position"] == steps
    assert env.position_state() == PositionState()
    with pytest.raises(RuntimeError, match="episode ended"):
        env.step(np.array([0.0], dtype=np.float32))


def test_bad_inputs_are_refused_with_the_field_named(day):
    with pytest.raises(ValueError, match="contracts"):
        EnvConfig(contracts=0)
    with pytest.raises(ValueError, match="EnvConfig.market"):
        EnvConfig(market="black-scholes")
    with pytest.raises(ValueError, match="reward weight whipsaw"):
        RewardWeights(whipsaw=-1)
    with pytest.raises(ValueError, match="reward weight gamma"):
        RewardWeights(gamma=0.0)
    env = TradingEnv([day])
    with pytest.raises(ValueError, match="not one of"):
        env.reset(options={"day": "2024-03-06"})
    with pytest.raises(ValueError, match="start"):
        env.reset(options={"day": 0, "start": 10_000})
    with pytest.raises(ValueError, match="not a trading day"):
        TradingEnv(["2024-03-09"])
    env.reset(options={"day": 0})
    with pytest.raises(ValueError, match="action"):
        env.step(np.array([np.nan]))
    with pytest.raises(ValueError, match="vix"):
        DayContext(0.0, 10.0)


def test_day_context_matches_the_market_context_of_the_foundation():
    from tradenova_dagster.market.context import compute_context

    source = get_source("synthetic")
    for d in ("2024-03-05", "2023-01-03"):
        ours, theirs = day_context(source, d), compute_context(source, d)
        assert (ours.vix, ours.iv_rank) == (theirs.vix, theirs.iv_rank)


def test_dataset_save_load_round_trip(tmp_path):
    source = get_source("synthetic")
    dataset = TrainingDataset("SPY", [load_day("SPY", d, source) for d in ("2024-11-27", "2024-11-29")])
    assert [len(d) for d in dataset.days] == [390, 210]  # the day after Thanksgiving closes early
    loaded = TrainingDataset.load(dataset.save(tmp_path / "d.npz"))
    assert loaded.dates == dataset.dates
    for a, b in zip(dataset.days, loaded.days):
        np.testing.assert_array_equal(a.features, b.features)
        assert a.context == b.context and a.session_minutes == b.session_minutes
    with pytest.raises(ValueError, match="not in the dataset"):
        dataset.select(["2024-11-26"])


def test_the_config_round_trips_with_its_market_model_and_old_fields_are_ignored():
    import json

    from tradenova_dagster.market.chain import DEFAULT_MODEL, SpreadModel

    market = dataclasses.replace(DEFAULT_MODEL, rate=0.03, spread=SpreadModel(pct_of_mid=0.02))
    config = EnvConfig(market=market, rewards=RewardWeights(theta=0.2, gamma=1.0))
    loaded = EnvConfig.from_dict(json.loads(json.dumps(config.as_dict())))  # as a model's metadata stores it
    assert loaded == config and loaded.market.spread.pct_of_mid == 0.02
    assert EnvConfig().market is DEFAULT_MODEL  # the env prices with SimBroker's model unless told otherwise
    # configs saved before the one market model carried the env's own vol and spread
    old = {"iv_scale": 1.0, "rate": 0.0, "spread_pct": 0.01, "min_spread": 0.01, "threshold": 0.4,
           "rewards": {"theta": 0.5, "whipsaw_bars": 5}}
    assert EnvConfig.from_dict(old) == EnvConfig(threshold=0.4)
