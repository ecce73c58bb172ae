"""Smart order routing: which order type and price to send, from the quote.

The rule (``RoutingPolicy`` defaults):

1. **Liquid equities → market.** An equity quoted no wider than 0.10% of its mid (SPY is
   a cent wide at $650: 0.0015%) costs at most half that spread to cross; a market order
   fills at once.
2. **Wide spreads → limit at the mid.** An option (or equity) quoted wider than 2% of its
   mid would give away a large share of its premium by crossing the spread; a limit at
   the mid (rounded to the tick toward the far side) waits for the market to come to it.
   It may not fill: ``BrokerExecutor.cancel_stale_orders`` cleans up what rests too long.
3. **Everything else → marketable limit with a cap.** A buy limit at the ask + 1% (a sell
   at the bid − 1%), rounded to the tick: it fills now like a market order, but if the
   market jumps between the quote and the order's arrival it cannot fill more than 1%
   through the quote. Options never go out as market orders while there is a quote.

With no quote (a feed outage) the order goes out as a market order and the reason says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tradenova_dagster.domain import AssetClass, OrderType, Quote, Side, asset_class_of, require_non_negative, require_price


@dataclass(frozen=True)
class RoutingPolicy:
    liquid_equity_spread_pct: float = 0.001
    wide_spread_pct: float = 0.02
    marketable_cap_pct: float = 0.01
    tick: float = 0.01

    def __post_init__(self) -> None:
        for name in ("liquid_equity_spread_pct", "wide_spread_pct", "marketable_cap_pct"):
            value = require_non_negative(name, getattr(self, name))
            if value >= 1:
                raise ValueError(f"{name} is a fraction and must be < 1, got {value!r}")
        require_price("tick", self.tick)


@dataclass(frozen=True)
class Route:
    order_type: OrderType
    limit_price: float | None
    reason: str


def _to_tick(price: float, tick: float, up: bool) -> float:
    steps = price / tick
    steps = math.ceil(steps - 1e-9) if up else math.floor(steps + 1e-9)
    return round(max(steps, 1) * tick, 6)


def route_order(symbol: str, side: Side, quote: Quote | None, policy: RoutingPolicy = RoutingPolicy()) -> Route:
    """The order type and limit price the rule above gives for this symbol and quote."""
    side = Side.parse(side)
    buy = side is Side.BUY
    if quote is None or quote.mid <= 0:
        return Route(OrderType.MARKET, None, "no quote: market order")
    spread_pct = quote.spread_pct
    if asset_class_of(symbol) is AssetClass.EQUITY and spread_pct <= policy.liquid_equity_spread_pct:
        return Route(OrderType.MARKET, None,
                     f"liquid equity (spread {spread_pct:.4%} <= {policy.liquid_equity_spread_pct:.2%}): market")
    if spread_pct > policy.wide_spread_pct:
        price = _to_tick(quote.mid, policy.tick, up=buy)
        return Route(OrderType.LIMIT, price,
                     f"wide spread ({spread_pct:.2%} > {policy.wide_spread_pct:.2%}): limit at mid {price}")
    if buy:
        price = _to_tick(quote.ask * (1 + policy.marketable_cap_pct), policy.tick, up=False)
        price = max(price, _to_tick(quote.ask, policy.tick, up=True))
    else:
        price = _to_tick(quote.bid * (1 - policy.marketable_cap_pct), policy.tick, up=True)
        price = min(price, _to_tick(max(quote.bid, policy.tick), policy.tick, up=False))
    touch = "ask" if buy else "bid"
    return Route(OrderType.LIMIT, price,
                 f"spread {spread_pct:.2%}: marketable limit {price} ({touch} capped {policy.marketable_cap_pct:.0%} through)")
