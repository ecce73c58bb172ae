"""The SignalModel's fast per-bar path computes what the slow one did.

- the numpy actor (``rl.inference``) gives the torch policy's log-probabilities (to
  float32 rounding) for PPO and GRPO, Tanh and ReLU, with and without VecNormalize, and
  the same decisions over whole replayed days; a policy it cannot reproduce stays on torch;
- the O(1) ``FeatureBuilder`` gives row ``t`` of ``market_features`` bit for bit, on
  random price paths with gaps and on real SPY days.

No timings here: the speed is measured outside the test suite (bench/).
"""

from __future__ import annotations

from datetime import timezone

import numpy as np
import pandas as pd
import pytest
import torch as th
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from rl_helpers import planted_days
from tradenova_dagster.domain import Bar
from tradenova_dagster.market import calendar
from tradenova_dagster.rl.env import EnvConfig
from tradenova_dagster.rl.features import N_FEATURES, DayContext, DayData, FeatureBuilder, PositionState
from tradenova_dagster.rl.signal import SignalModel
from tradenova_dagster.rl.train import make_vec_env

ATOL = 1e-5  # float32 forward passes that add in different orders


@pytest.fixture(scope="module")
def days() -> list[DayData]:
    return planted_days(2, seed=31)


@pytest.fixture(scope="module")
def real_days(shared_data) -> list[DayData]:
    """Two real SPY sessions: a full day and the 13:00 early close after Thanksgiving."""
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.rl.dataset import load_day

    source = get_source("file", data_dir=str(shared_data))
    return [load_day("SPY", day, source) for day in ("2025-10-15", "2025-11-28")]


def _model(days, agent: str, seed: int, normalise: bool, **policy_kwargs):
    """A seeded PPO or GRPO whose weights are random and large enough that its decisions
    vary, with random observation statistics (clip 3, so clipping happens) or none."""
    venv = make_vec_env(days, EnvConfig(episode_bars=20), n_envs=8, seed=seed, norm_reward=False)
    if agent == "ppo":
        from stable_baselines3 import PPO

        model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, seed=seed, device="cpu", policy_kwargs=policy_kwargs)
    else:
        from tradenova_dagster.rl import GRPO

        model = GRPO("MlpPolicy", venv, group_size=4, batch_size=64, seed=seed, device="cpu",
                     policy_kwargs=policy_kwargs)
    generator = th.Generator().manual_seed(seed)
    with th.no_grad():
        for parameter in model.policy.parameters():
            parameter.copy_(th.randn(parameter.shape, generator=generator) * 0.4)
    if not normalise:
        return model, None
    rng = np.random.default_rng(seed)
    venv.obs_rms.mean = rng.normal(0.0, 0.5, N_FEATURES)
    venv.obs_rms.var = rng.uniform(0.05, 4.0, N_FEATURES)
    venv.clip_obs = 3.0
    return model, venv


def _bars(day: DayData) -> list[Bar]:
    """The day's bars, half stamped as datetimes (the session's) and half as Timestamps."""
    bars = []
    for t in range(len(day)):
        stamp = pd.Timestamp(int(day.timestamps[t]), tz="UTC")
        bars.append(Bar("SPY", stamp.to_pydatetime() if t % 2 else stamp, day.opens[t], day.highs[t], day.lows[t],
                        day.closes[t], 1000.0))
    return bars


def _observations(day: DayData, seed: int) -> list[np.ndarray]:
    """The day's observations with random positions, and random wide vectors (clipping)."""
    from tradenova_dagster.rl.features import observation

    rng = np.random.default_rng(seed)
    out = [observation(day.features[t], PositionState(int(rng.integers(-1, 2)), float(rng.normal(0, 0.3)),
                                                      int(rng.integers(0, 200))))
           for t in range(len(day))]
    out += list(rng.normal(0.0, 6.0, (100, N_FEATURES)).astype(np.float32))
    return out


MODELS = [
    ("ppo", True, {}),
    ("ppo", False, {}),
    ("grpo", True, {}),
    ("grpo", False, {}),
    ("ppo", True, {"net_arch": [32], "activation_fn": th.nn.ReLU}),
    ("grpo", True, {"net_arch": [16, 8, 4], "activation_fn": th.nn.ReLU}),
]


@pytest.mark.parametrize("agent, normalise, policy_kwargs", MODELS)
def test_the_numpy_actor_gives_the_torch_log_probabilities(days, agent, normalise, policy_kwargs):
    model, venv = _model(days, agent, seed=len(policy_kwargs) * 10 + normalise, normalise=normalise,
                         **policy_kwargs)
    fast, slow = SignalModel(model, venv), SignalModel(model, venv, fast=False)
    assert fast.actor is not None and slow.actor is None
    spread = []
    for obs in _observations(days[0], seed=3):
        a, b = fast.logits(obs), slow.logits(obs)
        np.testing.assert_allclose(a, b, rtol=0, atol=ATOL)
        spread.append(b)
    assert np.ptp(np.array(spread), axis=0).min() > 1.0  # the logits do vary: the check has teeth


