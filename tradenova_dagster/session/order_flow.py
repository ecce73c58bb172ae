"""How the session's orders travel: sent, tracked until final, looked up when their outcome
is unknown, retried (exits) or blocked (entries) after a refusal, canceled.

``OrderFlow`` is the order half of ``engine.TradingSession`` (which inherits it, so the
loop in ``engine.py`` reads top to bottom without the mechanics). It works on the
session's attributes: ``rt`` (the Runtime), ``ledger`` (AccountLedger), ``settings``,
``report``, ``_in_flight``, ``_exit_failures``, ``_exit_next_bar``, ``_blocked_entry``,
and the session's ``_on_fill``, ``_direction`` and ``_alert_once``.
"""

from __future__ import annotations

import logging

import pandas as pd

from tradenova_dagster.domain import OrderStatus, Side
from tradenova_dagster.ledger import LongOnlyViolation
from tradenova_dagster.session.feed import BarTick
from tradenova_dagster.session.settings import InFlight

log = logging.getLogger("tradenova_dagster.session.engine")

# What the executor reports for an order the broker did not take.
_REFUSED = {"rejected", "refused", "failed"}


class OrderFlow:
    """Sending and following orders (see the module docstring)."""

    _STILL_UNKNOWN = object()

    def _lookup(self, client_order_id: str):
        """The broker's order with this client order id; None if it never received it;
        ``_STILL_UNKNOWN`` if the broker cannot say yet (ask again next bar, never re-send)."""
        from tradenova_dagster.broker import OutcomeStillUnknown

        try:
            return self.rt.executor.resolve([client_order_id])[client_order_id]
        except OutcomeStillUnknown:
            return self._STILL_UNKNOWN

    def _closing(self, symbol: str) -> bool:
        """An exit of ``symbol`` is in flight (one at a time per position)."""
        return any(f.symbol == symbol and f.side is Side.SELL for f in self._in_flight.values())

    def _poll_orders(self, now: pd.Timestamp) -> None:
        """Apply the broker's view of every order in flight (``now``: the bar's end)."""
        for coid, flight in list(self._in_flight.items()):
            if flight.broker_order_id is None:  # the outcome was unknown: look it up by its id
                order = self._lookup(coid)
                if order is self._STILL_UNKNOWN:
                    continue
                if order is None:
                    del self._in_flight[coid]
                    self.ledger.observe_missing(coid, now.to_pydatetime())
                    if flight.side is Side.SELL:
                        self._order_failed(flight, "the broker never received it", now)
                    continue
                flight.broker_order_id = order.id
            else:
                order = self.rt.broker.get_order(flight.broker_order_id)
            for fill, part in self.ledger.observe(order, now.to_pydatetime()):
                self._on_fill(flight, fill, part)
            flight.bars += 1
            if not order.is_open:
                del self._in_flight[coid]
                if order.filled_qty <= 0 and flight.side is Side.SELL:
                    self._order_failed(flight, f"{order.status.value} by the broker", now)
                elif order.status is OrderStatus.REJECTED and flight.intent == "entry":
                    self._blocked_entry = self._direction(flight.symbol)
            elif flight.intent == "entry" and flight.bars >= self.settings.entry_timeout_bars:
                self.rt.broker.cancel_order(order.id)  # a resting entry is no longer this bar's decision

    def _order_failed(self, flight: InFlight, why: str, now: pd.Timestamp) -> None:
        """An exit that ended with nothing filled: a new decision later, at most N times."""
        symbol = flight.symbol
        self._exit_failures[symbol] += 1
        self._exit_next_bar[symbol] = self.report.bars + self.settings.exit_backoff_bars
        if self._exit_failures[symbol] > self.settings.exit_retries:
            self._alert_once(f"exit_failed:{symbol}", f"exit of {symbol} failed {self._exit_failures[symbol]} times",
                             {"symbol": symbol, "intent": flight.intent, "why": why,
                              "attempts": self._exit_failures[symbol], "bar": now.isoformat()})

    def _may_exit(self, symbol: str) -> bool:
        return (self._exit_failures[symbol] <= self.settings.exit_retries
                and self.report.bars >= self._exit_next_bar.get(symbol, 0))

    def _sell(self, symbol: str, qty: float, intent: str, reason: str, tick: BarTick, levels: tuple = ()) -> None:
        """Exits go out as market orders: a stop or a flatten must not rest at the mid."""
        qty = int(round(qty))
        if qty <= 0 or self._closing(symbol):
            return
        try:
            self.ledger.book.require_can_sell(symbol, qty, self.ledger.pending_sells(symbol))
        except LongOnlyViolation as exc:
            log.error("%s", exc)
            return
        result = self.rt.executor.execute_market_order(symbol, qty, Side.SELL, intent=intent,
                                                       bar_time=tick.timestamp.to_pydatetime())
        if self._track(result, symbol, Side.SELL, qty, intent, reason, tick, levels):
            self.report.exits += 1

    def _track(self, result, symbol: str, side: Side, qty: float, intent: str, reason: str, tick: BarTick,
               levels: tuple = ()) -> bool:
        """Record the order in the ledger whatever happened; watch it if the broker may hold it."""
        decided = tick.end.to_pydatetime()
        coid = result.client_order_id
        if result.outcome in _REFUSED or (result.order is None and result.outcome != "unknown"):
            log.warning("order %s not placed (%s): %s", coid, result.outcome, result.error)
            self.rt.alert("order_rejected", f"{intent} {side.value} {qty:g} {symbol} not placed ({result.outcome})",
                          {"client_order_id": coid, "error": str(result.error), "bar": decided.isoformat()})
            self.report.refusals += 1
            if coid not in self.ledger.orders:
                self.ledger.record_order(coid, None, symbol=symbol, side=side, qty=qty, intent=intent, reason=reason,
                                         decision_ts=decided, status=OrderStatus.REJECTED,
                                         broker_message=f"{result.outcome}: {result.error}")
            if side is Side.SELL:
                self._order_failed(InFlight(coid, None, symbol, side, intent, reason, levels),
                                   f"{result.outcome}: {result.error}", tick.end)
            return False
        if coid not in self.ledger.orders:
            self.ledger.record_order(coid, result.order, symbol=symbol, side=side, qty=qty, intent=intent,
                                     reason=reason, decision_ts=decided,
                                     broker_message=None if result.ok else f"{result.outcome}: {result.error}")
        self.report.orders.append(coid)
        self._in_flight[coid] = InFlight(coid, result.order.id if result.order else None, symbol, side, intent,
                                          reason, levels)
        return True

    def _cancel_entries(self) -> None:
        for flight in self._in_flight.values():
            if flight.intent == "entry" and flight.broker_order_id is not None:
                self.rt.broker.cancel_order(flight.broker_order_id)
