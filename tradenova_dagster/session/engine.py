"""The trading session: one loop for replay, paper and live (DESIGN.md §5).

Each completed bar (from a feed that waits on a clock) goes through the same steps:

1. a simulated broker, if there is one, sees the bar (orders sent after the previous
   bar fill now, at this bar's prices: t+1 fills, no look-ahead);
2. the orders in flight are polled: new fills update the take-profit ladder, and every
   exit fill is recorded as a trade (and, when a position closes, in the risk state);
3. the account is marked to market: equity goes to the risk manager (daily loss,
   drawdown) and to the equity curve;
4. the kill switch stops the session (the flatten job, launched by its sensor, closes
   what is open); at flatten time (10 minutes before the close) it stops entering and
   closes every position;
5. open positions are checked against the ladder and the stop (``ProfitManager``);
6. the signal (``SignalModel``, EMA-smoothed) decides CALL / PUT / FLAT: a position the
   signal no longer wants is closed, and a new CALL/PUT entry goes through contract
   selection, ``check_trade_allowed`` (VIX, IV rank, the quote's spread) and
   ``BrokerExecutor`` — every decision, allowed or refused, is recorded with its reason.

The contract traded is the one the RL environment trains on (``rl.env.EnvConfig``): the
ATM strike on the $1 grid, expiring ``expiry_days`` sessions later, bought to open, so the
policy trades in the session what it learned on.

On start the session reconciles with the broker: open option positions are adopted into
the ladder, open orders are tracked (never sent again), and a restarted replay resumes
after the last bar the broker saw. Client order ids derive from (account, day, intent,
contract, bar), so a restarted run that repeats a decision repeats its id, and the
broker refuses the duplicate.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date


from tradenova_dagster.domain import (
    OPTION_MULTIPLIER,
    Bar,
    Decision,
    Fill,
    OptionContract,
    OptionType,
    Order,
    Side,
)
from tradenova_dagster.market import calendar
from tradenova_dagster.session.feed import BarTick
from tradenova_dagster.session.timetable import DayPlan

log = logging.getLogger(__name__)

_DIRECTION = {Decision.BUY_CALL: 1, Decision.BUY_PUT: -1, Decision.FLAT: 0}


@dataclass(frozen=True)
class SessionSettings:
    """What to trade and how. Defaults mirror the RL environment's contract model."""

    symbol: str = "SPY"
    contracts: int = 1
    expiry_days: int = 2
    strike_step: float = 1.0
    entry_timeout_bars: int = 3  # an entry order still open after this many bars is canceled
    persist_every_bar: bool = False  # live, paper and paced replays: write state each bar; else at the end

    def __post_init__(self) -> None:
        if not (isinstance(self.contracts, int) and self.contracts >= 1):
            raise ValueError(f"contracts must be a whole number >= 1, got {self.contracts!r}")
        if not (isinstance(self.expiry_days, int) and self.expiry_days >= 0):
            raise ValueError(f"expiry_days must be a whole number >= 0, got {self.expiry_days!r}")
        if not (math.isfinite(self.strike_step) and self.strike_step > 0):
            raise ValueError(f"strike_step must be > 0, got {self.strike_step!r}")


@dataclass
class _InFlight:
    """An order the session sent (or adopted) and still watches."""

    order: Order
    intent: str
    reason: str
    bars: int = 0
    seen_qty: float = 0.0
    seen_notional: float = 0.0  # filled qty × average price already processed


@dataclass
class _Holding:
    """A position the session manages: one option contract, bought to open."""

    symbol: str
    qty: int
    entry_price: float
    direction: int
    entry_time: object = None  # datetime of the first entry fill (None when adopted)
    bars_held: int = 0
    realized_pnl: float = 0.0
    closing: bool = False  # an exit for the whole position is in flight


@dataclass
class SessionReport:
    day: date
    account: str
    bars: int = 0
    decisions: Counter = field(default_factory=Counter)
    entries: int = 0
    exits: int = 0
    refusals: int = 0
    trades: int = 0
    realized_pnl: float = 0.0
    start_equity: float | None = None
    end_equity: float | None = None
    open_positions: int = 0
    stopped: str = ""
    orders: list[str] = field(default_factory=list)

    @property
    def flat(self) -> bool:
        return self.open_positions == 0

    def summary(self) -> str:
        if self.start_equity is None or self.end_equity is None:
            return f"session {self.day} [{self.account}]: no bar traded; {self.stopped}"
        pnl = self.end_equity - self.start_equity
        return (
            f"session {self.day} [{self.account}]: {self.bars} bars, signals "
            f"{dict(self.decisions) or '{}'}, {self.entries} entries, {self.exits} exits, "
            f"{self.refusals} refused, {self.trades} trades, realised {self.realized_pnl:+.2f}, "
            f"equity {self.start_equity:,.2f} -> {self.end_equity:,.2f} ({pnl:+.2f}), "
            f"{'flat' if self.flat else f'{self.open_positions} position(s) open'}; {self.stopped}"
        )


