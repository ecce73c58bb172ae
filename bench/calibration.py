"""Synthetic SPY against real SPY: the statistics the synthetic source is calibrated on.

Prints a Markdown table (real, synthetic, ratio) for the README. Needs ../shared/data.

    python bench/calibration.py
"""

from pathlib import Path

import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import get_source
from tradenova_dagster.market.profile import market_profile

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    real = pd.read_parquet(DATA / "spy_1m_rth_2022-09-30_2023-09-29.parquet")
    real["timestamp"] = real["timestamp"].dt.tz_localize(calendar.NEW_YORK).dt.tz_convert("UTC")
    real_vix = pd.read_csv(DATA / "VIX_History_1990-01-02_2026-07-31.csv")["CLOSE"]
    days = sorted(set(real["timestamp"].dt.tz_convert(calendar.NEW_YORK).dt.date))
    source = get_source("synthetic")
    synthetic = pd.concat([source.bars("SPY", day) for day in days])
    real_p = market_profile(real, real_vix)
    synth_p = market_profile(synthetic, source.vix_history("1990-01-02", "2026-07-31"))
    print("| statistic | real SPY | synthetic | synthetic / real |")
    print("|---|---:|---:|---:|")
    for name, value in real_p.items():
        print(f"| {name} | {value:.4g} | {synth_p[name]:.4g} | {synth_p[name] / value:.2f} |")


if __name__ == "__main__":
    main()