@pytest.mark.parametrize("agent", ["ppo", "grpo"])
def test_decisions_over_whole_replayed_days_are_the_torch_decisions(days, agent):
    model, venv = _model(days, agent, seed=7, normalise=True)
    fast, slow = SignalModel(model, venv, alpha=0.5), SignalModel(model, venv, alpha=0.5, fast=False)
    rng = np.random.default_rng(11)
    decisions = set()
    for day in days:
        fast.reset(day.day, day.context)
        slow.reset(day.day, day.context)
        for bar in _bars(day):
            position = PositionState(int(rng.integers(-1, 2)), float(rng.normal(0, 0.2)), int(rng.integers(0, 90)))
            a, b = fast.on_bar(bar, position), slow.on_bar(bar, position)
            assert a.decision is b.decision
            assert a.timestamp == b.timestamp == bar.timestamp
            assert a.raw_action == pytest.approx(b.raw_action, abs=ATOL)
            assert a.probabilities == pytest.approx(b.probabilities, abs=ATOL)
            decisions.add(a.decision)
    assert len(decisions) == 3  # calls, puts and flats: every threshold was crossed


def test_decisions_on_a_real_spy_day_are_the_torch_decisions(days, real_days):
    model, venv = _model(days, "ppo", seed=5, normalise=True)
    fast, slow = SignalModel(model, venv), SignalModel(model, venv, fast=False)
    for day in real_days:
        fast.reset(day.day, day.context)
        slow.reset(day.day, day.context)
        for bar in _bars(day):
            a, b = fast.on_bar(bar), slow.on_bar(bar)
            assert a.decision is b.decision and a.score == pytest.approx(b.score, abs=ATOL)


def test_the_numpy_actor_follows_in_place_weight_updates(days):
    """The actor reads the parameters' memory: an optimizer-style step or a load_state_dict
    is seen at the next prediction (only a replaced parameter would not be)."""
    model, venv = _model(days, "ppo", seed=2, normalise=True)
    other, _ = _model(days, "ppo", seed=3, normalise=False)
    fast, slow = SignalModel(model, venv), SignalModel(model, venv, fast=False)
    obs = _observations(days[0], seed=4)[:50]
    before = [fast.logits(o) for o in obs]
    with th.no_grad():
        for parameter in model.policy.parameters():
            parameter.mul_(0.5).add_(0.05)
    for o, old in zip(obs, before):
        assert not np.allclose(fast.logits(o), old, atol=1e-3)
        np.testing.assert_allclose(fast.logits(o), slow.logits(o), rtol=0, atol=ATOL)
    model.policy.load_state_dict(other.policy.state_dict())
    for o in obs:
        np.testing.assert_allclose(fast.logits(o), slow.logits(o), rtol=0, atol=ATOL)


class _LinearExtractor(BaseFeaturesExtractor):
    """A features extractor that is not SB3's FlattenExtractor: a learned projection of
    the observation's own width, so only the extractor's type tells it apart."""

    def __init__(self, observation_space):
        super().__init__(observation_space, observation_space.shape[0])
        self.linear = th.nn.Linear(observation_space.shape[0], observation_space.shape[0])

    def forward(self, obs):
        return th.tanh(self.linear(obs))


@pytest.mark.parametrize("policy_kwargs", [
    {"activation_fn": th.nn.LeakyReLU},
    {"activation_fn": th.nn.ELU, "net_arch": [16]},
    {"features_extractor_class": _LinearExtractor},
], ids=["leaky-relu", "elu", "custom-extractor"])
def test_a_policy_the_numpy_actor_cannot_reproduce_stays_on_torch(days, policy_kwargs):
    model, venv = _model(days, "ppo", seed=9, normalise=True, **policy_kwargs)
    signal, reference = SignalModel(model, venv), SignalModel(model, venv, fast=False)
    assert signal.actor is None
    for obs in _observations(days[0], seed=6)[:60]:
        a, b = signal.predict(obs), reference.predict(obs)
        assert (a.raw_action, a.smoothed_action, a.decision) == (b.raw_action, b.smoothed_action, b.decision)


