"""Statistics that describe how a market's bars behave: used to calibrate synthetic data.

``market_profile`` summarises a set of full-length sessions; the calibration test and
``bench/calibration.py`` compute it for real SPY and for the synthetic source over the
same days, and compare. ``volatility_calibration`` measures the two realised-volatility
parameters of the market model (``market.model``) on real bars and VIX.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tradenova_dagster.market import calendar


def market_profile(bars: pd.DataFrame, vix: pd.Series) -> dict[str, float]:
    """Profile of 1-minute bars (many days, 390-bar sessions only) and a VIX series.

    - ``daily_vol``: std of close-to-close daily log returns;
    - ``open_abs_ret_ratio`` / ``close_abs_ret_ratio``: mean |1-minute return| over the
      first / last ten minutes, relative to midday (minutes 150-249): the U shape;
    - ``open_volume_ratio`` / ``close_volume_ratio``: the same for volume;
    - ``vix_mean`` / ``vix_std`` / ``vix_log_change_std``: the VIX level and its moves;
    - the three figures of :func:`volatility_calibration`.
    """
    frame = bars.copy()
    local = frame["timestamp"].dt.tz_convert("America/New_York")
    frame["day"] = local.dt.date
    frame["minute"] = (local.dt.hour * 60 + local.dt.minute) - 570
    full_days = frame.groupby("day")["minute"].transform("count") == 390
    frame = frame[full_days]
    frame["ret"] = np.log(frame["close"]).groupby(frame["day"]).diff()
    closes = frame.groupby("day")["close"].last()
    by_minute = frame.groupby("minute")
    abs_ret = by_minute["ret"].apply(lambda r: r.abs().mean())
    volume = by_minute["volume"].mean()
    midday = slice(150, 249)
    return {
        "days": float(frame["day"].nunique()),
        "daily_vol": float(np.log(closes).diff().std()),
        "open_abs_ret_ratio": float(abs_ret.loc[1:10].mean() / abs_ret.loc[midday].mean()),
        "close_abs_ret_ratio": float(abs_ret.loc[380:389].mean() / abs_ret.loc[midday].mean()),
        "open_volume_ratio": float(volume.loc[0:9].mean() / volume.loc[midday].mean()),
        "close_volume_ratio": float(volume.loc[380:389].mean() / volume.loc[midday].mean()),
        "vix_mean": float(vix.mean()),
        "vix_std": float(vix.std()),
        "vix_log_change_std": float(np.log(vix).diff().std()),
        **volatility_calibration(frame, vix),
    }


def volatility_calibration(bars: pd.DataFrame, vix: pd.Series) -> dict[str, float]:
    """How realised volatility relates to the VIX, on 1-minute bars of full sessions.

    For each session, the implied daily variance is ``(previous VIX close / 100)² / 252``
    and the realised intraday variance the sum of squared 1-minute log returns (the first
    from the session's open).

    - ``intraday_vol_to_vix``: √(Σ realised intraday variance / Σ implied variance), the
      market model's ``intraday_vol_to_vix`` (realised volatility runs below implied: VIX
      prices the variance risk premium and the overnight gaps);
    - ``intraday_variance_to_vix``: the mean over sessions of realised / implied variance
      (the same measure taken day by day, in variance);
    - ``overnight_variance_share``: Σ gap² / (Σ gap² + Σ open-to-close²), the gap being
      the log move from the previous session's close to this session's open (only where
      both sessions are in ``bars``): the model's ``overnight_variance_share``.
    """
    frame = bars.copy()
    local = frame["timestamp"].dt.tz_convert("America/New_York")
    frame["day"] = local.dt.date
    frame = frame[frame.groupby("day")["close"].transform("count") == 390]
    log_close = np.log(frame["close"])
    first_open = np.log(frame.groupby("day")["open"].transform("first"))
    ret = log_close.groupby(frame["day"]).diff().fillna(log_close - first_open)
    days = pd.DataFrame({
        "rv": (ret * ret).groupby(frame["day"]).sum(),
        "open": np.log(frame.groupby("day")["open"].first()),
        "close": np.log(frame.groupby("day")["close"].last()),
    })
    history = pd.Series(vix.to_numpy(dtype=float), index=pd.to_datetime(vix.index)).sort_index()
    prev_vix = history.shift(1).reindex(pd.to_datetime(days.index)).to_numpy()
    implied = (prev_vix / 100.0) ** 2 / 252
    known = np.isfinite(implied)
    if not known.any():
        raise ValueError("vix: no VIX close before any of the sessions in bars")
    sessions = [calendar.as_date(d, "day") for d in days.index]
    follows = np.array([i > 0 and calendar.next_session(sessions[i - 1]) == sessions[i] for i in range(len(sessions))])
    gap = (days["open"] - days["close"].shift(1)).to_numpy()[follows]
    open_close = (days["close"] - days["open"]).to_numpy()[follows]
    rv = days["rv"].to_numpy()
    return {
        "intraday_vol_to_vix": float(np.sqrt(rv[known].sum() / implied[known].sum())),
        "intraday_variance_to_vix": float(np.mean(rv[known] / implied[known])),
        "overnight_variance_share": float(np.sum(gap**2) / (np.sum(gap**2) + np.sum(open_close**2))),
    }


def real_and_synthetic_profiles(data_dir) -> tuple[dict[str, float], dict[str, float]]:
    """Profiles of the real SPY 1-minute year in ``data_dir`` (../shared/data) and of the
    synthetic source over the same sessions, with each side's full VIX history."""
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.market.files import FileMarketData

    real_source = FileMarketData(data_dir)
    synthetic = get_source("synthetic")
    days = calendar.trading_days("2022-09-30", "2023-09-29")
    real = pd.concat([real_source.bars("SPY", day) for day in days])
    fake = pd.concat([synthetic.bars("SPY", day) for day in days])
    return (market_profile(real, real_source.vix_history("1990-01-02", "2026-07-31")),
            market_profile(fake, synthetic.vix_history("1990-01-02", "2026-07-31")))
