"""The RL engine: TradingEnv, PPO and GRPO training, evaluation, and the SignalModel.

``from tradenova_dagster.rl import TradingEnv, GRPO, SignalModel`` works as documented,
but the names are resolved on first use (PEP 562), so importing the package does not
pull in torch and stable-baselines3 until something needs them.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TradingEnv": "tradenova_dagster.rl.env",
    "EnvConfig": "tradenova_dagster.rl.env",
    "RewardWeights": "tradenova_dagster.rl.env",
    "GRPO": "tradenova_dagster.rl.grpo",
    "SignalModel": "tradenova_dagster.rl.signal",
    "PositionState": "tradenova_dagster.rl.features",
    "DayContext": "tradenova_dagster.rl.features",
    "TrainingDataset": "tradenova_dagster.rl.dataset",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
