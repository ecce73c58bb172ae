"""A market with a planted, learnable edge (issue 14, item 6), and an oracle that trades it.

Every 30 minutes from the open a **marker bar** moves ``marker`` sigmas up or down — the
feature, visible to the policy as ``ret_0`` (the last bar's return, ``rl.features``).
``JUMP_AT`` bars later (while the marker is still in the policy's return window) the
price **jumps** ``jump`` sigmas in the marker's direction with probability ``p`` (0.65),
against it otherwise, on top of quiet Gaussian noise. So the sign of a marker bar's
return predicts the next 30 minutes with probability 0.65.

**Calibration: realised variance = priced variance.** The unit "sigma" is the one-minute
volatility the session's options are priced at (:func:`priced_sigma`: the model's
at-the-money implied volatility, ``MarketModel.atm_iv``, of the contract a decision buys,
two sessions out, at mid-session — about 0.69 × the VIX-implied figure). Each 30-bar block
carries exactly 30 such minute-variances: ``marker² + jump² + 29 × noise²`` (the marker
bar has no noise), so ``noise`` is what is left once ``jump`` and ``marker`` are chosen
(4.7 and 2.5 give 0.24). A long option therefore earns, on average, what its theta costs
— its price is fair — and only the direction can pay the spread and fees: the oracle on
the *shuffled* days loses. (An earlier version drew an 8-sigma jump on top of the full
VIX volatility, four times the priced variance: every long option profited, whatever
its direction, and the shuffled oracle passed the gate.) The first and last half hours
hold no marker: they carry less variance than is priced, which only costs a holder.

Why a jump, not a steady drift: the session's risk rules cut a loser at -15% and take
profit at +40%, so in a market that trends steadily for 30 minutes *any* direction pays
(losers are cut early, winners run). A jump gaps through both. Why the jump 5 bars after
the marker: the policy still sees the marker in its 10 returns when it has to hold
through the jump, and little noise comes before it to trip the -15% stop.

How strong the edge is: a trade wins or loses about the same (the jump times the
option's delta), so its Sharpe ratio is at most 2p − 1 = 0.3, less the costs, and the
session's rule that three losing trades in a row end the day trims the 11 markers a day.
Measured (1 contract, $100k): in the training env over 100 days the oracle makes
+$157 ± 19 a day and the same rule on the shuffled days −$27 ± 22; through the session
loop over ``EVAL_DAYS`` (12 days) the oracle makes +$135 a day (IQM +115, CI low +37,
10.6 trades a day) and the shuffled oracle +$58 (IQM +49, CI low −44, 9.8 trades a day:
a noisy sample of a negative mean). A real but small edge: it takes ~12 days to show
for the oracle, more for an agent that learnt part of it.

``shuffled=True`` gives the same days — the same noise, the same jumps, the same
marker sizes — with the marker signs permuted across the day's blocks: the feature no
longer says anything about what follows (the null the gate must reject).

The bars are seeded by (seed, day), so a day is the same in any process. VIX, daily bars
and the market context come from the ordinary synthetic source.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

from tradenova_dagster.domain import Bar, Decision, Signal
from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import finish_bars, normalise_request
from tradenova_dagster.market.synthetic import SyntheticMarketData

BLOCK = 30  # bars a marker predicts, and the spacing of the markers
JUMP_AT = 5  # bars after the marker: while the marker is still in the return window
PRICE = 600.0
HOLD = JUMP_AT + 1  # bars the oracle wants its position after the marker bar


def priced_sigma(vix: float, day) -> float:
    """The one-minute volatility the session's options are priced at on ``day``: the
    at-the-money implied volatility (``market.model.MarketModel.atm_iv``) of the contract a
    decision buys (``rules.expiry_for``: ``EXPIRY_SESSIONS`` sessions out), at mid-session,
    on the trading-minute clock."""
    from tradenova_dagster import rules
    from tradenova_dagster.market.model import MarketModel, full_session_minutes_after
    from tradenova_dagster.market.options import MINUTES_PER_YEAR

    t = (calendar.session_minutes(day) / 2 + full_session_minutes_after(day, rules.expiry_for(day))) / MINUTES_PER_YEAR
    return float(MarketModel().atm_iv(vix, t)) / math.sqrt(MINUTES_PER_YEAR)


class PlantedEdgeSource(SyntheticMarketData):
    """Synthetic minute bars with the planted edge above (``shuffled``: the null)."""

    def __init__(self, p: float = 0.65, jump: float = 4.7, marker: float = 2.5, seed: int = 0,
                 shuffled: bool = False):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        if not jump >= 0:
            raise ValueError(f"jump must be >= 0 priced minute-sigmas, got {jump!r}")
        if not marker > 0:
            raise ValueError(f"marker must be > 0 priced minute-sigmas, got {marker!r}")
        quiet = BLOCK - jump * jump - marker * marker  # the block's variance left for the noise
        if not quiet > 0:
            raise ValueError(f"jump must leave variance for the noise: jump^2 + marker^2 = {jump * jump + marker * marker:g}"
                             f" >= {BLOCK}, a {BLOCK}-bar block's priced variance (jump {jump!r}, marker {marker!r})")
        self.p, self.jump, self.marker = float(p), float(jump), float(marker)
        self.noise = math.sqrt(quiet / (BLOCK - 1))  # the marker bar carries no noise
        self.seed, self.shuffled = int(seed), bool(shuffled)
        self.name = f"planted-p{p:g}-j{jump:g}-m{marker:g}-s{seed}" + ("-shuffled" if shuffled else "")

    def sigma(self, day) -> float:
        """The unit of the bars' returns: the minute volatility the session prices the
        options it buys at (:func:`priced_sigma`, at the VIX of the previous session's close
        that the session uses), so that a block's realised variance is what was paid for."""
        return priced_sigma(self.vix(calendar.previous_session(day)), day)

    def bars(self, symbol: str, day) -> pd.DataFrame:
        symbol, day = normalise_request(symbol, day)
        digest = hashlib.sha256(f"{self.seed}:{symbol}:{day}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        starts = calendar.session_bar_starts(day)
        n = len(starts)
        markers = np.arange(BLOCK, n - BLOCK, BLOCK)  # after the opening half hour, a full block after each
        signs = rng.choice([-1.0, 1.0], size=len(markers))
        follows = rng.random(len(markers)) < self.p
        returns = self.noise * rng.standard_normal(n)
        shuffle = rng.permutation(len(markers))  # drawn either way: both variants share every other draw
        for k, bar in enumerate(markers):
            direction = signs[k] if follows[k] else -signs[k]
            returns[bar + JUMP_AT] += self.jump * direction
        shown = signs[shuffle] if self.shuffled else signs
        returns[markers] = self.marker * shown
        closes = PRICE * np.exp(np.cumsum(self.sigma(day) * returns))
        opens = np.concatenate([[PRICE], closes[:-1]])
        bars = pd.DataFrame({
            "timestamp": starts, "open": opens, "high": np.maximum(opens, closes) * 1.0001,
            "low": np.minimum(opens, closes) * 0.9999, "close": closes, "volume": 10_000.0,
        })
        return finish_bars(bars)


class MarkerOracle:
    """Knows the rule: on a marker bar (every ``BLOCK`` bars from the open) it wants the
    direction of the marker's move until just after the jump (``HOLD`` bars: the entry
    fills on the bar after the marker, the jump is ``JUMP_AT`` bars after it, the exit
    fills on the bar after that), then FLAT: holding longer would pay theta for quiet
    minutes. Once per marker: when the position it took is closed (a stop, the ladder),
    it waits for the next marker instead of buying again. A strategy for the session loop (``reset`` / ``on_bar``), like
    ``strategies.Baseline``."""

    model_id = "oracle:marker"

    def reset(self, day=None, context=None) -> None:
        self._previous: float | None = None
        self._bar = -1
        self._held, self._left, self._entered = Decision.FLAT, 0, False

    def on_bar(self, bar: Bar, position=None) -> Signal:
        previous = self._previous if self._previous is not None else bar.open
        self._previous, self._bar = bar.close, self._bar + 1
        holding = position is not None and position.direction != 0
        if self._bar >= BLOCK and self._bar % BLOCK == 0:
            up = bar.close > previous
            self._held, self._left, self._entered = (Decision.BUY_CALL if up else Decision.BUY_PUT), HOLD, False
        elif self._left > 0:
            self._left -= 1
            if self._entered and not holding:  # closed by a rule: done with this marker
                self._left = 0
        self._entered = self._entered or holding
        if self._left == 0:
            self._held = Decision.FLAT
        return _signal(bar, self._held, self.model_id)


def _signal(bar: Bar, decision: Decision, model_id: str) -> Signal:
    score = {Decision.BUY_PUT: -1.0, Decision.FLAT: 0.0, Decision.BUY_CALL: 1.0}[decision]
    probabilities = {Decision.BUY_PUT: (1.0, 0.0, 0.0), Decision.FLAT: (0.0, 1.0, 0.0),
                     Decision.BUY_CALL: (0.0, 0.0, 1.0)}[decision]
    return Signal(bar.timestamp, bar.symbol, score, score, decision, model_id, *probabilities)


def full_days(start: str, n: int) -> list:
    """``n`` consecutive full (390-minute) sessions from ``start``."""
    return [d for d in calendar.trading_days(start, "2026-12-31") if calendar.session_minutes(d) == 390][:n]


TRAIN_DAYS = full_days("2025-06-02", 100)  # training: any VIX (the env has no entry rules)
EVAL_DAYS = full_days("2026-08-26", 12)  # held out, after every training day; VIX 14-22 (below the 32 that stops entries)
_BASELINES: dict = {}


def planted_baselines(store, days=EVAL_DAYS) -> dict:
    """Every baseline of ``strategies.BASELINES`` replayed through the session loop over
    ``days`` of the planted market — once per test process (they are the same numbers for
    the oracle and each agent, and a day's replay costs about 1.5 s of CPU)."""
    from tradenova_dagster.rl.evaluate import replay_baselines

    key = tuple(days)
    if key not in _BASELINES:
        _BASELINES[key] = replay_baselines(store, PlantedEdgeSource(), list(days), "planted")
    return _BASELINES[key]
