"""The TradingEnv's settings: the contract it trades, the capital that scales its reward,
the episode's length, the market model that prices it, and the reward's weights.

Kept apart from the env so that what a model was trained with can be saved beside it
(``EnvConfig.as_dict``) and read back by later versions (``EnvConfig.from_dict``, which
ignores fields that older versions wrote and this one no longer has). Every field is
checked on construction; a bad one is a ValueError naming it and its value. What the
reward terms mean is in :mod:`tradenova_dagster.rl.day_pricing`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from tradenova_dagster import rules
from tradenova_dagster.market.chain import DEFAULT_MODEL, OptionMarketModel


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the reward terms (see the module docstring); all >= 0, 0 switches one off.

    ``pnl`` scales the ledger's P&L; the others weight potential-based shaping terms, so
    none of them changes the optimal policy. ``gamma`` is the discount of the shaping
    (``F = γΦ(s') − Φ(s)``): the agent's own discount (PPO's 0.99, GRPO's 1.0).
    """

    pnl: float = 1.0
    direction: float = 0.02
    whipsaw: float = 0.05
    early_exit: float = 0.1
    theta: float = 0.5
    gamma: float = 0.99

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"reward weight {name} must be finite and >= 0, got {value!r}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"reward weight gamma must be in (0, 1], got {self.gamma!r}")


# Fields of configs saved by older versions, ignored on load: the environment now prices
# with the market model (``market``) that SimBroker uses, and the whipsaw term is a real
# cost plus a potential, with no window.
_OBSOLETE = ("flatten_bars", "iv_scale", "rate", "spread_pct", "min_spread")
_OBSOLETE_REWARDS = ("whipsaw_bars",)


@dataclass(frozen=True)
class EnvConfig:
    threshold: float = rules.DECISION_THRESHOLD
    contracts: int = 1
    expiry_days: int = rules.EXPIRY_SESSIONS
    strike_step: float = rules.STRIKE_STEP
    commission: float = rules.OPTION_COMMISSION_PER_CONTRACT
    capital: float = 10_000.0
    reward_scale: float | None = None  # dollars per reward unit; None = 1% of capital
    episode_bars: int | None = None  # None = from the start bar to the flatten bar
    random_start: bool = False  # with episode_bars: a reset without "start" picks one at random
    rewards: RewardWeights = field(default_factory=RewardWeights)
    market: OptionMarketModel = DEFAULT_MODEL

    def __post_init__(self) -> None:
        checks = {
            "threshold": 0 <= self.threshold < 1,
            "contracts": self.contracts >= 1,
            "expiry_days": self.expiry_days >= 0,
            "strike_step": self.strike_step > 0,
            "commission": self.commission >= 0,
            "capital": self.capital > 0,
            "reward_scale": self.reward_scale is None or self.reward_scale > 0,
            "episode_bars": self.episode_bars is None or self.episode_bars >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"EnvConfig.{name}: invalid value {getattr(self, name)!r}")
        if isinstance(self.rewards, dict):
            object.__setattr__(self, "rewards", RewardWeights(**self.rewards))
        if isinstance(self.market, dict):
            object.__setattr__(self, "market", OptionMarketModel(**self.market))
        if not isinstance(self.market, OptionMarketModel):
            raise ValueError(f"EnvConfig.market: expected an OptionMarketModel, got {self.market!r}")

    @property
    def scale(self) -> float:
        return self.reward_scale if self.reward_scale is not None else self.capital * 0.01

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "EnvConfig":
        values = {k: v for k, v in (values or {}).items() if k not in _OBSOLETE}
        if isinstance(values.get("rewards"), dict):
            values["rewards"] = RewardWeights(**{k: v for k, v in values["rewards"].items()
                                                 if k not in _OBSOLETE_REWARDS})
        return cls(**values)
