"""The file source: the formats of ../shared/data, and clear errors on bad files."""

import pandas as pd
import pytest

from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import MarketDataError, get_source

HEADER = "datetime,open,high,low,close,volume\n"


def _write(folder, name, text):
    path = folder / name
    path.write_text(text)
    return path


def test_naive_new_york_csv_is_read_as_utc_and_extended_hours_are_dropped(tmp_path):
    _write(tmp_path, "abc_1min.csv", HEADER + "2026-11-20 09:29:00,10,10,10,10,5\n"
           "2026-11-20 09:30:00,10,11,9.5,10.5,100\n2026-11-20 09:31:00,10.5,10.6,10.4,10.6,80\n"
           "2026-11-20 16:00:00,10.6,10.6,10.6,10.6,5\n")
    bars = get_source("file", data_dir=tmp_path).bars("ABC", "2026-11-20")
    assert list(bars["timestamp"]) == [pd.Timestamp("2026-11-20 14:30", tz="UTC"), pd.Timestamp("2026-11-20 14:31", tz="UTC")]
    assert bars["close"].tolist() == [10.5, 10.6]


def test_offset_aware_csv_and_parquet(tmp_path):
    _write(tmp_path, "abc_aware.csv", HEADER + "2024-03-01 09:30:00-05:00,10,11,9.5,10.5,100\n")
    pd.DataFrame({
        "timestamp": [pd.Timestamp("2024-07-01 09:30"), pd.Timestamp("2024-07-01 09:31")],
        "open": [1.0, 1.1], "high": [1.2, 1.2], "low": [0.9, 1.0], "close": [1.1, 1.15], "volume": [5, 6],
    }).to_parquet(tmp_path / "abc_summer.parquet")
    source = get_source("file", data_dir=tmp_path)
    assert source.bars("ABC", "2024-03-01")["timestamp"].iloc[0] == pd.Timestamp("2024-03-01 14:30", tz="UTC")
    assert source.bars("ABC", "2024-07-01")["timestamp"].iloc[0] == pd.Timestamp("2024-07-01 13:30", tz="UTC")


def test_a_malformed_row_names_the_file_line_and_value(tmp_path):
    _write(tmp_path, "abc_bad.csv", HEADER + "2026-11-20 09:30:00,10,11,9.5,10.5,100\n2026-11-20 09:31:00,10.5,ten,10.4,10.6,80\n")
    with pytest.raises(MarketDataError, match=r"abc_bad.csv: line 3: column 'high' is 'ten'"):
        get_source("file", data_dir=tmp_path).bars("ABC", "2026-11-20")


def test_a_missing_value_stays_nan_for_the_quality_checks(tmp_path):
    _write(tmp_path, "abc_gap.csv", HEADER + "2026-11-20 09:30:00,10,11,9.5,,100\n")
    bars = get_source("file", data_dir=tmp_path).bars("ABC", "2026-11-20")
    assert bars["close"].isna().tolist() == [True]


def test_unknown_symbol_uncovered_day_and_missing_folder(tmp_path):
    _write(tmp_path, "abc_1min.csv", HEADER + "2026-11-20 09:30:00,10,11,9.5,10.5,100\n")
    source = get_source("file", data_dir=tmp_path)
    with pytest.raises(MarketDataError, match=r"symbol 'XYZ': no bar file .* cover ABC"):
        source.bars("XYZ", "2026-11-20")
    with pytest.raises(MarketDataError, match=r"ABC 2026-11-19: no bars .*abc_1min.csv: 2026-11-20 to 2026-11-20"):
        source.bars("ABC", "2026-11-19")
    with pytest.raises(MarketDataError, match="does not exist"):
        get_source("file", data_dir=tmp_path / "nowhere")
    with pytest.raises(MarketDataError, match="no VIX file"):
        source.vix("2026-11-20")


@pytest.mark.realdata
def test_reads_every_real_spy_format(shared_data):
    source = get_source("file", data_dir=shared_data)
    year = source.bars("SPY", "2022-10-13")  # parquet, naive New York time
    assert len(year) == 390 and year["close"].iloc[-1] == pytest.approx(365.96, abs=0.01)
    assert len(source.bars("SPY", "2022-11-25")) == 210  # half day: only the regular session is kept
    assert len(source.bars("SPY", "2023-06-05")) == 386  # the real feed's missing minutes stay missing
    aware = source.bars("SPY", "2024-03-01")  # offset-aware CSV with extended hours
    assert len(aware) == 390 and aware["close"].iloc[-1] == pytest.approx(512.84, abs=0.01)
    assert len(source.bars("SPY", "2026-01-05")) >= 383  # naive CSV, 2025-2026
    five = source.bars("SPY", "2025-06-02")  # only the 5-minute file covers it
    assert five.attrs["interval_minutes"] == 5 and len(five) == 78
    assert source.vix("2020-03-16") == pytest.approx(82.69)
    assert source.daily_closes("SPY", "2019-06-03", "2019-06-03").iloc[0] == pytest.approx(274.57, abs=0.01)
    assert calendar.is_trading_day("2022-10-13")