# ------------------------------------------------------------------ FeatureBuilder
def _day_from_path(day, returns, minutes, first_gap, vix, iv_rank) -> DayData:
    closes = 500.0 * np.exp(np.cumsum(returns))
    opens = np.concatenate([[500.0 * np.exp(-first_gap)], closes[:-1]])
    open_utc = calendar.session_open_close(day)[0]
    bars = pd.DataFrame({
        "timestamp": [open_utc + pd.Timedelta(minutes=int(m)) for m in minutes], "open": opens,
        "high": np.maximum(opens, closes), "low": np.minimum(opens, closes), "close": closes,
    })
    return DayData.from_bars("SPY", day, bars, DayContext(vix, iv_rank))


def _stamp(day: DayData, t: int, kind: int):
    """Bar ``t``'s start as a UTC Timestamp, a New York Timestamp, or a UTC datetime."""
    stamp = pd.Timestamp(int(day.timestamps[t]), tz="UTC")
    return (stamp, stamp.tz_convert("America/New_York"), stamp.to_pydatetime().astimezone(timezone.utc))[kind % 3]


@settings(max_examples=60, deadline=None)
@given(
    n_bars=st.integers(1, 390),
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(1e-5, 0.02),
    early_close=st.booleans(),
    first_gap=st.floats(-0.02, 0.02),
    vix=st.floats(5.0, 90.0),
    iv_rank=st.floats(0.0, 100.0),
)
def test_feature_builder_rows_are_the_whole_day_features_bit_for_bit(n_bars, seed, scale, early_close, first_gap,
                                                                      vix, iv_rank):
    """Random paths (flat stretches, jumps past the clip, missing minutes) on full and
    early-close sessions, the bars stamped in UTC, New York time or as datetimes."""
    rng = np.random.default_rng(seed)
    day = pd.Timestamp("2024-11-29" if early_close else "2024-03-05").date()
    session = calendar.session_minutes(day)
    n_bars = min(n_bars, session)
    returns = rng.normal(0.0, scale, n_bars) * (rng.random(n_bars) > 0.1)  # some unchanged closes
    returns += rng.choice([0.0, 0.02, -0.02], n_bars, p=[0.96, 0.02, 0.02])  # and some jumps
    minutes = np.sort(rng.choice(session, size=n_bars, replace=False))
    data = _day_from_path(day, returns, minutes, first_gap, vix, iv_rank)
    builder = FeatureBuilder(data.day, data.context)
    for t in range(len(data)):
        row = builder.add_bar(_stamp(data, t, kind=t + seed), data.opens[t], data.closes[t])
        assert row.dtype == np.float32
        np.testing.assert_array_equal(row, data.features[t])
    assert len(builder) == len(data)


def test_feature_builder_rows_on_real_spy_days_are_the_env_features(real_days):
    for day in real_days:
        builder = FeatureBuilder(day.day, day.context)
        rows = np.array([builder.add_bar(_stamp(day, t, t), day.opens[t], day.closes[t]) for t in range(len(day))])
        np.testing.assert_array_equal(rows, day.features)


def test_a_refused_bar_leaves_the_builder_as_it_was(days):
    day = days[0]
    builder = FeatureBuilder(day.day, day.context)
    for t in range(5):
        builder.add_bar(_stamp(day, t, t), day.opens[t], day.closes[t])
    stamp = _stamp(day, 5, 0)
    with pytest.raises(ValueError, match="close: .*finite and > 0, got nan"):
        builder.add_bar(stamp, day.opens[5], float("nan"))
    with pytest.raises(ValueError, match="close: .*got -1.0"):
        builder.add_bar(stamp, day.opens[5], -1.0)
    with pytest.raises(ValueError, match="not after"):
        builder.add_bar(_stamp(day, 4, 0), day.opens[5], day.closes[5])
    with pytest.raises(ValueError, match="timezone-aware"):
        builder.add_bar(stamp.tz_localize(None), day.opens[5], day.closes[5])
    with pytest.raises(ValueError, match="timezone-aware"):
        builder.add_bar(stamp.tz_localize(None).to_pydatetime(), day.opens[5], day.closes[5])
    with pytest.raises(ValueError, match="outside the session"):
        builder.add_bar(stamp + pd.Timedelta(hours=7), day.opens[5], day.closes[5])
    assert len(builder) == 5
    for t in range(5, 40):
        np.testing.assert_array_equal(builder.add_bar(_stamp(day, t, t), day.opens[t], day.closes[t]),
                                      day.features[t])


def test_a_first_open_that_is_not_a_price_is_refused(days):
    day = days[0]
    builder = FeatureBuilder(day.day, day.context)
    with pytest.raises(ValueError, match="open: .*got 0.0"):
        builder.add_bar(_stamp(day, 0, 0), 0.0, day.closes[0])
    assert len(builder) == 0
