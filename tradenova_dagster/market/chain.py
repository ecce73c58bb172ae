"""A generated option chain: volatility smile, bid/ask spreads, weekly expiries, contract choice.

The simulated broker has no options feed, so it quotes every contract itself from the
underlying price, the VIX level and the time to expiry, with the market model
(``market.model``: Black-Scholes on the surface below, the spread model, the clock),
which the RL environment prices with too. The model is small, and its numbers are fitted to the real SPY
chain of 2026-05-01 in ``../shared/data`` (spot 720.65, VIX 16.99; calls and puts within
4% of spot on the 1- to 4-week expiries, spreads under 5%, least squares on log prices):

- **ATM volatility** ``atm_iv = VIX/100 × clip(0.67 + 2.5 × T, 0.5, 1.2)`` (T in years):
  VIX is a 30-day variance rate that includes the put wing; short-dated at-the-money IV
  sits well below it (0.124 for the 1-week expiry that day, 0.149 for the 3-week one).
- **Smile** ``iv(K) = atm_iv × clip(1 − 1.46 x + 1.25 x², 0.5, 3)`` with
  ``x = ln(K/S) / √T``: the equity skew (puts dearer than calls), steeper as expiry
  nears, turning up again far out in the calls. Model premiums: median error 1.8%,
  about 10% at most within 2% of spot, 25% at most over the whole fitted range.
- **Rate** 1.8%: the carry that call-put parity implies on the snapshot (a short rate
  net of SPY's dividend yield).
- **Spread** ``max(0.01, 0.5% of mid + 2.5% of intrinsic value)``, bid rounded down and
  ask rounded up to the $0.01 tick: liquid out-of-the-money SPY weeklies trade 1-4 cents
  wide, in-the-money ones wider (the snapshot: 0.04 at the money, 0.55 for a $20 ITM call).
  A 10-cent option is therefore about 10% wide, which the risk rule (spread > 5% of mid)
  refuses, as it would refuse the real one.
- **Time** counts trading minutes to the expiry's close (252 × 390 a year, the convention
  of ``market.model`` and the RL environment): a weekend does not decay an option. The
  clock functions live in ``market.model`` and are importable from here.
- **Expiries**: one per week, the last trading day of the week (Friday, or Thursday when
  Friday is a holiday). **Strikes**: every ``strike_step`` dollars (SPY lists $1 strikes,
  ``rules.STRIKE_STEP``); at the money is ``rules.atm_strike``, and intrinsic value is
  ``rules.intrinsic_value`` (imported here, so ``chain.intrinsic_value`` still works).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from tradenova_dagster.domain import OptionContract, OptionType, Quote, require_aware, require_price
from tradenova_dagster.market import calendar
from tradenova_dagster.market.model import (
    MarketModel,
    SpreadModel,
    expiry_close,
    trading_minutes_to_expiry,
    years_to_expiry,
)
from tradenova_dagster.market.options import bs_delta, bs_price
from tradenova_dagster.rules import STRIKE_STEP, atm_strike, intrinsic, intrinsic_value

__all__ = [  # the clock and the spread model live in market.model; they stay importable from here
    "DEFAULT_MODEL", "OptionMarketModel", "SpreadModel", "expiry_close", "generate_chain", "intrinsic_value",
    "nearest_weekly_expiry", "option_quote", "select_contract", "trading_minutes_to_expiry", "weekly_expiries",
    "years_to_expiry",
]


# --------------------------------------------------------------------------- time


def weekly_expiries(now: datetime, weeks: int = 4) -> list[date]:
    """The next ``weeks`` weekly expiries still trading at ``now``.

    A weekly expiry is the last trading day of its Monday-Friday week: the Friday, or the
    Thursday before a Friday holiday (Good Friday).
    """
    now = pd.Timestamp(require_aware("now", now)).tz_convert("UTC")
    today = now.tz_convert(calendar.NEW_YORK).date()
    monday = today - timedelta(days=today.weekday())
    found: list[date] = []
    while len(found) < weeks:
        days = calendar.trading_days(monday, monday + timedelta(days=4))
        if days and now < expiry_close(days[-1]):
            found.append(days[-1])
        monday += timedelta(days=7)
    return found


def nearest_weekly_expiry(now: datetime, min_days: int = 0) -> date:
    """The first weekly expiry at least ``min_days`` calendar days after ``now``'s date.

    ``min_days=0`` allows a same-day (0DTE) contract on a Friday; 1 skips it.
    """
    if min_days < 0:
        raise ValueError(f"min_days must be >= 0, got {min_days!r}")
    today = pd.Timestamp(now).tz_convert(calendar.NEW_YORK).date()
    for expiry in weekly_expiries(now, weeks=3 + min_days // 7):
        if (expiry - today).days >= min_days:
            return expiry
    raise AssertionError("unreachable: weekly_expiries always covers min_days")


# --------------------------------------------------------------------------- quotes


@dataclass(frozen=True)
class OptionMarketModel(MarketModel):
    """How the simulated market lists and quotes options: the shared :class:`MarketModel`
    (surface, carry, spread) plus the strike grid and the size shown at the touch.

    Every pricing method takes ``vix``, the volatility index level as quoted (16.99, not
    0.1699): the model turns it into the ATM volatility of each expiry and a smile.
    """

    strike_step: float = STRIKE_STEP
    displayed_size: int = 50  # contracts shown at the bid and at the ask

    def __post_init__(self) -> None:
        super().__post_init__()
        require_price("strike_step", self.strike_step)
        if not (isinstance(self.displayed_size, int) and self.displayed_size >= 1):
            raise ValueError(f"displayed_size must be a whole number >= 1, got {self.displayed_size!r}")

    def mid(self, contract: OptionContract, spot, now: datetime, vix):
        """Model premium per share (vectorised over ``spot``): Black-Scholes on the smile."""
        return self.premium(spot, contract.strike, years_to_expiry(now, contract.expiry), vix,
                            contract.option_type is OptionType.CALL)

    def quote(self, contract: OptionContract | str, spot: float, now: datetime, vix: float) -> Quote:
        """The bid/ask this model shows for one contract at ``now``."""
        if isinstance(contract, str):
            contract = OptionContract.parse(contract)
        spot = require_price("spot", spot)
        vix = require_price("vix", vix)
        mid = float(self.mid(contract, spot, now, vix))
        bid, ask = self.bid_ask(mid, intrinsic_value(contract, spot))
        return Quote(contract.symbol, pd.Timestamp(now).to_pydatetime(), bid, ask,
                     self.displayed_size, self.displayed_size)

    def chain(self, underlying: str, spot: float, now: datetime, vix: float,
              expiries: list[date] | None = None, strikes_each_side: int = 20) -> pd.DataFrame:
        """Every call and put within ``strikes_each_side`` strikes of the money, per expiry.

        Columns: symbol, underlying, expiry, option_type, strike, t (years), iv, delta,
        bid, ask, mid.
        """
        spot = require_price("spot", spot)
        vix = require_price("vix", vix)
        expiries = expiries or weekly_expiries(now)
        centre = atm_strike(spot, self.strike_step)
        strikes = np.round(centre + self.strike_step * np.arange(-strikes_each_side, strikes_each_side + 1), 3)
        strikes = strikes[strikes > 0]
        frames = []
        for expiry in expiries:
            t = years_to_expiry(now, expiry)
            vol = self.smile_vol(strikes, spot, t, vix)
            for option_type in (OptionType.CALL, OptionType.PUT):
                is_call = option_type is OptionType.CALL
                mid = bs_price(spot, strikes, t, vol, self.rate, is_call)
                bid, ask = self.bid_ask(mid, intrinsic(spot, strikes, is_call))
                frames.append(pd.DataFrame({
                    "symbol": [OptionContract(underlying, expiry, option_type, float(k)).symbol for k in strikes],
                    "underlying": underlying.upper(), "expiry": expiry, "option_type": option_type.value,
                    "strike": strikes, "t": t, "iv": vol, "delta": bs_delta(spot, strikes, t, vol, self.rate, is_call),
                    "bid": bid, "ask": ask, "mid": mid,
                }))
        return pd.concat(frames, ignore_index=True)

    def select_contract(self, underlying: str, spot: float, now: datetime, option_type: OptionType | str,
                        vix: float, target_delta: float | None = None, min_days: int = 0) -> OptionContract:
        """The contract to trade: nearest weekly expiry, at the money or nearest a delta.

        ATM is the listed strike nearest the spot, ``rules.atm_strike`` (a tie at exactly
        half a step goes to the even strike, as ``round`` does and the session trades). With
        ``target_delta`` (e.g. 0.30; the sign is ignored, so -0.30 for a put works too)
        it is the strike whose absolute delta is nearest the target.
        """
        option_type = OptionType.parse(option_type)
        spot = require_price("spot", spot)
        expiry = nearest_weekly_expiry(now, min_days)
        if target_delta is None:
            return OptionContract(underlying, expiry, option_type, round(atm_strike(spot, self.strike_step), 3))
        target = abs(float(target_delta))
        if not 0 < target < 1:
            raise ValueError(f"target_delta must be in (0, 1) in absolute value, got {target_delta!r}")
        frame = self.chain(underlying, spot, now, vix, [expiry], strikes_each_side=60)
        frame = frame[frame["option_type"] == option_type.value]
        best = frame.iloc[int(np.argmin(np.abs(np.abs(frame["delta"].to_numpy()) - target)))]
        return OptionContract(underlying, expiry, option_type, float(best["strike"]))


DEFAULT_MODEL = OptionMarketModel()


def option_quote(contract: OptionContract | str, spot: float, now: datetime, vix: float,
                 model: OptionMarketModel = DEFAULT_MODEL) -> Quote:
    return model.quote(contract, spot, now, vix)


def generate_chain(underlying: str, spot: float, now: datetime, vix: float,
                   expiries: list[date] | None = None, strikes_each_side: int = 20,
                   model: OptionMarketModel = DEFAULT_MODEL) -> pd.DataFrame:
    return model.chain(underlying, spot, now, vix, expiries, strikes_each_side)


def select_contract(underlying: str, spot: float, now: datetime, option_type: OptionType | str,
                    vix: float, target_delta: float | None = None, min_days: int = 0,
                    model: OptionMarketModel = DEFAULT_MODEL) -> OptionContract:
    return model.select_contract(underlying, spot, now, option_type, vix, target_delta, min_days)
