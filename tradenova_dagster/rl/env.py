"""TradingEnv: one trading session of 1-minute bars, trading short-dated ATM SPY options.

The contract model (every number is a field of :class:`EnvConfig`):

- **Decision.** The action is one number in [-1, 1]; above ``threshold`` (0.3,
  ``rules.DECISION_THRESHOLD``) the agent wants a CALL, below ``-threshold`` a PUT,
  otherwise FLAT (``rules.direction_for``, the comparison behind ``Decision.from_action``).
  Holding the same decision holds the same contract; a change closes the old contract
  and opens the new one.
- **Timing, no look-ahead.** The observation at bar ``t`` is built from bars ``0..t``
  (see :mod:`features`). The action taken on it fills at the *open of bar t+1*, and the
  position is then marked at the close of t+1. The episode ends at the bar the session
  flattens on — the first bar that completes at or after the timetable's flatten time
  (``session.timetable.DayPlan.flatten``: 10 minutes before that day's close, 15:50 or
  12:50), whatever the bar length — with the position sold at that bar's close, so every
  episode ends flat, as every trading day does.
- **Contract.** One ATM contract (``contracts``): ``rules.select_contract`` — strike =
  the underlying at the fill rounded to ``strike_step`` ($1, SPY's strike grid, by
  ``rules.atm_strike``), expiring at the close of the session ``expiry_days`` sessions
  later (2: a short-dated weekly-style option; 0 = 0DTE).
- **Prices: SimBroker's.** ``market`` (default ``market.chain.DEFAULT_MODEL``, the very
  model SimBroker quotes with) prices every contract: Black-Scholes on its implied-vol
  surface at the day's VIX, time in trading minutes to the expiry's close
  (``market.model.session_minutes_to_expiry``, the chain's clock), its spread model
  around the premium. A buy fills at the ask, a sell at the bid, each paying
  ``commission`` per contract (``market.model.option_commission``, SimBroker's fee
  function); a position is marked at the quoted mid ``(bid + ask) / 2`` as SimBroker
  marks it. So a step's P&L is what the ledger would book for the same fills.

Reward (per step, in units of ``reward_scale`` dollars — 1% of ``capital`` by default)::

    r = pnl × (after-cost change in account value) + (γ Φ(s') − Φ(s))

The first term is the ledger's P&L. Of the seed's shaping terms, two are real costs and
are in it already: a **whipsaw** pays the spread and commissions of the flip, and
**theta** is in the option's price (the mark decays as trading minutes pass). Every
shaping term is then potential-based (Ng, Harada & Russell 1999: ``F = γΦ(s') − Φ(s)``
cannot change which policy is optimal), with ``Φ = 0`` whenever the agent is flat —
so at the start and at the end of every episode — and, while a position is held::

    Φ = direction  × Σ (position × bar return z-score, clipped ±3) over the held bars
      − theta      × Σ (the held contract's Black-Scholes decay per bar, $) over the held bars
      − early_exit × max(unrealised P&L, 0)          (a winner not yet banked)
      − whipsaw    × (what selling now would cost: mark − bid, plus commission)

Holding earns the direction term and pays the theta term bar by bar; the close of the
position returns both (Φ back to 0), banks the early-exit bonus (a winner closed earns
``early_exit × its unrealised gain``; so does the forced close at the end — a bonus
that only the agent's own closes earned could change the optimal policy), and brings
forward the exit cost the whipsaw term charged at entry. γ is ``rewards.gamma``: set it
to the agent's discount. Over any stretch of steps, the discounted shaping sums to
``γ^n Φ(end) − Φ(start)`` (a test checks it); over a whole episode to 0.

``info["pnl"]`` is always the plain dollar P&L; evaluation measures that, never the shaped
reward. Quotes of every strike the day can touch are precomputed once per day (a few
thousand Black-Scholes evaluations), so ``step`` is array indexing and float arithmetic
only, with no pandas and no pricing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from tradenova_dagster import rules
from tradenova_dagster.domain import OPTION_MULTIPLIER, OptionContract, OptionType
from tradenova_dagster.market import calendar
from tradenova_dagster.market.chain import DEFAULT_MODEL, OptionMarketModel
from tradenova_dagster.market.data import MarketDataSource, get_source
from tradenova_dagster.market.model import option_commission, session_minutes_to_expiry
from tradenova_dagster.market.options import MINUTES_PER_YEAR
from tradenova_dagster.rl.features import (
    N_FEATURES,
    N_MARKET_FEATURES,
    OBS_CLIP,
    DayData,
    PositionState,
)
from tradenova_dagster.session.timetable import DayPlan


_INF = math.inf
direction_for = rules.direction_for


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


@dataclass
class _DayPricing:
    """Per-day precomputed values, as nested Python lists so that ``step`` does float
    arithmetic on plain floats: ``ask_open[kind][strike][bar]`` (kind 0 = call, 1 = put)
    is what a buy at the bar's open pays per contract, commission included, and
    ``bid_open`` what a sale there receives; ``mark`` is the quoted mid at the bar's close
    and ``bid_close`` what the end-of-episode sale there receives (per contract). The
    shaping potential (reward units, early-exit term aside) of holding a contract bought
    at bar ``e``, at bar ``o``, is ``potential[o] − potential_base[e]``: ``potential`` sums
    what each bar held adds (the direction term for the contract's side minus the theta
    term) up to bar ``o`` and subtracts the whipsaw term at ``o``; ``potential_base[e]`` is
    that sum up to bar ``e − 1``."""

    strikes: list  # the strike grid priced for the day
    atm: list  # index in ``strikes`` of rules.atm_strike(each bar's open): the contract a fill there buys
    ask_open: list
    bid_open: list
    mark: list
    bid_close: list
    potential: list
    potential_base: list


def quote_grid(model: OptionMarketModel, spots: np.ndarray, strikes: np.ndarray, minutes_left: np.ndarray,
               vix: float) -> tuple[np.ndarray, np.ndarray]:
    """Bid and ask per share, shape (2 kinds [call, put], strikes, bars), of contracts
    with ``minutes_left`` trading minutes to expiry at each bar: ``model.mid`` and
    ``model.bid_ask`` — SimBroker's quote — on a whole day's grid at once."""
    spot = spots[None, None, :]
    strike = strikes[None, :, None]
    is_call = np.array([True, False])[:, None, None]
    t = (minutes_left / MINUTES_PER_YEAR)[None, None, :]
    mid = model.premium(spot, strike, t, vix, is_call)
    return model.bid_ask(mid, rules.intrinsic(spot, strike, is_call))


def price_day(day: DayData, config: EnvConfig) -> _DayPricing:
    step = config.strike_step
    model = config.market
    atm_strikes = np.array([rules.atm_strike(o, step) for o in day.opens])  # once per day, not per step
    k_lo = min(math.floor(float(day.lows.min()) / step) * step - step, float(atm_strikes.min()))
    k_hi = max(math.ceil(float(day.highs.max()) / step) * step + step, float(atm_strikes.max()))
    strikes = np.arange(k_lo, k_hi + step / 2, step)
    expiry = rules.expiry_for(day.day, config.expiry_days)
    bar_ns = bar_nanos(day)
    left_open = session_minutes_to_expiry(day.day, day.timestamps, expiry)
    left_close = session_minutes_to_expiry(day.day, day.timestamps + bar_ns, expiry)
    vix = day.context.vix
    mult = float(OPTION_MULTIPLIER * config.contracts)
    fee = option_commission(config.commission, config.contracts)
    bid_open, ask_open = quote_grid(model, day.opens, strikes, left_open, vix)
    bid_close, ask_close = quote_grid(model, day.closes, strikes, left_close, vix)
    mark = (bid_close + ask_close) / 2 * mult
    theta = model.theta_per_minute(day.closes[None, None, :], strikes[None, :, None],
                                   (left_close / MINUTES_PER_YEAR)[None, None, :], vix,
                                   np.array([True, False])[:, None, None])
    decay = np.maximum(-theta, 0.0) * (bar_ns / 60e9) * mult  # $ per held bar
    move_z = np.clip(day.features[:, 0].astype(np.float64), -3.0, 3.0)  # bar t's return, implied-sigma units
    atm = np.rint((atm_strikes - strikes[0]) / step).astype(int)
    w = config.rewards
    side = np.array([1.0, -1.0])[:, None, None]  # a call gains when the bar rises, a put when it falls
    hold = np.cumsum(side * w.direction * move_z[None, None, :] - w.theta * decay / config.scale, axis=2)
    exit_cost = w.whipsaw * (mark - (bid_close * mult - fee)) / config.scale
    return _DayPricing(
        strikes=strikes.tolist(),
        atm=atm.tolist(),
        ask_open=(ask_open * mult + fee).tolist(),
        bid_open=(bid_open * mult - fee).tolist(),
        mark=mark.tolist(),
        bid_close=(bid_close * mult - fee).tolist(),
        potential=(hold - exit_cost).tolist(),
        potential_base=np.concatenate([np.zeros(hold.shape[:2] + (1,)), hold[:, :, :-1]], axis=2).tolist(),
    )


def bar_nanos(day: DayData) -> int:
    """A bar's length in nanoseconds: the smallest step between bar starts (1 minute for
    a one-bar day)."""
    if len(day) < 2:
        return 60_000_000_000
    return int(np.diff(day.timestamps).min())


def flatten_bar(day: DayData) -> int:
    """Index of the bar the session flattens on: the first bar that completes (start +
    bar length) at or after the timetable's flatten time, or the last bar."""
    flatten_ns = DayPlan.for_day(day.day).flatten.value
    ends = day.timestamps + bar_nanos(day)
    return min(int(np.searchsorted(ends, flatten_ns, side="left")), len(day) - 1)


