"""The jobs of the trading day as plain functions: warmup, session, flatten, monitor,
and a backtest day. The Dagster ops in ``ops/trading.py`` and the backtest asset call
these; they hold no Dagster code, so each can be run and tested on its own.

Every job starts from a ``Runtime``: the account's broker, executor, risk manager,
take-profit ladder, records and kill switch, all sharing the account's ledger file, so
that separate runs (warmup at 08:00, the session at 09:30, the monitor every five
minutes, the flatten at 15:50) see one account and one risk state.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from datetime import date

import pandas as pd

from tradenova_dagster.domain import OptionContract
from tradenova_dagster.market import calendar
from tradenova_dagster.market.bars_store import bars_for_day, quality_verdict
from tradenova_dagster.market.context import MarketContext, compute_context, load_context, save_context
from tradenova_dagster.market.data import MarketDataError
from tradenova_dagster.store import Store
from tradenova_dagster.strategies import refuse_look_ahead
from tradenova_dagster.session.clock import PacedClock, SimulatedClock, live_clock
from tradenova_dagster.session.engine import SessionReport, SessionSettings, TradingSession
from tradenova_dagster.session.feed import PollingFeed, ReplayFeed
from tradenova_dagster.session.runtime import Runtime

__all__ = ["Runtime", "backtest_account", "backtest_day", "backtest_days", "backtest_runtime", "flatten", "monitor", "replay_inputs", "run_session", "session_key", "set_clock", "warmup"]


def session_key(account: str, day: date) -> str:
    """The executor's run identity for a session: stable across restarts of the same day,
    so a repeated decision repeats its client_order_id and the broker refuses the copy."""
    return f"{account}:{day.isoformat()}"


# --------------------------------------------------------------------------- warmup


@dataclass
class WarmupReport:
    day: date
    account: str
    equity: float
    buying_power: float
    can_trade: bool
    kill_switch: str
    risk_level: str
    model: str
    context: dict
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def warmup(runtime: Runtime, day, source, underlying: str = "SPY", model_loader=None) -> WarmupReport:
    """Before the open: can we trade today, with what, under which limits?

    Checks broker connectivity and account status, that ``day`` is a trading day, the
    kill switch; starts the day's risk state at today's equity; checks the promoted model
    loads (``model_loader()``); computes and stores today's market context.
    """
    day = calendar.require_trading_day(day, "date")
    problems = []
    status = runtime.executor.get_account_status()
    if not status.can_trade:
        problems.append("broker account cannot trade: " + "; ".join(status.warnings))
    switch = runtime.kill_switch.state()
    if switch.on:
        problems.append(f"kill switch is on: {switch.reason}")
    level = runtime.risk.start_day(day, status.equity)
    model = "none"
    if model_loader is not None:
        try:
            model = model_loader().model_id or "unnamed"
        except ValueError as exc:
            problems.append(f"model: {exc}")
    ctx = compute_context(source, day, underlying)
    save_context(runtime.market, ctx)
    report = WarmupReport(day, runtime.account, status.equity, status.buying_power, status.can_trade,
                          switch.describe(), getattr(level, "value", str(level)), model, ctx.as_dict(), problems)
    runtime.record("warmup", "ok" if report.ok else "problems", asdict(report))
    return report


# --------------------------------------------------------------------------- the session


def trading_context(store: Store, source, day: date, underlying: str = "SPY") -> MarketContext:
    """Today's market context stored from ``source`` (the warmup's), or computed now if the
    warmup did not run on this source."""
    ctx = load_context(store, day, source.name)
    if ctx is None:
        ctx = compute_context(source, day, underlying)
        save_context(store, ctx)
    return ctx


def refuse_bad_data(store: Store, symbol: str, day: date, source: str) -> None:
    """A day whose stored bars failed their quality checks is not traded (DESIGN.md §3)."""
    verdict = quality_verdict(store, symbol, day, source)
    if verdict is not None and not verdict[0]:
        raise ValueError(f"market_bars for {symbol} on {day} from {source} failed their quality checks ({verdict[1]}); "
                         "fix the data and re-materialise the partition before trading it")


def replay_inputs(market: Store, source, day: date, symbol: str = "SPY") -> tuple[MarketContext, pd.DataFrame]:
    """What a replay of ``day`` reads from the shared database: the day's quality verdict
    (a day that failed its checks is refused), its market context and its bars (each
    fetched from ``source`` and stored the first time). Call inside ``market.hold()`` to
    read several days on one connection."""
    refuse_bad_data(market, symbol, day, source.name)
    return trading_context(market, source, day, symbol), bars_for_day(market, source, symbol, day)


def run_session(runtime: Runtime, day, source, signal, *, mode: str = "replay",
                settings: SessionSettings | None = None, pace_s: float = 0.0, clock=None,
                inputs: tuple[MarketContext, pd.DataFrame] | None = None) -> SessionReport:
    """Trade one day. ``mode``: ``replay`` (the day's stored or source bars on a simulated
    clock; ``pace_s`` seconds of real time per bar, 0 for as fast as possible) or ``live``
    (the wall clock, polling ``source`` for each new bar). ``inputs``: the replay's
    ``replay_inputs``, when the caller read them already (a backtest reads many days at once).

    Exactly once per bar: a replay resumes after the last bar this account committed on
    ``day``; a live session acts only on bars that complete after it started — the day's
    earlier bars (missed by a late start, or acted on before a restart) only rebuild the
    signal. A live session launched after the close trades nothing and says why.
    """
    day = calendar.require_trading_day(day, "date")
    settings = settings or SessionSettings()
    refuse_look_ahead(signal, day)
    open_, close = calendar.session_open_close(day)
    if mode != "replay":
        refuse_bad_data(runtime.market, settings.symbol, day, source.name)
    resumed = last_committed_bar(runtime.store, runtime.account, day)
    history, blocked = None, ""
    if mode == "replay":
        if inputs is None:
            with runtime.market.hold():  # the day's checks, context and bars on one connection
                inputs = replay_inputs(runtime.market, source, day, settings.symbol)
        ctx, bars = inputs
        if resumed is not None:  # a restart: the bars already acted on only rebuild the signal
            history, bars = bars[bars["timestamp"] <= resumed], bars[bars["timestamp"] > resumed]
            open_ = resumed
        clock = clock or (PacedClock(open_, pace_s) if pace_s > 0 else SimulatedClock(open_))
        feed = ReplayFeed(bars, clock)
    elif mode == "live":
        clock = clock or live_clock()
        started = pd.Timestamp(clock.now())
        if started >= close:
            return _after_the_close(runtime, day, started, close)
        fetch = bars_since(source, settings.symbol, day)
        ctx, history, blocked = _live_start(runtime, source, day, settings.symbol, fetch, clock, started, open_)
        feed = PollingFeed(fetch, clock, close, start_after=started, poll_seconds=settings.poll_seconds,
                           stale_after=pd.Timedelta(minutes=settings.stale_after_minutes),
                           on_problem=lambda kind, detail: _feed_problem(runtime, kind, detail))
    else:
        raise ValueError(f"mode: unknown value {mode!r}; expected replay or live")
    set_clock(runtime, clock)
    # A fast replay owns its account for seconds: one transaction for the day. Live, paper
    # and paced replays commit each bar, so a crash loses at most the bar in progress.
    fast = mode == "replay" and pace_s == 0 and runtime.sim is not None
    settings = replace(settings, persist_every_bar=not fast)
    session = TradingSession(day, runtime, signal=signal, context=ctx, feed=feed, clock=clock, settings=settings,
                             agent=getattr(signal, "model_id", "") or "rl", history=history, source=source.name,
                             entries_blocked=blocked)
    session.report.resumed_after = resumed
    if resumed is not None:
        runtime.alert("restart", f"session of {day} restarted after bar {resumed:%H:%M} UTC",
                      {"day": day, "resumed_after": resumed})
    runtime.record("session", "started", {"day": day, "mode": mode, "context": ctx.as_dict() if ctx else None,
                                          "resumed_after": resumed, "entries_blocked": blocked})
    report = session.run()
    runtime.record("session", "stopped", {"summary": report.summary(), "stopped": report.stopped,
                                          "flat": report.flat, "orders": report.orders})
    return report


START_TRIES = 3  # reads at a live start, 1 then 2 seconds apart (a blip is not a lost day)
FIRST_BARS_GRACE = pd.Timedelta(minutes=3)  # a feed may publish the first bars late; no bar after that is a fault


def _live_start(runtime: Runtime, source, day: date, symbol: str, fetch, clock, started: pd.Timestamp,
                open_: pd.Timestamp):
    """What a live session needs before its first bar: the day's market context and the
    bars that completed before it started (features only, never acted on).

    Each read is retried (``START_TRIES``); one that still fails does not end the session
    but blocks every entry for the day (fail closed: the VIX lockout and IV rank, or the
    features, would be guesses), with an alert; the session still reconciles, manages
    exits and flattens. Returns (context or None, history or None, why entries are blocked).
    """
    why = []
    try:
        ctx = _retried(lambda: trading_context(runtime.market, source, day, symbol), clock)
    except Exception as exc:  # noqa: BLE001 - any failure to read it blocks entries, it does not crash the day
        ctx = None
        why.append(f"market context unavailable ({exc!r})")
    history = bars = None
    if started >= open_ + pd.Timedelta(minutes=1):  # before the first bar completed nothing was missed
        try:
            bars = _retried(lambda: fetch(None), clock)
        except MarketDataError as exc:  # the source has no bar of the day yet
            if started >= open_ + FIRST_BARS_GRACE:
                why.append(f"the day's earlier bars unavailable ({exc!r})")
        except Exception as exc:  # noqa: BLE001 - bars missed but unreadable: the features would be wrong
            why.append(f"the day's earlier bars unavailable ({exc!r})")
    if bars is not None and len(bars):
        interval = pd.Timedelta(minutes=int(bars.attrs.get("interval_minutes", 1)))
        done = bars[pd.to_datetime(bars["timestamp"], utc=True) + interval <= started]
        history = done if len(done) else None  # missed or already acted on: features only
    blocked = ""
    if why:
        blocked = "; ".join(why) + ": no entries today, exits and flatten only"
        runtime.alert("data_unavailable", f"session of {day}: {blocked}", {"day": day, "why": why})
    return ctx, history, blocked


def _retried(read, clock, tries: int = START_TRIES):
    """``read()``, tried up to ``tries`` times, waiting 1 s, 2 s, ... on ``clock`` between."""
    for attempt in range(1, tries + 1):
        try:
            return read()
        except Exception:  # noqa: BLE001 - re-raised after the last try
            if attempt == tries:
                raise
            clock.wait_until(pd.Timestamp(clock.now()) + pd.Timedelta(seconds=attempt))


def _feed_problem(runtime: Runtime, kind: str, detail: dict) -> None:
    """A bad bar or a failed fetch is recorded; a feed gone quiet is also an alert."""
    if kind == "stale_feed":
        runtime.alert("stale_feed", f"no new bar since {detail.get('last_bar')}: entries stop, exits go on", detail)
    else:
        runtime.record("feed", kind, detail)


def bars_since(source, symbol: str, day: date):
    """``fetch(after)`` for the live feed: only the bars after ``after`` when the source can
    ask for them (Alpaca: by timestamp), else the day so far (the feed keeps the new ones)."""
    def fetch(after: pd.Timestamp | None) -> pd.DataFrame:
        if after is not None and hasattr(source, "bars_since"):
            return source.bars_since(symbol, day, after)
        return source.bars(symbol, day)
    return fetch


def _after_the_close(runtime: Runtime, day: date, started: pd.Timestamp, close: pd.Timestamp) -> SessionReport:
    report = SessionReport(day, runtime.account)
    report.stopped = (f"launched at {started.tz_convert(calendar.NEW_YORK):%H:%M} New York, after the close "
                      f"({close.tz_convert(calendar.NEW_YORK):%H:%M}) of {day}: nothing to trade")
    report.open_positions = len(runtime.broker.get_positions())
    runtime.record("session", "not_started", {"day": day, "reason": report.stopped})
    return report


def last_committed_bar(store: Store, account: str, day: date) -> pd.Timestamp | None:
    """The start of the last bar a session of ``account`` committed on ``day`` (None: none yet)."""
    rows = store.query("SELECT max(bar_ts) FROM session_bars WHERE account = ? AND day = ?", [account, day])
    return pd.Timestamp(rows[0][0]).tz_convert("UTC") if rows and rows[0][0] is not None else None


def set_clock(runtime: Runtime, clock) -> None:
    """Point every part that stamps time at the session's clock (replays run in simulated time)."""
    now = lambda: clock.now().to_pydatetime()  # noqa: E731 - a clock callable for the parts
    for part in (runtime.risk, runtime.profit, runtime.kill_switch):
        if hasattr(part, "clock"):
            part.clock = now
    if runtime.sim is not None:
        runtime.sim.clock = clock
    runtime.executor.clock = clock


