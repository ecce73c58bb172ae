"""Alpaca's order rules, as SimBroker applies them to a new order (DESIGN.md §4).

A refusal has Alpaca's shape (HTTP status, code, message; ``broker.base``) and leaves
nothing behind. What is refused:

- options: anything but ``simple`` orders (no bracket, OCO, OTO), any time in force but
  ``day``, fractions of a contract, contracts that are not listed or have expired;
- fractional equity orders that are not simple market or limit day orders;
- time in force other than ``day`` and ``gtc`` (the simulator knows no others);
- a duplicate ``client_order_id`` (422, 40010001); a blocked account;
- bracket, OCO and OTO prices on the wrong side of the market;
- a sale of more than is held less what open sells already claim: positions are
  long-only (``ledger.book.Book.require_can_sell``), so an option sale that would open
  a short is refused as Alpaca refuses an account without uncovered-options approval;
- a buy above the buying power: a cash account, where open buys reserve their cost
  (market buys at the ask plus ``market_buy_buffer``, like Alpaca's estimate).
"""

from __future__ import annotations

from datetime import datetime
from tradenova_dagster.broker.base import DUPLICATE_CLIENT_ORDER_ID, forbidden, invalid
from tradenova_dagster.broker.sim_account import SimAccount
from tradenova_dagster.broker.sim_orders import OrderBook
from tradenova_dagster.broker.sim_pricing import Pricer, SimConfig, fee, is_option, underlying_of
from tradenova_dagster.domain import (
    OPTION_MULTIPLIER,
    OptionContract,
    Order,
    OrderClass,
    OrderType,
    Quote,
    Side,
    TimeInForce,
)
from tradenova_dagster.ledger.book import LongOnlyViolation
from tradenova_dagster.market import calendar
from tradenova_dagster.market.chain import expiry_close

EPS = 1e-9


