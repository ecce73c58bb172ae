"""SimBroker's matching: open orders against the quotes of each new market update.

No look-ahead: an order fills only on an update stamped after the one it was submitted
on (``eligible_after``), so a decision made on bar t trades at bar t+1's prices.

- market orders fill at the update's open: buys at the ask, sells at the bid, plus the
  configured slippage;
- limit orders fill at the open when it is through the limit, else at the limit when the
  update's range reaches it;
- stop orders trigger when the mid reaches the stop (at the open if it gapped through)
  and then fill like a market order; a triggered stop-limit rests as a limit order;
- one update fills at most the displayed size (the rest waits: a partial fill);
- a filled bracket/OTO entry releases its held exits for the next update; a fill of one
  side of a one-cancels-other pair cancels the other.

Time passing (``pass_time``) expires day orders at their session's close and settles an
option still held at its expiry's close as a fill of kind ``expiry`` at its intrinsic
value (``rules.intrinsic_value``) from the underlying's last price.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import Mapping

from tradenova_dagster.broker.sim_account import SimAccount
from tradenova_dagster.broker.sim_orders import OrderBook, SimOrder
from tradenova_dagster.broker.sim_pricing import Prices, Pricer, SimConfig, fee, is_option, round_price, underlying_of
from tradenova_dagster.domain import Fill, OptionContract, OrderStatus, OrderType, Side
from tradenova_dagster.market import calendar
from tradenova_dagster.market.chain import expiry_close
from tradenova_dagster.rules import intrinsic_value

EPS = 1e-9


@lru_cache(maxsize=4096)
def _expiry_close_utc(expiry: date) -> datetime:
    """``expiry_close`` as a datetime, cached: a held option's expiry is checked every bar."""
    return expiry_close(expiry).to_pydatetime()


class Matcher:
    """Fills the account's open orders against the prices of each update."""

    def __init__(self, config: SimConfig, account: SimAccount, orders: OrderBook, pricer: Pricer):
        self.config = config
        self.account = account
        self.orders = orders
        self.pricer = pricer

    def match(self, ts: datetime, prices: Mapping[str, Prices], run_id: str | None) -> list[Fill]:
        """Try every open order whose underlying has a price in ``prices``, oldest first."""
        if not self.orders.open:  # most bars
            return []
        candidates = sorted(
            (o for o in self.orders.open_orders()
             if o.status is not OrderStatus.HELD and underlying_of(o.symbol) in prices
             and (o.eligible_after is None or o.eligible_after < ts)),
            key=lambda o: (o.created_at, o.id),
        )
        fills: list[Fill] = []
        for order in candidates:
            if not order.is_open:  # a sibling's fill may have canceled it
                continue
            price = self._fill_price(order, ts, prices[underlying_of(order.symbol)])
            if price is not None:
                qty = min(order.remaining, self.pricer.displayed_size(order.symbol))
                fills.append(self._execute(order, qty, round_price(price), ts, run_id))
        return fills

    def _fill_price(self, order: SimOrder, ts: datetime, p: Prices) -> float | None:
        """The price ``order`` fills at on this update, or None."""
        bid_ask = self.pricer.bid_ask_at
        open_bid, open_ask = bid_ask(order.symbol, p.open, ts)
        ends = [bid_ask(order.symbol, x, ts) for x in (p.low, p.high)]
        low_bid, low_ask = min(ends)
        high_bid, high_ask = max(ends)
        slip = self.pricer.slippage(order.symbol, p.open)
        buy = order.side is Side.BUY
        otype = order.order_type
        if otype in (OrderType.STOP, OrderType.STOP_LIMIT) and not order.triggered:
            stop = order.stop_price
            open_mid, low_mid, high_mid = (open_bid + open_ask) / 2, (low_bid + low_ask) / 2, (high_bid + high_ask) / 2
            half = (open_ask - open_bid) / 2
            if buy and open_mid >= stop or not buy and open_mid <= stop:
                trigger_ask, trigger_bid = open_ask, open_bid
            elif buy and high_mid >= stop or not buy and low_mid <= stop:
                trigger_ask, trigger_bid = stop + half, stop - half
            else:
                return None
            order.triggered = True
            self.orders.dirty.add(order.id)
            if otype is OrderType.STOP:
                price = trigger_ask + slip if buy else trigger_bid - slip
            elif buy and trigger_ask <= order.limit_price:
                price = trigger_ask
            elif not buy and trigger_bid >= order.limit_price:
                price = trigger_bid
            else:
                return None  # a triggered stop-limit now rests as a limit order
        elif otype is OrderType.MARKET:
            price = open_ask + slip if buy else open_bid - slip
        else:  # a limit order, or a stop-limit already triggered
            limit = order.limit_price
            if buy:
                price = open_ask if open_ask <= limit else (limit if low_ask <= limit else None)
            else:
                price = open_bid if open_bid >= limit else (limit if high_bid >= limit else None)
        if price is None or price <= 0:
            return None  # no bid: nothing to sell into
        return price

    def _execute(self, order: SimOrder, qty: float, price: float, ts: datetime, run_id: str | None) -> Fill:
        cost = fee(self.config, order.symbol, order.side, qty, price)
        self.account.record_fill("trade", order.symbol, order.side, qty, price, cost, ts, order.id,
                                 order.client_order_id, run_id)
        total = order.filled_qty + qty
        order.filled_avg_price = round_price(((order.filled_avg_price or 0.0) * order.filled_qty + price * qty) / total)
        done = order.qty - total <= EPS
        self.orders.transition(order, OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED, filled_qty=total)
        if done:
            order.filled_at = ts
            if order.is_entry_with_legs:
                self.orders.release_legs(order, ts)
        self.orders.cancel_siblings(order)
        return Fill(order.id, order.symbol, qty, price, order.side, ts, cost, order.client_order_id)

    def pass_time(self, ts: datetime, run_id: str | None) -> None:
        """Day rollover (``last_equity``), day-order expiry and option expiry up to ``ts``."""
        self.account.roll_day(ts, calendar.as_date(ts), self.pricer)
        due = [o for o in self.orders.open.values() if o.expires_at is not None and o.expires_at <= ts]
        for order in sorted(due, key=lambda o: (o.created_at, o.id)):
            if order.is_open:  # its parent's expiry may have settled it already
                self.orders.end(order, OrderStatus.EXPIRED, order.expires_at, self.account.market_time)
        for symbol in [s for s in self.account.positions if is_option(s)]:
            contract = OptionContract.parse(symbol)
            close = _expiry_close_utc(contract.expiry)
            if close > ts:
                continue
            mark = self.pricer.marks.get(contract.underlying)
            value = intrinsic_value(contract, mark.price) if mark else 0.0
            for order in self.orders.open_orders():
                if order.is_open and order.symbol == symbol:
                    self.orders.end(order, OrderStatus.EXPIRED, close, self.account.market_time)
            self.account.record_fill("expiry", symbol, Side.SELL, self.account.held(symbol), value, 0.0, close,
                                     run_id=run_id)
