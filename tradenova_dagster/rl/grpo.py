"""GRPO: Group Relative Policy Optimization, as a stable-baselines3 ``OnPolicyAlgorithm``.

GRPO was introduced in *DeepSeekMath: Pushing the Limits of Mathematical Reasoning in
Open Language Models* (Shao et al., 2024, arXiv:2402.03300, §4.1). Instead of a learned
value function, it samples a *group* of G outputs for the same prompt and uses each
output's reward relative to its group as the advantage. Here:

- **prompt → (day, start bar).** Each update collects ``n_groups`` groups of
  ``group_size`` episodes; the G episodes of a group start from the same trading day and
  bar (``reset(options={"day": d, "start": s})`` reproduces the start state exactly), so
  they differ only by the policy's sampled actions. ``n_envs = group_size × n_groups``.
- **No value network.** :class:`GroupPolicy` is an actor-only ``ActorCriticPolicy``: the
  critic head is removed, so there are no value parameters, loss or bootstrapping.
- **Advantages** (``advantage=``):
  ``"outcome"``: every step of episode i gets ``(R_i − mean(R)) / std(R)``, R the episode
  returns of its group (DeepSeekMath's outcome supervision);
  ``"process"``: every step reward is normalised by the mean/std of all step rewards of
  its group, and a step's advantage is the sum of the normalised rewards from that step
  to the end (DeepSeekMath's process supervision, one "reasoning step" per bar).
  A group whose returns are all equal carries no signal: its advantages are 0 and the
  share of such groups is logged (``grpo/zero_spread_groups``). Advantages are *not*
  re-normalised per minibatch across groups, unlike SB3's PPO.
- **Objective.** The PPO-style clipped ratio on those advantages, plus ``kl_coef`` × the
  KL divergence to a frozen reference policy, estimated per step with the unbiased
  estimator of the paper (``π_ref/π − log(π_ref/π) − 1``); β = ``kl_coef`` may be 0. The
  reference is refreshed to the current policy every ``ref_update_interval`` updates
  (the paper's iterative GRPO resets the reference at each outer iteration).
- **Policy.** Categorical over a ``Discrete`` action space: for TradeNova, three logits
  (PUT / FLAT / CALL, ``rl.discrete``), the same distribution PPO trains and the
  SignalModel reads; the ratio and KL terms are over those probabilities.
- **Logs.** ``grpo/zero_spread_groups``, ``grpo/group_return_mean``,
  ``grpo/group_return_std``, ``train/kl_ref``, ``train/approx_kl``,
  ``train/clip_fraction``, ``train/entropy``, losses.

Where this differs from the paper: one categorical action per minute bar (a bar playing
the role of a token, three "tokens" in the vocabulary); rewards come from the market
simulator, not a reward model, so there is no reward-model retraining in the iterative
loop; all episodes of an update have the same length (``episode_bars``), so the paper's
per-sequence length normalisation reduces to a plain mean over steps; an optional entropy
bonus (``ent_coef``, 0 by default) is kept from SB3; observations may be normalised by
``VecNormalize`` (rewards need not be: group normalisation makes their scale irrelevant).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.utils import FloatSchedule, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

ADVANTAGE_MODES = ("outcome", "process")
ZERO_SPREAD = 1e-9  # a group whose returns' std is below this has no winners or losers


def group_advantages(
    rewards: np.ndarray, group_size: int, mode: str = "outcome", eps: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """Group-relative advantages for a ``(T, n_envs)`` reward array.

    Columns ``g*G .. g*G+G-1`` are group g. Returns ``(advantages (T, n_envs),
    zero_spread (n_groups,) bool)``. Outcome advantages are constant along an episode
    and zero-mean within each group; process advantages are rewards-to-go of rewards
    normalised over the whole group (so the first step's advantages are zero-mean too).
    """
    if mode not in ADVANTAGE_MODES:
        raise ValueError(f"advantage: unknown value {mode!r}; expected one of {', '.join(ADVANTAGE_MODES)}")
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 2:
        raise ValueError(f"rewards: expected a (steps, envs) array, got shape {rewards.shape}")
    steps, n_envs = rewards.shape
    if group_size < 2 or n_envs % group_size:
        raise ValueError(f"group_size: {group_size} must be >= 2 and divide n_envs={n_envs}")
    grouped = rewards.reshape(steps, n_envs // group_size, group_size)
    returns = grouped.sum(axis=0)  # (groups, G)
    zero_spread = returns.std(axis=1) < ZERO_SPREAD * (1.0 + np.abs(returns).mean(axis=1))
    if mode == "outcome":
        mean = returns.mean(axis=1, keepdims=True)
        std = returns.std(axis=1, keepdims=True)
        adv = np.broadcast_to((returns - mean) / (std + eps), grouped.shape).copy()
    else:
        mean = grouped.mean(axis=(0, 2), keepdims=True)
        std = grouped.std(axis=(0, 2), keepdims=True)
        normalised = (grouped - mean) / (std + eps)
        adv = np.flip(np.cumsum(np.flip(normalised, axis=0), axis=0), axis=0)
    adv[:, zero_spread, :] = 0.0
    return adv.reshape(steps, n_envs), zero_spread


class GroupPolicy(ActorCriticPolicy):
    """An actor-only policy: SB3's MLP actor with the critic head removed.

    ``net_arch`` is the actor's hidden layers (a list, default ``[64, 64]``); there is no
    value branch, so every parameter the optimiser sees is the policy's.
    """

    def __init__(self, *args, net_arch: list[int] | dict | None = None, **kwargs):
        if isinstance(net_arch, dict):
            net_arch = net_arch.get("pi", [64, 64])
        kwargs["share_features_extractor"] = True
        super().__init__(*args, net_arch=dict(pi=list(net_arch or [64, 64]), vf=[]), **kwargs)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.value_net = None  # no critic: drop the head before the optimiser sees it
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def forward(self, obs: th.Tensor, deterministic: bool = False):
        distribution = self.get_distribution(obs)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        return actions.reshape(-1), th.zeros(len(actions), 1, device=actions.device), log_prob

    def predict_values(self, obs) -> th.Tensor:
        n = obs.shape[0] if isinstance(obs, th.Tensor) else len(next(iter(obs.values())))
        return th.zeros(n, 1, device=self.device)

    def evaluate_actions(self, obs: th.Tensor, actions: th.Tensor):
        distribution = self.get_distribution(obs)
        return th.zeros(len(actions), 1, device=actions.device), distribution.log_prob(actions), distribution.entropy()


class GRPO(OnPolicyAlgorithm):
    """Group Relative Policy Optimization (see the module docstring).

    The env must be a VecEnv of ``group_size × n_groups`` copies of an env with a
    ``Discrete`` action space (TradingEnv in ``rl.discrete.DiscreteActions``) that accepts
    ``reset(options={"day": i, "start": s})`` and exposes ``n_days``, ``start_range(i)``
    and ``config.episode_bars`` (TradingEnv does), with fixed-length episodes.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": GroupPolicy}
    policy: GroupPolicy

    def __init__(
        self,
        policy: str | type[GroupPolicy],
        env,
        group_size: int = 8,
        advantage: str = "outcome",
        learning_rate: float = 3e-4,
        n_epochs: int = 4,
        batch_size: int = 1024,
        clip_range: float = 0.2,
        kl_coef: float = 0.04,
        ref_update_interval: int = 10,
        ent_coef: float = 0.0,
        max_grad_norm: float = 0.5,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "cpu",
        _init_setup_model: bool = True,
    ):
        if advantage not in ADVANTAGE_MODES:
            raise ValueError(f"advantage: unknown value {advantage!r}; expected one of {', '.join(ADVANTAGE_MODES)}")
        if kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {kl_coef!r}")
        if ref_update_interval < 1:
            raise ValueError(f"ref_update_interval must be >= 1, got {ref_update_interval!r}")
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=1,  # replaced by the episode length in _setup_model
            gamma=1.0,
            gae_lambda=1.0,
            ent_coef=ent_coef,
            vf_coef=0.0,
            max_grad_norm=max_grad_norm,
            use_sde=False,
            sde_sample_freq=-1,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
            supported_action_spaces=(spaces.Discrete,),
        )
        self.group_size = group_size
        self.advantage = advantage
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.clip_range = clip_range
        self.kl_coef = kl_coef
        self.ref_update_interval = ref_update_interval
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        if self.n_envs % self.group_size or self.group_size < 2:
            raise ValueError(f"group_size: {self.group_size} must be >= 2 and divide n_envs={self.n_envs}")
        self.n_groups = self.n_envs // self.group_size
        episode_bars = self.env.get_attr("config", indices=[0])[0].episode_bars if self.env is not None else self.n_steps
        if not episode_bars:
            raise ValueError("GRPO needs fixed-length episodes: set EnvConfig.episode_bars")
        self.n_steps = int(episode_bars)
        super()._setup_model()
        self.clip_range = FloatSchedule(self.clip_range)
        self.ref_policy = copy.deepcopy(self.policy)
        self.ref_policy.set_training_mode(False)
        for param in self.ref_policy.parameters():
            param.requires_grad_(False)
        self._updates_since_ref = 0
        self._start_rng = np.random.default_rng(self.seed)
        self._valid_starts: list[tuple[int, int, int]] | None = None

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer", "ref_policy"], []

    def _excluded_save_params(self) -> list[str]:
        return super()._excluded_save_params() + ["ref_policy", "_start_rng", "_valid_starts"]

    # ------------------------------------------------------------------ groups
    def sample_group_starts(self) -> list[dict]:
        """Reset options for every env: one random (day, start) per group, repeated G times."""
        if self._valid_starts is None:
            n_days = self.env.get_attr("n_days", indices=[0])[0]
            valid = []
            for i in range(n_days):
                try:
                    lo, hi = self.env.env_method("start_range", i, indices=[0])[0]
                except ValueError:
                    continue  # a day too short for an episode (an early close)
                valid.append((i, lo, hi))
            if not valid:
                raise ValueError(f"no day of the env is long enough for episodes of {self.n_steps} bars")
            self._valid_starts = valid
        options = []
        for _ in range(self.n_groups):
            day, lo, hi = self._valid_starts[int(self._start_rng.integers(len(self._valid_starts)))]
            start = int(self._start_rng.integers(lo, hi + 1))
            options.extend({"day": day, "start": start} for _ in range(self.group_size))
        return options

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """Run every env through one whole episode from its group's start."""
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        env.set_options(self.sample_group_starts())
        self._last_obs = env.reset()
        self._last_episode_starts = np.ones(env.num_envs, dtype=bool)
        callback.on_rollout_start()
        zeros = th.zeros(env.num_envs, 1)
        dones = np.zeros(env.num_envs, dtype=bool)
        for step in range(n_rollout_steps):
            with th.no_grad():
                actions, _, log_probs = self.policy(obs_as_tensor(self._last_obs, self.device))
            actions = actions.cpu().numpy()
            new_obs, rewards, dones, infos = env.step(actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            if dones.any() != (step == n_rollout_steps - 1) or (dones.any() and not dones.all()):
                raise RuntimeError(
                    f"GRPO needs every episode to last exactly {n_rollout_steps} steps; "
                    f"envs {np.flatnonzero(dones).tolist()} ended at step {step + 1}"
                )
            rollout_buffer.add(self._last_obs, actions, rewards, self._last_episode_starts, zeros, log_probs)
            self._last_obs = new_obs
            self._last_episode_starts = dones

        advantages, zero_spread = group_advantages(rollout_buffer.rewards, self.group_size, self.advantage)
        rollout_buffer.advantages[:] = advantages
        rollout_buffer.returns[:] = advantages
        returns = rollout_buffer.rewards.sum(axis=0).reshape(self.n_groups, self.group_size)
        self.logger.record("grpo/zero_spread_groups", float(zero_spread.mean()))
        self.logger.record("grpo/group_return_mean", float(returns.mean()))
        self.logger.record("grpo/group_return_std", float(returns.std(axis=1).mean()))
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    # ------------------------------------------------------------------ update
    def train(self) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        pg_losses, kl_refs, approx_kls, clip_fractions, entropies = [], [], [], [], []
        for _ in range(self.n_epochs):
            for data in self.rollout_buffer.get(self.batch_size):
                actions = data.actions.long().flatten()  # the buffer keeps them as (batch, 1) floats
                _, log_prob, entropy = self.policy.evaluate_actions(data.observations, actions)
                advantages = data.advantages  # group-relative already: no minibatch re-normalisation
                ratio = th.exp(log_prob - data.old_log_prob)
                surrogate = th.min(advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range))
                policy_loss = -surrogate.mean()
                with th.no_grad():
                    _, ref_log_prob, _ = self.ref_policy.evaluate_actions(data.observations, actions)
                log_ref_ratio = ref_log_prob - log_prob
                kl_ref = (th.exp(log_ref_ratio) - log_ref_ratio - 1.0).mean()
                entropy_mean = entropy.mean() if entropy is not None else -log_prob.mean()
                loss = policy_loss + self.kl_coef * kl_ref - self.ent_coef * entropy_mean

                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()

                with th.no_grad():
                    log_ratio = log_prob - data.old_log_prob
                    approx_kls.append(th.mean(th.exp(log_ratio) - 1 - log_ratio).item())
                pg_losses.append(policy_loss.item())
                kl_refs.append(kl_ref.item())
                clip_fractions.append(th.mean((th.abs(ratio - 1) > clip_range).float()).item())
                entropies.append(entropy_mean.item())
            self._n_updates += 1

        self._updates_since_ref += 1
        if self._updates_since_ref >= self.ref_update_interval:
            self.ref_policy.load_state_dict(self.policy.state_dict())
            self._updates_since_ref = 0

        self.logger.record("train/policy_gradient_loss", float(np.mean(pg_losses)))
        self.logger.record("train/kl_ref", float(np.mean(kl_refs)))
        self.logger.record("train/approx_kl", float(np.mean(approx_kls)))
        self.logger.record("train/clip_fraction", float(np.mean(clip_fractions)))
        self.logger.record("train/entropy", float(np.mean(entropies)))
        self.logger.record("train/loss", float(loss.item()))
        self.logger.record("train/clip_range", clip_range)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def learn(self, total_timesteps: int, callback=None, log_interval: int = 1, tb_log_name: str = "GRPO",
              reset_num_timesteps: bool = True, progress_bar: bool = False):
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)
