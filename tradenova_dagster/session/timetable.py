"""The trading day's timetable: when each job is due, from the NYSE calendar.

Schedules fire on simple crons in New York time and ask this module whether that tick
is due today, so that holidays, weekends and early closes (2026-11-27, 2026-12-24) are
decided by exchange_calendars in one place, and the Dagster schedules stay thin:

- warmup   08:00
- session  09:30 (the open)
- flatten  10 minutes before that day's close (15:50, or 12:50 on a 13:00 close)
- report   16:05 after a normal close, 15 minutes after an early close (13:15)
- monitor  every 5 minutes while the regular session is open
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import pandas as pd

from tradenova_dagster.market import calendar

WARMUP_AT = time(8, 0)
FLATTEN_BEFORE_CLOSE = timedelta(minutes=10)
REPORT_AT = time(16, 5)
REPORT_AFTER_EARLY_CLOSE = timedelta(minutes=15)
MONITOR_EVERY = timedelta(minutes=5)


class Event(str, enum.Enum):
    WARMUP = "warmup"
    SESSION = "session"
    FLATTEN = "flatten"
    REPORT = "report"
    MONITOR = "monitor"


@dataclass(frozen=True)
class DayPlan:
    """When each event happens on one trading day (New York time, timezone-aware)."""

    day: date
    open: pd.Timestamp
    close: pd.Timestamp
    early_close: bool

    @classmethod
    def for_day(cls, day) -> "DayPlan":
        day = calendar.require_trading_day(day)
        open_, close = calendar.session_open_close(day)
        return cls(day, open_.tz_convert(calendar.NEW_YORK), close.tz_convert(calendar.NEW_YORK),
                   calendar.is_early_close(day))

    def _at(self, wall: time) -> pd.Timestamp:
        return pd.Timestamp(datetime.combine(self.day, wall)).tz_localize(calendar.NEW_YORK)

    @property
    def warmup(self) -> pd.Timestamp:
        return self._at(WARMUP_AT)

    @property
    def flatten(self) -> pd.Timestamp:
        return self.close - FLATTEN_BEFORE_CLOSE

    @property
    def report(self) -> pd.Timestamp:
        return self.close + REPORT_AFTER_EARLY_CLOSE if self.early_close else self._at(REPORT_AT)

    def time_of(self, event: Event) -> pd.Timestamp | None:
        """The one time a single-shot event is due today (None for the monitor)."""
        return {
            Event.WARMUP: self.warmup,
            Event.SESSION: self.open,
            Event.FLATTEN: self.flatten,
            Event.REPORT: self.report,
        }.get(event)


def is_due(event: Event, instant: datetime | pd.Timestamp) -> tuple[bool, str]:
    """Whether ``event`` is due at ``instant`` (a schedule tick), and why (not)."""
    ts = pd.Timestamp(instant)
    if ts.tzinfo is None:
        raise ValueError(f"instant must be timezone-aware, got naive {instant!r}")
    local = ts.tz_convert(calendar.NEW_YORK)
    day = local.date()
    if not calendar.is_trading_day(day):
        kind = "a weekend" if day.weekday() >= 5 else "an NYSE holiday"
        return False, f"{day} is {kind}: no {event.value}; next session {calendar.next_session(day)}"
    plan = DayPlan.for_day(day)
    if event is Event.MONITOR:
        if plan.open <= local < plan.close:
            return True, f"market open ({local:%H:%M} New York)"
        return False, f"market closed at {local:%H:%M} New York on {day} (session {plan.open:%H:%M}-{plan.close:%H:%M})"
    due_at = plan.time_of(event)
    if local.floor("min") == due_at:
        return True, f"{event.value} due at {due_at:%H:%M} New York on {day}"
    note = " (early close)" if plan.early_close else ""
    return False, f"{event.value} on {day} is at {due_at:%H:%M} New York{note}, not {local:%H:%M}"
