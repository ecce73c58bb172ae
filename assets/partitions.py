"""Daily partitions that are NYSE trading days only (weekends and holidays excluded)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from tradenova_dagster.market import calendar

PARTITIONS_START = "2022-09-30"  # the first day of the real SPY 1-minute year in ../shared/data


def _holidays() -> list[dt.datetime]:
    last = calendar.xnys().last_session.date()
    new_york = ZoneInfo(calendar.NEW_YORK)
    return [
        dt.datetime.combine(day, dt.time(0, 0), tzinfo=new_york)
        for day in calendar.non_trading_weekdays(PARTITIONS_START, last)
    ]


# Weekdays from the start, minus NYSE holidays from exchange_calendars; end_offset=1 so
# that today's partition exists from midnight New York time (the 08:00 warmup needs it).
trading_day_partitions = dg.TimeWindowPartitionsDefinition(
    start=PARTITIONS_START,
    fmt="%Y-%m-%d",
    cron_schedule="0 0 * * 1-5",
    timezone=calendar.NEW_YORK,
    end_offset=1,
    exclusions=_holidays(),
)


def partition_day(partition_key: str) -> dt.date:
    """The trading day of a partition key (validated: a key is always a trading day)."""
    return calendar.require_trading_day(partition_key, "partition")
