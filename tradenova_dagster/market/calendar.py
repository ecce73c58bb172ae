"""The NYSE calendar (exchange_calendars' XNYS): trading days, opens, closes, phases.

All answers come from exchange_calendars; nothing here lists a holiday by hand. Times
are returned timezone-aware in UTC (``pd.Timestamp``); New York wall-clock times are
available through ``NEW_YORK``.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

NEW_YORK = "America/New_York"
_NEW_YORK_ZONE = ZoneInfo(NEW_YORK)
CALENDAR_START = pd.Timestamp("1990-01-02")
PRE_MARKET_OPEN = time(4, 0)
AFTER_HOURS_CLOSE = time(20, 0)


class MarketPhase(str, enum.Enum):
    CLOSED = "closed"          # not a trading day, or outside 04:00-20:00 New York time
    PRE_MARKET = "pre_market"  # 04:00 until the open
    REGULAR = "regular"        # the open (inclusive) until the close (exclusive)
    AFTER_HOURS = "after_hours"  # the close until 20:00


@lru_cache(maxsize=1)
def xnys() -> xcals.ExchangeCalendar:
    """XNYS from 1990 (the VIX history) to two years past today."""
    end = pd.Timestamp.today().normalize() + pd.DateOffset(years=2)
    return xcals.get_calendar("XNYS", start=CALENDAR_START, end=end)


def as_date(day: date | datetime | str | pd.Timestamp, field_name: str = "day") -> date:
    """A calendar date from a date, an ISO string or a timestamp (its New York date)."""
    if type(day) is date:  # the common case, first: every quote asks about its expiry
        return day
    if type(day) is datetime:  # the simulator's clock, every bar: no pandas round trip
        return (day.astimezone(_NEW_YORK_ZONE) if day.tzinfo is not None else day).date()
    if isinstance(day, pd.Timestamp) or isinstance(day, datetime):
        ts = pd.Timestamp(day)
        if ts.tzinfo is not None:
            ts = ts.tz_convert(NEW_YORK)
        return ts.date()
    if isinstance(day, date):
        return day
    if isinstance(day, str):
        try:
            return date.fromisoformat(day.strip())
        except ValueError:
            raise ValueError(f"{field_name}: {day!r} is not a date in YYYY-MM-DD form") from None
    raise ValueError(f"{field_name}: expected a date, got {day!r}")


def _check_range(day: date) -> pd.Timestamp:
    cal = xnys()
    ts = pd.Timestamp(day)
    if not cal.first_session <= ts <= cal.last_session:
        raise ValueError(
            f"day {day} is outside the market calendar "
            f"({cal.first_session.date()} to {cal.last_session.date()})"
        )
    return ts


def is_trading_day(day) -> bool:
    return _is_session(as_date(day))


# The calendar is fixed for the process (``xnys`` is built once), so its answers per date
# are too: cached, because pricing asks them for every quote. A day outside the calendar
# raises and is not cached.
@lru_cache(maxsize=1 << 16)
def _is_session(day: date) -> bool:
    return bool(xnys().is_session(_check_range(day)))


@lru_cache(maxsize=1 << 16)
def _open_close(day: date) -> tuple[pd.Timestamp, pd.Timestamp]:
    cal = xnys()
    ts = pd.Timestamp(day)
    return cal.session_open(ts), cal.session_close(ts)


def require_trading_day(day, field_name: str = "day") -> date:
    """The date, if NYSE trades that day; otherwise a ValueError that names the next session."""
    day = as_date(day, field_name)
    if not is_trading_day(day):
        reason = "a weekend" if day.weekday() >= 5 else "an NYSE holiday"
        raise ValueError(
            f"{field_name} {day} is not a trading day ({reason}); "
            f"the next session is {next_session(day)}"
        )
    return day


def session_open_close(day) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(open, close) of that day's regular session, in UTC. Early closes included."""
    return _open_close(require_trading_day(day))


def session_minutes(day) -> int:
    """Length of the regular session in minutes: 390, or 210 on a 13:00 early close."""
    open_, close = session_open_close(day)
    return int((close - open_) / pd.Timedelta(minutes=1))


def session_bar_starts(day, interval_minutes: int = 1) -> pd.DatetimeIndex:
    """Start times (UTC) of every bar of the regular session."""
    open_, close = session_open_close(day)
    return pd.date_range(open_, close, freq=f"{interval_minutes}min", inclusive="left")


def is_early_close(day) -> bool:
    open_, close = session_open_close(day)
    return close.tz_convert(NEW_YORK).time() < time(16, 0)


def market_phase(instant: datetime | pd.Timestamp) -> MarketPhase:
    """Which part of the trading day an instant (timezone-aware) falls in."""
    ts = pd.Timestamp(instant)
    if ts.tzinfo is None:
        raise ValueError(f"instant must be timezone-aware, got naive {instant!r}")
    local = ts.tz_convert(NEW_YORK)
    day = local.date()
    if not is_trading_day(day):
        return MarketPhase.CLOSED
    open_, close = session_open_close(day)
    if open_ <= ts < close:
        return MarketPhase.REGULAR
    if local.time() >= PRE_MARKET_OPEN and ts < open_:
        return MarketPhase.PRE_MARKET
    if ts >= close and local.time() < AFTER_HOURS_CLOSE:
        return MarketPhase.AFTER_HOURS
    return MarketPhase.CLOSED


def is_market_open(instant: datetime | pd.Timestamp) -> bool:
    return market_phase(instant) is MarketPhase.REGULAR


def next_session(day) -> date:
    """The first trading day strictly after ``day``."""
    day = as_date(day)
    return xnys().date_to_session(pd.Timestamp(day + timedelta(days=1)), direction="next").date()


def previous_session(day) -> date:
    """The last trading day strictly before ``day``."""
    day = as_date(day)
    return xnys().date_to_session(pd.Timestamp(day - timedelta(days=1)), direction="previous").date()


def trading_days(start, end) -> list[date]:
    """Trading days from ``start`` to ``end``, both inclusive."""
    start, end = as_date(start, "start"), as_date(end, "end")
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    return [ts.date() for ts in xnys().sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))]


def last_completed_session(now: datetime | pd.Timestamp | None = None) -> date:
    """The most recent trading day whose regular session has closed by ``now``."""
    ts = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    if ts.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got naive {now!r}")
    day = ts.tz_convert(NEW_YORK).date()
    if is_trading_day(day) and ts >= session_open_close(day)[1]:
        return day
    return previous_session(day)


def non_trading_weekdays(start, end) -> list[date]:
    """Weekdays on which NYSE is closed (its holidays), from exchange_calendars."""
    start, end = as_date(start, "start"), as_date(end, "end")
    sessions = set(trading_days(start, end))
    weekdays = pd.bdate_range(start, end)
    return [d.date() for d in weekdays if d.date() not in sessions]
