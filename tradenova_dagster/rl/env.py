"""TradingEnv: one trading session of 1-minute bars, trading short-dated ATM SPY options.

This module is the gym interface: days, episodes, observations and the step. What a
step books and how it is rewarded — SimBroker's quotes, the after-cost P&L and the
potential-based shaping — is :mod:`tradenova_dagster.rl.day_pricing`, computed once per
day; the settings are :mod:`tradenova_dagster.rl.env_config` (both re-exported here).

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
- **Prices and reward.** Fills at SimBroker's bid and ask, marks at its mid; the reward
  is the after-cost P&L plus potential-based shaping (:mod:`day_pricing` says how).
  ``info["pnl"]`` is always the plain dollar P&L; evaluation measures that, never the
  shaped reward.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from tradenova_dagster import rules
from tradenova_dagster.domain import OptionContract, OptionType
from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import MarketDataSource, get_source
from tradenova_dagster.rl.day_pricing import DayPricing, bar_nanos, flatten_bar, price_day, quote_grid
from tradenova_dagster.rl.env_config import EnvConfig, RewardWeights
from tradenova_dagster.rl.features import (
    N_FEATURES,
    N_MARKET_FEATURES,
    OBS_CLIP,
    DayData,
    PositionState,
)

__all__ = ["TradingEnv", "EnvConfig", "RewardWeights", "DayPricing", "price_day", "quote_grid", "bar_nanos",
           "flatten_bar", "default_days"]

# The position feature "hours held" for n bars held (n / 60, clipped at OBS_CLIP), looked
# up in the hot path; ``reset`` makes it as long as the day's bars.
_HELD_HOURS = [n / 60.0 if n / 60.0 < OBS_CLIP else OBS_CLIP for n in range(1 + 60 * int(OBS_CLIP))]


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
        self._templates: dict[date, np.ndarray] = {}  # per day: the market features, zero position columns

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

    def _pricing(self, day: DayData) -> DayPricing:
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
        self._p = p = self._pricing(day)
        self._entry = p.entry
        # The episode's observations, one row per bar: the market features, and the
        # position features written as each bar is reached. Each step returns a view of
        # its row, which no later step writes again (a new episode gets a new matrix, a
        # copy of the day's template). Views are made for the episode's bars only.
        template = self._templates.get(day.day)
        if template is None:
            template = np.zeros((len(day), N_FEATURES), dtype=np.float32)
            template[:, :N_MARKET_FEATURES] = day.features
            self._templates[day.day] = template
        self._rows = template.copy()
        if len(day) >= len(_HELD_HOURS):
            _HELD_HOURS.extend([OBS_CLIP] * (len(day) + 1 - len(_HELD_HOURS)))
        self._t = start
        self._start = start
        last = self.last_bar(day)
        self._end = end = min(start + self.config.episode_bars, last) if self.config.episode_bars else last
        self._flat = memoryview(self._rows).cast("B").cast("f")  # fast scalar writes into the rows
        self._row_views = [None] * start + list(self._rows[start:end + 1])  # index: the bar
        self._pos = 0
        self._held: tuple = ()  # the held contract's (bid_open, mark, bid_close, potential) rows
        self._base = 0.0  # potential_base at the held contract's entry bar
        self._entry_cost = 0.0
        self._entry_bar = start
        self._cash = 0.0
        self._value = 0.0
        self._phi = 0.0  # the shaping potential of the current state (0 when flat)
        self._trades = 0
        self._bars_in_position = 0  # added up when a position closes
        return self._row_views[start], {"day": day.day.isoformat(), "bar": start, "end_bar": end}

    def step(self, action):
        # Hot path (bench/env_speed.py): plain floats and locals, state read once and
        # written back once, an entry is one lookup (DayPricing.entry).
        try:
            a = float(action.item())  # a one-element array, as SB3 and gymnasium pass it
        except (AttributeError, ValueError):
            a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        if a - a != 0.0:  # inf or NaN
            raise ValueError(f"action must be finite, got {action!r}")
        t = self._t
        if t >= self._end:
            raise RuntimeError("step() after the episode ended (or before reset()); call reset()")
        threshold = self._threshold
        # rules.direction_for inlined (the call costs more than the comparison; test_rules holds them equal)
        target = 1 if a > threshold else (-1 if a < -threshold else 0)
        o = t + 1
        pos = self._pos
        if not pos and not target:  # flat and staying flat: nothing is booked, Φ stays 0
            self._t = o
            info = {"pnl": 0.0, "position": 0, "trade_closed": False, "bar": o}
            if o >= self._end:
                return self._row_views[o], 0.0, True, False, self._episode_end(info)
            return self._row_views[o], 0.0, False, False, info
        cash = self._cash
        equity_before = cash + self._value
        value = 0.0
        phi = 0.0
        trade_closed = False

        if target != pos:  # fills at this bar's open: sells at the bid, buys at the ask
            if pos:
                cash += self._held[0][o]
                self._trades += 1
                self._bars_in_position += o - self._entry_bar  # held over bars entry..o-1
                trade_closed = True
            if target:
                self._held, self._base, cost = self._entry[0 if target > 0 else 1][o]
                cash -= cost
                self._entry_cost = cost
                self._entry_bar = o
            pos = target

        held = pos
        terminated = o >= self._end
        if pos:
            rows = self._held
            value = rows[1][o]  # the mark at this bar's close
            entry = self._entry_cost
            entry_bar = self._entry_bar
            gain = value - entry
            if terminated:  # the episode ends flat: sell at this close's bid
                cash += rows[2][o]
                value = 0.0
                pos = 0
                self._trades += 1
                self._bars_in_position += o + 1 - entry_bar  # held over bars entry..o
                trade_closed = True
            else:
                phi = rows[3][o] - self._base - (self._early_exit * gain if gain > 0 else 0.0)
            upnl = gain / entry
            flat = self._flat
            base = o * N_FEATURES + N_MARKET_FEATURES
            flat[base] = 1.0 if held > 0 else -1.0
            flat[base + 1] = OBS_CLIP if upnl > OBS_CLIP else (-OBS_CLIP if upnl < -OBS_CLIP else upnl)
            flat[base + 2] = _HELD_HOURS[o - entry_bar]

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
            self._episode_end(info)
        return self._row_views[o], self._pnl_weight * pnl + shaping, terminated, False, info

    def _episode_end(self, info: dict) -> dict:
        """The last step's ``info``, with the episode's totals added."""
        info["trades"] = self._trades
        info["bars_in_position"] = self._bars_in_position
        info["episode_bars"] = self._end - self._start
        return info

    def potential(self) -> float:
        """The shaping potential Φ of the current state, in reward units (0 when flat):
        each step's reward is ``pnl × P&L + rewards.gamma × Φ(after) − Φ(before)``."""
        return self._phi

    def position_state(self) -> PositionState:
        """The current position as a :class:`PositionState` (what the session would report)."""
        if not self._pos:
            return PositionState()
        return PositionState(self._pos, (self._value - self._entry_cost) / self._entry_cost, self._t - self._entry_bar)
