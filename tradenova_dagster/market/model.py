"""The market model: the one set of assumptions the RL environment, SimBroker and the
synthetic source share, so that what the agent trains on, what the broker charges and
what the offline data does are the same market.

- **Clock.** Time runs in trading minutes: a year is ``MINUTES_PER_YEAR`` = 252 × 390
  (``market.options``, where the Black-Scholes formulas live). Time to expiry counts the
  minutes of the sessions left until the expiry's close (early closes count their real
  length), so nights, weekends and holidays do not decay an option and a minute of
  session decays it by ``1 / MINUTES_PER_YEAR`` of a year. Implied volatilities are
  annualised on the same clock.
- **Implied volatility** (:class:`MarketModel`): at the money ``VIX/100 × clip(0.67 +
  2.5 T, 0.5, 1.2)``, shaped by the smile ``clip(1 − 1.46 x + 1.25 x², 0.5, 3)`` with
  ``x = ln(K/S)/√T`` (fitted to the real SPY chain of 2026-05-01; see ``market.chain``).
  The environment prices with exactly this surface, at the day's VIX.
- **Realised volatility** (what the underlying does, for the synthetic source):
  intraday (open-to-close) volatility is ``intraday_vol_to_vix`` × the VIX-implied
  figure, and the overnight gap carries ``overnight_variance_share`` of a day's variance.
  Both are measured on the real SPY 1-minute year and VIX in ``../shared/data`` by
  ``market.profile.volatility_calibration`` (``python bench/calibration.py`` prints them).
- **Spread and fees** (:class:`SpreadModel`, :func:`option_commission`): the quote
  around the model premium, and the commission of a fill. SimBroker fills a market
  order at the ask (buy) or the bid (sell) and charges the commission; the environment
  fills the same way with the same two functions, and both mark a position at the
  quoted mid ``(bid + ask) / 2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

import numpy as np
import pandas as pd

from tradenova_dagster.domain import require_aware, require_price
from tradenova_dagster.market import calendar
from tradenova_dagster.market.options import MINUTES_PER_YEAR, TRADING_DAYS_PER_YEAR, bs_price, bs_theta, is_scalar

INTRADAY_VOL_TO_VIX = 0.67  # sqrt(pooled open-to-close realised variance / VIX-implied daily variance)
OVERNIGHT_VARIANCE_SHARE = 0.35  # close-to-open gap variance / close-to-close variance
MIN_SMILE_TIME = 1.0 / TRADING_DAYS_PER_YEAR  # below a day the smile stops steepening (avoids 1/sqrt(0))
_NANOS_PER_MINUTE = 60_000_000_000
_NANOS_PER_HOUR = 60 * _NANOS_PER_MINUTE
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- clock


@lru_cache(maxsize=4096)
def _open_close(day: date) -> tuple[pd.Timestamp, pd.Timestamp]:
    return calendar.session_open_close(day)


@lru_cache(maxsize=4096)
def full_session_minutes_after(day: date, expiry: date) -> float:
    """Trading minutes of the sessions strictly after ``day`` up to ``expiry`` inclusive."""
    if expiry <= day:
        return 0.0
    total = 0.0
    for session in calendar.trading_days(day + timedelta(days=1), expiry):
        open_, close = _open_close(session)
        total += (close - open_).total_seconds() / 60.0
    return total


def expiry_close(expiry: date) -> pd.Timestamp:
    """When a contract stops trading: the close of its expiry session (UTC)."""
    return _open_close(calendar.require_trading_day(expiry, "expiry"))[1]


@lru_cache(maxsize=4096)
def _expiry_close_nanos(expiry: date) -> int:
    """``expiry_close`` in UTC epoch nanoseconds, cached (a refused expiry raises, uncached)."""
    return expiry_close(expiry).value


@lru_cache(maxsize=1 << 16)
def _session_of_hour(hour: int) -> tuple[date, bool, int, int]:
    """For the UTC hour ``hour`` (epoch nanoseconds // one hour): its New York date, whether
    that date trades, and the date's open and close in epoch nanoseconds (0, 0 if not).

    New York is a whole number of hours from UTC, and its clock changes on the hour, so
    every instant of a UTC hour has the same New York date: one conversion per hour."""
    today = pd.Timestamp(hour * _NANOS_PER_HOUR, tz="UTC").tz_convert(calendar.NEW_YORK).date()
    if not calendar.is_trading_day(today):
        return today, False, 0, 0
    open_, close = _open_close(today)
    return today, True, open_.value, close.value


def utc_nanos(now: datetime) -> int:
    """``pd.Timestamp(now).value`` (UTC epoch nanoseconds) of an aware datetime, without
    building a Timestamp for a plain datetime (the simulator asks every quote)."""
    now = require_aware("now", now)
    if isinstance(now, pd.Timestamp):
        return now.value
    delta = now - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def trading_minutes_to_expiry(now: datetime, expiry: date) -> float:
    """Trading minutes from ``now`` until the close of ``expiry``; 0 once it has passed.

    Exactly :func:`session_minutes_to_expiry` at one instant (on a day that does not
    trade, every session after it), in integer nanoseconds and cached calendar facts:
    the simulator prices a held option several times a bar."""
    nanos = utc_nanos(now)
    if nanos >= _expiry_close_nanos(expiry):
        return 0.0
    today, trades, open_, close = _session_of_hour(nanos // _NANOS_PER_HOUR)
    if not trades:
        return full_session_minutes_after(today, expiry)
    left_today = float(close - max(nanos, open_)) / _NANOS_PER_MINUTE
    return max(left_today, 0.0) + full_session_minutes_after(today, expiry)


def session_minutes_to_expiry(day: date, nanos: np.ndarray, expiry: date) -> np.ndarray:
    """Trading minutes to the close of ``expiry`` at each of ``nanos`` (UTC epoch
    nanoseconds, all on trading day ``day``): the rest of ``day``'s session, then every
    later session in full. The vectorised form of :func:`trading_minutes_to_expiry`, which
    the environment uses for a whole day of bars at once."""
    open_, close = _open_close(day)
    left_today = (close.value - np.maximum(np.asarray(nanos, dtype=np.int64), open_.value)) / _NANOS_PER_MINUTE
    if expiry < day:
        return np.zeros(len(left_today))
    return np.maximum(left_today, 0.0) + full_session_minutes_after(day, expiry)


def years_to_expiry(now: datetime, expiry: date) -> float:
    return trading_minutes_to_expiry(now, expiry) / MINUTES_PER_YEAR


# --------------------------------------------------------------------------- spread and fees


@dataclass(frozen=True)
class SpreadModel:
    """Quoted width ``max(min_spread, pct_of_mid × mid + pct_of_intrinsic × intrinsic)``."""

    min_spread: float = 0.01
    pct_of_mid: float = 0.005
    pct_of_intrinsic: float = 0.025
    tick: float = 0.01

    def __post_init__(self) -> None:
        for name in ("min_spread", "tick"):
            require_price(name, getattr(self, name))
        for name in ("pct_of_mid", "pct_of_intrinsic"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")

    def bid_ask(self, mid, intrinsic=0.0):
        """(bid, ask) around ``mid`` on the tick grid; the bid never below 0, the ask at
        least one tick (a zero ask is not a market). Vectorised over numpy arrays."""
        if is_scalar(mid, intrinsic):
            return self._bid_ask_scalar(float(mid), float(intrinsic))
        mid, intrinsic = np.asarray(mid, dtype=float), np.asarray(intrinsic, dtype=float)
        width = np.maximum(self.min_spread, self.pct_of_mid * mid + self.pct_of_intrinsic * intrinsic)
        bid = np.floor((mid - width / 2) / self.tick + 1e-9) * self.tick
        ask = np.ceil((mid + width / 2) / self.tick - 1e-9) * self.tick
        bid = np.round(np.maximum(bid, 0.0), 6)
        ask = np.round(np.maximum(ask, np.maximum(bid + self.tick, self.tick)), 6)
        if bid.ndim:
            return bid, ask
        return float(bid), float(ask)

    def _bid_ask_scalar(self, mid: float, intrinsic: float) -> tuple[float, float]:
        """``bid_ask`` of one premium, bit for bit: the same float operations, ``np.round``
        written out as numpy computes it (scale by 10**6, round half to even, scale back)."""
        tick = self.tick
        width = max(self.min_spread, self.pct_of_mid * mid + self.pct_of_intrinsic * intrinsic)
        bid = math.floor((mid - width / 2) / tick + 1e-9) * tick
        ask = math.ceil((mid + width / 2) / tick - 1e-9) * tick
        bid = _round6(max(bid, 0.0))
        return bid, _round6(max(ask, max(bid + tick, tick)))


def _round6(x: float) -> float:
    """``float(np.round(x, 6))`` for a finite float: numpy multiplies by 1e6, rounds half
    to even (``rint``; Python's ``round`` to an integer does the same) and divides back."""
    scaled = x * 1e6
    if not abs(scaled) < 2.0 ** 52:  # past this a float is an integer: leave it to numpy
        return float(np.round(x, 6))
    return round(scaled) / 1e6


def option_commission(per_contract: float, contracts: float) -> float:
    """The commission of one option fill of ``contracts`` (SimBroker's and the env's)."""
    return round(per_contract * contracts, 6)


# --------------------------------------------------------------------------- the model


def _check_range(name: str, value, lo: float, hi: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value < hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}), got {value!r}")


@dataclass(frozen=True)
class MarketModel:
    """Implied-volatility surface, carry, spread and realised-volatility parameters.

    Every pricing method takes ``vix``, the volatility index level as quoted (16.99, not
    0.1699), and ``t`` in years of trading minutes (``MINUTES_PER_YEAR``).
    """

    rate: float = 0.018
    term_base: float = 0.67
    term_slope: float = 2.5
    skew: float = 1.46
    curvature: float = 1.25
    spread: SpreadModel = field(default_factory=SpreadModel)
    intraday_vol_to_vix: float = INTRADAY_VOL_TO_VIX
    overnight_variance_share: float = OVERNIGHT_VARIANCE_SHARE

    def __post_init__(self) -> None:
        require_price("term_base", self.term_base)
        for name in ("rate", "term_slope", "skew", "curvature"):
            _check_range(name, getattr(self, name), 0, 10)
        _check_range("intraday_vol_to_vix", self.intraday_vol_to_vix, 1e-6, 10)
        _check_range("overnight_variance_share", self.overnight_variance_share, 0, 1)
        if isinstance(self.spread, dict):  # a config read back from JSON
            object.__setattr__(self, "spread", SpreadModel(**self.spread))

    # implied volatility and premiums
    def atm_iv(self, vix, t):
        """At-the-money implied volatility (decimal) of an expiry ``t`` years away."""
        return np.asarray(vix, dtype=float) / 100.0 * np.clip(self.term_base + self.term_slope * np.asarray(t), 0.5, 1.2)

    def smile_vol(self, strike, spot, t, vix):
        """Implied volatility of a strike: the expiry's ATM level shaped by the smile."""
        if is_scalar(strike, spot, t, vix):  # one contract (the simulator): the same operations on floats
            strike, spot, t, vix = float(strike), float(spot), float(t), float(vix)
            x = float(np.log(strike / spot)) / math.sqrt(max(t, MIN_SMILE_TIME))
            atm = vix / 100.0 * min(max(self.term_base + self.term_slope * t, 0.5), 1.2)
            return atm * min(max(1.0 - self.skew * x + self.curvature * x * x, 0.5), 3.0)
        strike, spot, t = (np.asarray(x, dtype=float) for x in (strike, spot, t))
        x = np.log(strike / spot) / np.sqrt(np.maximum(t, MIN_SMILE_TIME))
        vol = self.atm_iv(vix, t) * np.clip(1.0 - self.skew * x + self.curvature * x * x, 0.5, 3.0)
        return vol if vol.ndim else float(vol)

    def premium(self, spot, strike, t, vix, is_call):
        """Model premium per share: Black-Scholes on the smile (vectorised)."""
        return bs_price(spot, strike, t, self.smile_vol(strike, spot, t, vix), self.rate, is_call)

    def theta_per_minute(self, spot, strike, t, vix, is_call):
        """Black-Scholes theta in dollars per share per trading minute (negative for a long
        option): ∂V/∂t at the contract's implied volatility, on the trading-minute clock."""
        return bs_theta(spot, strike, t, self.smile_vol(strike, spot, t, vix), self.rate, is_call) / MINUTES_PER_YEAR

    def bid_ask(self, mid, intrinsic=0.0):
        """The quote around a premium (``spread.bid_ask``)."""
        return self.spread.bid_ask(mid, intrinsic)

    # realised volatility
    def intraday_sigma(self, vix):
        """Open-to-close standard deviation of a full session's log return."""
        return self.intraday_vol_to_vix * np.asarray(vix, dtype=float) / 100.0 / math.sqrt(TRADING_DAYS_PER_YEAR)

    def daily_sigma(self, vix):
        """Close-to-close standard deviation of a day's log return: the session's move and
        the overnight gap, which carries ``overnight_variance_share`` of the variance."""
        return self.intraday_sigma(vix) / math.sqrt(1.0 - self.overnight_variance_share)