def default_days(n: int = 20, end=None) -> list[date]:
    """The ``n`` sessions ending at ``end`` (default: the last completed session)."""
    from tradenova_dagster.rl.dataset import default_train_eval_days

    return default_train_eval_days(n_train=n, n_eval=0, end=end)[0]


class TradingEnv(gym.Env):
    """A gymnasium env over trading sessions (see the module docstring for the rules).

    ``TradingEnv()`` trades SPY on the synthetic source's last 20 sessions. Pass
    ``days`` as DayData (a :class:`TrainingDataset`'s days) or as dates to load from
    ``source`` on first use. ``reset(options={"day": d, "start": s})`` starts at bar
    ``s`` of day ``d`` (a date, ISO string, or index into ``days``); the same options
    always give the same start state, whatever the seed (GRPO's groups rely on it).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        days: Sequence[DayData | date | str] | None = None,
        config: EnvConfig | None = None,
        symbol: str = "SPY",
        source: MarketDataSource | None = None,
    ):
        super().__init__()
        self.config = config or EnvConfig()
        self.symbol = symbol.upper()
        self._source = source
        entries = list(days) if days is not None else default_days()
        if not entries:
            raise ValueError("days: need at least one day, got none")
        self._days: list[DayData | date] = [
            d if isinstance(d, DayData) else calendar.require_trading_day(d, "days") for d in entries
        ]
        self._index = {(d.day if isinstance(d, DayData) else d): i for i, d in enumerate(self._days)}
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = spaces.Box(-OBS_CLIP, OBS_CLIP, shape=(N_FEATURES,), dtype=np.float32)
        cfg = self.config
        self._threshold = cfg.threshold
        self._gamma = cfg.rewards.gamma
        self._pnl_weight = cfg.rewards.pnl / cfg.scale
        self._early_exit = cfg.rewards.early_exit / cfg.scale
        self._day: DayData | None = None
        self._t = self._end = 0
        self._last_bars: dict[date, int] = {}

    # ------------------------------------------------------------------ days
    @property
    def n_days(self) -> int:
        return len(self._days)

    @property
    def dates(self) -> list[date]:
        return list(self._index)

    def day_data(self, which) -> DayData:
        """The DayData of a day (date, ISO string or index), loading it on first use."""
        i = self._day_index(which)
        entry = self._days[i]
        if not isinstance(entry, DayData):
            from tradenova_dagster.rl.dataset import load_day

            if self._source is None:
                self._source = get_source("synthetic")
            entry = load_day(self.symbol, entry, self._source)
            self._days[i] = entry
        return entry

    def _day_index(self, which) -> int:
        if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
            if not 0 <= which < len(self._days):
                raise ValueError(f"day: index {which} is out of range (0..{len(self._days) - 1})")
            return int(which)
        day = calendar.as_date(which, "day")
        if day not in self._index:
            raise ValueError(f"day: {day} is not one of this env's {len(self._days)} days")
        return self._index[day]

    def last_bar(self, day: DayData) -> int:
        """Index of the bar at whose close the episode ends flat: the first bar that
        completes at or after the timetable's flatten time (``DayPlan.flatten``), as the
        session flattens (the last bar if the data stops earlier)."""
        last = self._last_bars.get(day.day)
        if last is None:
            last = flatten_bar(day)
            self._last_bars[day.day] = last
        return last

    def flatten_time(self, which) -> pd.Timestamp:
        """When the episode on a day ends flat: the end of its :meth:`last_bar`."""
        day = self.day_data(which)
        return pd.Timestamp(int(day.timestamps[self.last_bar(day)]) + bar_nanos(day), tz="UTC")

    def contract_at(self, which, bar: int, direction: int) -> OptionContract:
        """The contract a CALL (direction > 0) or PUT (< 0) filled at ``bar``'s open buys
        and prices (from the day's pricing grid; equal to ``rules.select_contract``)."""
        day = self.day_data(which)
        pricing = self._pricing(day)
        kind = OptionType.CALL if direction > 0 else OptionType.PUT
        return OptionContract(self.symbol, rules.expiry_for(day.day, self.config.expiry_days), kind,
                              float(pricing.strikes[pricing.atm[bar]]))

    def _pricing(self, day: DayData) -> _DayPricing:
        if self.config not in day.pricing_cache:
            day.pricing_cache[self.config] = price_day(day, self.config)
        return day.pricing_cache[self.config]

    def start_range(self, which) -> tuple[int, int]:
        """Valid start bars (inclusive) of a day: every start leaves at least one step,
        and with ``episode_bars`` a full-length episode."""
        day = self.day_data(which)
        last = self.last_bar(day)
        need = self.config.episode_bars or 1
        hi = last - need
        if hi < 0:
            raise ValueError(f"day {day.day}: {len(day)} bars leave no room for an episode of {need} bars")
        return 0, hi

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        i = self._day_index(options["day"]) if options.get("day") is not None else int(self.np_random.integers(self.n_days))
        day = self.day_data(i)
        lo, hi = self.start_range(i)
        if options.get("start") is not None:
            start = int(options["start"])
            if not lo <= start <= hi:
                raise ValueError(f"start: bar {start} is outside {lo}..{hi} for {day.day}")
        elif self.config.random_start and self.config.episode_bars:
            start = int(self.np_random.integers(lo, hi + 1))
        else:
            start = 0
        self._day = day
        self._p = self._pricing(day)
        # The episode's observations, one row per bar: the market features, and the
        # position features written as each bar is reached. Each step returns a view of
        # its row, which no later step writes again (a new episode gets a new matrix).
        self._rows = np.zeros((len(day), N_FEATURES), dtype=np.float32)
        self._rows[:, :N_MARKET_FEATURES] = day.features
        self._t = start
        self._start = start
        last = self.last_bar(day)
        self._end = min(start + self.config.episode_bars, last) if self.config.episode_bars else last
        self._flat = memoryview(self._rows).cast("B").cast("f")  # fast scalar writes into the rows
        self._row_views = list(self._rows)  # one view per bar, made once per episode
        self._pos = 0
        self._rows_held: tuple = ()  # the held contract's (bid_open, mark, bid_close, potential) rows
        self._base = 0.0  # potential_base at the held contract's entry bar
        self._entry_cost = 0.0
        self._entry_bar = start
        self._cash = 0.0
        self._value = 0.0
        self._phi = 0.0  # the shaping potential of the current state (0 when flat)
        self._trades = 0
        self._bars_in_position = 0
        return self._row_views[start], {"day": day.day.isoformat(), "bar": start, "end_bar": self._end}

    def step(self, action):
        # Hot path: plain floats and locals, state read once and written back once.
        try:
            a = float(action.item())  # a one-element array, as SB3 and gymnasium pass it
        except (AttributeError, ValueError):
            a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        if not -_INF < a < _INF:
            raise ValueError(f"action must be finite, got {action!r}")
        t = self._t
        if t >= self._end:
            raise RuntimeError("step() after the episode ended (or before reset()); call reset()")
        target = direction_for(a, self._threshold)
        p = self._p
        o = t + 1
        pos = self._pos
        cash = self._cash
        equity_before = cash + self._value
        value = 0.0
        phi = 0.0
        trade_closed = False

        if target != pos:  # fills at this bar's open: sells at the bid, buys at the ask
            if pos:
                cash += self._rows_held[0][o]
                self._trades += 1
                trade_closed = True
            if target:
                kind = 0 if target > 0 else 1
                k = p.atm[o]
                self._rows_held = (p.bid_open[kind][k], p.mark[kind][k], p.bid_close[kind][k], p.potential[kind][k])
                self._base = p.potential_base[kind][k][o]
                cost = p.ask_open[kind][k][o]
                cash -= cost
                self._entry_cost = cost
                self._entry_bar = o
            pos = target

        held = pos
        terminated = o >= self._end
        if pos:
            _, mark, bid_close, potential = self._rows_held
            value = mark[o]
            self._bars_in_position += 1
            entry = self._entry_cost
            gain = value - entry
            if terminated:  # the episode ends flat: sell at this close's bid
                cash += bid_close[o]
                value = 0.0
                pos = 0
                self._trades += 1
                trade_closed = True
            else:
                phi = potential[o] - self._base - (self._early_exit * gain if gain > 0 else 0.0)
            upnl = gain / entry
            flat = self._flat
            base = o * N_FEATURES + N_MARKET_FEATURES
            flat[base] = 1.0 if held > 0 else -1.0
            flat[base + 1] = OBS_CLIP if upnl > OBS_CLIP else (-OBS_CLIP if upnl < -OBS_CLIP else upnl)
            held_hours = (o - self._entry_bar) / 60.0
            flat[base + 2] = held_hours if held_hours < OBS_CLIP else OBS_CLIP

        self._t = o
        self._pos = pos
        self._cash = cash
        self._value = value
        shaping = self._gamma * phi - self._phi
        self._phi = phi
        pnl = cash + value - equity_before
        # "position": what was held over bar o (before the end-of-episode close)
        info = {"pnl": pnl, "position": held, "trade_closed": trade_closed, "bar": o}
        if terminated:
            info["trades"] = self._trades
            info["bars_in_position"] = self._bars_in_position
            info["episode_bars"] = self._end - self._start
        return self._row_views[o], self._pnl_weight * pnl + shaping, terminated, False, info

    def potential(self) -> float:
        """The shaping potential Φ of the current state, in reward units (0 when flat):
        each step's reward is ``pnl × P&L + rewards.gamma × Φ(after) − Φ(before)``."""
        return self._phi

    def position_state(self) -> PositionState:
        """The current position as a :class:`PositionState` (what the session would report)."""
        if not self._pos:
            return PositionState()
        return PositionState(self._pos, (self._value - self._entry_cost) / self._entry_cost, self._t - self._entry_bar)
