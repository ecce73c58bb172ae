"""SimBroker's orders: what it holds for each order and leg, and how an order's state moves.

Every status change goes through ``OrderBook.transition``, which asks
``ledger.orders.advance`` (Alpaca's state machine) first: an illegal move raises
``IllegalTransition`` before anything changes, so a filled order can never be canceled,
a canceled one never fills, and the filled quantity never goes down nor above the
order's quantity.

Bracket and OTO exits are legs (``leg_role`` take_profit / stop_loss, ``parent_id``) that
are ``held`` until their entry fills; an OCO is two orders that cancel each other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Callable, Iterator

from tradenova_dagster.domain import (
    OPTION_MULTIPLIER,
    AssetClass,
    Order,
    OrderClass,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from tradenova_dagster.ledger.orders import advance
from tradenova_dagster.market import calendar

EPS = 1e-9


@dataclass
class SimOrder:
    """An order as the simulator holds it (mutable; ``OrderBook.to_domain`` gives the frozen view).

    ``status`` is set when the order is made and changed only by ``OrderBook.transition``.
    """

    id: str
    client_order_id: str
    symbol: str
    asset_class: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    order_class: OrderClass
    qty: float
    created_at: datetime
    updated_at: datetime
    run_id: str | None = None
    leg_role: str | None = None
    parent_id: str | None = None
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    status: OrderStatus = OrderStatus.NEW
    triggered: bool = False  # a stop or stop-limit whose stop has been touched
    eligible_after: datetime | None = None  # fills only on market updates after this (no look-ahead)
    expires_at: datetime | None = None
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    replaced_by: str | None = None  # kept for rows written when the simulator still replaced orders
    replaces: str | None = None

    @property
    def remaining(self) -> float:
        return self.qty - self.filled_qty

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    @property
    def multiplier(self) -> int:
        return OPTION_MULTIPLIER if self.asset_class == AssetClass.OPTION.value else 1

    @property
    def is_entry_with_legs(self) -> bool:
        return self.leg_role is None and self.order_class in (OrderClass.BRACKET, OrderClass.OTO)


@lru_cache(maxsize=512)
def _closes(day) -> tuple[datetime | None, datetime]:
    """(that day's close if it trades, the next session's close), cached per day."""
    today = calendar.session_open_close(day)[1].to_pydatetime() if calendar.is_trading_day(day) else None
    return today, calendar.session_open_close(calendar.next_session(day))[1].to_pydatetime()


def day_order_end(tif: TimeInForce, now: datetime) -> datetime | None:
    """A day order's end: today's close, or the next session's once today's has passed."""
    if tif is not TimeInForce.DAY:
        return None
    today_close, next_close = _closes(calendar.as_date(now))
    return today_close if today_close is not None and now < today_close else next_close


class OrderBook:
    """The account's orders by id and client order id, legs by parent, and what changed."""

    def __init__(self, now: Callable[[], datetime]):
        self._now = now
        self.by_id: dict[str, SimOrder] = {}
        self.by_client_id: dict[str, str] = {}
        self.legs: dict[str, list[str]] = {}  # parent id -> leg ids
        self.open: dict[str, SimOrder] = {}  # the open ones (matching and reservations look only at these)
        self.dirty: set[str] = set()

    def __iter__(self) -> Iterator[SimOrder]:
        return iter(self.by_id.values())

    def open_orders(self) -> list[SimOrder]:
        return list(self.open.values())

    def get(self, order_id: str) -> SimOrder | None:
        return self.by_id.get(str(order_id))

    def get_by_client_id(self, client_order_id: str) -> SimOrder | None:
        order_id = self.by_client_id.get(client_order_id)
        return self.by_id[order_id] if order_id is not None else None

    def index(self, order: SimOrder) -> None:
        self.by_id[order.id] = order
        self.by_client_id[order.client_order_id] = order.id
        if order.is_open:
            self.open[order.id] = order
        if order.parent_id is not None:
            self.legs.setdefault(order.parent_id, []).append(order.id)

    def touch(self, order: SimOrder) -> None:
        order.updated_at = self._now()
        self.dirty.add(order.id)

    def transition(self, order: SimOrder, new: OrderStatus, filled_qty: float | None = None) -> None:
        """Move ``order`` to ``new`` (and its filled quantity to ``filled_qty``) if Alpaca
        would: the one place an order's status changes. Raises ``IllegalTransition``
        (nothing changed) otherwise."""
        after = order.filled_qty if filled_qty is None else filled_qty
        order.status = advance(order.id, order.status, new, qty=order.qty,
                               filled_before=order.filled_qty, filled_after=after)
        order.filled_qty = after
        if not order.is_open:
            self.open.pop(order.id, None)
        self.touch(order)

    # ------------------------------------------------------------------ groups

    def legs_of(self, parent_id: str) -> list[SimOrder]:
        return [self.by_id[i] for i in self.legs.get(parent_id, ())]

    def siblings(self, order: SimOrder) -> list[SimOrder]:
        """The other side of a one-cancels-other pair (bracket legs, or an OCO's two orders)."""
        if order.order_class is OrderClass.OCO:
            group = order.parent_id or order.id
            return [o for o in self.by_id.values() if o.id != order.id and (o.id == group or o.parent_id == group)]
        if order.parent_id is not None and order.leg_role is not None:
            return [o for o in self.legs_of(order.parent_id) if o.id != order.id]
        return []

    def open_sells(self, symbol: str) -> float:
        """What open sell orders of ``symbol`` already claim (an OCO pair, or a bracket's
        two exits, count once; held exits claim nothing yet)."""
        claimed: dict[str, float] = {}
        for o in self.open.values():
            if o.symbol == symbol and o.side is Side.SELL and o.status is not OrderStatus.HELD:
                group = o.parent_id or o.id
                claimed[group] = max(claimed.get(group, 0.0), o.remaining)
        return sum(claimed.values())

    # ------------------------------------------------------------------ new orders

    def _new(self, order: Order, now: datetime, run_id: str | None, eligible_after: datetime | None,
             status: OrderStatus = OrderStatus.NEW, leg_role: str | None = None, parent_id: str | None = None,
             order_class: OrderClass | None = None) -> SimOrder:
        created = SimOrder(
            id=str(uuid.uuid4()), client_order_id=order.client_order_id, symbol=order.symbol,
            asset_class=order.asset_class.value, side=order.side, order_type=order.order_type,
            time_in_force=order.time_in_force, order_class=order_class or order.order_class, qty=order.qty,
            created_at=now, updated_at=now, run_id=run_id, leg_role=leg_role, parent_id=parent_id,
            limit_price=order.limit_price, stop_price=order.stop_price, status=status,
            eligible_after=eligible_after, expires_at=day_order_end(order.time_in_force, now),
        )
        self.index(created)
        self.dirty.add(created.id)
        return created

    def create(self, order: Order, now: datetime, run_id: str | None, eligible_after: datetime | None) -> SimOrder:
        """Record an accepted order and its legs; returns the parent."""
        cls = order.order_class
        parent = self._new(order, now, run_id, eligible_after,
                           leg_role="take_profit" if cls is OrderClass.OCO else None)
        legs = []
        sl_type = OrderType.STOP_LIMIT if order.stop_loss_limit_price is not None else OrderType.STOP
        if cls in (OrderClass.BRACKET, OrderClass.OTO):
            exit_side = order.side.opposite
            if order.take_profit_price is not None:
                legs.append(("take_profit", exit_side, OrderType.LIMIT, order.take_profit_price, None))
            if order.stop_loss_price is not None:
                legs.append(("stop_loss", exit_side, sl_type, order.stop_loss_limit_price, order.stop_loss_price))
            status = OrderStatus.HELD
        elif cls is OrderClass.OCO:
            parent.limit_price = order.take_profit_price
            legs.append(("stop_loss", order.side, sl_type, order.stop_loss_limit_price, order.stop_loss_price))
            status = OrderStatus.NEW
        for role, side, otype, limit, stop in legs:
            request = Order(order.symbol, order.qty, side, str(uuid.uuid4()), otype, order.time_in_force,
                            limit_price=limit, stop_price=stop)
            self._new(request, now, run_id, eligible_after, status=status, leg_role=role, parent_id=parent.id,
                      order_class=cls)
        return parent

    # ------------------------------------------------------------------ ends

    def end(self, order: SimOrder, status: OrderStatus, when: datetime | None = None,
            market_time: datetime | None = None) -> None:
        """Cancel or expire an open order, and settle its held legs (they follow the entry)."""
        now = when or self._now()
        self.transition(order, status)
        if status is OrderStatus.CANCELED:
            order.canceled_at = now
        else:
            order.expired_at = now
        if not order.is_entry_with_legs:
            return
        for leg in self.legs_of(order.id):
            if leg.status is not OrderStatus.HELD:
                continue
            if order.filled_qty > EPS:
                # The entry partly filled: its exits protect what did fill.
                leg.qty = order.filled_qty
                leg.eligible_after = market_time
                self.transition(leg, OrderStatus.NEW)
            else:
                self.transition(leg, OrderStatus.CANCELED)
                leg.canceled_at = now

    def release_legs(self, entry: SimOrder, ts: datetime) -> None:
        """The entry filled: its held exits trade from the next update on."""
        for leg in self.legs_of(entry.id):
            if leg.status is OrderStatus.HELD:
                leg.eligible_after = ts
                self.transition(leg, OrderStatus.NEW)

    def cancel_siblings(self, order: SimOrder) -> None:
        for sibling in self.siblings(order):
            if sibling.is_open:
                self.end(sibling, OrderStatus.CANCELED)

    # ------------------------------------------------------------------ the domain view

    def to_domain(self, o: SimOrder) -> Order:
        legs = tuple(self.to_domain(leg) for leg in sorted(self.legs_of(o.id), key=lambda x: x.leg_role or ""))
        tp = sl = sl_limit = None
        for leg in legs if o.parent_id is None else ():
            if leg.order_type is OrderType.LIMIT:
                tp = leg.limit_price
            else:
                sl, sl_limit = leg.stop_price, leg.limit_price
        if o.order_class is OrderClass.OCO and o.leg_role == "take_profit":
            tp = o.limit_price
        return Order(
            symbol=o.symbol, qty=o.qty, side=o.side, client_order_id=o.client_order_id, order_type=o.order_type,
            time_in_force=o.time_in_force, limit_price=o.limit_price, stop_price=o.stop_price,
            order_class=o.order_class, take_profit_price=tp, stop_loss_price=sl, stop_loss_limit_price=sl_limit,
            id=o.id, status=o.status, filled_qty=o.filled_qty, filled_avg_price=o.filled_avg_price,
            created_at=o.created_at, updated_at=o.updated_at, parent_id=o.parent_id, legs=legs,
            filled_at=o.filled_at,
        )
