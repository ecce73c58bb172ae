"""Synthetic SPY against real SPY: the statistics the synthetic source is calibrated on.

Prints a Markdown table (real, synthetic, ratio) for the README. Needs ../shared/data.

    python bench/calibration.py
"""

from pathlib import Path

from tradenova_dagster.market.profile import real_and_synthetic_profiles

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    real_p, synth_p = real_and_synthetic_profiles(DATA)
    print("| statistic | real SPY | synthetic | synthetic / real |")
    print("|---|---:|---:|---:|")
    for name, value in real_p.items():
        print(f"| {name} | {value:.4g} | {synth_p[name]:.4g} | {synth_p[name] / value:.2f} |")


if __name__ == "__main__":
    main()
