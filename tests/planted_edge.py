"""A market with a planted, learnable edge (issue 14, item 6), and an oracle that trades it.

Every 30 minutes from the open a **marker bar** moves ``MARKER_SIGMAS`` minute-sigmas up
or down — the feature, visible to the policy as ``ret_0`` (the last bar's return,
``rl.features``). Over the next ``BLOCK`` bars the price moves ``jump`` minute-sigmas in
the marker's direction with probability ``p`` (0.65), against it otherwise — in one bar
``JUMP_AT`` bars after the marker — on top of quiet Gaussian noise of ``noise``
minute-sigmas a bar. So the sign of the last bar's return, on a marker bar, predicts the
next 30 minutes with probability 0.65.

Why a jump, not a steady drift: the session's risk rules cut a loser at -15% and take
profit at +40%, so in a market that trends steadily for 30 minutes *any* direction pays
(losers are cut early, winners run). A jump gaps through both. Known limit (measured, see
the report that introduced this file): a jump of 8 sigma adds more variance than the VIX
the options are priced at implies, so long options earn on volatility whatever their
direction, and the oracle on the *shuffled* days profits too; a smaller jump (~5.5) keeps
realised variance at the implied level but leaves p = 0.65 too weak to show a significant
edge through the session loop in under ~10 days. This market is not yet calibrated for the
learnability test; the tests here pin down what it does plant.

``shuffled=True`` gives the same days — the same noise, the same jumps, the same
marker sizes — with the marker signs permuted across the day's blocks: the feature no
longer says anything about what follows (the null the gate must reject).

The bars are seeded by (seed, day), so a day is the same in any process. VIX, daily bars
and the market context come from the ordinary synthetic source (the features scale
returns by the context's VIX, the bars are drawn with the same volatility).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from tradenova_dagster.domain import Bar, Decision, Signal
from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import finish_bars, normalise_request
from tradenova_dagster.market.synthetic import SyntheticMarketData
from tradenova_dagster.rl.features import minute_sigma

BLOCK = 30  # bars a marker predicts, and the spacing of the markers
MARKER_SIGMAS = 6.0
JUMP_AT = BLOCK // 2  # bars after the marker
PRICE = 600.0


class PlantedEdgeSource(SyntheticMarketData):
    """Synthetic minute bars with the planted edge above (``shuffled``: the null)."""

    def __init__(self, p: float = 0.65, jump: float = 8.0, noise: float = 0.3, seed: int = 0, shuffled: bool = False):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        if jump < 0:
            raise ValueError(f"jump must be >= 0 minute-sigmas, got {jump!r}")
        if not noise > 0:
            raise ValueError(f"noise must be > 0 minute-sigmas, got {noise!r}")
        self.p, self.jump, self.noise = float(p), float(jump), float(noise)
        self.seed, self.shuffled = int(seed), bool(shuffled)
        self.name = f"planted-p{p:g}-j{jump:g}-n{noise:g}-s{seed}" + ("-shuffled" if shuffled else "")

    def sigma(self, day) -> float:
        """The minute sigma implied by the VIX the session prices options with (the previous
        session's close): bars drawn at the implied volatility, so that a long option gains
        nothing from volatility alone — only a right direction pays its costs."""
        return minute_sigma(self.vix(calendar.previous_session(day)))

    def bars(self, symbol: str, day) -> pd.DataFrame:
        symbol, day = normalise_request(symbol, day)
        digest = hashlib.sha256(f"{self.seed}:{symbol}:{day}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        starts = calendar.session_bar_starts(day)
        n = len(starts)
        markers = np.arange(BLOCK, n - BLOCK, BLOCK)  # after the opening half hour, a full block after each
        signs = rng.choice([-1.0, 1.0], size=len(markers))
        follows = rng.random(len(markers)) < self.p
        noise = self.noise * rng.standard_normal(n)
        shuffle = rng.permutation(len(markers))  # drawn either way: both variants share every other draw
        returns = noise.copy()
        for k, bar in enumerate(markers):
            direction = signs[k] if follows[k] else -signs[k]
            returns[bar + JUMP_AT] += self.jump * direction
        shown = signs[shuffle] if self.shuffled else signs
        returns[markers] = MARKER_SIGMAS * shown
        closes = PRICE * np.exp(np.cumsum(self.sigma(day) * returns))
        opens = np.concatenate([[PRICE], closes[:-1]])
        bars = pd.DataFrame({
            "timestamp": starts, "open": opens, "high": np.maximum(opens, closes) * 1.0001,
            "low": np.minimum(opens, closes) * 0.9999, "close": closes, "volume": 10_000.0,
        })
        return finish_bars(bars)


class MarkerOracle:
    """Knows the rule: on a marker bar (every ``BLOCK`` bars from the open) it wants the
    direction of the marker's move for the next ``BLOCK`` bars — once per marker: when the
    position it took is closed (a stop, the ladder), it waits for the next marker instead
    of buying again. A strategy for the session loop (``reset`` / ``on_bar``), like
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
            self._held, self._left, self._entered = (Decision.BUY_CALL if up else Decision.BUY_PUT), BLOCK, False
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
