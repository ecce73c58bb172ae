"""Synthetic market data: deterministic, offline, and shaped like real SPY.

Why synthetic data looks the way it does (calibrated on the real SPY 1-minute year in
``../shared/data``, 2022-09-30 to 2023-09-29; the test ``test_synthetic_calibration``
measures both and the README shows the comparison):

- VIX follows a mean-reverting log process (long-run level ~18.5, daily log-change
  std ~0.068 like Cboe's history) and is negatively correlated with returns (-0.8; real SPY/VIX: -0.82).
- Daily moves come from the market model (``market.model.MarketModel``, the assumptions
  the RL environment and SimBroker share): the open-to-close move has std
  ``intraday_vol_to_vix`` (0.67) × the previous VIX / 100 / √252 (realised volatility runs
  below implied), and an independent overnight gap carries ``overnight_variance_share``
  (35%) of the day's variance — both measured on real SPY (``bench/calibration.py``).
- Inside the session, 1-minute returns are Student-t (4 d.o.f., fat tails) with a
  U-shaped variance profile (about 1.8× the midday size in the first ten minutes and
  1.5× in the last ten), bridged so that the minutes add up to the session's move.
- Volume is U-shaped too: about 3× midday in the first ten minutes, 7× in the last ten
  and ~20× in the closing minute, scaled up when VIX is high.

The daily series (VIX, the market factor) is generated once for the whole calendar from
fixed seeds, each stream from its own generator, so extending the calendar never changes
an existing day. Minute bars are seeded by (symbol, day): the same request gives the same
bars in any process, on any machine.
"""

from __future__ import annotations

import hashlib
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import MarketDataSource, finish_bars, normalise_request
from tradenova_dagster.market.model import MarketModel

SEED = 20_260_101
ANCHOR_DAY = pd.Timestamp("2026-11-20")  # prices are pinned to their base level on this day
BASE_PRICES = {"SPY": 660.0, "QQQ": 590.0, "IWM": 235.0}

VIX_LONG_RUN = np.log(17.5)
VIX_REVERSION = 0.02
VIX_SHOCK = 0.068
VIX_RETURN_CORR = -0.8
VIX_FLOOR = 9.0
MARKET = MarketModel()  # the realised-volatility parameters the env and SimBroker assume too
GAP_VARIANCE_SHARE = MARKET.overnight_variance_share
ANNUAL_DRIFT = 0.07
T_DOF = 4


def _stable_int(*parts) -> int:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


@lru_cache(maxsize=1)
def _market_series() -> pd.DataFrame:
    """VIX close and the market's daily shock per session, for the whole calendar."""
    sessions = calendar.xnys().sessions
    n = len(sessions)
    intraday_z = np.random.Generator(np.random.PCG64([SEED, 1])).standard_normal(n)
    e = np.random.Generator(np.random.PCG64([SEED, 2])).standard_normal(n)
    gap_z = np.random.Generator(np.random.PCG64([SEED, 3])).standard_normal(n)
    z = np.sqrt(1 - GAP_VARIANCE_SHARE) * intraday_z + np.sqrt(GAP_VARIANCE_SHARE) * gap_z
    log_vix = np.empty(n)
    log_vix[0] = VIX_LONG_RUN
    shock = VIX_RETURN_CORR * z + np.sqrt(1 - VIX_RETURN_CORR**2) * e
    for t in range(1, n):
        log_vix[t] = log_vix[t - 1] + VIX_REVERSION * (VIX_LONG_RUN - log_vix[t - 1]) + VIX_SHOCK * shock[t]
    vix = np.maximum(np.exp(log_vix), VIX_FLOOR)
    prev_vix = np.concatenate([[vix[0]], vix[:-1]])
    sigma = MARKET.daily_sigma(prev_vix)
    return pd.DataFrame(
        {"vix": np.round(vix, 2), "sigma": sigma, "z": z, "gap_z": gap_z},
        index=pd.DatetimeIndex(sessions.tz_localize(None) if sessions.tz else sessions, name="day"),
    )


@lru_cache(maxsize=64)
def _daily_path(symbol: str) -> pd.DataFrame:
    """Daily open/close of one symbol over the whole calendar (before intraday detail)."""
    market = _market_series()
    n = len(market)
    if symbol == "SPY":
        beta, idio_vol = 1.0, 0.0
    else:
        h = _stable_int(symbol, "profile")
        beta = 0.8 + (h % 600) / 1000  # 0.8 .. 1.4
        idio_vol = 0.004 + (h >> 10) % 80 / 10_000  # 0.4% .. 1.2% a day
    idio = np.random.Generator(np.random.PCG64([SEED, _stable_int(symbol, "idio")])).standard_normal(n)
    sigma = market["sigma"].to_numpy()
    total = beta * sigma * market["z"].to_numpy() + idio_vol * idio
    total += ANNUAL_DRIFT / 252 - 0.5 * (beta * sigma) ** 2
    gap = np.sqrt(GAP_VARIANCE_SHARE) * beta * sigma * market["gap_z"].to_numpy()
    log_close = np.cumsum(total)
    anchor = market.index.get_indexer([ANCHOR_DAY], method="nearest")[0]
    base = BASE_PRICES.get(symbol, 20 + _stable_int(symbol, "price") % 480)
    log_close += np.log(base) - log_close[anchor]
    log_prev_close = np.concatenate([[log_close[0] - total[0]], log_close[:-1]])
    return pd.DataFrame(
        {
            "open": np.exp(log_prev_close + gap),
            "close": np.exp(log_close),
            "sigma": beta * sigma,
            "vix": market["vix"].to_numpy(),
        },
        index=market.index,
    )


