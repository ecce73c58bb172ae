"""Test helpers for the RL engine: synthetic days with a planted, learnable signal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.rl.features import DayContext, DayData, minute_sigma


def planted_day(day, seed: int, drift: float = 0.35, switch: float = 1 / 40, vix: float = 20.0,
                price: float = 600.0) -> DayData:
    """A session whose minute returns carry a hidden trend: each bar's expected return is
    ``drift`` implied-sigmas in the direction of a regime that flips with probability
    ``switch`` per bar, plus unit noise. The next bar's drift is the recent bars' drift,
    so an agent that reads its return window can trade it; a random one cannot."""
    rng = np.random.default_rng(seed)
    starts = calendar.session_bar_starts(day)
    n = len(starts)
    flips = rng.random(n) < switch
    regime = rng.choice([-1.0, 1.0]) * np.where(np.cumsum(flips) % 2 == 0, 1.0, -1.0)
    sigma = minute_sigma(vix)
    closes = price * np.exp(np.cumsum(sigma * (drift * regime + rng.standard_normal(n))))
    opens = np.concatenate([[price], closes[:-1]])
    bars = pd.DataFrame({
        "timestamp": starts, "open": opens, "high": np.maximum(opens, closes) * 1.0001,
        "low": np.minimum(opens, closes) * 0.9999, "close": closes, "volume": 1000.0,
    })
    return DayData.from_bars("SPY", day, bars, DayContext(vix, 50.0))


def planted_days(n: int, seed: int, start: str = "2024-01-02") -> list[DayData]:
    """``n`` consecutive full (390-bar) sessions from ``start`` with planted signals."""
    days = [d for d in calendar.trading_days(start, "2026-06-30") if calendar.session_minutes(d) == 390][:n]
    return [planted_day(d, seed * 1000 + i) for i, d in enumerate(days)]


def synthetic_day(day: str = "2024-03-05", symbol: str = "SPY") -> DayData:
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.rl.dataset import load_day

    return load_day(symbol, day, get_source("synthetic"))


def pinned_logits(bias: float) -> list[float]:
    """Log-probabilities (PUT, FLAT, CALL) whose score P(call) − P(put) is exactly ``bias``
    (in (-1, 1)): the rest of the mass spread evenly over the three decisions."""
    import math

    if not -1.0 < bias < 1.0:
        raise ValueError(f"bias must be in (-1, 1), got {bias!r}")
    rest = (1.0 - abs(bias)) / 3.0
    return [math.log(rest + max(-bias, 0.0)), math.log(rest), math.log(rest + max(bias, 0.0))]


def categorical_ppo(logits=(0.0, 0.0, 0.0)):
    """A real categorical PPO (TradingEnv through DiscreteActions, no observation scaling)
    whose three logits are ``logits`` whatever it observes; returns (model, venv)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from tradenova_dagster.rl import TradingEnv
    from tradenova_dagster.rl.discrete import DiscreteActions

    venv = VecNormalize(DummyVecEnv([lambda: DiscreteActions(TradingEnv())]), norm_obs=False, norm_reward=False)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, seed=0, device="cpu")
    set_logits(model, logits)
    return model, venv


def set_logits(model, logits) -> None:
    """Pin the policy's logits: a zero action layer whose bias is ``logits``."""
    import torch as th

    with th.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.copy_(th.as_tensor(list(logits), dtype=th.float32))


def crafted_model(store, bias: float = 0.8, promote: bool = True, model_id: str | None = None):
    """A real PPO, saved and registered like a trained one, whose score is pinned to
    ``bias``: +0.8 always asks for a CALL, -0.8 a PUT, 0 stays flat (a session test needs
    a model that certainly trades). ``tests/session_helpers.crafted_model`` is this one."""
    from datetime import date

    from tradenova_dagster.rl import registry

    model, venv = categorical_ppo(pinned_logits(bias))
    record = registry.save_model(
        model, venv, agent="ppo", symbol="SPY", timesteps=0, seed=0, train_days=[date(2026, 1, 5)],
        meta={"crafted": True, "bias": bias}, model_id=model_id, store=store,
    )
    if promote:
        registry.promote(record.model_id, reason="test: crafted model", force=True, store=store)
    return record
