"""SignalModel: EMA smoothing, bar-by-bar features, save/load round trip, prediction log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rl_helpers import planted_days
from tradenova_dagster.domain import Bar, Decision
from tradenova_dagster.rl import SignalModel
from tradenova_dagster.rl.dataset import TrainingDataset
from tradenova_dagster.rl.env import TradingEnv
from tradenova_dagster.rl.features import PositionState
from tradenova_dagster.rl.train import train_model


@pytest.fixture(scope="module")
def trained():
    days = planted_days(3, seed=21)
    result = train_model("ppo", TrainingDataset("SPY", days), 2_048, seed=0, register=False, tensorboard=False,
                         hyperparams={"n_envs": 8, "n_steps": 128, "batch_size": 256})
    return result, days


def _observations(day, n=120):
    env = TradingEnv([day])
    obs, _ = env.reset(options={"day": 0, "start": 0})
    out = [obs]
    for _ in range(n - 1):
        obs, *_ = env.step(np.array([0.0], dtype=np.float32))
        out.append(obs)
    return out


def _bar(day, t):
    return Bar("SPY", pd.Timestamp(int(day.timestamps[t]), tz="UTC").to_pydatetime(), day.opens[t],
               day.highs[t], day.lows[t], day.closes[t], 1000.0)


def _score(logits):
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return p[2] - p[0], p


def test_ema_smoothing_is_on_the_logits_and_restarts_each_day(trained):
    result, days = trained
    signal = result.signal_model(alpha=0.25)
    observations = _observations(days[0], 30)
    logits = [signal.logits(o) for o in observations]
    signal.reset()
    predictions = [signal.predict(o) for o in observations]
    ema = logits[0]
    for i, (lg, prediction) in enumerate(zip(logits, predictions)):
        ema = lg if i == 0 else 0.25 * lg + 0.75 * ema
        score, p = _score(ema)
        assert prediction.smoothed_action == pytest.approx(score, abs=1e-9)
        np.testing.assert_allclose(prediction.probabilities, p, atol=1e-9)
        assert prediction.raw_action == pytest.approx(_score(lg)[0], abs=1e-9)
    signal.reset()
    assert signal.predict(observations[5]).smoothed_action == pytest.approx(_score(logits[5])[0], abs=1e-12)


def test_decision_comes_from_the_smoothed_action(trained):
    result, days = trained
    signal = result.signal_model(alpha=0.1)
    for o in _observations(days[1], 60):
        s = signal.predict(o, pd.Timestamp("2024-03-05 15:00", tz="UTC"))
        assert s.decision == Decision.from_action(s.smoothed_action, 0.3)
        assert s.symbol == "SPY"


def test_on_bar_builds_the_env_observation_from_bars_so_far(trained):
    result, days = trained
    day = days[0]
    batch = result.signal_model()
    incremental = result.signal_model()
    incremental.reset(day.day, day.context)
    for t, obs in enumerate(_observations(day, 120)):
        via_env = batch.predict(obs)
        via_bars = incremental.on_bar(_bar(day, t), PositionState())
        assert via_bars.raw_action == via_env.raw_action
        assert via_bars.smoothed_action == via_env.smoothed_action
        assert via_bars.timestamp == pd.Timestamp(int(day.timestamps[t]), tz="UTC")


def test_on_bar_needs_a_day_and_context_and_the_right_symbol(trained):
    result, days = trained
    signal = result.signal_model()
    with pytest.raises(RuntimeError, match="reset"):
        signal.on_bar(_bar(days[0], 0))
    with pytest.raises(ValueError, match="context"):
        signal.reset(days[0].day)
    signal.reset(days[0].day, days[0].context)
    other = Bar("QQQ", _bar(days[0], 0).timestamp, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="bar.symbol"):
        signal.on_bar(other)
    with pytest.raises(ValueError, match="alpha"):
        result.signal_model(alpha=0.0)
    with pytest.raises(ValueError, match="obs"):
        signal.predict(np.zeros(3))


def test_save_load_round_trip_gives_identical_decisions(trained, store):
    from tradenova_dagster.rl import registry

    result, days = trained
    record = registry.save_model(
        result.model, result.vec_normalize, agent="ppo", symbol="SPY", timesteps=result.timesteps, seed=0,
        train_days=[d.day for d in days], meta={"env_config": {"threshold": 0.3}}, store=store,
    )
    original = result.signal_model(alpha=0.4)
    loaded = SignalModel.load(record.path, alpha=0.4)
    assert loaded.model_id == record.model_id
    for day in days:
        original.reset()
        loaded.reset()
        for obs in _observations(day, 100):
            a, b = original.predict(obs), loaded.predict(obs)
            assert (a.raw_action, a.smoothed_action, a.decision) == (b.raw_action, b.smoothed_action, b.decision)
            assert a.probabilities == b.probabilities and a.probabilities is not None
    with pytest.raises(ValueError, match="holds no"):
        SignalModel.load(record.path.parent)


def test_predictions_are_recorded_and_flushed_to_duckdb(trained, store):
    result, days = trained
    day = days[0]
    signal = result.signal_model(record=True, model_id="test-model")
    signal.reset(day.day, day.context)
    for t in range(25):
        signal.on_bar(_bar(day, t))
    made = list(signal.predictions)
    assert signal.flush_predictions(store, account="backtest:t1", run_id="r1") == 25
    assert signal.predictions == []
    rows = store.query("SELECT count(*), min(ts), max(ts), count(DISTINCT decision) FROM rl_predictions "
                       "WHERE account = 'backtest:t1' AND run_id = 'r1' AND model = 'test-model'")
    assert rows[0][0] == 25
    assert pd.Timestamp(rows[0][1]) == pd.Timestamp(int(day.timestamps[0]), tz="UTC")
    stored = store.query("SELECT raw_action, smoothed_action, decision, p_put, p_flat, p_call FROM rl_predictions "
                         "WHERE account = 'backtest:t1' ORDER BY ts")
    assert stored == [(s.raw_action, s.smoothed_action, s.decision.value, s.p_put, s.p_flat, s.p_call) for s in made]
    assert all(abs(p + f + c - 1.0) < 1e-9 and abs(c - p - smoothed) < 1e-9 for _, smoothed, _, p, f, c in stored)
    with pytest.raises(ValueError, match="account"):
        signal.flush_predictions(store, account="")
