"""What a TradingEnv step books and rewards, precomputed once per day: SimBroker's quotes
for every contract the day can touch, and the reward's shaping potentials.

Kept apart from the gym interface (:mod:`tradenova_dagster.rl.env`) because this is the
accounting: a step of the env only looks numbers up in a :class:`DayPricing`, so the
prices and the reward are decided here and nowhere else.

**Prices: SimBroker's.** ``EnvConfig.market`` (default ``market.chain.DEFAULT_MODEL``, the
very model SimBroker quotes with) prices every contract: Black-Scholes on its
implied-vol surface at the day's VIX, time in trading minutes to the expiry's close
(``market.model.session_minutes_to_expiry``, the chain's clock), its spread model around
the premium. A buy fills at the ask, a sell at the bid, each paying ``commission`` per
contract (``market.model.option_commission``, SimBroker's fee function); a position is
marked at the quoted mid ``(bid + ask) / 2`` as SimBroker marks it. So a step's P&L is
what the ledger would book for the same fills.

**Reward** (per step, in units of ``reward_scale`` dollars — 1% of ``capital`` by default)::

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
``γ^n Φ(end) − Φ(start)`` (a test checks it); over a whole episode to 0. The early-exit
term depends on the running gain, so the env adds it at each step; the rest of Φ is in
``DayPricing.potential``.

Quotes of every strike the day can touch are computed at once, on a whole day's grid (a
few thousand Black-Scholes evaluations), so that ``step`` is array indexing and float
arithmetic only, with no pandas and no pricing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tradenova_dagster import rules
from tradenova_dagster.domain import OPTION_MULTIPLIER
from tradenova_dagster.market.chain import OptionMarketModel
from tradenova_dagster.market.model import option_commission, session_minutes_to_expiry
from tradenova_dagster.market.options import MINUTES_PER_YEAR
from tradenova_dagster.rl.env_config import EnvConfig
from tradenova_dagster.rl.features import DayData
from tradenova_dagster.session.timetable import DayPlan


@dataclass
class DayPricing:
    """Per-day precomputed values, as nested Python lists so that ``step`` does float
    arithmetic on plain floats: ``ask_open[kind][strike][bar]`` (kind 0 = call, 1 = put)
    is what a buy at the bar's open pays per contract, commission included, and
    ``bid_open`` what a sale there receives; ``mark`` is the quoted mid at the bar's close
    and ``bid_close`` what the end-of-episode sale there receives (per contract). The
    shaping potential (reward units, early-exit term aside) of holding a contract bought
    at bar ``e``, at bar ``o``, is ``potential[o] − potential_base[e]``: ``potential`` sums
    what each bar held adds (the direction term for the contract's side minus the theta
    term) up to bar ``o`` and subtracts the whipsaw term at ``o``; ``potential_base[e]`` is
    that sum up to bar ``e − 1``.

    ``entry[kind][o]`` is all of that for the contract a fill at bar ``o``'s open buys
    (``atm[o]``), gathered once so that an entry in ``step`` is one lookup:
    ``((bid_open, mark, bid_close, potential) rows of the contract, potential_base at o,
    ask_open at o)``."""

    strikes: list  # the strike grid priced for the day
    atm: list  # index in ``strikes`` of rules.atm_strike(each bar's open): the contract a fill there buys
    ask_open: list
    bid_open: list
    mark: list
    bid_close: list
    potential: list
    potential_base: list
    entry: list = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.entry = [[((self.bid_open[kind][k], self.mark[kind][k], self.bid_close[kind][k], self.potential[kind][k]),
                        self.potential_base[kind][k][o], self.ask_open[kind][k][o]) for o, k in enumerate(self.atm)]
                      for kind in (0, 1)]


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


def price_day(day: DayData, config: EnvConfig) -> DayPricing:
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
    return DayPricing(
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