class TradingSession:
    """One trading day for one account (see the module docstring)."""

    def __init__(self, day, *, broker, executor, risk, profit, signal, tracker, kill_switch, context, feed,
                 clock, settings: SessionSettings | None = None, sim=None, agent: str = "rl"):
        self.day = calendar.require_trading_day(day)
        self.plan = DayPlan.for_day(self.day)
        self.broker = broker
        self.executor = executor
        self.risk = risk
        self.profit = profit
        self.signal = signal
        self.tracker = tracker
        self.kill_switch = kill_switch
        self.context = context
        self.feed = feed
        self.clock = clock
        self.settings = settings or SessionSettings()
        self.sim = sim
        self.agent = agent
        self.account = tracker.account
        self.report = SessionReport(self.day, self.account)
        self._in_flight: dict[str, _InFlight] = {}
        self._holdings: dict[str, _Holding] = {}
        self._stop_reason = ""
        self._commission = float(getattr(getattr(sim, "config", None), "option_commission_per_contract", 0.0))

    # ------------------------------------------------------------------ the loop

    def run(self) -> SessionReport:
        self._reconcile()
        self.signal.reset(self.day, self.context)
        try:
            for tick in self.feed:
                if self.settings.persist_every_bar:
                    # One write per bar: the broker keeps the account in memory during the bar.
                    with self.sim.batch() if self.sim is not None else nullcontext(), self.tracker.batch():
                        self._on_bar(tick)
                    self._flush()
                else:
                    self._on_bar(tick)
                if self._stop_reason:
                    break
        finally:
            self._finish()
        return self.report

    def _on_bar(self, tick: BarTick) -> None:
        report = self.report
        report.bars += 1
        symbol = self.settings.symbol
        if self.sim is not None:
            prices = {"open": tick.open, "high": tick.high, "low": tick.low, "close": tick.close}
            self.sim.on_bar(tick.timestamp, symbol, prices, vix=self.context.vix)
        self._poll_orders(tick)
        equity = self._mark_to_market(tick)
        if report.start_equity is None:
            report.start_equity = equity

        bar = Bar(symbol, tick.timestamp.to_pydatetime(), tick.open, tick.high, tick.low, tick.close, tick.volume)
        signal = self.signal.on_bar(bar, self._position_state())
        self.tracker.log_signal(signal)
        report.decisions[signal.decision.value] += 1

        switch = self.kill_switch.state()
        if switch.on:
            self._cancel_entries()
            self._stop_reason = f"kill switch on ({switch.reason}): session stopped; the flatten job closes positions"
            return
        if tick.end >= self.plan.flatten:
            self._cancel_entries()
            self._close_all(tick, "flatten time (10 minutes before the close)")
            if not self._holdings and not self._in_flight:
                self._stop_reason = f"flat at {tick.end.tz_convert(calendar.NEW_YORK):%H:%M} New York (flatten time)"
            return

        self._ladder_exits(tick)
        self._follow_signal(tick, signal)

    # ------------------------------------------------------------------ steps

    def _reconcile(self) -> None:
        """Adopt what the broker already holds for this account: positions and open orders."""
        for position in self.broker.get_positions():
            if not OptionContract.is_option_symbol(position.symbol) or position.qty <= 0:
                continue
            contract = OptionContract.parse(position.symbol)
            if contract.underlying != self.settings.symbol:
                continue
            qty = int(round(position.qty))
            if position.symbol not in self.profit.positions():
                self.profit.add_position(position.symbol, qty, position.avg_entry_price, "buy")
            else:
                self.profit.sync_quantity(position.symbol, qty)
            direction = 1 if contract.option_type is OptionType.CALL else -1
            self._holdings[position.symbol] = _Holding(position.symbol, qty, position.avg_entry_price, direction)
        for order in self.broker.list_orders(status="open"):
            intent = order.client_order_id.split("-")[1] if order.client_order_id.startswith("tn-") else "adopted"
            self._in_flight[order.id] = _InFlight(order, intent, "adopted on restart",
                                                  seen_qty=order.filled_qty,
                                                  seen_notional=order.filled_qty * (order.filled_avg_price or 0.0))
        account = self.broker.get_account()
        self.risk.start_day(self.day, account.equity)
        self.risk.set_positions({h.symbol: h.qty for h in self._holdings.values()})

    def _poll_orders(self, tick: BarTick) -> None:
        for order_id, flight in list(self._in_flight.items()):
            order = self.broker.get_order(order_id)
            new_qty = order.filled_qty - flight.seen_qty
            if new_qty > 1e-9:
                notional = order.filled_qty * (order.filled_avg_price or 0.0)
                price = (notional - flight.seen_notional) / new_qty
                flight.seen_qty, flight.seen_notional = order.filled_qty, notional
                self._on_fill(flight, order, int(round(new_qty)), price, tick)
            flight.bars += 1
            if not order.is_open:
                del self._in_flight[order_id]
                self._order_ended(flight, order)
            elif flight.intent == "entry" and flight.bars >= self.settings.entry_timeout_bars:
                self.broker.cancel_order(order_id)  # a resting entry is no longer the decision of this bar

    def _on_fill(self, flight: _InFlight, order: Order, qty: int, price: float, tick: BarTick) -> None:
        self.tracker.record_fill(Fill(order.id, order.symbol, qty, price, order.side, tick.end.to_pydatetime(),
                                      commission=self._commission * qty, client_order_id=order.client_order_id))
        if order.side is Side.BUY:
            holding = self._holdings.get(order.symbol)
            if holding is None:
                contract = OptionContract.parse(order.symbol)
                direction = 1 if contract.option_type is OptionType.CALL else -1
                holding = self._holdings[order.symbol] = _Holding(order.symbol, 0, price, direction,
                                                                  entry_time=tick.end.to_pydatetime())
            total = holding.qty + qty
            holding.entry_price = (holding.entry_price * holding.qty + price * qty) / total
            holding.qty = total
            return
        holding = self._holdings.get(order.symbol)
        if holding is None:
            return  # an exit of a position this session does not manage (adopted elsewhere)
        pnl = (price - holding.entry_price) * qty * OPTION_MULTIPLIER - 2 * self._commission * qty
        holding.qty -= qty
        holding.realized_pnl += pnl
        self.report.trades += 1
        self.report.realized_pnl += pnl
        self.tracker.record_trade(
            self.settings.symbol, holding.entry_price, price, qty, "long", pnl, self.agent,
            entry_time=holding.entry_time, exit_time=tick.end.to_pydatetime(), contract=order.symbol,
            commission=2 * self._commission * qty, exit_reason=flight.reason,
        )
        if holding.qty <= 0:
            self.risk.record_trade(order.symbol, qty, holding.entry_price, price, holding.realized_pnl, "buy")
            if order.symbol in self.profit.positions():  # a ladder exit has already closed it there
                self.profit.remove_position(order.symbol)
            del self._holdings[order.symbol]
        elif order.symbol in self.profit.positions():
            self.profit.sync_quantity(order.symbol, holding.qty)

    def _order_ended(self, flight: _InFlight, order: Order) -> None:
        """An entry that ends filled joins the ladder; an exit that ends short is retried."""
        holding = self._holdings.get(order.symbol)
        if order.side is Side.BUY and holding is not None and order.filled_qty > 0:
            if order.symbol in self.profit.positions():
                self.profit.sync_quantity(order.symbol, holding.qty)
            else:
                self.profit.add_position(order.symbol, holding.qty, holding.entry_price, "buy")
            self.risk.set_positions({h.symbol: h.qty for h in self._holdings.values()})
        if order.side is Side.SELL and holding is not None:
            holding.closing = False

    def _mark_to_market(self, tick: BarTick) -> float:
        account = self.broker.get_account()
        positions = self.broker.get_positions()
        value = sum(p.market_value for p in positions)
        unrealized = {p.symbol: p.unrealized_pl for p in positions}
        self.risk.update_equity(account.equity, unrealized)
        self.tracker.record_equity(tick.end.to_pydatetime(), account.equity, account.cash, value)
        for holding in self._holdings.values():
            holding.bars_held += 1
        self.report.end_equity = account.equity
        self.report.open_positions = len(positions)
        return account.equity

    def _position_state(self):
        from tradenova_dagster.rl.features import FLAT, PositionState

        if not self._holdings:
            return FLAT
        holding = next(iter(self._holdings.values()))
        mid = self.broker.get_quote(holding.symbol).mid
        pnl = (mid - holding.entry_price) / holding.entry_price if holding.entry_price > 0 else 0.0
        return PositionState(holding.direction, float(pnl), holding.bars_held)

    def _ladder_exits(self, tick: BarTick) -> None:
        for holding in list(self._holdings.values()):
            if holding.closing or holding.symbol not in self.profit.positions():
                continue
            quote = self.broker.get_quote(holding.symbol)
            if quote.bid <= 0:
                continue
            exit_ = self.profit.check_exits(holding.symbol, quote.bid)
            if exit_ is not None:
                self._sell(holding, int(exit_["qty"]), f"exit_{exit_['level']}", exit_["reason"], tick)

    def _follow_signal(self, tick: BarTick, signal) -> None:
        wanted = _DIRECTION[signal.decision]
        for holding in list(self._holdings.values()):
            if holding.direction != wanted and not holding.closing:
                self._sell(holding, holding.qty, "signal_exit", f"signal {signal.decision.value}", tick)
        if wanted == 0 or any(h.direction == wanted for h in self._holdings.values()):
            return
        if any(f.intent == "entry" for f in self._in_flight.values()):
            return
        self._enter(tick, signal, wanted)

    def _contract(self, spot: float, direction: int) -> OptionContract:
        expiry = self.day
        for _ in range(self.settings.expiry_days):
            expiry = calendar.next_session(expiry)
        strike = round(spot / self.settings.strike_step) * self.settings.strike_step
        kind = OptionType.CALL if direction > 0 else OptionType.PUT
        return OptionContract(self.settings.symbol, expiry, kind, strike)

    def _enter(self, tick: BarTick, signal, direction: int) -> None:
        contract = self._contract(tick.close, direction)
        quote = self.broker.get_quote(contract.symbol)
        qty = self.settings.contracts
        allowed, reason, level = self.risk.check_trade_allowed(
            contract.symbol, qty, quote.ask, Side.BUY, iv_rank=self.context.iv_rank, vix=self.context.vix,
            spread_pct=quote.spread_pct, is_exit=False,
        )
        self.tracker.log_decision(self.agent, signal.decision.value, allowed, reason, symbol=contract.symbol,
                                  timestamp=tick.end.to_pydatetime(), risk_level=getattr(level, "value", str(level)))
        if not allowed:
            self.report.refusals += 1
            return
        result = self.executor.execute_order(contract.symbol, qty, Side.BUY, quote=quote, intent="entry",
                                             bar_time=tick.timestamp.to_pydatetime())
        if self._track(result, "entry", f"signal {signal.decision.value}: {reason}"):
            self.report.entries += 1

    def _sell(self, holding: _Holding, qty: int, intent: str, reason: str, tick: BarTick) -> None:
        """Exits go out as market orders: a stop or a flatten must not rest at the mid."""
        qty = min(qty, holding.qty)
        if qty <= 0:
            return
        result = self.executor.execute_market_order(holding.symbol, qty, Side.SELL, intent=intent,
                                                    bar_time=tick.timestamp.to_pydatetime())
        if self._track(result, intent, reason):
            self.report.exits += 1
            holding.closing = qty == holding.qty

    def _track(self, result, intent: str, reason: str) -> bool:
        if not result.ok or result.order is None:
            log.warning("order %s not placed (%s): %s", result.client_order_id, result.outcome, result.error)
            self.report.refusals += 1
            return False
        self.report.orders.append(result.client_order_id)
        self._in_flight[result.order.id] = _InFlight(result.order, intent, reason)
        return True

    def _cancel_entries(self) -> None:
        for order_id, flight in list(self._in_flight.items()):
            if flight.intent == "entry":
                self.broker.cancel_order(order_id)

    def _close_all(self, tick: BarTick, reason: str) -> None:
        for holding in list(self._holdings.values()):
            if not holding.closing:
                self._sell(holding, holding.qty, "flatten", reason, tick)

    def _flush(self) -> None:
        for part in (self.tracker, self.risk, self.profit):
            part.flush()
        if self.sim is not None:
            self.sim.flush()

    def _finish(self) -> None:
        self.report.stopped = self.report.stopped or self._stop_reason or "feed ended"
        self._flush()
