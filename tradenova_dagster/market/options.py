"""Black-Scholes pricing for European options, vectorised over numpy arrays.

SPY options are American, but with no early-exercise value on calls (no dividend between
now and a weekly expiry, most of the time) and little on short-dated puts, Black-Scholes
is the standard first approximation; the simulated broker and the RL environment both
price premiums with it, so that what the agent learns is what the broker charges.

Time is in years; rates and volatility are annualised decimals. Every function accepts
scalars or numpy arrays (broadcast together) and returns the same shape.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
from scipy.special import ndtr

from tradenova_dagster.rules import intrinsic as _intrinsic

MIN_TIME = 1e-6  # about 30 seconds: the price at expiry is the intrinsic value
TRADING_DAYS_PER_YEAR = 252
SESSION_MINUTES = 390  # a full regular session, 09:30-16:00 New York
# The clock of every option price in TradeNova (see ``market.model``): a year is 252 full
# sessions of trading minutes, and volatility is annualised on it.
MINUTES_PER_YEAR = TRADING_DAYS_PER_YEAR * SESSION_MINUTES


def _d1_d2(spot, strike, t, vol, rate):
    t = np.maximum(t, MIN_TIME)
    vol = np.maximum(vol, 1e-6)
    sqrt_t = np.sqrt(t)
    d1 = (np.log(spot / strike) + (rate + 0.5 * vol * vol) * t) / (vol * sqrt_t)
    return d1, d1 - vol * sqrt_t, t


_PLAIN = frozenset({float, int, bool, np.float64, np.bool_})  # checked first: an ABC check costs ~1 µs


def is_scalar(*values) -> bool:
    """Whether every value is a plain number (a bool counts): no array to broadcast."""
    for v in values:
        if type(v) not in _PLAIN and not isinstance(v, (Real, np.bool_)):
            return False
    return True


def _bs_price_scalar(spot: float, strike: float, t: float, vol: float, rate: float, is_call: bool) -> float:
    """``bs_price`` of one contract, bit for bit: the same float operations in the same
    order, with numpy's own ``log``/``exp`` and scipy's ``ndtr`` (``sqrt``, ``max`` and
    ``min`` are exact in any library), without building and broadcasting 0-d arrays."""
    t_eff = max(t, MIN_TIME)
    vol = max(vol, 1e-6)
    sqrt_t = math.sqrt(t_eff)
    d1 = (float(np.log(spot / strike)) + (rate + 0.5 * vol * vol) * t_eff) / (vol * sqrt_t)
    d2 = d1 - vol * sqrt_t
    discount = float(np.exp(-rate * t_eff))
    if is_call:
        price = spot * float(ndtr(d1)) - strike * discount * float(ndtr(d2))
        intrinsic = max(spot - strike, 0.0)
    else:
        price = strike * discount * float(ndtr(-d2)) - spot * float(ndtr(-d1))
        intrinsic = max(strike - spot, 0.0)
    return intrinsic if t <= MIN_TIME else max(price, intrinsic * discount)


def bs_price(spot, strike, t, vol, rate=0.0, is_call=True):
    """Black-Scholes premium per share (multiply by 100 for one contract)."""
    if is_scalar(spot, strike, t, vol, rate, is_call):
        return _bs_price_scalar(float(spot), float(strike), float(t), float(vol), float(rate), bool(is_call))
    spot, strike, t, vol, rate = (np.asarray(x, dtype=float) for x in (spot, strike, t, vol, rate))
    d1, d2, t_eff = _d1_d2(spot, strike, t, vol, rate)
    discount = np.exp(-rate * t_eff)
    call = spot * ndtr(d1) - strike * discount * ndtr(d2)
    put = strike * discount * ndtr(-d2) - spot * ndtr(-d1)
    price = np.where(is_call, call, put)
    intrinsic = _intrinsic(spot, strike, is_call)
    price = np.where(t <= MIN_TIME, intrinsic, np.maximum(price, intrinsic * discount))
    return price if price.ndim else float(price)


def bs_delta(spot, strike, t, vol, rate=0.0, is_call=True):
    spot, strike, t, vol, rate = (np.asarray(x, dtype=float) for x in (spot, strike, t, vol, rate))
    d1, _, _ = _d1_d2(spot, strike, t, vol, rate)
    delta = np.where(is_call, ndtr(d1), ndtr(d1) - 1.0)
    return delta if delta.ndim else float(delta)


def bs_theta(spot, strike, t, vol, rate=0.0, is_call=True):
    """∂V/∂t per year of ``t``'s clock (negative for a long option): on TradeNova's
    trading-minute clock divide by ``MINUTES_PER_YEAR`` for a minute of session
    (``MarketModel.theta_per_minute``)."""
    spot, strike, t, vol, rate = (np.asarray(x, dtype=float) for x in (spot, strike, t, vol, rate))
    d1, d2, t_eff = _d1_d2(spot, strike, t, vol, rate)
    pdf = np.exp(-0.5 * d1 * d1) / np.sqrt(2 * np.pi)
    common = -spot * pdf * vol / (2 * np.sqrt(t_eff))
    discount = rate * strike * np.exp(-rate * t_eff)
    theta = np.where(is_call, common - discount * ndtr(d2), common + discount * ndtr(-d2))
    return theta if theta.ndim else float(theta)


def implied_vol(price, spot, strike, t, rate=0.0, is_call=True, lo=1e-4, hi=5.0, iterations=80):
    """Implied volatility by bisection (robust where Newton fails: deep ITM/OTM, short dated).

    Returns NaN where the price is outside the no-arbitrage bounds.
    """
    price, spot, strike, t, rate = (np.asarray(x, dtype=float) for x in (price, spot, strike, t, rate))
    lo_arr = np.full(np.broadcast(price, spot, strike, t).shape, lo)
    hi_arr = np.full_like(lo_arr, hi)
    p_lo = bs_price(spot, strike, t, lo_arr, rate, is_call)
    p_hi = bs_price(spot, strike, t, hi_arr, rate, is_call)
    valid = (price >= p_lo - 1e-12) & (price <= p_hi + 1e-12)
    for _ in range(iterations):
        mid = 0.5 * (lo_arr + hi_arr)
        too_high = bs_price(spot, strike, t, mid, rate, is_call) > price
        hi_arr = np.where(too_high, mid, hi_arr)
        lo_arr = np.where(too_high, lo_arr, mid)
    out = np.where(valid, 0.5 * (lo_arr + hi_arr), np.nan)
    return out if out.ndim else float(out)
