"""The promotion gate: a model is traded only if its edge survives costs and beats doing
something simple (issue 14, item 5).

Inputs are daily after-cost P&L — one number per evaluation day — from replaying the
held-out days through the real session loop on SimBroker (``rl.evaluate.evaluate_replay``)
for the model and for every baseline. A model is promotable only if BOTH:

1. **its edge is distinguishable from zero**: the lower bound of the 95% bootstrap
   confidence interval of its mean daily P&L is above 0 (``scipy.stats.bootstrap``,
   percentile method, 2000 resamples, a fixed seed so a verdict is reproducible; the
   percentile method because BCa is undefined when every day is the same, as for a model
   that never trades). Fewer than two days give no interval, so no promotion;
2. **it beats every baseline**: its IQM (interquartile mean, the mean of the middle half
   of the days — one lucky day cannot carry it; Agarwal et al. 2021) is strictly above
   every baseline's IQM (a tie with ``flat`` is no edge).

``gate`` is a pure function of those numbers, so a test can call it directly, and its
reason names each failed condition with the numbers behind it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def _daily(values, name: str) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{name}: expected a non-empty list of daily P&L, got {list(values)!r}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: daily P&L must be finite numbers, got {array.tolist()!r}")
    return array


def iqm(values, axis=-1):
    """The interquartile mean: scipy's 25% trimmed mean (the middle half of the values);
    ``axis`` lets ``scipy.stats.bootstrap`` call it on many resamples at once."""
    from scipy import stats  # here, not at import: scipy.stats is 0.6 s of every process loading the definitions

    return stats.trim_mean(np.asarray(values, dtype=float), 0.25, axis=axis)


def bootstrap_ci(values, statistic) -> tuple[float, float]:
    """The 95% percentile-bootstrap CI of ``statistic`` (vectorised, ``axis``-aware: np.mean,
    ``iqm``) over ``values``, seeded so that a verdict is reproducible; NaN, NaN with fewer
    than two values. The percentile method because BCa is undefined when every value is
    the same (a model or baseline that never trades): then the interval is that point."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    from scipy import stats

    result = stats.bootstrap((values,), statistic, confidence_level=CONFIDENCE, n_resamples=BOOTSTRAP_RESAMPLES,
                             method="percentile", vectorized=True, rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def mean_ci(values) -> tuple[float, float]:
    """The 95% bootstrap CI of the mean of ``values`` (``bootstrap_ci``)."""
    return bootstrap_ci(values, np.mean)


@dataclass(frozen=True)
class Verdict:
    """The gate's decision and every number it was taken on."""

    promotable: bool
    reason: str
    days: int
    mean: float
    iqm: float
    ci_low: float
    ci_high: float
    baseline_iqm: dict[str, float] = field(default_factory=dict)
    failed: tuple[str, ...] = ()  # "ci_low", "iqm": the conditions that failed

    def as_dict(self) -> dict:
        return {"promotable": self.promotable, "reason": self.reason, "days": self.days, "mean": self.mean,
                "iqm": self.iqm, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "baseline_iqm": dict(self.baseline_iqm), "failed": list(self.failed)}


def gate(model_daily_pnl: Sequence[float], baseline_daily_pnl: Mapping[str, Sequence[float]]) -> Verdict:
    """Promotable iff the CI low of the model's mean daily P&L is > 0 and its IQM beats every
    baseline's IQM (module docstring). ``baseline_daily_pnl``: name → daily P&L over the
    same days; at least one baseline (a gate with nothing to beat proves nothing)."""
    model = _daily(model_daily_pnl, "model_daily_pnl")
    if not baseline_daily_pnl:
        raise ValueError("baseline_daily_pnl: need at least one baseline to beat (e.g. flat), got none")
    baselines = {name: _daily(pnl, f"baseline_daily_pnl[{name!r}]") for name, pnl in baseline_daily_pnl.items()}
    for name, pnl in baselines.items():
        if len(pnl) != len(model):
            raise ValueError(f"baseline_daily_pnl[{name!r}]: {len(pnl)} days, but the model has {len(model)}; "
                             "every agent must be replayed over the same days")
    low, high = mean_ci(model)
    model_iqm = float(iqm(model))
    baseline_iqm = {name: float(iqm(pnl)) for name, pnl in baselines.items()}
    failed, reasons = [], []
    ci_text = f"95% bootstrap CI of mean daily P&L [{low:+.2f}, {high:+.2f}] over {len(model)} days"
    if math.isnan(low):
        failed.append("ci_low")
        reasons.append(f"no CI: {len(model)} evaluation day(s), need at least 2")
    elif low <= 0.0:
        failed.append("ci_low")
        reasons.append(f"CI low {low:+.2f} <= 0 ({ci_text})")
    beaten_by = {name: value for name, value in baseline_iqm.items() if not model_iqm > value}
    if beaten_by:
        failed.append("iqm")
        reasons.append(f"IQM {model_iqm:+.2f} does not beat " +
                       ", ".join(f"{name} {value:+.2f}" for name, value in sorted(beaten_by.items())))
    if failed:
        reason = "not promotable: " + "; ".join(reasons)
    else:
        best = max(baseline_iqm, key=baseline_iqm.get)
        reason = (f"promotable: CI low {low:+.2f} > 0 ({ci_text}) and IQM {model_iqm:+.2f} beats every baseline "
                  f"(best {best} {baseline_iqm[best]:+.2f})")
    return Verdict(not failed, reason, len(model), float(model.mean()), model_iqm, low, high, baseline_iqm,
                   tuple(failed))