def _u_shape(n: int, first: float, first_tau: float, last: float, last_tau: float) -> np.ndarray:
    m = np.arange(n)
    return 1 + first * np.exp(-m / first_tau) + last * np.exp(-(n - 1 - m) / last_tau)


class SyntheticMarketData(MarketDataSource):
    """The offline default source (see the module docstring for how it is calibrated)."""

    name = "synthetic"

    def bars(self, symbol: str, day) -> pd.DataFrame:
        symbol, day = normalise_request(symbol, day)
        return _synthetic_bars(symbol, day).copy()

    def daily_bars(self, symbol: str, start, end) -> pd.DataFrame:
        rows = []
        for day in calendar.trading_days(start, end):
            bars = _synthetic_bars(symbol.upper(), day)
            rows.append(
                {
                    "day": pd.Timestamp(day),
                    "open": bars["open"].iloc[0],
                    "high": bars["high"].max(),
                    "low": bars["low"].min(),
                    "close": bars["close"].iloc[-1],
                    "volume": bars["volume"].sum(),
                }
            )
        return pd.DataFrame(rows).set_index("day") if rows else pd.DataFrame(columns=["open", "high", "low", "close", "volume"])

    def daily_closes(self, symbol: str, start, end) -> pd.Series:
        """Closes only: cheap (no intraday bars are generated)."""
        path = _daily_path(symbol.upper())
        start, end = calendar.as_date(start, "start"), calendar.as_date(end, "end")
        return path.loc[pd.Timestamp(start) : pd.Timestamp(end), "close"]

    def vix_history(self, start, end) -> pd.Series:
        start, end = calendar.as_date(start, "start"), calendar.as_date(end, "end")
        return _market_series().loc[pd.Timestamp(start) : pd.Timestamp(end), "vix"].rename("vix")


@lru_cache(maxsize=1024)
def _synthetic_bars(symbol: str, day: date) -> pd.DataFrame:
    path = _daily_path(symbol).loc[pd.Timestamp(day)]
    starts = calendar.session_bar_starts(day)
    n = len(starts)
    full_day = 390
    rng = np.random.Generator(np.random.PCG64([SEED, _stable_int(symbol, day.isoformat())]))

    # Returns: U-shaped variance over the minutes, Student-t shocks, bridged to the session move.
    weights = _u_shape(n, first=3.0, first_tau=20, last=1.7, last_tau=15)
    intraday_var = (1 - GAP_VARIANCE_SHARE) * path["sigma"] ** 2 * n / full_day
    minute_sd = np.sqrt(intraday_var * weights / weights.sum())
    shocks = rng.standard_t(T_DOF, n) / np.sqrt(T_DOF / (T_DOF - 2))
    returns = minute_sd * shocks
    target = np.log(path["close"] / path["open"])
    returns += (target - returns.sum()) * weights / weights.sum()
    closes = path["open"] * np.exp(np.cumsum(returns))
    opens = np.concatenate([[path["open"]], closes[:-1]])
    wick = 0.6 * minute_sd
    highs = np.maximum(opens, closes) * np.exp(np.abs(rng.normal(0, 1, n)) * wick)
    lows = np.minimum(opens, closes) * np.exp(-np.abs(rng.normal(0, 1, n)) * wick)

    # Volume: U-shaped with a closing-auction spike, higher on volatile days.
    profile = _u_shape(n, first=5.5, first_tau=3, last=12, last_tau=4)
    profile[-1] += 10
    scale = 95_000 if symbol == "SPY" else 2_000 + _stable_int(symbol, "volume") % 40_000
    day_level = scale * (path["vix"] / 18.0) ** 0.8 * np.exp(rng.normal(0, 0.25))
    volume = np.round(day_level * profile * np.exp(rng.normal(0, 0.35, n)))

    frame = pd.DataFrame(
        {
            "timestamp": starts,
            "open": np.round(opens, 4),
            "high": np.round(highs, 4),
            "low": np.round(lows, 4),
            "close": np.round(closes, 4),
            "volume": volume,
        }
    )
    # Rounding can move open/close a hair outside the wick: keep the OHLC invariant exact.
    frame["high"] = frame[["open", "high", "close"]].max(axis=1)
    frame["low"] = frame[["open", "low", "close"]].min(axis=1)
    return finish_bars(frame)
