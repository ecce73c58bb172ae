"""Strategies a backtest (or an evaluation) can trade: the model, and baselines that need none.

A strategy is anything the session loop can ask for a decision each bar: ``reset(day,
context)`` at the start of a day, ``on_bar(bar, position) -> Signal``, and a
``model_id`` naming it in the records. The baselines are what a model must beat to be
worth trading (issue 14's gate compares against the same ones), so they go through the
very same session loop, risk rules, ladder and costs:

- ``flat``: never enters (the cost of doing nothing is nothing);
- ``always-call`` / ``always-put``: wants a call (a put) on every bar;
- ``random``: PUT, FLAT or CALL drawn uniformly on every bar, seeded by (seed, day), so a
  rerun repeats it and every day differs;
- ``momentum``: the sign of the last 30 minutes' move (FLAT until 30 bars are in);
- ``orb``: opening-range breakout: the first 30 minutes set a range; a close above it
  wants a call, below it a put, and the last break holds until the opposite one;
- ``model``: the trained policy (``SignalModel``): a file, or the promoted model; never on
  a day inside its own training window (``refuse_look_ahead``).

Each baseline's Signal carries its score (P(call) − P(put)) and its probabilities, as the
categorical models' do: one-hot for the rule-based ones, uniform for ``random``.
"""

from __future__ import annotations

import hashlib
from collections import deque
from datetime import date

import numpy as np

from tradenova_dagster.domain import Bar, Decision, Signal

BASELINES = ("flat", "always-call", "always-put", "random", "momentum", "orb")
STRATEGIES = BASELINES + ("model",)
LOOKBACK_BARS = 30  # momentum's window and the opening range, in one-minute bars

_ONE_HOT = {Decision.BUY_PUT: (1.0, 0.0, 0.0), Decision.FLAT: (0.0, 1.0, 0.0), Decision.BUY_CALL: (0.0, 0.0, 1.0)}
_SCORE = {Decision.BUY_PUT: -1.0, Decision.FLAT: 0.0, Decision.BUY_CALL: 1.0}


def require_strategy(name: str, field: str = "strategy") -> str:
    """The strategy's name, or a ValueError naming the field, the value and the choices."""
    if name not in STRATEGIES:
        raise ValueError(f"{field}: unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    return name


class Baseline:
    """A rule that decides from the bars of the day so far (see the module docstring)."""

    def __init__(self, name: str, seed: int = 0):
        if require_strategy(name) == "model":
            raise ValueError("strategy: 'model' is not a baseline; load it with build_strategy")
        self.name = name
        self.seed = int(seed)
        self.model_id = f"baseline:{name}" + (f":{self.seed}" if name == "random" else "")
        self.reset()

    def reset(self, day=None, context=None) -> None:
        """A new day: nothing seen yet (yesterday's bars say nothing about today's rule)."""
        self._closes: deque[float] = deque(maxlen=LOOKBACK_BARS + 1)
        self._range_bars = 0  # bars of the opening range seen
        self._high = self._low = None  # the opening range
        self._held = Decision.FLAT
        day_key = str(day) if day is not None else ""
        digest = hashlib.sha256(f"{self.seed}:{day_key}".encode()).digest()
        self._rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def on_bar(self, bar: Bar, position=None) -> Signal:
        decision = self._decide(bar)
        if self.name == "random":
            probabilities, score = (1 / 3, 1 / 3, 1 / 3), 0.0
        else:
            probabilities, score = _ONE_HOT[decision], _SCORE[decision]
        return Signal(bar.timestamp, bar.symbol, score, score, decision, self.model_id, *probabilities)

    def _decide(self, bar: Bar) -> Decision:
        self._closes.append(bar.close)
        if self.name == "flat":
            return Decision.FLAT
        if self.name == "always-call":
            return Decision.BUY_CALL
        if self.name == "always-put":
            return Decision.BUY_PUT
        if self.name == "random":
            return (Decision.BUY_PUT, Decision.FLAT, Decision.BUY_CALL)[int(self._rng.integers(3))]
        if self.name == "momentum":
            if len(self._closes) <= LOOKBACK_BARS:
                return Decision.FLAT
            move = self._closes[-1] - self._closes[0]
            return Decision.BUY_CALL if move > 0 else (Decision.BUY_PUT if move < 0 else Decision.FLAT)
        return self._breakout(bar)

    def _breakout(self, bar: Bar) -> Decision:
        if self._range_bars < LOOKBACK_BARS:  # still inside the opening range
            self._range_bars += 1
            self._high = bar.high if self._high is None else max(self._high, bar.high)
            self._low = bar.low if self._low is None else min(self._low, bar.low)
            return Decision.FLAT
        if bar.close > self._high:
            self._held = Decision.BUY_CALL
        elif bar.close < self._low:
            self._held = Decision.BUY_PUT
        return self._held


class NoTradableModel(Baseline):
    """What a session trades when no model may trade (none promoted, the promoted one failed
    the gate since, or its checkpoint does not load): FLAT all day, with the ``reason``.
    Failing closed this way still runs the session, so positions already held are adopted,
    their exits managed and the account flattened, which a session that refused to start
    could not do."""

    def __init__(self, reason: str):
        super().__init__("flat")
        self.reason = reason
        self.model_id = "flat:no-tradable-model"


def build_strategy(name: str, *, seed: int = 0, model_path: str = "", store=None, symbol: str = "SPY"):
    """The strategy called ``name``: a Baseline, or the model (``model_path``, else the
    promoted one; a ValueError that says how to get one when there is none)."""
    if require_strategy(name) != "model":
        return Baseline(name, seed)
    from tradenova_dagster.rl import SignalModel

    try:
        return SignalModel.load(model_path) if model_path else SignalModel.promoted(symbol, store=store)
    except ValueError as exc:
        raise ValueError(f"{exc}: train and promote one (tradenova train --agent ppo --promote), pass a model "
                         f"file, or backtest a baseline that needs none ({', '.join(BASELINES)})") from None


def refuse_look_ahead(signal, first: date, last: date | None = None) -> None:
    """A ValueError if a model was trained on any day of ``first``..``last`` (one day when
    ``last`` is None), naming both ranges: trading or evaluating a day the model has already
    seen is look-ahead, and its results would be worthless. Signals without a training
    window (the baselines) pass."""
    window = getattr(signal, "train_window", None)
    last = last or first
    if window is None or last < window[0] or first > window[1]:
        return
    asked = f"{first}" if first == last else f"{first} .. {last}"
    raise ValueError(f"model {getattr(signal, 'model_id', '') or '(unnamed)'} was trained on {window[0]} .. "
                     f"{window[1]}, which includes {asked}: that is look-ahead; pick days after {window[1]} "
                     "or a model trained before them")
