"""The actor of a plain SB3 MLP policy, run in numpy: the SignalModel's per-bar logits.

A session asks the policy for one observation per bar. Through torch that is a forward
pass with a batch of one, and most of its ~60 µs is framework overhead (tensor wrapping,
module dispatch, VecNormalize's defensive copy), not arithmetic: the actor is two
64-wide layers. :class:`NumpyActor` runs the same layers with numpy on the same float32
weights, with the VecNormalize observation scaling in front, in ~5-7 µs.

It takes only what it can reproduce exactly: an ``ActorCriticPolicy`` whose actor is
SB3's own path — a Box observation, a ``FlattenExtractor``, an ``MlpExtractor`` whose
``policy_net`` is Linear layers and Tanh / ReLU activations (what PPO's ``MlpPolicy``
and GRPO's ``GroupPolicy`` build; Tanh is SB3's default and ``rl.train`` keeps it), and
a Linear ``action_net`` — with float32 parameters on the CPU. Anything else gives None
and the SignalModel stays on torch. The numpy path matches torch's log-probabilities to
float32 rounding (~1e-7; tests/test_signal_speed.py holds it to 1e-5), not bit for bit:
numpy's and torch's matrix-vector products add in different orders.

The weights are **views** of the torch parameters (shared memory, no copy), so an
in-place update — an optimizer step, ``load_state_dict``, a test pinning the action
layer's bias — is seen at the next bar. A parameter *replaced* by a new tensor (assigning
a new ``nn.Parameter``, moving the policy to another device or dtype) is not: the actor
would keep reading the old one. The SignalModel builds it from a loaded checkpoint that
is never trained again, so that does not happen there. The observation statistics are
copied once: the SignalModel uses them frozen (it turns VecNormalize's training off).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

_ACTIVATIONS: dict[str, Callable[[np.ndarray], None]] = {
    "Tanh": lambda h: np.tanh(h, out=h),
    "ReLU": lambda h: np.maximum(h, 0.0, out=h),
}


class NumpyActor:
    """``obs -> action-layer logits`` (float32) of an MLP actor, optionally after
    VecNormalize's frozen scaling ``clip((obs - mean) / sqrt(var + eps), ±clip_obs)``.

    ``layers``: (weight ``(out, in)``, bias ``(out,)``, activation name or None) in order,
    the last one the action layer; ``normalisation``: (mean, std, clip) or None.
    """

    def __init__(
        self,
        layers: list[tuple[np.ndarray, np.ndarray, str | None]],
        normalisation: tuple[np.ndarray, np.ndarray, float] | None = None,
    ):
        self.layers = [(w, b, None if act is None else _ACTIVATIONS[act]) for w, b, act in layers]
        self.normalisation = normalisation

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The raw action-layer output for one float32 observation of the policy's shape."""
        if self.normalisation is not None:
            mean, std, clip = self.normalisation
            x = obs - mean  # float64, as VecNormalize.normalize_obs computes it
            x /= std
            np.maximum(x, -clip, out=x)
            np.minimum(x, clip, out=x)
            x = x.astype(np.float32)
        else:
            x = obs
        for weight, bias, activation in self.layers:
            x = weight.dot(x)  # BLAS gemv, as ``weight @ x``, without the matmul ufunc's dispatch (~0.6 µs a layer)
            x += bias
            if activation is not None:
                activation(x)
        return x

    @classmethod
    def of(cls, policy, vec_normalize=None) -> "NumpyActor | None":
        """The numpy actor of ``policy`` (an SB3 ``ActorCriticPolicy``) with the observation
        scaling of ``vec_normalize`` (or None), or None where it cannot reproduce the torch
        actor exactly (another architecture, extractor, device or dtype)."""
        layers = _mlp_layers(policy)
        if layers is None:
            return None
        normalisation = None
        if vec_normalize is not None and getattr(vec_normalize, "norm_obs", False):
            normalisation = _frozen_normalisation(vec_normalize, layers[0][0].shape[1])
            if normalisation is None:
                return None
        return cls(layers, normalisation)


def _mlp_layers(policy) -> list[tuple[np.ndarray, np.ndarray, str | None]] | None:
    """(weight, bias, activation) views of the actor's Linear layers, or None."""
    import torch as th
    from gymnasium import spaces
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.torch_layers import FlattenExtractor, MlpExtractor

    if not isinstance(policy, ActorCriticPolicy) or not isinstance(policy.observation_space, spaces.Box):
        return None
    if len(policy.observation_space.shape) != 1:
        return None
    if type(policy).extract_features is not ActorCriticPolicy.extract_features:
        return None
    if type(policy.pi_features_extractor) is not FlattenExtractor:
        return None
    extractor = policy.mlp_extractor
    if not isinstance(extractor, MlpExtractor) or type(extractor).forward_actor is not MlpExtractor.forward_actor:
        return None
    if type(policy.action_net) is not th.nn.Linear:
        return None
    activations = {th.nn.Tanh: "Tanh", th.nn.ReLU: "ReLU"}
    layers: list[list] = []
    for module in [*extractor.policy_net, policy.action_net]:
        if type(module) is th.nn.Linear and module.bias is not None:
            weight, bias = _view(module.weight), _view(module.bias)
            if weight is None or bias is None:
                return None
            layers.append([weight, bias, None])
        elif type(module) in activations and layers and layers[-1][2] is None:
            layers[-1][2] = activations[type(module)]  # one activation after each Linear
        else:
            return None
    if layers[0][0].shape[1] != policy.observation_space.shape[0]:
        return None
    return [tuple(layer) for layer in layers]


def _view(parameter) -> np.ndarray | None:
    """A float32 numpy view sharing memory with a CPU parameter (None otherwise)."""
    import torch as th

    if parameter.device.type != "cpu" or parameter.dtype != th.float32:
        return None
    return parameter.detach().numpy()


def _frozen_normalisation(vec_normalize, n_obs: int) -> tuple[np.ndarray, np.ndarray, float] | None:
    """VecNormalize's (mean, sqrt(var + epsilon), clip_obs), copied once, or None for
    statistics it cannot apply (a dict observation)."""
    from stable_baselines3.common.running_mean_std import RunningMeanStd
    from stable_baselines3.common.vec_env import VecNormalize

    rms = vec_normalize.obs_rms
    if not isinstance(vec_normalize, VecNormalize) or not isinstance(rms, RunningMeanStd):
        return None
    mean = np.array(rms.mean, dtype=np.float64)
    std = np.sqrt(np.array(rms.var, dtype=np.float64) + vec_normalize.epsilon)
    if mean.shape != (n_obs,) or std.shape != (n_obs,):
        return None
    return mean, std, float(vec_normalize.clip_obs)
