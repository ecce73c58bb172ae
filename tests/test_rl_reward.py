"""The env's reward: the ledger's after-cost P&L plus potential-based shaping only.

Ng, Harada & Russell (1999): a shaping term ``F = γΦ(s') − Φ(s)`` adds ``γ^n Φ(s_n) −
Φ(s_0)`` to the discounted return of any n steps, so with Φ = 0 at both ends of an
episode it adds nothing to any policy's return and cannot change which one is best.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rl_helpers import planted_day
from tradenova_dagster.rl.env import EnvConfig, RewardWeights, TradingEnv

NO_SHAPING = RewardWeights(direction=0, whipsaw=0, early_exit=0, theta=0)
ALL_ON = RewardWeights(direction=0.3, whipsaw=0.7, early_exit=0.4, theta=2.0, gamma=0.95)


@pytest.fixture(scope="module")
def day():
    return planted_day("2024-03-05", seed=3)


def _episode(env, actions, start=0):
    """Run ``actions`` (repeated as needed) to the end of the episode: per step the
    reward, the dollar P&L and the potential after the step."""
    env.reset(options={"day": 0, "start": start})
    rewards, pnls, potentials = [], [], [env.potential()]
    for i in range(10_000):
        _, reward, done, _, info = env.step(np.array([actions[i % len(actions)]], dtype=np.float32))
        rewards.append(reward)
        pnls.append(info["pnl"])
        potentials.append(env.potential())
        if done:
            return np.array(rewards), np.array(pnls), np.array(potentials)
    raise AssertionError("episode did not end")


def test_without_shaping_the_reward_is_the_after_cost_pnl(day):
    config = EnvConfig(rewards=NO_SHAPING)
    rewards, pnls, potentials = _episode(TradingEnv([day], config=config), [1.0, 1.0, -1.0, 0.0, 0.5])
    np.testing.assert_allclose(rewards, pnls / config.scale, rtol=1e-12, atol=1e-15)
    assert not potentials.any()


def test_the_potential_based_terms_telescope_over_an_episode(day):
    config = EnvConfig(rewards=ALL_ON)
    env = TradingEnv([day], config=config)
    actions = np.random.default_rng(0).choice([-1.0, 0.0, 1.0], 60, p=[0.3, 0.2, 0.5])
    rewards, pnls, potentials = _episode(env, actions)
    shaping = rewards - ALL_ON.pnl * pnls / config.scale
    gamma = ALL_ON.gamma
    discount = gamma ** np.arange(len(shaping))
    prefix = np.cumsum(discount * shaping)
    # every prefix: sum of γ^t F_t = γ^n Φ(s_n) − Φ(s_0)
    np.testing.assert_allclose(prefix, gamma ** np.arange(1, len(shaping) + 1) * potentials[1:] - potentials[0],
                               atol=1e-9)
    assert np.count_nonzero(potentials) > len(potentials) / 2  # the potentials are really there mid-episode
    assert np.abs(shaping).max() > 0.1
    # the episode starts and ends flat, Φ = 0: the discounted shaping sums to nothing
    assert potentials[0] == 0.0 and potentials[-1] == 0.0
    assert prefix[-1] == pytest.approx(0.0, abs=1e-9)


def test_shaping_changes_no_policys_discounted_return(day):
    """The same discounted return with and without shaping, for very different policies:
    the ranking of policies (hence the optimal one) is unchanged."""
    gamma = ALL_ON.gamma
    plain = TradingEnv([day], config=EnvConfig(rewards=dataclasses.replace(NO_SHAPING, gamma=gamma)))
    shaped = TradingEnv([day], config=EnvConfig(rewards=ALL_ON))
    rng = np.random.default_rng(1)
    policies = [[1.0], [-1.0], [0.0], [1.0, 0.0], [1.0, -1.0] * 3 + [0.0] * 10, list(rng.uniform(-1, 1, 97))]
    for actions in policies:
        r_plain = _episode(plain, actions, start=200)[0]
        r_shaped = _episode(shaped, actions, start=200)[0]
        discount = gamma ** np.arange(len(r_plain))
        assert np.dot(discount, r_shaped) == pytest.approx(np.dot(discount, r_plain), abs=1e-9), actions
        if actions != [0.0]:
            assert not np.allclose(r_shaped, r_plain)  # step by step, the shaping does show


def _only(**weights) -> EnvConfig:
    return EnvConfig(rewards=dataclasses.replace(NO_SHAPING, gamma=1.0, **weights))


def test_a_whipsaw_pays_the_flips_spread_and_fees_and_the_exit_cost_is_charged_up_front(day):
    env = TradingEnv([day], config=_only(whipsaw=1.0))
    env.reset(options={"day": 0, "start": 100})
    _, reward, _, _, info = env.step(np.array([1.0], dtype=np.float32))  # buy a call at bar 101's open
    p = env._p
    k = p.atm[101]
    ask = p.ask_open[0][k][101]  # per contract, commission in
    mark = p.mark[0][k][101]
    exit_at_bid = p.bid_close[0][k][101]  # what selling at this close would bring, commission out
    assert info["pnl"] == pytest.approx(mark - ask)
    # with weight 1, the entry is charged the whole round trip: the reward is as if marked at the bid
    assert reward * env.config.scale == pytest.approx(exit_at_bid - ask)
    # flip to a put: the call is sold at the bid, the put bought at the ask (the real cost of
    # the whipsaw), and the charge made up front for the call's exit comes back
    _, reward, _, _, info = env.step(np.array([-1.0], dtype=np.float32))
    call_sold = p.bid_open[0][k][102]
    put_k = p.atm[102]
    put_bought = p.ask_open[1][put_k][102]
    assert info["pnl"] == pytest.approx(call_sold - put_bought + p.mark[1][put_k][102] - mark)
    assert p.ask_open[0][k][102] - call_sold >= 2 * 0.65 + 1.0 - 1e-9  # a flip: a spread (>= 1 tick) and 2 fees
    expected_shaping = (mark - exit_at_bid) - (p.mark[1][put_k][102] - p.bid_close[1][put_k][102])
    assert reward * env.config.scale == pytest.approx(info["pnl"] + expected_shaping)


def test_theta_and_direction_accrue_while_held_and_are_returned_at_the_close(day):
    theta_env = TradingEnv([day], config=_only(theta=1.0))
    plain_env = TradingEnv([day], config=_only())
    direction_env = TradingEnv([day], config=_only(direction=1.0))
    actions = [1.0] * 50 + [0.0]
    plain = _episode(plain_env, actions)[0][:51]
    with_theta = _episode(theta_env, actions)[0][:51]
    with_direction = _episode(direction_env, actions)[0][:51]
    assert all(t < p for t, p in zip(with_theta[:50], plain[:50]))  # holding pays time decay, bar by bar
    assert with_theta[50] - plain[50] == pytest.approx(np.sum(plain[:50] - with_theta[:50]))  # ... returned
    moves = np.clip(day.features[1:51, 0], -3, 3)  # bars 1..50 held: their returns, implied-sigma units
    np.testing.assert_allclose(with_direction[:50] - plain[:50], moves, rtol=1e-6, atol=1e-9)
    assert with_direction[50] - plain[50] == pytest.approx(-moves.sum())


def test_closing_a_winner_banks_the_early_exit_bonus(day):
    base = _only()
    env = TradingEnv([day], config=base)
    for start in range(0, 300):
        env.reset(options={"day": 0, "start": start})
        env.step(np.array([1.0], dtype=np.float32))
        gain = env._value - env._entry_cost  # unrealised P&L at the mark before the close
        _, reward_plain, _, _, info = env.step(np.array([0.0], dtype=np.float32))
        if gain > 0:
            break
    else:
        pytest.fail("no winning one-bar trade found on the planted day")
    bonus_env = TradingEnv([day], config=_only(early_exit=0.5))
    bonus_env.reset(options={"day": 0, "start": start})
    _, reward_entry, _, _, _ = bonus_env.step(np.array([1.0], dtype=np.float32))
    _, reward_bonus, _, _, _ = bonus_env.step(np.array([0.0], dtype=np.float32))
    assert info["trade_closed"]
    assert reward_bonus == pytest.approx(reward_plain + 0.5 * gain / base.scale)
    # ... paid for by the potential while the winner was held
    env.reset(options={"day": 0, "start": start})
    assert reward_entry == pytest.approx(env.step(np.array([1.0], dtype=np.float32))[1] - 0.5 * gain / base.scale)
