"""The categorical PUT / FLAT / CALL action TradeNova's own agents choose.

``TradingEnv`` keeps the seed's continuous action in [-1, 1] (thresholded at ±0.3) for
anyone who brings their own agent. TradeNova's PPO and GRPO instead choose one of three
decisions (a ``Discrete(3)`` action: a policy with three logits), and train through
:class:`DiscreteActions`, which hands the env the continuous action that means exactly
that decision: PUT → −1, FLAT → 0, CALL → +1 (each beyond, or inside, any threshold the
env accepts, which is below 1). So what is sampled in training is the decision traded,
and the SignalModel's score ``P(call) − P(put)`` is read off the same distribution.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

# Action indices, in the order of the policy's logits.
PUT, FLAT, CALL = 0, 1, 2
N_ACTIONS = 3
CONTINUOUS = (-1.0, 0.0, 1.0)  # the env's action for each index


def continuous_action(index) -> float:
    """The env's continuous action for a categorical action index (0 PUT, 1 FLAT, 2 CALL)."""
    return CONTINUOUS[_index(index)]


def _index(action) -> int:
    """``action`` as an index 0..2 (an int, a numpy integer, or a one-element array of one)."""
    value = action.item() if isinstance(action, np.ndarray) and action.size == 1 else action
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < N_ACTIONS:
        return int(value)
    raise ValueError(f"action: expected an index 0 (PUT), 1 (FLAT) or 2 (CALL), got {action!r}")


def is_categorical(space) -> bool:
    """Whether ``space`` is the PUT / FLAT / CALL action space (``Discrete(3)`` from 0)."""
    return isinstance(space, spaces.Discrete) and int(space.n) == N_ACTIONS and int(space.start) == 0


class DiscreteActions(gym.ActionWrapper):
    """A TradingEnv (or any env with a one-number action in [-1, 1]) seen through
    ``Discrete(3)``: 0 PUT → −1, 1 FLAT → 0, 2 CALL → +1. Attribute look-ups that SB3's
    vector envs make (``get_wrapper_attr``: ``config``, ``n_days``, ``start_range``)
    reach the env underneath."""

    def __init__(self, env: gym.Env):
        space = env.action_space
        if not (isinstance(space, spaces.Box) and space.shape == (1,)
                and float(space.low[0]) <= -1.0 and float(space.high[0]) >= 1.0):
            raise ValueError(f"env.action_space: expected a Box of one number covering [-1, 1], got {space}")
        super().__init__(env)
        self.action_space = spaces.Discrete(N_ACTIONS)
        # One preallocated array per decision: the env's hot path reads ``action.item()``.
        self._arrays = tuple(np.array([a], dtype=space.dtype) for a in CONTINUOUS)

    def action(self, action) -> np.ndarray:
        return self._arrays[_index(action)]
