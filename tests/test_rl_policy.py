"""The categorical PUT / FLAT / CALL policy: score and thresholds, EMA on the logits, the
action wrapper, the Signal's probabilities, and bad training configs refused up front.

Expected values are computed here by hand (``math.exp`` softmax, a plain EMA), not with
the functions under test; the policy is a real SB3 PPO whose logits are pinned."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rl_helpers import categorical_ppo, pinned_logits, planted_days, set_logits
from tradenova_dagster.domain import Decision, Signal
from tradenova_dagster.rl.discrete import DiscreteActions, continuous_action
from tradenova_dagster.rl.env import TradingEnv
from tradenova_dagster.rl.features import N_FEATURES
from tradenova_dagster.rl.signal import SignalModel

logit = st.floats(-30.0, 30.0, allow_nan=False, allow_subnormal=False)
logit_triples = st.tuples(logit, logit, logit)
OBS = np.zeros(N_FEATURES, dtype=np.float32)
_MODEL = {}


def _pinned_model():
    if "ppo" not in _MODEL:
        _MODEL["ppo"] = categorical_ppo()[0]
    return _MODEL["ppo"]


def _signal(logits, **kwargs) -> SignalModel:
    model = _pinned_model()
    set_logits(model, logits)
    return SignalModel(model, None, **kwargs)


def _softmax(logits):
    top = max(logits)
    e = [math.exp(x - top) for x in logits]
    return [x / sum(e) for x in e]


def _expected_decision(score, threshold=0.3):
    return Decision.BUY_CALL if score > threshold else (Decision.BUY_PUT if score < -threshold else Decision.FLAT)


@settings(max_examples=80, deadline=None)
@given(logit_triples)
def test_score_is_p_call_minus_p_put_in_range_and_thresholds_apply_to_it(logits):
    signal = _signal(logits).predict(OBS)
    p_put, p_flat, p_call = _softmax(np.float32(logits).tolist())  # the layer's bias is float32
    assert (signal.p_put, signal.p_flat, signal.p_call) == pytest.approx((p_put, p_flat, p_call), abs=1e-6)
    assert -1.0 <= signal.score <= 1.0
    assert signal.score == pytest.approx(p_call - p_put, abs=1e-6)
    assert signal.raw_action == signal.score  # first bar of a day: nothing to smooth with
    if abs(abs(signal.score) - 0.3) > 1e-6:
        assert signal.decision is _expected_decision(p_call - p_put)


@settings(max_examples=60, deadline=None)
@given(logit_triples)
def test_swapping_put_and_call_logits_mirrors_score_and_decision(logits):
    put, flat, call = logits
    a = _signal((put, flat, call)).predict(OBS)
    b = _signal((call, flat, put)).predict(OBS)
    assert b.score == pytest.approx(-a.score, abs=1e-9)
    assert (b.p_put, b.p_flat, b.p_call) == pytest.approx((a.p_call, a.p_flat, a.p_put), abs=1e-12)
    mirror = {Decision.BUY_CALL: Decision.BUY_PUT, Decision.BUY_PUT: Decision.BUY_CALL, Decision.FLAT: Decision.FLAT}
    assert b.decision is mirror[a.decision]


@pytest.mark.parametrize("bias, decision", [(0.31, Decision.BUY_CALL), (0.29, Decision.FLAT), (0.0, Decision.FLAT),
                                            (-0.29, Decision.FLAT), (-0.31, Decision.BUY_PUT), (0.9, Decision.BUY_CALL)])
def test_decision_thresholds_on_the_score(bias, decision):
    signal = _signal(pinned_logits(bias)).predict(OBS)
    assert signal.score == pytest.approx(bias, abs=1e-6)
    assert signal.decision is decision


@settings(max_examples=40, deadline=None)
@given(st.lists(logit_triples, min_size=2, max_size=8), st.floats(0.05, 1.0))
def test_ema_is_on_the_logits_and_restarts_each_day(sequence, alpha):
    model = _signal((0.0, 0.0, 0.0), alpha=alpha)
    expected, ema = [], None
    for logits in sequence:  # the EMA of the raw logits has the same softmax as that of the log-probabilities
        raw = np.float32(logits).astype(np.float64)
        ema = raw if ema is None else alpha * raw + (1 - alpha) * ema
        p = _softmax(ema.tolist())
        expected.append((p[2] - p[0], p))
    for day in range(2):
        model.reset()
        for (score, p), logits in zip(expected, sequence):
            set_logits(_pinned_model(), logits)
            signal = model.predict(OBS)
            assert signal.score == pytest.approx(score, abs=1e-6)
            assert (signal.p_put, signal.p_flat, signal.p_call) == pytest.approx(tuple(p), abs=1e-6)
            raw = _softmax(np.float32(logits).tolist())
            assert signal.raw_action == pytest.approx(raw[2] - raw[0], abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.lists(logit_triples, min_size=1, max_size=6))
def test_alpha_one_means_no_smoothing(sequence):
    model = _signal((0.0, 0.0, 0.0), alpha=1.0)
    for logits in sequence:
        set_logits(_pinned_model(), logits)
        signal = model.predict(OBS)
        assert signal.smoothed_action == signal.raw_action


def test_ema_smooths_a_flip_and_forgets_it_at_reset():
    model = _signal(pinned_logits(0.9), alpha=0.2)
    assert model.predict(OBS).decision is Decision.BUY_CALL
    set_logits(_pinned_model(), pinned_logits(-0.9))
    flipped = model.predict(OBS)
    assert flipped.raw_action == pytest.approx(-0.9, abs=1e-6) and flipped.score > 0.3  # one bar does not flip it
    model.reset()
    assert model.predict(OBS).decision is Decision.BUY_PUT


def test_a_continuous_policy_is_refused():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    box = PPO("MlpPolicy", DummyVecEnv([lambda: TradingEnv(planted_days(1, seed=3))]), n_steps=64, batch_size=64,
              device="cpu")
    with pytest.raises(ValueError, match="policy: action space Box.*Discrete\\(3\\)"):
        SignalModel(box)


# ------------------------------------------------------------------ the wrapper
def test_wrapper_maps_put_flat_call_onto_the_continuous_action():
    days = planted_days(1, seed=5)
    wrapped, plain = DiscreteActions(TradingEnv(days)), TradingEnv(days)
    assert wrapped.action_space.n == 3 and plain.action_space.shape == (1,)
    assert wrapped.get_wrapper_attr("n_days") == 1 and wrapped.get_wrapper_attr("config") is wrapped.unwrapped.config
    a, _ = wrapped.reset(options={"day": 0, "start": 0})
    b, _ = plain.reset(options={"day": 0, "start": 0})
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    positions = set()
    for _ in range(120):
        index = int(rng.integers(3))
        a, ra, da, _, ia = wrapped.step(np.int64(index))
        b, rb, db, _, ib = plain.step(np.array([(-1.0, 0.0, 1.0)[index]], dtype=np.float32))
        np.testing.assert_array_equal(a, b)
        assert (ra, da, ia["position"]) == (rb, db, ib["position"])
        assert ia["position"] == index - 1  # PUT -1, FLAT 0, CALL +1
        positions.add(ia["position"])
    assert positions == {-1, 0, 1}


@pytest.mark.parametrize("bad", [3, -1, 1.0, True, "CALL", None, np.array([0, 1])])
def test_wrapper_refuses_anything_but_an_index(bad):
    env = DiscreteActions(TradingEnv(planted_days(1, seed=5)))
    env.reset(options={"day": 0, "start": 0})
    with pytest.raises(ValueError, match="action: expected an index 0 \\(PUT\\), 1 \\(FLAT\\) or 2 \\(CALL\\)"):
        env.step(bad)


def test_wrapper_mapping_values():
    assert [continuous_action(i) for i in (0, 1, 2)] == [-1.0, 0.0, 1.0]
    assert continuous_action(np.array([2])) == 1.0
    with pytest.raises(ValueError, match="env.action_space"):
        DiscreteActions(DiscreteActions(TradingEnv(planted_days(1, seed=5))))


# ------------------------------------------------------------------ the Signal type
def test_signal_probabilities_are_all_or_none_and_match_the_score():
    ts = datetime(2024, 3, 5, 15, tzinfo=timezone.utc)
    ok = Signal(ts, "SPY", 0.5, 0.5, Decision.BUY_CALL, "m", 0.1, 0.3, 0.6)
    assert ok.probabilities == (0.1, 0.3, 0.6) and ok.score == 0.5
    assert Signal(ts, "SPY", 0.5, 0.5, Decision.BUY_CALL).probabilities is None
    with pytest.raises(ValueError, match="p_flat, p_call: give all three"):
        Signal(ts, "SPY", 0.5, 0.5, Decision.BUY_CALL, "m", 0.5)
    with pytest.raises(ValueError, match="must be 1"):
        Signal(ts, "SPY", 0.5, 0.5, Decision.BUY_CALL, "m", 0.1, 0.1, 0.6)
    with pytest.raises(ValueError, match="p_put must be a probability"):
        Signal(ts, "SPY", 0.5, 0.5, Decision.BUY_CALL, "m", -0.2, 0.6, 0.6)
    with pytest.raises(ValueError, match="smoothed_action: 0.2 is not p_call - p_put"):
        Signal(ts, "SPY", 0.5, 0.2, Decision.FLAT, "m", 0.1, 0.3, 0.6)


# ------------------------------------------------------------------ bad configs
@pytest.mark.parametrize("kwargs, match", [
    ({"timesteps": 0}, "timesteps: must be an integer >= 1, got 0"),
    ({"timesteps": -100}, "timesteps: must be an integer >= 1, got -100"),
    ({"timesteps": 10.5}, "timesteps: must be an integer >= 1, got 10.5"),
    ({"seed": -1}, "seed: must be an integer >= 0, got -1"),
    ({"checkpoint_every": -5}, "checkpoint_every: must be an integer >= 0"),
    ({"hyperparams": {"n_envs": 0}}, "hyperparameters.n_envs: must be an integer >= 1 for ppo, got 0"),
    ({"hyperparams": {"learning_rate": -3e-4}}, "hyperparameters.learning_rate: must be a number > 0"),
    ({"hyperparams": {"learning_rate": float("nan")}}, "hyperparameters.learning_rate"),
    ({"hyperparams": {"gamma": 1.5}}, "hyperparameters.gamma: must be a number in \\(0, 1\\]"),
    ({"hyperparams": {"net_arch": []}}, "hyperparameters.net_arch"),
    ({"hyperparams": {"group_size": 4}}, "hyperparameters: unknown for ppo: \\['group_size'\\]"),
    ({"agent": "grpo", "hyperparams": {"group_size": 1}}, "hyperparameters.group_size: must be an integer >= 2"),
    ({"agent": "grpo", "hyperparams": {"advantage": "both"}}, "hyperparameters.advantage"),
    ({"agent": "dqn"}, "agent: unknown value 'dqn'"),
])
def test_bad_training_config_is_refused_before_anything_is_built(kwargs, match, monkeypatch, tradenova_home):
    from tradenova_dagster.rl import train
    from tradenova_dagster.rl.dataset import TrainingDataset

    def no_env(*args, **kw):
        raise AssertionError("an env was built for a config that should have been refused")

    monkeypatch.setattr(train, "make_vec_env", no_env)
    call = {"agent": "ppo", "timesteps": 1000, **kwargs}
    agent, timesteps = call.pop("agent"), call.pop("timesteps")
    with pytest.raises(ValueError, match=match):
        train.train_model(agent, TrainingDataset("SPY", planted_days(1, seed=1)), timesteps, tensorboard=False, **call)
    assert not (tradenova_home / "models").exists() or not any((tradenova_home / "models").iterdir())


def test_rl_predictions_keep_probabilities_or_null(store):
    from tradenova_dagster.metrics import MetricsTracker

    ts = datetime(2024, 3, 5, 15, tzinfo=timezone.utc)
    tracker = MetricsTracker(store=store, account="backtest:p1")
    tracker.log_signal(Signal(ts, "SPY", 0.4, 0.5, Decision.BUY_CALL, "cat", 0.1, 0.3, 0.6))
    tracker.log_signal(Signal(ts, "SPY", 0.1, 0.05, Decision.FLAT, "scripted"))
    with pytest.raises(ValueError, match="p_flat, p_call: give all three"):
        tracker.log_prediction("cat", 0.5, p_put=0.2, timestamp=ts)
    rows = store.query("SELECT model, smoothed_action, p_put, p_flat, p_call FROM rl_predictions ORDER BY model")
    assert rows == [("cat", 0.5, 0.1, 0.3, 0.6), ("scripted", 0.05, None, None, None)]
