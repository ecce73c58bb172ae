"""The NYSE calendar from exchange_calendars: holidays, early closes, phases, DST."""

from datetime import date

import pandas as pd
import pytest

from tradenova_dagster.market import calendar as cal


def ny(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=cal.NEW_YORK)


def test_thanksgiving_week_2026():
    assert cal.is_trading_day("2026-11-25")
    assert not cal.is_trading_day("2026-11-26")  # Thanksgiving
    assert cal.is_trading_day("2026-11-27") and cal.is_early_close("2026-11-27")
    open_, close = cal.session_open_close("2026-11-27")
    assert (open_.tz_convert(cal.NEW_YORK).strftime("%H:%M"), close.tz_convert(cal.NEW_YORK).strftime("%H:%M")) == ("09:30", "13:00")
    assert cal.session_minutes("2026-11-27") == 210 and cal.session_minutes("2026-11-25") == 390


def test_christmas_eve_2026_closes_early_and_weekends_are_closed():
    assert cal.is_early_close("2026-12-24") and not cal.is_trading_day("2026-12-25")
    assert not cal.is_trading_day("2026-11-28")


def test_session_times_follow_daylight_saving():
    # New York 09:30 is 13:30 UTC in summer (EDT) and 14:30 UTC in winter (EST).
    assert cal.session_open_close("2026-03-06")[0] == pd.Timestamp("2026-03-06 14:30", tz="UTC")
    assert cal.session_open_close("2026-03-09")[0] == pd.Timestamp("2026-03-09 13:30", tz="UTC")
    assert cal.session_open_close("2026-10-30")[1] == pd.Timestamp("2026-10-30 20:00", tz="UTC")
    assert cal.session_open_close("2026-11-02")[1] == pd.Timestamp("2026-11-02 21:00", tz="UTC")


@pytest.mark.parametrize(
    "instant,phase",
    [
        ("2026-11-24 03:59", cal.MarketPhase.CLOSED),
        ("2026-11-24 04:00", cal.MarketPhase.PRE_MARKET),
        ("2026-11-24 09:29", cal.MarketPhase.PRE_MARKET),
        ("2026-11-24 09:30", cal.MarketPhase.REGULAR),
        ("2026-11-24 15:59", cal.MarketPhase.REGULAR),
        ("2026-11-24 16:00", cal.MarketPhase.AFTER_HOURS),
        ("2026-11-24 20:00", cal.MarketPhase.CLOSED),
        ("2026-11-27 13:00", cal.MarketPhase.AFTER_HOURS),  # early close
        ("2026-11-26 11:00", cal.MarketPhase.CLOSED),  # holiday
        ("2026-11-28 11:00", cal.MarketPhase.CLOSED),  # Saturday
    ],
)
def test_market_phase(instant, phase):
    assert cal.market_phase(ny(instant)) is phase


def test_next_and_previous_sessions_skip_holidays_and_weekends():
    assert cal.next_session("2026-11-25") == date(2026, 11, 27)
    assert cal.next_session("2026-11-27") == date(2026, 11, 30)
    assert cal.previous_session("2026-11-27") == date(2026, 11, 25)
    assert cal.trading_days("2026-11-23", "2026-11-30") == [
        date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 27), date(2026, 11, 30)
    ]


def test_last_completed_session():
    assert cal.last_completed_session(ny("2026-11-24 15:59")) == date(2026, 11, 23)
    assert cal.last_completed_session(ny("2026-11-24 16:00")) == date(2026, 11, 24)
    assert cal.last_completed_session(ny("2026-11-28 12:00")) == date(2026, 11, 27)


def test_non_trading_days_are_refused_with_the_next_session():
    with pytest.raises(ValueError, match="2026-11-26 is not a trading day.*holiday.*next session is 2026-11-27"):
        cal.require_trading_day("2026-11-26")
    with pytest.raises(ValueError, match="not a date in YYYY-MM-DD form"):
        cal.require_trading_day("26/11/2026")
    with pytest.raises(ValueError, match="naive"):
        cal.market_phase(pd.Timestamp("2026-11-24 10:00"))


def test_bar_starts_cover_the_session():
    starts = cal.session_bar_starts("2026-11-27")
    assert len(starts) == 210
    assert starts[0] == pd.Timestamp("2026-11-27 14:30", tz="UTC")
    assert starts[-1] == pd.Timestamp("2026-11-27 17:59", tz="UTC")
