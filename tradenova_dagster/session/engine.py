"""The trading session: one loop for replay, paper and live (DESIGN.md §5).

Each completed bar goes through the same steps, top to bottom:

1. **market**: a simulated broker sees the bar (orders sent after the previous bar fill
   now, at this bar's prices: t+1 fills, no look-ahead);
2. **fills**: the orders in flight are looked up; the ledger (``ledger.AccountLedger``)
   applies each through the order state machine and folds new fills into the book —
   the only place positions, entry prices and P&L come from. An exit fill records the
   round trip; a ladder exit marks its levels fired only now that it filled;
3. **mark**: equity to risk (daily loss, drawdown) and to the equity curve;
4. **signal**: the model sees the bar and the position (``SignalModel``, EMA-smoothed);
5. **controls**: the kill switch, or flatten time, stops entering, cancels open entries,
   closes every position at market and ends the session once flat;
6. **exits**: the take-profit ladder and the stop (``ProfitManager.propose_exits``);
7. **entry gate and orders**: a position the signal no longer wants is closed; a new
   CALL/PUT goes through contract selection, ``check_trade_allowed`` and the executor;
8. **commit**: everything the bar wrote, plus a ``session_bars`` row keyed by
   (account, bar), in one transaction (``Store.unit_of_work``).

Exactly once per bar: a bar either committed whole or left no trace. A restart resumes
after the last committed bar: the day's earlier bars rebuild the signal's features and
EMA (with the position it saw, kept in ``session_bars``), the ledger gives positions,
entry times and the reasons of orders still open, and client order ids derive from
(account, day, decision bar, intent), so an order re-sent for a bar that did not commit
is recognised by the broker as the same order.

A rejected order is final: the session records the broker's reason and does not send it
again on the next bar. An entry refused by the broker blocks entries in that direction
until the signal changes its mind; an exit that fails is retried as a new decision at
most ``exit_retries`` times, ``exit_backoff_bars`` bars apart, then an alert is recorded
(the flatten still runs).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date

import pandas as pd

from tradenova_dagster import rules
from tradenova_dagster.domain import Bar, Decision, OptionContract, OptionType, Side
from tradenova_dagster.market import calendar
from tradenova_dagster.ledger.view import write_view
from tradenova_dagster.market.bars_store import load_stored_bars
from tradenova_dagster.session.feed import BarTick
from tradenova_dagster.session.order_flow import OrderFlow
from tradenova_dagster.session.restart import position_state, reconcile_positions, replay_history
from tradenova_dagster.session.runtime import Runtime
from tradenova_dagster.session.settings import InFlight, SessionReport, SessionSettings
from tradenova_dagster.session.timetable import FLATTEN_BEFORE_CLOSE, DayPlan

log = logging.getLogger(__name__)

_DIRECTION = {Decision.BUY_CALL: 1, Decision.BUY_PUT: -1, Decision.FLAT: 0}


class TradingSession(OrderFlow):
    """One trading day for one account (see the module docstring).

    ``history``: the bars of this day that were already acted on (a restart); they rebuild
    the signal's state, with the position the signal saw at each (``session_bars``).
    ``source``: the name of the market data source the day trades on (its stored bars
    settle expiries). ``entries_blocked``: why nothing may be entered all day (what an
    entry needs could not be read at the start: fail closed); the session then still
    reconciles, manages exits and flattens, and ``context`` may be None.
    """

    def __init__(self, day, runtime: Runtime, *, signal, context, feed, clock, source: str,
                 settings: SessionSettings | None = None, agent: str = "rl", history: pd.DataFrame | None = None,
                 entries_blocked: str = ""):
        if context is None and not entries_blocked:
            raise ValueError("context: the day's market context is needed to enter; got None without a reason "
                             "to block entries")
        self.source = source
        self.entries_blocked = entries_blocked
        self.day = calendar.require_trading_day(day)
        self._flatten_at = DayPlan.for_day(self.day).flatten  # compared every bar
        self.rt = runtime
        self.signal = signal
        self.context = context
        self.feed = feed
        self.clock = clock
        self.settings = settings or SessionSettings()
        self.agent = agent
        self.history = history
        self.account = runtime.account
        self.ledger = runtime.account_ledger()  # a backtest carries one across its days
        self.report = SessionReport(self.day, self.account)
        self._in_flight: dict[str, InFlight] = {}
        self._blocked_entry: int = 0  # a direction whose entry the broker refused, until the signal changes
        self._exit_failures: Counter = Counter()
        self._exit_next_bar: dict[str, int] = {}
        self._alerted: set[str] = set()
        self._stop_reason = ""
        self._seen = (0, 0.0, 0)  # the position the signal saw on the current bar
        self._bar_quotes: dict = {}  # symbol -> the broker's quote on the current bar (``_quote``)

    # ------------------------------------------------------------------ the loop

    def run(self) -> SessionReport:
        self._start()
        self._heartbeat(None)
        try:
            if self.settings.persist_every_bar:
                for tick in self.feed:
                    with self.rt.store.unit_of_work(), self._buffered():
                        self._on_bar(tick)
                    self._heartbeat(tick)
                    if self._stop_reason:
                        break
            else:  # a fast replay owns its account for seconds: one transaction for the day
                with self.rt.store.unit_of_work(), self._buffered():
                    for tick in self.feed:
                        self._on_bar(tick)
                        if self._stop_reason:
                            break
        finally:
            self.report.stopped = self.report.stopped or self._stop_reason or "feed ended"
        return self.report

    def _heartbeat(self, tick: BarTick | None) -> None:
        """Once a bar is committed (or the start reconciled): tell the monitor this session is
        alive, and publish the ledger's view for those who cannot open the held file."""
        if self.rt.lease is None:
            return
        self.rt.lease.heartbeat(f"committed bar {tick.timestamp:%H:%M} UTC" if tick else "started")
        write_view(self.account, self.ledger.book, self.ledger.open_orders(),
                   tick.end if tick else self.clock.now())

    def _buffered(self):
        """Buffer the ledger's, the broker's, the records' and the risk state's writes; they
        flush into the open unit of work (the bar's, or the day's for a fast replay)."""
        from contextlib import ExitStack

        stack = ExitStack()
        stack.enter_context(self.ledger.batch())
        if self.rt.sim is not None:
            stack.enter_context(self.rt.sim.batch())
        stack.enter_context(self.rt.records.batch())
        stack.enter_context(self.rt.risk.batch())
        stack.callback(self._flush_parts)
        return stack

    def _flush_parts(self) -> None:
        self.rt.risk.flush()
        self.rt.profit.flush()

    def _on_bar(self, tick: BarTick) -> None:
        """One bar (steps 1-8 of the module docstring). The shared risk state is read once
        for the bar, and the kill switch once from the controls on (``held``): the steps
        that ask again decide on the same reading, and a change made elsewhere during the
        bar counts from the next one (a switch set before the controls, from this one)."""
        with self.rt.risk.held():
            self.report.bars += 1
            self._bar_quotes.clear()
            if self.rt.sim is not None and not tick.stale:
                prices = {"open": tick.open, "high": tick.high, "low": tick.low, "close": tick.close}
                vix = self.context.vix if self.context is not None else None  # None: the simulator's default level
                self.rt.sim.on_bar(tick.timestamp, self.settings.symbol, prices, vix=vix)
            self._poll_orders(tick.end)
            positions = self.rt.broker.get_positions()  # once a bar: strays and the mark read the same answer
            self._adopt_strays(tick, positions)
            equity = self._mark_to_market(tick, positions)
            if self.report.start_equity is None:
                self.report.start_equity = equity
            signal = None
            if self.entries_blocked:  # what an entry needs could not be read at the start
                self._no_entry(tick, self.entries_blocked)
            elif tick.stale:  # no bar came: exits on the broker's quotes, nothing new
                self._no_entry(tick, "stale feed: no new bar; exits only")
            else:
                try:
                    signal = self._signal(tick)
                except Exception as exc:  # noqa: BLE001 - fail closed: a model that cannot answer decides nothing
                    self._no_entry(tick, f"signal unavailable: {exc!r}")
            with self.rt.kill_switch.held():
                self._controls_and_orders(tick, signal)
                if self.rt.risk.is_halted:
                    state = self.rt.risk.state
                    self._alert_once("halt", f"risk halted: {state.halt_reason}", {"rule": state.halt_rule})
            self._commit_bar(tick)

    def _signal(self, tick: BarTick):
        bar = Bar(self.settings.symbol, tick.timestamp.to_pydatetime(), tick.open, tick.high, tick.low, tick.close,
                  tick.volume)
        self._seen = self._position_seen(tick)
        signal = self.signal.on_bar(bar, position_state(*self._seen))
        self.rt.records.log_signal(signal)
        self.report.decisions[signal.decision.value] += 1
        return signal

    def _controls_and_orders(self, tick: BarTick, signal) -> None:
        switch = self.rt.kill_switch.state()
        if switch.on:
            self._alert_once("kill_switch", f"kill switch on: {switch.reason}", {"set_by": switch.set_by})
            self._close_all("kill", f"kill switch: {switch.reason}", tick,
                            f"kill switch on ({switch.reason}): flat, session stopped")
            return
        if tick.end >= self._flatten_at:
            self._close_all("flatten", f"flatten time ({FLATTEN_BEFORE_CLOSE.seconds // 60} minutes before the close)",
                            tick, f"flat at {tick.end.tz_convert(calendar.NEW_YORK):%H:%M} New York (flatten time)")
            return
        self._ladder_exits(tick)
        if signal is not None:
            self._follow_signal(tick, signal)

    def _close_all(self, intent: str, why: str, tick: BarTick, stopped: str) -> None:
        """No more entries: cancel the open ones, sell every holding at market, and stop
        once flat with nothing in flight (the kill switch, or flatten time)."""
        self._cancel_entries()
        for symbol in self._holdings():
            self._sell(symbol, self.ledger.book.qty(symbol), intent, why, tick)
        if not self._holdings() and not self._in_flight:
            self._stop_reason = stopped

    def _commit_bar(self, tick: BarTick) -> None:
        """The bar's ``session_bars`` row, buffered with its other records: it lands in the
        bar's unit of work (the day's, for a fast replay), so it commits with them or not at all."""
        direction, pnl, bars = self._seen
        self.rt.records.record_session_bar(self.day, tick.timestamp.to_pydatetime(), direction, pnl, bars,
                                           self.rt.run_id)

    # ------------------------------------------------------------------ start and restart

    def _start(self) -> None:
        """Put the ladder on the ledger; settle expiries; adopt the ledger's open orders and
        book what they filled while no session ran; reconcile what still differs from the
        broker; start the day's risk state; rebuild the signal from the bars acted on."""
        with self.rt.store.unit_of_work(), self._buffered():
            self.rt.profit.follow(self.ledger.book)  # quantities and entry prices: the ledger's
            self.rt.risk.follow(self.ledger.book)  # positions, realised P&L, trades, streak: the ledger's
            for fill, part in self.ledger.settle_expired(self.day, self._underlying_close):
                self._on_fill(InFlight("", None, fill.symbol, Side.SELL, "expiry", "expired: settled at intrinsic "
                                        "value"), fill, part)
            for order in self.ledger.open_orders():
                found = self._lookup(order.client_order_id)
                if found is None:  # the broker never received it: nothing to watch
                    self.ledger.observe_missing(order.client_order_id, self.clock.now().to_pydatetime())
                    continue
                found = None if found is self._STILL_UNKNOWN else found
                levels = tuple(order.intent.removeprefix("exit_").split("+")) if order.intent.startswith("exit_") else ()
                self._in_flight[order.client_order_id] = InFlight(
                    order.client_order_id, found.id if found else None, order.symbol, order.side,
                    order.intent, order.reason, levels)
            # What those orders filled while no session ran goes in first, as their own
            # fills; only a difference that remains is the broker's word against ours.
            self._poll_orders(pd.Timestamp(self.clock.now()))
            for fill, part in reconcile_positions(self.rt, self.ledger, self._ours,
                                                  pd.Timestamp(self.clock.now()).to_pydatetime()):
                self._on_fill(InFlight("", None, fill.symbol, Side.SELL, "reconcile", "closed outside this session"),
                              fill, part)
            self.rt.profit.forget_closed()  # closed elsewhere (a flatten job): forget their ladders
            self.rt.risk.start_day(self.day, self.rt.broker.get_account().equity)
        if self.entries_blocked:
            return  # the signal decides nothing today
        self.signal.reset(self.day, self.context)
        if self.history is not None and len(self.history):
            replay_history(self.signal, self.rt, self.day, self.settings.symbol, self.history)

    def _underlying_close(self, symbol: str, day: date) -> float | None:
        bars = load_stored_bars(self.rt.market, symbol, day, self.source)
        return float(bars["close"].iloc[-1]) if len(bars) else None

    # ------------------------------------------------------------------ positions (from the ledger)

    def _ours(self, symbol: str) -> bool:
        return OptionContract.is_option_symbol(symbol) and OptionContract.parse(symbol).underlying == self.settings.symbol

    def _holdings(self) -> dict:
        return {s: p for s, p in self.ledger.book.positions.items() if self._ours(s) and p.qty > 1e-9}

    def _position_seen(self, tick: BarTick) -> tuple[int, float, int]:
        holdings = self._holdings()
        if not holdings:
            return (0, 0.0, 0)
        symbol, pos = next(iter(holdings.items()))
        direction = self._direction(symbol)
        mid = self._quote(symbol).mid  # raises: the signal then decides nothing this bar
        pnl = (mid - pos.avg_entry_price) / pos.avg_entry_price if pos.avg_entry_price > 0 else 0.0
        # Bars held, in integer nanoseconds (what pandas' Timedelta division computes, without
        # building two Timedeltas a bar).
        interval = tick.end.value - tick.timestamp.value
        bars = int((tick.end.value - pd.Timestamp(pos.opened_at).value) / interval) if pos.opened_at is not None else 0
        return (direction, float(pnl), max(bars, 0))

    # ------------------------------------------------------------------ fills

    def _on_fill(self, flight: InFlight, fill, part) -> None:
        symbol = fill.symbol
        pos = self.ledger.book.positions.get(symbol)
        if fill.side is Side.BUY:
            return  # the ladder follows the ledger: the stop covers it from its first fill
        remaining = int(round(pos.qty)) if pos is not None else 0
        self.report.trades += 1
        self.report.realized_pnl += part.pnl
        self.rt.book_exit(fill, part, flight.reason, self.agent, self.settings.symbol, flight.levels, remaining)
        if part.closes_position:
            self._exit_failures.pop(symbol, None)

    def _adopt_strays(self, tick: BarTick, positions) -> None:
        """A position of ours at the broker that the ledger does not know, with no order of
        ours in flight for it (an order the broker said it never got, then took late): the
        broker's word is booked as a ``reconcile`` fill, so the stop and the flatten cover it.
        Nothing held on either side (most bars): nothing can differ, nothing to compare."""
        if not positions and not self.ledger.book.positions:
            return
        busy = {flight.symbol for flight in self._in_flight.values()}
        strays = reconcile_positions(self.rt, self.ledger, lambda s: self._ours(s) and s not in busy,
                                     tick.end.to_pydatetime(), positions)
        for fill, part in strays:
            self._on_fill(InFlight("", None, fill.symbol, Side.SELL, "reconcile", "closed outside this session"),
                          fill, part)

    def _mark_to_market(self, tick: BarTick, positions) -> float:
        account = self.rt.broker.get_account()
        value = sum(p.market_value for p in positions)
        self.rt.risk.mark(account.equity, self._unrealized(positions))
        self.rt.records.record_equity(tick.end, account.equity, account.cash, value)
        self.report.end_equity = account.equity
        self.report.open_positions = len(positions)
        return account.equity

    def _unrealized(self, positions) -> dict[str, float]:
        """Unrealised P&L per symbol: the ledger's cost against the broker's mark; the
        broker's own figure only for what the ledger does not hold."""
        book = self.ledger.book.positions
        return {p.symbol: (book[p.symbol].unrealized_pnl(p.current_price)
                           if p.symbol in book and p.current_price is not None else p.unrealized_pl)
                for p in positions}

    # ------------------------------------------------------------------ decisions

    def _ladder_exits(self, tick: BarTick) -> None:
        for symbol in self._holdings():
            if self._closing(symbol) or not self.rt.profit.covers(symbol) or not self._may_exit(symbol):
                continue
            try:
                quote = self._quote(symbol)
            except Exception as exc:  # noqa: BLE001 - no price, no ladder decision; the next bar asks again
                self.rt.record("session", "quote_unavailable", {"symbol": symbol, "bar": tick.end.isoformat(),
                                                                 "error": repr(exc), "for": "ladder"})
                continue
            if quote.bid <= 0:
                continue
            exit_ = self.rt.profit.propose_exits(symbol, quote.bid)
            if exit_ is not None:
                self._sell(symbol, int(exit_["qty"]), "exit_" + "+".join(exit_["levels"]), exit_["reason"], tick,
                           levels=tuple(exit_["levels"]))

    def _follow_signal(self, tick: BarTick, signal) -> None:
        wanted = _DIRECTION[signal.decision]
        if wanted != self._blocked_entry:
            self._blocked_entry = 0  # the signal changed its mind: a new decision
        holdings = self._holdings()  # a sell only sends an order: the book changes when it fills
        for symbol in holdings:
            if self._direction(symbol) != wanted and not self._closing(symbol) and self._may_exit(symbol):
                self._sell(symbol, self.ledger.book.qty(symbol), "signal_exit", f"signal {signal.decision.value}", tick)
        if wanted == 0 or any(self._direction(s) == wanted for s in holdings):
            return
        if any(f.intent == "entry" for f in self._in_flight.values()):
            return
        if wanted == self._blocked_entry:
            return  # the broker refused this entry; not re-sent until the signal changes
        self._enter(tick, signal, wanted)

    def _quote(self, symbol: str):
        """The broker's quote for a holding on this bar, asked once: the signal's view of
        the position and the ladder decide on the same price (a failed ask is not kept)."""
        quote = self._bar_quotes.get(symbol)
        if quote is None:
            quote = self._bar_quotes[symbol] = self.rt.broker.get_quote(symbol)
        return quote

    @staticmethod
    def _direction(symbol: str) -> int:
        return 1 if OptionContract.parse(symbol).option_type is OptionType.CALL else -1

    def _enter(self, tick: BarTick, signal, direction: int) -> None:
        """Enter ``direction`` if risk allows: the rules that need no price first, so a bar
        refused by a halt or a lockout prices nothing; then the quote and the full check."""
        s = self.settings
        symbol = rules.select_contract(s.symbol, self.day, tick.close, direction, s.expiry_days, s.strike_step).symbol
        allowed, reason, level = self.rt.risk.entry_gate(symbol, s.contracts, iv_rank=self.context.iv_rank,
                                                         vix=self.context.vix)
        if allowed:
            try:
                quote = self.rt.broker.get_quote(symbol)
                if not quote.ask > 0:
                    raise ValueError(f"no ask for {symbol} (bid {quote.bid}, ask {quote.ask})")
            except Exception as exc:  # noqa: BLE001 - fail closed: no price, no entry
                self._no_entry(tick, f"quote unavailable for {symbol}: {exc!r}", signal, symbol)
                return
            allowed, reason, level = self.rt.risk.check_trade_allowed(
                symbol, s.contracts, quote.ask, Side.BUY, iv_rank=self.context.iv_rank, vix=self.context.vix,
                spread_pct=quote.spread_pct, is_exit=False,
            )
        if allowed:
            result = self.rt.executor.execute_order(symbol, s.contracts, Side.BUY, quote=quote,
                                                    intent="entry", bar_time=tick.timestamp.to_pydatetime())
            sent = self._track(result, symbol, Side.BUY, s.contracts, "entry",
                               f"signal {signal.decision.value}: {reason}", tick)
            if sent:
                self.report.entries += 1
            else:
                self._blocked_entry = direction
                allowed, reason = False, f"{reason}; broker: {result.outcome} ({result.error})"
        else:
            self.report.refusals += 1
        self.rt.records.log_decision(self.agent, signal.decision, allowed, reason, symbol=symbol, timestamp=tick.end,
                                     risk_level=level.value if hasattr(level, "value") else str(level))

    def _alert_once(self, key: str, title: str, detail: dict) -> None:
        """An alert per cause and session (``key``: the kind, or kind:symbol), not one per bar."""
        if key in self._alerted:
            return
        self._alerted.add(key)
        self.rt.alert(key.split(":")[0], title, detail)

    def _no_entry(self, tick: BarTick, why: str, signal=None, symbol: str | None = None) -> None:
        """Fail closed: something an entry needs could not be read; record why, enter nothing."""
        self.report.refusals += 1
        decision = signal.decision.value if signal is not None else Decision.FLAT.value
        self.rt.records.log_decision(self.agent, decision, False, f"no entry (fail closed): {why}", symbol=symbol,
                                     timestamp=tick.end.to_pydatetime())