# --------------------------------------------------------------------------- flatten and monitor


@dataclass
class FlattenReport:
    account: str
    reason: str
    canceled: int
    closing_orders: list[str]
    attempts: int
    flat: bool
    remaining: list[str]


def flatten(runtime: Runtime, reason: str, retries: int = 3, wait_s: float = 2.0, sleep=time.sleep) -> FlattenReport:
    """Cancel every open order, close every position, and check the account is flat.

    Closing orders are market orders with deterministic ids (intent ``flatten``, the
    minute), so a retried flatten cannot double them. A simulated broker is moved on to
    now so that the orders fill on its latest prices. Up to ``retries`` rounds.
    """
    canceled = len(runtime.executor.cancel_all_orders())
    orders: list[str] = []
    attempts = 0
    remaining = []
    for attempts in range(1, retries + 1):
        positions = runtime.broker.get_positions()
        if not positions:
            break
        for result in runtime.executor.flatten(intent=f"flatten{attempts}", cancel_orders=True):
            orders.append(result.client_order_id)
        if runtime.sim is not None:
            # A second after the latest prices it has seen: the orders, sent "now" in its time,
            # fill on those prices.
            runtime.sim.advance(pd.Timestamp(runtime.sim.market_time) + pd.Timedelta(seconds=1))
        else:
            sleep(wait_s)
    _book_flatten(runtime, orders, reason)
    remaining = [p.symbol for p in runtime.broker.get_positions()]
    report = FlattenReport(runtime.account, reason, canceled, orders, attempts, not remaining, remaining)
    runtime.record("flatten", "flat" if report.flat else "not_flat", asdict(report))
    return report


