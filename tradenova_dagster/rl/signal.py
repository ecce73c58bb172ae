"""SignalModel: a trained categorical policy turned into one smoothed CALL / PUT / FLAT
signal per bar.

The policy outputs three logits (PUT, FLAT, CALL; ``rl.discrete``). A one-minute policy
flickers, and every flicker is a round trip through the option spread; so the logits
are smoothed with an exponential moving average,
``s_t = alpha × l_t + (1 − alpha) × s_{t−1}`` (``l_t`` the bar's log-probabilities),
restarted at each session's first bar (yesterday's mood says nothing about today's
open). The probabilities are the softmax of the smoothed logits, the **score** is
``P(call) − P(put)`` in [-1, 1], and the ±0.3 thresholds (``rules.DECISION_THRESHOLD``)
turn the score into the decision. Training samples from the same three-way
distribution, so what is trained, evaluated and traded is one policy; smoothing the
logits (not the score) keeps the smoothed signal a distribution of the same kind.

Evaluation, backtests and the live session all call this object, so the smoothed policy
is the one that is measured and the one that trades. Two ways to feed it:

- ``predict(obs, timestamp)`` with an observation built elsewhere (the env: evaluation);
- ``reset(day, context)`` then ``on_bar(bar, position)`` per bar (the session): it builds
  the observation from the bars seen so far only (:class:`FeatureBuilder`, whose rows are
  the env's, bit for bit).

A session asks once a bar, ~95,000 times in a replayed year, so the per-bar path is
kept cheap: the features are updated in O(1) and come as one float32 observation, a
plain MLP policy runs in numpy (:class:`~tradenova_dagster.rl.inference.NumpyActor`, the
torch log-probabilities to float32 rounding) instead of a torch forward pass with a
batch of one, and the rest is arithmetic on three Python floats.

Every prediction is a :class:`~tradenova_dagster.domain.Signal` (raw score, smoothed
score, the three smoothed probabilities, decision); with ``record=True`` they are kept
and ``flush_predictions`` writes them to DuckDB's ``rl_predictions`` (the metrics
tracker's table) in one transaction.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch as th

from tradenova_dagster.domain import Bar, Decision, Signal
from tradenova_dagster.rules import DECISION_THRESHOLD, direction_for
from tradenova_dagster.store import Store
from tradenova_dagster.rl import registry
from tradenova_dagster.rl.discrete import CALL, PUT, is_categorical
from tradenova_dagster.rl.features import FLAT, N_FEATURES, DayContext, FeatureBuilder, PositionState
from tradenova_dagster.rl.inference import NumpyActor

DEFAULT_ALPHA = 0.5


def log_probabilities(logits) -> tuple[float, float, float]:
    """Three logits (PUT, FLAT, CALL) normalised to log-probabilities: a log-softmax in
    float64 (three Python floats: cheaper per bar than numpy on three numbers)."""
    put, flat, call = (float(x) for x in logits)
    top = max(put, flat, call)
    put, flat, call = put - top, flat - top, call - top
    log_total = math.log(math.exp(put) + math.exp(flat) + math.exp(call))
    return put - log_total, flat - log_total, call - log_total


def probabilities(logits) -> tuple[float, float, float]:
    """The softmax of three logits (or log-probabilities): (P(put), P(flat), P(call))."""
    put, flat, call = logits
    top = max(put, flat, call)
    put, flat, call = math.exp(put - top), math.exp(flat - top), math.exp(call - top)
    total = put + flat + call
    return put / total, flat / total, call / total


def score(probs) -> float:
    """``P(call) − P(put)``: in [-1, 1], +1 a certain CALL, −1 a certain PUT."""
    return float(probs[CALL] - probs[PUT])


def smooth(previous: tuple | None, logits: tuple, alpha: float) -> tuple:
    """One EMA step on logits: ``alpha × logits + (1 − alpha) × previous`` (None: a new
    day, and ``logits`` itself comes back)."""
    if previous is None:
        return logits
    keep = 1.0 - alpha
    return tuple(alpha * x + keep * y for x, y in zip(logits, previous))


def _signal_time(timestamp) -> datetime:
    """The Signal's timestamp: a datetime as given (the session's bars), anything else
    through pandas, now (UTC) for None."""
    if timestamp is None:
        return datetime.now(timezone.utc)
    if type(timestamp) is datetime:
        return timestamp
    return pd.Timestamp(timestamp).to_pydatetime()


class SignalModel:
    """A categorical policy plus its frozen observation normalisation, with EMA smoothing.

    ``policy``: a stable-baselines3 algorithm (PPO, GRPO) or policy with the
    PUT / FLAT / CALL action space (``Discrete(3)``); ``vec_normalize``:
    the VecNormalize the model was trained with (its statistics are used frozen), or None.
    ``alpha`` in (0, 1]: 1 means no smoothing. ``train_window``: the first and last day
    it was trained on (from its meta.json when loaded): a day inside it is refused
    (``refuse_look_ahead``), since the model has already seen how that day went.

    ``fast``: run the actor in numpy (:class:`~tradenova_dagster.rl.inference.NumpyActor`,
    ~6x cheaper per bar than a torch forward pass with a batch of one) when the policy is
    a plain SB3 MLP; ``actor`` is then set, else None and the torch path runs. The numpy
    actor reads the policy's weights in place, so it follows in-place updates, but a layer
    *replaced* after construction is not seen: a SignalModel wraps a loaded checkpoint
    that is not trained again. The observation statistics are frozen here (copied once).
    """

    def __init__(
        self,
        policy,
        vec_normalize=None,
        *,
        alpha: float = DEFAULT_ALPHA,
        threshold: float = DECISION_THRESHOLD,
        symbol: str = "SPY",
        model_id: str = "",
        record: bool = False,
        on_prediction: Callable[[Signal], None] | None = None,
        train_window: tuple[date, date] | None = None,
        fast: bool = True,
    ):
        if not (math.isfinite(alpha) and 0.0 < alpha <= 1.0):
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
        self.policy = getattr(policy, "policy", policy)
        if not is_categorical(getattr(self.policy, "action_space", None)):
            raise ValueError(f"policy: action space {getattr(self.policy, 'action_space', None)} is not the "
                             "categorical PUT/FLAT/CALL policy (Discrete(3)) a SignalModel reads")
        self.policy.set_training_mode(False)
        self.vec_normalize = vec_normalize
        if vec_normalize is not None:
            vec_normalize.training = False
        self.alpha = float(alpha)
        self.threshold = float(threshold)
        self.symbol = symbol.upper()
        self.model_id = model_id
        self.train_window = train_window
        self.record = record
        self.on_prediction = on_prediction
        self.actor = NumpyActor.of(self.policy, vec_normalize) if fast else None
        self.predictions: list[Signal] = []
        self._smoothed: tuple[float, float, float] | None = None  # the EMA of the log-probabilities
        self._features: FeatureBuilder | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path, **kwargs) -> "SignalModel":
        """Load a model folder written by ``registry.save_model`` (model, stats, meta);
        ValueError for an old format version or a corrupt checkpoint (``registry.load_checkpoint``)."""
        path = Path(path)
        model, vec_normalize, meta = registry.load_checkpoint(path)
        kwargs.setdefault("symbol", meta.get("symbol", "SPY"))
        kwargs.setdefault("model_id", path.name)
        kwargs.setdefault("threshold", meta.get("env_config", {}).get("threshold", DECISION_THRESHOLD))
        days = sorted(date.fromisoformat(d) for d in meta.get("train_days", []))
        kwargs.setdefault("train_window", (days[0], days[-1]) if days else None)
        return cls(model, vec_normalize, **kwargs)

    @classmethod
    def from_record(cls, record: registry.ModelRecord, **kwargs) -> "SignalModel":
        return cls.load(record.path, **kwargs)

    @classmethod
    def promoted(
        cls, symbol: str = "SPY", account: str | None = None, store: Store | None = None, **kwargs
    ) -> "SignalModel":
        """The model promoted for ``account`` (or globally); ValueError if there is none."""
        record = registry.promoted_model(symbol, account, store)
        if record is None:
            raise ValueError(f"symbol: no model is promoted for {symbol} (account {account or registry.GLOBAL_ACCOUNT})")
        return cls.from_record(record, **kwargs)

    # ------------------------------------------------------------------ prediction
    def reset(self, day=None, context: Any = None) -> None:
        """Start a new session: forget the smoothing state and the bars seen.

        For ``on_bar``, give the ``day`` and its ``context`` (anything with ``vix`` and
        ``iv_rank``: a DayContext or market.context.MarketContext).
        """
        self._smoothed = None
        self._features = None
        if day is not None:
            if context is None:
                raise ValueError(f"context: the market context (vix, iv_rank) of {day} is needed, got None")
            ctx = context if isinstance(context, DayContext) else DayContext(float(context.vix), float(context.iv_rank))
            self._features = FeatureBuilder(day, ctx)

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """The policy's log-probabilities (PUT, FLAT, CALL) for one (unnormalised) observation."""
        return np.array(self._log_probabilities(obs))

    def _log_probabilities(self, obs: np.ndarray) -> tuple[float, float, float]:
        obs = np.asarray(obs, dtype=np.float32).reshape(-1)
        if obs.shape != (N_FEATURES,):
            raise ValueError(f"obs: expected {N_FEATURES} features, got shape {obs.shape}")
        return self._policy_log_probabilities(obs)

    def _policy_log_probabilities(self, obs: np.ndarray) -> tuple[float, float, float]:
        """The policy's log-probabilities for a float32 observation of shape ``(N_FEATURES,)``."""
        if self.actor is not None:
            return log_probabilities(self.actor(obs).tolist())
        if self.vec_normalize is not None:
            obs = self.vec_normalize.normalize_obs(obs).astype(np.float32)
        policy = self.policy
        with th.no_grad():  # the action layer's raw output; normalised in float64, not torch's float32
            features = policy.extract_features(th.as_tensor(obs[None]), policy.pi_features_extractor)
            logits = policy.action_net(policy.mlp_extractor.forward_actor(features))
        return log_probabilities(logits.numpy().reshape(-1).tolist())

    def raw_action(self, obs: np.ndarray) -> float:
        """The unsmoothed score ``P(call) − P(put)`` for one observation."""
        return score(probabilities(self._log_probabilities(obs)))

    def predict(self, obs: np.ndarray, timestamp: datetime | pd.Timestamp | None = None) -> Signal:
        """The signal for one observation: raw and smoothed score, probabilities, decision."""
        return self._signal(self._log_probabilities(obs), timestamp)

    def _signal(self, log_probs: tuple[float, float, float], timestamp) -> Signal:
        """Smooth the bar's log-probabilities into the signal (``predict``'s second half)."""
        self._smoothed = smooth(self._smoothed, log_probs, self.alpha)
        raw_probs = probabilities(log_probs)
        probs = raw_probs if self._smoothed is log_probs else probabilities(self._smoothed)
        smoothed = score(probs)
        signal = Signal(
            timestamp=_signal_time(timestamp),
            symbol=self.symbol,
            raw_action=score(raw_probs),
            smoothed_action=smoothed,
            decision=Decision.from_direction(direction_for(smoothed, self.threshold)),  # a NaN: refused by Signal
            model=self.model_id,
            p_put=probs[0],
            p_flat=probs[1],
            p_call=probs[2],
        )
        if self.record:
            self.predictions.append(signal)
        if self.on_prediction is not None:
            self.on_prediction(signal)
        return signal

    def on_bar(self, bar: Bar, position: PositionState = FLAT) -> Signal:
        """The signal after ``bar`` closed (call ``reset(day, context)`` at each session start)."""
        if self._features is None:
            raise RuntimeError("on_bar() before reset(day, context)")
        if bar.symbol != self.symbol:
            raise ValueError(f"bar.symbol: this model trades {self.symbol}, got {bar.symbol}")
        obs = self._features.observation(bar.timestamp, bar.open, bar.close, position)
        return self._signal(self._policy_log_probabilities(obs), bar.timestamp)

    def flush_predictions(self, store: Store, account: str, run_id: str | None = None) -> int:
        """Write the recorded predictions to ``rl_predictions`` through the metrics tracker
        (one transaction, the table the session and the daily report use); returns the count."""
        from tradenova_dagster.metrics import MetricsTracker

        if not account:
            raise ValueError(f"account: expected a non-empty account name, got {account!r}")
        tracker = MetricsTracker(store=store, account=account, run_id=run_id)
        with tracker.batch():
            for signal in self.predictions:
                tracker.log_signal(signal)
        count = len(self.predictions)
        self.predictions.clear()
        return count

