"""Calendar-aware schedules of the trading day (see ``trading_day.py``)."""

from schedules.trading_day import SCHEDULES

__all__ = ["SCHEDULES"]
