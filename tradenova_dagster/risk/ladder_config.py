"""The ladder's numbers (DESIGN.md §4), defined once: the take-profit levels, the stop loss
and the trailing stop, as ``LadderConfig``. ``profit.py`` explains what they mean; the
RL environment, the risk resource and the session import them from here."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from tradenova_dagster.domain import require_finite

STOP = "STOP"
TRAIL = "TRAIL"


@dataclass(frozen=True)
class TakeProfitLevel:
    name: str
    gain_pct: float  # 0.40 = +40% on the entry price
    sell_fraction: float  # of what remains when the level fires; 1.0 = all

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or self.name in (STOP, TRAIL):
            raise ValueError(f"take-profit level name must be a non-empty string other than STOP/TRAIL, got {self.name!r}")
        gain = require_finite(f"{self.name}.gain_pct", self.gain_pct)
        if gain <= 0:
            raise ValueError(f"{self.name}.gain_pct must be > 0 (a profit), got {gain!r}")
        fraction = require_finite(f"{self.name}.sell_fraction", self.sell_fraction)
        if not 0 < fraction <= 1:
            raise ValueError(f"{self.name}.sell_fraction must be in (0, 1], got {fraction!r}")
        object.__setattr__(self, "gain_pct", gain)
        object.__setattr__(self, "sell_fraction", fraction)

    def sell_qty(self, remaining: int) -> int:
        """ceil(sell_fraction x remaining), exactly, and never more than remaining."""
        f = Fraction(self.sell_fraction).limit_denominator(1_000_000)
        return min(remaining, -(-remaining * f.numerator // f.denominator))


DEFAULT_LEVELS = (
    TakeProfitLevel("TP1", 0.40, 0.50),
    TakeProfitLevel("TP2", 0.60, 0.20),
    TakeProfitLevel("TP3", 1.00, 0.10),
    TakeProfitLevel("TP4", 1.50, 0.10),
    TakeProfitLevel("TP5", 2.00, 1.00),
)


@dataclass(frozen=True)
class LadderConfig:
    levels: tuple[TakeProfitLevel, ...] = DEFAULT_LEVELS
    stop_loss_pct: float = 0.15
    trail_arm_pct: float = 1.50
    trail_floor_pct: float = 1.00
    trail_pct: float = 0.20

    def __post_init__(self) -> None:
        levels = tuple(self.levels)
        if not levels or not all(isinstance(lv, TakeProfitLevel) for lv in levels):
            raise ValueError(f"levels must be a non-empty sequence of TakeProfitLevel, got {self.levels!r}")
        names = [lv.name for lv in levels]
        if len(set(names)) != len(names):
            raise ValueError(f"take-profit level names must be unique, got {names}")
        gains = [lv.gain_pct for lv in levels]
        if any(b <= a for a, b in zip(gains, gains[1:])):
            raise ValueError(f"take-profit gains must be strictly increasing, got {gains}")
        object.__setattr__(self, "levels", levels)
        stop = require_finite("stop_loss_pct", self.stop_loss_pct)
        if not 0 < stop < 1:
            raise ValueError(f"stop_loss_pct must be in (0, 1), e.g. 0.15 for -15%, got {stop!r}")
        trail = require_finite("trail_pct", self.trail_pct)
        if not 0 < trail < 1:
            raise ValueError(f"trail_pct must be in (0, 1), e.g. 0.20 for 20% below the best price, got {trail!r}")
        arm = require_finite("trail_arm_pct", self.trail_arm_pct)
        if arm <= 0:
            raise ValueError(f"trail_arm_pct must be > 0, got {arm!r}")
        floor = require_finite("trail_floor_pct", self.trail_floor_pct)
        if not 0 <= floor <= arm:
            raise ValueError(
                f"trail_floor_pct must be in [0, trail_arm_pct={arm!r}] (a trail cannot lock more than the "
                f"gain that arms it), got {floor!r}"
            )
        for name, value in (("stop_loss_pct", stop), ("trail_pct", trail), ("trail_arm_pct", arm),
                            ("trail_floor_pct", floor)):
            object.__setattr__(self, name, value)
