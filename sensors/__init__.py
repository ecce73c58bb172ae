"""Sensors: the kill switch, the session watchdog and model promotion."""

from sensors.kill_switch import kill_switch_sensor
from sensors.promotion import model_promotion_sensor
from sensors.watchdog import session_watchdog_sensor

SENSORS = [kill_switch_sensor, session_watchdog_sensor, model_promotion_sensor]

__all__ = ["SENSORS"]
