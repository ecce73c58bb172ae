"""Brokers: the Broker protocol, the simulated and the Alpaca broker, and the executor.

``from tradenova_dagster.broker import BrokerExecutor`` — ``BrokerExecutor(client)`` with
a ``SimBroker``, an ``AlpacaBroker`` or an alpaca-py ``TradingClient``.
"""

from tradenova_dagster.broker.alpaca import AlpacaBroker, LiveTradingRefused
from tradenova_dagster.broker.base import (
    Asset,
    Broker,
    BrokerError,
    BrokerRejected,
    MarketClock,
    NotFound,
    TransientBrokerError,
)
from tradenova_dagster.broker.executor import (
    AccountStatus,
    BrokerExecutor,
    ExecutionResult,
    LongOnlyRefused,
    OutcomeStillUnknown,
    UnknownSymbol,
    check_option_sell,
    make_client_order_id,
)
from tradenova_dagster.broker.routing import Route, RoutingPolicy, route_order
from tradenova_dagster.broker.sim import ConcurrentAccountUpdate, SimBroker, SimConfig

__all__ = [
    "AccountStatus", "AlpacaBroker", "Asset", "Broker", "BrokerError", "BrokerExecutor", "BrokerRejected",
    "ConcurrentAccountUpdate", "ExecutionResult", "LiveTradingRefused", "LongOnlyRefused", "OutcomeStillUnknown", "MarketClock", "NotFound", "Route",
    "RoutingPolicy", "SimBroker", "SimConfig", "TransientBrokerError", "UnknownSymbol", "check_option_sell", "make_client_order_id",
    "route_order",
]