def _book_flatten(runtime: Runtime, client_order_ids: list[str], reason: str) -> None:
    """Record the flatten's orders and fills in the ledger, as the session records its own,
    so that positions (from fills) and the ladder agree with the broker afterwards."""
    from tradenova_dagster.broker.base import NotFound

    ledger = runtime.account_ledger()
    now = runtime.executor.now()
    with runtime.store.unit_of_work():
        runtime.profit.follow(ledger.book)
        runtime.risk.follow(ledger.book)
        for coid in dict.fromkeys(client_order_ids):
            try:
                order = runtime.broker.get_order_by_client_id(coid)
            except NotFound:
                continue
            if coid not in ledger.orders:
                if ledger.book.qty(order.symbol) < order.qty:
                    continue  # not a position of this ledger: the next session's reconciliation adopts it
                ledger.record_order(coid, order, symbol=order.symbol, side=order.side, qty=order.qty,
                                    intent="flatten", reason=reason, decision_ts=now)
            for fill, part in ledger.observe(order, now):
                if part is not None:
                    pos = ledger.book.positions.get(fill.symbol)
                    underlying = (OptionContract.parse(fill.symbol).underlying if OptionContract.is_option_symbol(fill.symbol)
                                  else fill.symbol)
                    runtime.book_exit(fill, part, reason, "flatten", underlying,
                              remaining=int(round(pos.qty)) if pos else 0)
        runtime.records.flush()
        runtime.profit.flush()
        runtime.risk.flush()


@dataclass
class MonitorReport:
    account: str
    equity: float
    open_orders: int
    positions: int
    stale_canceled: list[str]
    risk_level: str
    halted: bool
    warnings: list[str]


def monitor(runtime: Runtime) -> MonitorReport:
    """Every five minutes in the session: reconcile, cancel stale orders, mark the account
    against the daily-loss and drawdown limits (a breach halts new entries), heartbeat."""
    stale = runtime.executor.cancel_stale_orders()
    status = runtime.executor.get_account_status()
    positions = runtime.broker.get_positions()
    level = runtime.risk.update_equity(status.equity, {p.symbol: p.unrealized_pl for p in positions})
    runtime.risk.flush()
    report = MonitorReport(runtime.account, status.equity, status.open_orders, status.positions,
                           [o.client_order_id for o in stale], getattr(level, "value", str(level)),
                           runtime.risk.is_halted, list(status.warnings))
    runtime.record("monitor", "halted" if report.halted else "heartbeat", asdict(report))
    return report


# --------------------------------------------------------------------------- backtests

# A backtest day is this module's session on a backtest account: ``session.backtest``.
from tradenova_dagster.session.backtest import backtest_account, backtest_day, backtest_days, backtest_runtime  # noqa: E402