class OrderRules:
    """Checks a new order against the account as it stands (see the module docstring)."""

    def __init__(self, config: SimConfig, account: SimAccount, orders: OrderBook, pricer: Pricer):
        self.config = config
        self.account = account
        self.orders = orders
        self.pricer = pricer

    def validate_new(self, order: Order, now: datetime) -> None:
        if order.client_order_id in self.orders.by_client_id:
            raise invalid(DUPLICATE_CLIENT_ORDER_ID)
        if self.account.trading_blocked:
            raise forbidden("trading is blocked for this account")
        self.require_asset(order.symbol, now)
        whole = abs(order.qty - round(order.qty)) <= EPS
        if is_option(order.symbol):
            if order.order_class is not OrderClass.SIMPLE:
                raise invalid(f"{order.order_class.value} orders are not supported for options trading; "
                              "options accept simple orders only")
            if order.time_in_force is not TimeInForce.DAY:
                raise invalid("order_time_in_force provided not supported for options trading; only day is accepted")
            if not whole:
                raise invalid(f"qty must be a whole number of contracts for options, got {order.qty}")
        elif not whole and (order.order_class is not OrderClass.SIMPLE or order.time_in_force is not TimeInForce.DAY
                            or order.order_type not in (OrderType.MARKET, OrderType.LIMIT)):
            raise invalid("fractional orders must be simple market or limit orders with day time in force")
        if order.time_in_force not in (TimeInForce.DAY, TimeInForce.GTC):
            raise invalid(f"time_in_force {order.time_in_force.value} is not supported by the simulator (day, gtc)")
        quote = self.pricer.quote(order.symbol, now)
        if quote is None:
            raise invalid(f"no market data for {underlying_of(order.symbol)} yet; "
                          "send a market update (on_bar) before trading it")
        self._check_class(order, quote)
        if order.side is Side.SELL:
            self.require_can_sell(order.symbol, order.qty, opens_exits=order.order_class in (OrderClass.BRACKET,
                                                                                              OrderClass.OTO))
        else:
            self._check_buying_power(order, now)

    def require_asset(self, symbol: str, now: datetime) -> None:
        marks = self.pricer.marks
        if is_option(symbol):
            contract = OptionContract.parse(symbol)
            if contract.underlying not in self.config.symbols and contract.underlying not in marks:
                raise invalid(f'asset "{symbol}" not found')
            if not calendar.is_trading_day(contract.expiry) or expiry_close(contract.expiry) <= now:
                raise invalid(f'asset "{symbol}" is not active')
            step = self.config.options.strike_step
            if abs(contract.strike / step - round(contract.strike / step)) > 1e-6:
                raise invalid(f'asset "{symbol}" not found (strikes are listed every {step})')
        elif symbol not in self.config.symbols and symbol not in marks:
            raise invalid(f'asset "{symbol}" not found')

    def _check_class(self, order: Order, quote: Quote) -> None:
        cls = order.order_class
        if cls is OrderClass.SIMPLE:
            return
        tp, sl = order.take_profit_price, order.stop_loss_price
        if cls is OrderClass.BRACKET and (tp is None or sl is None):
            raise invalid("bracket orders require take_profit.limit_price and stop_loss.stop_price")
        if cls is OrderClass.OCO:
            if tp is None or sl is None or order.order_type is not OrderType.LIMIT:
                raise invalid("oco orders must be limit orders with take_profit.limit_price and stop_loss.stop_price")
        if cls is OrderClass.OTO and (tp is None) == (sl is None):
            raise invalid("oto orders require exactly one of take_profit or stop_loss")
        if order.order_type not in (OrderType.MARKET, OrderType.LIMIT):
            raise invalid(f"{cls.value} orders must be market or limit orders")
        if cls is OrderClass.OCO:
            # The exit of an existing position: for a sell, take profit above, stop below.
            if order.side is Side.SELL and not tp > sl:
                raise invalid(f"take_profit.limit_price {tp} must be above stop_loss.stop_price {sl} for a sell")
            if order.side is Side.BUY and not tp < sl:
                raise invalid(f"take_profit.limit_price {tp} must be below stop_loss.stop_price {sl} for a buy")
            return
        base = order.limit_price if order.order_type is OrderType.LIMIT else quote.mid
        if order.side is Side.BUY:
            if tp is not None and not tp >= base + 0.01 - EPS:
                raise invalid(f"take_profit.limit_price must be >= base_price + 0.01 (base {base}, got {tp})")
            if sl is not None and not sl <= base - 0.01 + EPS:
                raise invalid(f"stop_loss.stop_price must be <= base_price - 0.01 (base {base}, got {sl})")
        else:
            if tp is not None and not tp <= base - 0.01 + EPS:
                raise invalid(f"take_profit.limit_price must be <= base_price - 0.01 (base {base}, got {tp})")
            if sl is not None and not sl >= base + 0.01 - EPS:
                raise invalid(f"stop_loss.stop_price must be >= base_price + 0.01 (base {base}, got {sl})")

    # ------------------------------------------------------------------ quantity and money

    def available_to_sell(self, symbol: str) -> float:
        """Held quantity not already claimed by open sell orders."""
        return self.account.held(symbol) - self.orders.open_sells(symbol)

    def require_can_sell(self, symbol: str, qty: float, opens_exits: bool = False) -> None:
        """Long-only: refuse a sale above what is held less open sells, with Alpaca's error.

        ``opens_exits``: a bracket or OTO sell is a short entry, refused whatever is held.
        """
        pending = self.orders.open_sells(symbol)
        try:
            if opens_exits:
                raise LongOnlyViolation(f"a {symbol} sell with exit legs would open a short")
            self.account.book.require_can_sell(symbol, qty, pending)
        except LongOnlyViolation:
            held = self.account.held(symbol)
            if is_option(symbol) and held <= EPS:
                raise forbidden("account not eligible to trade uncovered option contracts") from None
            raise forbidden(f"insufficient qty available for order (requested: {qty:g}, "
                            f"available: {max(held - pending, 0):g})") from None

    def estimate_price(self, symbol: str, limit_price: float | None, stop_price: float | None, now: datetime) -> float:
        """What a buy is expected to pay a share: its limit, else the ask (or stop) plus a buffer."""
        if limit_price is not None:
            return limit_price
        quote = self.pricer.quote(symbol, now)
        ask = quote.ask if quote is not None else (stop_price or 0.0)
        if stop_price is not None:
            ask = max(ask, stop_price)
        return ask * (1 + self.config.market_buy_buffer)

    def reserved_buying_power(self, now: datetime) -> float:
        return sum(o.remaining * self.estimate_price(o.symbol, o.limit_price, o.stop_price, now) * o.multiplier
                   for o in self.orders.open.values() if o.side is Side.BUY and o.leg_role is None)

    def buying_power(self, now: datetime) -> float:
        return max(self.account.cash - self.reserved_buying_power(now), 0.0)

    def _check_buying_power(self, order: Order, now: datetime) -> None:
        multiplier = OPTION_MULTIPLIER if is_option(order.symbol) else 1
        price = self.estimate_price(order.symbol, order.limit_price, order.stop_price, now)
        cost = order.qty * price * multiplier + fee(self.config, order.symbol, Side.BUY, order.qty, price)
        available = self.account.cash - self.reserved_buying_power(now)
        if cost > available + EPS:
            raise forbidden(f"insufficient buying power (order cost {cost:.2f}, available {max(available, 0):.2f})")
