"""Synthetic SPY against real SPY, and the market model's realised-volatility figures.

Prints two Markdown tables for the README: the statistics the synthetic source is
calibrated on (real, synthetic, ratio), then the market model's two realised-volatility
parameters (``market.model``: intraday volatility as a fraction of the VIX-implied figure,
the overnight share of daily variance) as measured on the real SPY 1-minute year and
Cboe's VIX in ../shared/data, beside the values the model uses. Needs ../shared/data.

    python bench/calibration.py
"""

from pathlib import Path

from tradenova_dagster.market.model import MarketModel
from tradenova_dagster.market.profile import real_and_synthetic_profiles

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MODEL_FIGURES = ("intraday_vol_to_vix", "overnight_variance_share")


def main() -> None:
    real_p, synth_p = real_and_synthetic_profiles(DATA)
    print("| statistic | real SPY | synthetic | synthetic / real |")
    print("|---|---:|---:|---:|")
    for name, value in real_p.items():
        print(f"| {name} | {value:.4g} | {synth_p[name]:.4g} | {synth_p[name] / value:.2f} |")
    model = MarketModel()
    print()
    print(f"Market model calibration: real SPY 1-minute bars, {real_p['days']:.0f} full sessions "
          "2022-09-30..2023-09-29, against the previous session's VIX close")
    print("| parameter | measured on real SPY | market.model uses |")
    print("|---|---:|---:|")
    for name in MODEL_FIGURES:
        print(f"| {name} | {real_p[name]:.3f} | {getattr(model, name):.3f} |")
    print(f"| intraday_variance_to_vix (mean of daily ratios) | {real_p['intraday_variance_to_vix']:.3f} | "
          f"{model.intraday_vol_to_vix ** 2:.3f} (squared) |")


if __name__ == "__main__":
    main()
