"""Helpers for session tests: a real stable-baselines3 model whose policy is set by hand.

A trained model's behaviour on a given day is hard to predict; session tests need one
that certainly trades. ``crafted_model`` (from ``rl_helpers``) builds a real categorical
PPO (saved and registered like any trained one, loaded by the real SignalModel) whose
score is pinned to ``bias``: +0.8 always asks for a CALL, -0.8 a PUT, 0 stays flat.
"""

from rl_helpers import crafted_model  # noqa: F401 - the one crafted model every session test uses
