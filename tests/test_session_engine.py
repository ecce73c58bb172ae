"""TradingSession, unit by unit, on a real SimBroker and DuckDB with faults injected:
a rejected entry, a partial fill, a rejected ladder exit, an expiry, an unknown outcome,
and a restart that must decide exactly as an uninterrupted day.
"""

from dataclasses import replace

import pandas as pd
import pytest

from tradenova_dagster.broker import BrokerExecutor, BrokerRejected, TransientBrokerError
from tradenova_dagster.domain import Decision, Order, OrderStatus, Side, Signal
from tradenova_dagster.ledger import AccountLedger, LedgerFill
from tradenova_dagster.ledger.accounts import ledger_store
from tradenova_dagster.market.data import get_source
from tradenova_dagster.risk import ProfitManager
from tradenova_dagster.session import day as trading_day

DAY = "2026-11-20"
ACTION = {Decision.BUY_CALL: 0.9, Decision.BUY_PUT: -0.9, Decision.FLAT: 0.0}


class Scripted:
    """A signal that says what ``decide(bar index)`` says."""

    model_id = "scripted"

    def __init__(self, decide):
        self.decide, self.i = decide, -1

    def reset(self, day=None, context=None):
        self.i = -1

    def on_bar(self, bar, position=None):
        self.i += 1
        decision = self.decide(self.i)
        return Signal(bar.timestamp, bar.symbol, ACTION[decision], ACTION[decision], decision, self.model_id)


class Faulty:
    """The SimBroker, with the faults a real broker shows, switched on per test."""

    def __init__(self, sim):
        self.sim = sim
        self.reject_buys = False
        self.reject_sells = 0  # reject this many sells, then let them through
        self.partial_polls = 0  # report this many polls of a filled buy as 1 contract filled
        self.lose_next_reply = False  # the next order lands, but its reply (and lookups this bar) fail
        self.lookups_fail_at = None
        self.quotes_fail = False  # every quote request fails (a data outage)
        self.late_buys = 0  # this many buys time out and reach the broker only ``late_by`` minutes later
        self.late_by = 3
        self._held_back: list = []
        self.submitted: list[Order] = []

    def __getattr__(self, name):
        return getattr(self.sim, name)

    def submit_order(self, order):
        if order.side is Side.BUY and self.late_buys > 0:  # a proxy holds the request, then delivers it
            self.late_buys -= 1
            self._held_back.append((pd.Timestamp(self.sim.market_time) + pd.Timedelta(minutes=self.late_by), order))
            raise TransientBrokerError("read timed out", kind="timeout", maybe_sent=True)
        if order.side is Side.BUY and self.reject_buys:
            raise BrokerRejected("insufficient options buying power", 403, 40310000)
        if order.side is Side.SELL and self.reject_sells > 0:
            self.reject_sells -= 1
            raise BrokerRejected("asset is not tradable right now", 403, 40310000)
        placed = self.sim.submit_order(order)
        self.submitted.append(placed)
        if self.lose_next_reply:
            self.lose_next_reply, self.lookups_fail_at = False, self.sim.market_time
            raise TransientBrokerError("read timed out", kind="timeout", maybe_sent=True)
        return placed

    def deliver_due(self, timestamp):
        """The held-back requests whose time has come reach the broker (call at each bar)."""
        due = [o for at, o in self._held_back if pd.Timestamp(timestamp) >= at]
        self._held_back = [(at, o) for at, o in self._held_back if pd.Timestamp(timestamp) < at]
        for order in due:
            try:
                self.sim.submit_order(order)
            except BrokerRejected:
                pass  # the same client_order_id was sent again meanwhile: the broker refuses the copy

    def get_quote(self, symbol):
        if self.quotes_fail:
            raise TransientBrokerError("quote service unavailable", kind="http_503", maybe_sent=False)
        return self.sim.get_quote(symbol)

    def get_order_by_client_id(self, client_order_id):
        if self.lookups_fail_at is not None and self.sim.market_time == self.lookups_fail_at:
            raise TransientBrokerError("read timed out", kind="timeout", maybe_sent=True)
        return self.sim.get_order_by_client_id(client_order_id)

    def get_order(self, order_id):
        order = self.sim.get_order(order_id)
        if order.side is Side.BUY and order.filled_qty > 1 and self.partial_polls > 0:
            self.partial_polls -= 1
            return Order(order.symbol, order.qty, order.side, order.client_order_id, id=order.id,
                         status=OrderStatus.PARTIALLY_FILLED, filled_qty=1, filled_avg_price=order.filled_avg_price)
        return order


def _runtime(store, name="unit", profit=None, backtest=True):
    """A backtest day's runtime (fresh each time), or the ``sim:<name>`` account's, which
    carries over from run to run as a paper account does."""
    if backtest:
        runtime = trading_day.backtest_runtime(store, name, pd.Timestamp(DAY).date())
    else:
        from ops.trading import build_runtime
        from resources.broker import BrokerResource
        from resources.risk import RiskResource
        from resources.store import StoreResource

        lenient = RiskResource(max_loss_streak=1000, daily_loss_limit_pct=0.5)  # trade all day
        runtime = build_runtime(f"sim:{name}", BrokerResource(), lenient, StoreResource(db_path=str(store.path)),
                                run_id="test", session_day=pd.Timestamp(DAY).date())
    broker = Faulty(runtime.sim)
    executor = BrokerExecutor(broker, run_id=f"{runtime.account}:{DAY}", backoff_s=0.0)
    return replace(runtime, broker=broker, executor=executor,
                   profit=profit or ProfitManager(account=runtime.account, store=runtime.store))


def _run(runtime, decide, contracts=1, source=None):
    settings = trading_day.SessionSettings(contracts=contracts)
    return trading_day.run_session(runtime, DAY, source or get_source("synthetic"), Scripted(decide),
                                   mode="replay", settings=settings)


def _orders(runtime):
    return runtime.store.query_df("SELECT * FROM orders WHERE account = ? ORDER BY decision_ts", [runtime.account])


def test_a_rejected_entry_is_final_and_not_resent_while_the_signal_holds(store):
    runtime = _runtime(store)
    runtime.broker.reject_buys = True
    # CALL for bars 0-59, FLAT 60-69, CALL again from 70: two decisions to enter, two attempts.
    report = _run(runtime, lambda i: Decision.FLAT if 60 <= i < 70 else Decision.BUY_CALL)
    orders = _orders(runtime)
    entries = orders[orders["intent"] == "entry"]
    assert len(entries) == 2, entries[["client_order_id", "decision_ts"]]
    assert (entries["status"] == "rejected").all()
    assert entries["broker_message"].str.contains("insufficient options buying power").all()
    decided = pd.to_datetime(entries["decision_ts"], utc=True).dt.tz_convert("America/New_York")
    assert list(decided.dt.strftime("%H:%M")) == ["09:31", "10:41"]
    refused = runtime.store.query("SELECT allowed, reason FROM agent_decisions WHERE account = ? ORDER BY ts",
                          [runtime.account])
    assert [allowed for allowed, _ in refused] == [False, False] and "rejected" in refused[0][1]
    assert report.entries == 0 and report.flat


def test_a_partial_entry_is_under_the_stop_from_its_first_fill(store):
    runtime = _runtime(store)
    runtime.broker.partial_polls = 1
    seen = []
    profit = runtime.profit
    original = profit.propose_exits

    def watch(symbol, price):
        seen.append(profit.position(symbol).remaining_qty)
        return original(symbol, price)

    profit.propose_exits = watch
    _run(runtime, lambda i: Decision.BUY_CALL if i < 5 else Decision.FLAT, contracts=3)
    assert seen[0] == 1  # under the stop after the first contract filled, not when the order ended
    assert 3 in seen  # and the ladder saw the rest arrive, from the ledger
    fills = runtime.store.query("SELECT side, qty FROM fills WHERE account = ? ORDER BY ts, side", [runtime.account])
    assert fills[:2] == [("buy", 1.0), ("buy", 2.0)]
    assert sum(q for s, q in fills if s == "sell") == 3.0


def test_a_rejected_ladder_exit_keeps_the_stop_and_is_retried_at_most_n_times(store):
    tight = ProfitManager(stop_loss_pct=0.001, account="backtest:unit", store=ledger_store("backtest:unit"))
    # the first dip fires it
    runtime = _runtime(store, profit=tight)
    runtime.broker.reject_sells = 2
    _run(runtime, lambda i: Decision.BUY_CALL if i < 40 else Decision.FLAT)
    orders = _orders(runtime)
    stops = orders[orders["intent"] == "exit_STOP"]
    assert list(stops["status"]) == ["rejected", "rejected", "filled"]
    gaps = pd.to_datetime(stops["decision_ts"], utc=True).diff().dropna()
    assert (gaps >= pd.Timedelta(minutes=2)).all()  # backoff between attempts
    reasons = [r for (r,) in runtime.store.query("SELECT exit_reason FROM trades WHERE account = ? AND contract = ?",
                                         [runtime.account, stops["symbol"].iloc[-1]])]
    assert any(r.startswith("stop loss") for r in reasons), reasons  # booked with the ladder's reason


def test_an_exit_failing_past_its_retries_raises_an_alert(store):
    tight = ProfitManager(stop_loss_pct=0.001, account="backtest:unit", store=ledger_store("backtest:unit"))
    runtime = _runtime(store, profit=tight)
    runtime.broker.reject_sells = 10_000
    report = _run(runtime, lambda i: Decision.BUY_CALL)
    alerts = runtime.store.query("SELECT detail FROM session_events WHERE job = 'alert' AND kind = 'exit_failed'")
    assert len(alerts) == 1 and '"intent": "exit_' in alerts[0][0] and '"attempts": 4' in alerts[0][0]
    assert tight.positions()  # never fired: the position still has its ladder and stop
    assert not report.flat


def test_an_unknown_outcome_is_looked_up_next_bar_never_sent_twice(store):
    runtime = _runtime(store)
    runtime.broker.lose_next_reply = True
    _run(runtime, lambda i: Decision.BUY_CALL if i < 10 else Decision.FLAT)
    buys = [o for o in runtime.broker.submitted if o.side is Side.BUY]
    assert len(buys) == 1
    orders = _orders(runtime)
    entry = orders[orders["intent"] == "entry"].iloc[0]
    assert entry["status"] == "filled" and entry["client_order_id"] == buys[0].client_order_id
    assert runtime.store.query("SELECT count(*) FROM fills WHERE account = ? AND side = 'buy'",
                               [runtime.account]) == [(1,)]


def test_an_option_that_expired_while_held_settles_at_intrinsic_value(store):
    runtime = _runtime(store)
    contract = "SPY261119C00590000"  # expired 2026-11-19, the session before DAY
    ledger = AccountLedger(runtime.store, runtime.account)
    ledger.record_fill(LedgerFill("f-old", contract, Side.BUY, 2, 3.0, 1.3, pd.Timestamp("2026-11-18 15:00Z")))
    store.execute("INSERT INTO market_bars (symbol, day, ts, open, high, low, close, volume, source) VALUES "
                  "('SPY', '2026-11-19', '2026-11-19 20:59Z', 600, 601, 599, 596.5, 10, 'synthetic')")
    _run(runtime, lambda i: Decision.FLAT)
    fill = runtime.store.query("SELECT price, qty, reason FROM fills WHERE account = ? AND side = 'sell'", [runtime.account])
    assert fill == [(6.5, 2.0, "expiry")]
    trade = runtime.store.query("SELECT pnl, exit_reason FROM trades WHERE account = ?", [runtime.account])
    assert trade[0][0] == pytest.approx(2 * 6.5 * 100 - 2 * 3.0 * 100 - 1.3)
    assert trade[0][1].startswith("expired")


def test_risk_refusals_of_a_backtest_reach_risk_events_once_per_refusal(store):
    from tradenova_dagster.risk.manager import RiskLimits

    def replay():
        return trading_day.backtest_day(store, get_source("synthetic"), DAY, Scripted(lambda i: Decision.BUY_CALL),
                                        "vix", risk_limits=RiskLimits(max_vix=1.0))

    first = replay()
    ledger = ledger_store("backtest:vix")
    events = ledger.query("SELECT kind, rule, count(*) FROM risk_events WHERE account = 'backtest:vix' GROUP BY ALL")
    assert events == [("refusal", "vix", first.refusals)] and first.refusals > 300
    replay()  # re-running the day replaces its records, refusals included
    assert ledger.query("SELECT count(*) FROM risk_events WHERE account = 'backtest:vix'") == [(first.refusals,)]


def test_a_bar_whose_entry_a_lockout_refuses_prices_no_contract(store):
    """A halt or a lockout refuses the entry whatever the price: the bar asks the broker
    for no quote, and the refusal still names the rule and the contract it would have bought."""
    from tradenova_dagster.risk.manager import RiskLimits

    runtime = _runtime(store, "locked")
    runtime.risk.limits = RiskLimits(max_vix=1.0)
    asked = []
    quote = runtime.broker.get_quote
    runtime.broker.get_quote = lambda symbol: asked.append(symbol) or quote(symbol)
    report = _run(runtime, lambda i: Decision.BUY_CALL)
    assert report.entries == 0 and report.refusals > 300  # every bar but the flatten bar
    assert asked == []
    decisions = runtime.store.query("SELECT DISTINCT allowed, symbol IS NOT NULL, reason LIKE 'VIX % > 1.00: no new entries' "
                                    "FROM agent_decisions WHERE account = ?", [runtime.account])
    assert decisions == [(False, True, True)]
    events = runtime.store.query("SELECT rule, count(*), count(*) FILTER (WHERE values_json LIKE '%price%') "
                                 "FROM risk_events WHERE account = ? GROUP BY rule", [runtime.account])
    assert events == [("vix", report.refusals, 0)]


def test_fills_and_trades_carry_the_brokers_fill_time(store):
    runtime = _runtime(store)
    _run(runtime, lambda i: Decision.BUY_CALL if i < 30 else Decision.FLAT)
    ledger = runtime.store.query_df("SELECT client_order_id, ts FROM fills WHERE account = ? ORDER BY ts",
                                    [runtime.account])
    broker = runtime.store.query_df("SELECT client_order_id, ts FROM sim_fills WHERE account = ? ORDER BY ts",
                            [runtime.sim.account])
    assert len(ledger) >= 2 and ledger.equals(broker)
    exits = runtime.store.query("SELECT exit_time FROM trades WHERE account = ?", [runtime.account])
    assert {t for (t,) in exits} <= set(ledger["ts"])


class FirstBars:
    """A source that has only the first ``n`` bars of the day (the session then stops)."""

    def __init__(self, source, n):
        self.source, self.n = source, n

    def __getattr__(self, name):
        return getattr(self.source, name)

    def bars(self, symbol, day):
        return self.source.bars(symbol, day).iloc[: self.n].copy()


def test_an_order_that_filled_while_no_session_ran_is_booked_as_its_own_fill(store):
    source = get_source("synthetic")
    bars = source.bars("SPY", pd.Timestamp(DAY).date())
    first = _run(_runtime(store, "down", backtest=False), lambda i: Decision.BUY_CALL if i == 29 else Decision.FLAT,
                 source=FirstBars(source, 30))
    assert first.entries == 1 and first.trades == 0  # sent on the last bar, still open when it stopped
    gap = _runtime(store, "down", backtest=False)
    nxt = bars.iloc[30]
    gap.sim.on_bar(nxt["timestamp"], "SPY", {k: float(nxt[k]) for k in ("open", "high", "low", "close")}, vix=15)
    assert len(gap.sim.get_positions()) == 1  # the broker filled it while no session ran
    _run(_runtime(store, "down", backtest=False), lambda i: Decision.FLAT, source=source)
    fills = ledger_store("sim:down").query("SELECT side, reason, client_order_id LIKE 'tn-entry-%' FROM fills WHERE account = 'sim:down'"
                        " ORDER BY seq")
    assert fills == [("buy", "trade", True), ("sell", "trade", False)]  # no 'reconcile' copy of the entry
    reasons = ledger_store("sim:down").query("SELECT exit_reason FROM trades WHERE account = 'sim:down'")
    assert reasons == [("signal FLAT",)]


def test_a_restart_decides_exactly_as_the_uninterrupted_day(tmp_path, monkeypatch):
    """The scripted signal counts the bars it has seen: the restart must feed it the first
    150 again (as history, acting on none) for its decisions to line up. The two days run
    the same account in two homes."""
    from tradenova_dagster.store import Store

    def decide(i):
        return Decision.BUY_CALL if i % 47 < 20 else (Decision.BUY_PUT if i % 47 < 35 else Decision.FLAT)

    def home(name):
        monkeypatch.setenv("TRADENOVA_HOME", str(tmp_path / name))
        return Store(tmp_path / name / "tradenova.duckdb")

    source = get_source("synthetic")
    _run(_runtime(home("whole"), "r", backtest=False), decide, source=source)
    whole = ledger_store("sim:r")
    first = _run(_runtime(home("split"), "r", backtest=False), decide, source=FirstBars(source, 150))
    assert first.bars == 150
    second = _run(_runtime(home("split"), "r", backtest=False), decide, source=source)
    split = ledger_store("sim:r")
    assert split.query("SELECT kind FROM session_events WHERE job = 'alert'") == [("restart",)]
    bars = source.bars("SPY", pd.Timestamp(DAY).date())
    assert second.resumed_after == pd.Timestamp(bars["timestamp"].iloc[149]).tz_convert("UTC")
    assert second.trades >= 3  # the part after the restart trades: its decisions are compared
    for table, cols in (("trades", "contract, qty, entry_time, exit_time, round(pnl, 6), exit_reason"),
                        ("equity_curve", "ts, round(equity, 6)"),
                        ("orders", "client_order_id, intent, status")):
        q = f"SELECT {cols} FROM {table} ORDER BY 1, 2"
        assert split.query(q) == whole.query(q), table


class SwitchAt:
    """The kill switch, turned on from bar ``at`` on (counted in state() calls: one per bar)."""

    def __init__(self, switch, at):
        self.switch, self.at, self.calls = switch, at, 0

    def state(self):
        self.calls += 1
        if self.calls == self.at:
            self.switch.turn_on("drill", set_by="test")
        return self.switch.state()

    def __getattr__(self, name):
        return getattr(self.switch, name)


def test_the_kill_switch_cancels_entries_and_flattens_within_a_bar(store):
    runtime = _runtime(store)
    switch = SwitchAt(runtime.kill_switch, at=40)
    runtime = replace(runtime, kill_switch=switch)
    report = _run(runtime, lambda i: Decision.BUY_CALL, contracts=2)
    orders = _orders(runtime)
    kills = orders[orders["intent"] == "kill"]
    assert len(kills) >= 1 and (kills["status"] == "filled").all()
    decided = pd.to_datetime(kills["decision_ts"], utc=True)
    switched = decided.min()
    assert (pd.to_datetime(orders[orders["intent"] == "entry"]["decision_ts"], utc=True) < switched).all()
    assert report.flat and report.stopped.startswith("kill switch on (drill)")
    assert report.bars <= 41  # sold on the bar the switch was seen, filled on the next, then stopped
    fills = runtime.store.query("SELECT sum(CASE WHEN side = 'buy' THEN qty ELSE -qty END) FROM fills "
                                "WHERE account = ?", [runtime.account])
    assert fills == [(0.0,)]


class Counting(Scripted):
    """A scripted signal that also records the index of every bar it acts on or sees."""

    def __init__(self, decide):
        super().__init__(decide)
        self.seen = 0

    def on_bar(self, bar, position=None):
        self.seen += 1
        return super().on_bar(bar, position)


def _live(runtime, clock, decide=lambda i: Decision.BUY_CALL, source=None):
    from tradenova_dagster.session.clock import SimulatedClock

    signal = Counting(decide)
    report = trading_day.run_session(runtime, DAY, source or get_source("synthetic"), signal, mode="live",
                                     clock=SimulatedClock(clock),
                                     settings=trading_day.SessionSettings(poll_seconds=30.0))
    return report, signal


@pytest.mark.slow  # a live day commits every bar: ~30 s here
def test_a_late_live_start_acts_only_on_bars_that_complete_after_it_started(store):
    from tradenova_dagster.market import calendar

    open_, _ = calendar.session_open_close(pd.Timestamp(DAY).date())
    started = open_ + pd.Timedelta(minutes=90, seconds=13)  # 11:00:13 New York
    runtime = _runtime(store)
    report, signal = _live(runtime, started)
    orders = _orders(runtime)
    assert len(orders) and (pd.to_datetime(orders["decision_ts"], utc=True) > started).all()
    assert signal.seen == 90 + report.bars  # the missed 90 bars fed the features, none was acted on
    bars = runtime.store.query("SELECT min(bar_ts) FROM session_bars WHERE account = ?", [runtime.account])
    assert pd.Timestamp(bars[0][0]) == open_ + pd.Timedelta(minutes=90)


def test_a_live_session_launched_after_the_close_trades_nothing_and_says_why(store):
    from tradenova_dagster.market import calendar

    _, close = calendar.session_open_close(pd.Timestamp(DAY).date())
    runtime = _runtime(store)
    report, signal = _live(runtime, close + pd.Timedelta(minutes=5))
    assert report.bars == 0 and signal.seen == 0 and _orders(runtime).empty
    assert "after the close (16:00) of 2026-11-20: nothing to trade" in report.stopped
    events = runtime.store.query("SELECT kind FROM session_events WHERE account = ?", [runtime.account])
    assert events == [("not_started",)]


class Breaks(Scripted):
    """A signal whose model fails from bar ``at`` on."""

    def __init__(self, decide, at):
        super().__init__(decide)
        self.at = at

    def on_bar(self, bar, position=None):
        if self.i >= self.at:
            raise RuntimeError("model file unreadable")
        return super().on_bar(bar, position)


def test_fail_closed_no_quote_no_entry_and_the_reason_is_recorded(store):
    runtime = _runtime(store)
    runtime.broker.quotes_fail = True
    report = _run(runtime, lambda i: Decision.BUY_CALL if i < 20 else Decision.FLAT)
    assert report.entries == 0 and _orders(runtime).empty and report.bars > 300  # no crash: the day went on
    reasons = [r for (r,) in runtime.store.query("SELECT reason FROM agent_decisions WHERE account = ?",
                                                 [runtime.account])]
    assert len(reasons) == 20 and all("fail closed" in r and "quote service unavailable" in r for r in reasons)


def test_fail_closed_a_failing_model_enters_nothing_but_the_stop_still_exits(store):
    tight = ProfitManager(stop_loss_pct=0.001, account="backtest:unit", store=ledger_store("backtest:unit"))
    runtime = _runtime(store, profit=tight)
    signal = Breaks(lambda i: Decision.BUY_CALL, at=1)  # enters on bar 0; the model breaks from bar 2
    report = trading_day.run_session(runtime, DAY, get_source("synthetic"), signal, mode="replay",
                                     settings=trading_day.SessionSettings())
    orders = _orders(runtime)
    assert list(orders["intent"][:2]) == ["entry", "exit_STOP"] and (orders["intent"] == "entry").sum() == 1
    assert report.flat and report.bars > 300
    reasons = [r for (r,) in runtime.store.query("SELECT reason FROM agent_decisions WHERE account = ? AND NOT allowed",
                                                 [runtime.account])]
    assert reasons and all("signal unavailable" in r and "model file unreadable" in r for r in reasons)


@pytest.mark.slow  # a live day commits every bar: ~30 s here
def test_a_live_feed_gone_quiet_enters_nothing_says_so_once_and_keeps_managing_exits(store):
    from tradenova_dagster.market import calendar

    open_, _ = calendar.session_open_close(pd.Timestamp(DAY).date())
    runtime = _runtime(store)
    asked = []
    original = runtime.profit.propose_exits
    runtime.profit.propose_exits = lambda symbol, price: asked.append(symbol) or original(symbol, price)
    report, signal = _live(runtime, open_, lambda i: Decision.BUY_CALL if i < 60 else Decision.BUY_PUT,
                           source=FirstBars(get_source("synthetic"), 100))
    last_bar_end = open_ + pd.Timedelta(minutes=100)
    assert signal.seen == 100 and report.bars > 300  # the quiet minutes were still sessions bars
    events = runtime.store.query("SELECT job, kind FROM session_events WHERE kind = 'stale_feed'")
    assert events == [("alert", "stale_feed")]
    orders = _orders(runtime)
    late = orders[pd.to_datetime(orders["decision_ts"], utc=True) > last_bar_end]
    assert (late["intent"] != "entry").all()  # nothing entered on a stale feed...
    calls_before = len(asked)
    assert calls_before > 0  # ...but the ladder kept looking at the position on the broker's quotes
    reasons = [r for (r,) in runtime.store.query("SELECT reason FROM agent_decisions WHERE NOT allowed")]
    assert any("stale feed" in r for r in reasons)


def test_alerts_reach_a_webhook_once_per_cause(store):
    """A rejected entry and the kill switch, through the session, to a real local HTTP server."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from tradenova_dagster.alerts import Alerter

    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        runtime = _runtime(store)
        runtime = replace(runtime, kill_switch=SwitchAt(runtime.kill_switch, at=40),
                          alerts=Alerter(webhook_url=f"http://127.0.0.1:{server.server_port}/hook"))
        runtime.broker.reject_buys = True
        _run(runtime, lambda i: Decision.BUY_CALL if i < 10 or i > 20 else Decision.FLAT)
    finally:
        server.shutdown()
    kinds = [r["kind"] for r in received]
    assert kinds == ["order_rejected", "order_rejected", "kill_switch"]  # two decisions, one switch
    assert all(r["account"] == runtime.account for r in received)
    assert "insufficient options buying power" in received[0]["detail"]["error"]
    rows = runtime.store.query("SELECT kind FROM session_events WHERE job = 'alert' ORDER BY ts")
    assert [k for (k,) in rows] == kinds  # each one recorded too


def test_an_order_that_arrives_after_the_broker_said_it_never_got_it_is_adopted_and_flattened(store):
    """A timed-out entry the broker first does not know (so the ledger records it as never
    received), then takes minutes later: its position is adopted from the broker, under the
    stop, and the day still ends flat."""
    runtime = _runtime(store)
    market = runtime.sim.on_bar

    def on_bar(timestamp, *args, **kwargs):  # each new bar, the proxy delivers what it held back
        runtime.broker.deliver_due(timestamp)
        return market(timestamp, *args, **kwargs)

    runtime.sim.on_bar = on_bar
    runtime.broker.late_buys = runtime.executor.max_attempts  # every retry of the entry is held back
    report = _run(runtime, lambda i: Decision.BUY_CALL if i < 1 else Decision.FLAT)  # decided once, not again
    orders = _orders(runtime)
    entry = orders[orders["intent"] == "entry"].iloc[0]
    assert entry["status"] == "rejected"  # the broker's first answer: never received
    assert runtime.broker.get_order_by_client_id(entry["client_order_id"]).filled_qty == 1  # ...yet it filled
    reasons = runtime.store.query("SELECT reason, side FROM fills WHERE account = ? ORDER BY seq", [runtime.account])
    assert reasons[0] == ("reconcile", "buy")  # adopted from the broker's word
    assert report.flat and runtime.sim.get_positions() == []  # and flat at the end of the day


class Outage:
    """A source whose ``failing`` reads raise a connection error ``times`` times, then work."""

    def __init__(self, source, failing, times=10**9):
        self.source, self.failing, self.left = source, set(failing), times

    def __getattr__(self, name):
        read = getattr(self.source, name)
        if name not in self.failing:
            return read

        def flaky(*args, **kwargs):
            if self.left > 0:
                self.left -= 1
                raise ConnectionError(f"{name}: connection reset by peer")
            return read(*args, **kwargs)
        return flaky


def _events(runtime, kind):
    return runtime.store.query("SELECT job, detail FROM session_events WHERE account = ? AND kind = ?",
                               [runtime.account, kind])


def test_a_live_start_that_cannot_read_the_market_context_enters_nothing_yet_exits_and_flattens(store):
    """Fail closed at the start: no VIX, no IV rank → no entry all day (the lockouts would
    be guesses), but the position held from earlier is still managed and flattened."""
    from tradenova_dagster.market import calendar

    source = get_source("synthetic")
    held = _run(_runtime(store, "blind", backtest=False), lambda i: Decision.BUY_CALL, source=FirstBars(source, 30))
    assert held.entries >= 1 and not held.flat  # a call held when the feed ended
    store.execute("DELETE FROM market_context")  # the warmup's context is gone; the source cannot give it
    _, close = calendar.session_open_close(pd.Timestamp(DAY).date())
    started = close - pd.Timedelta(minutes=25)
    runtime = _runtime(store, "blind", backtest=False)
    report, signal = _live(runtime, started, source=Outage(source, {"vix_history", "daily_closes"}))
    assert signal.seen == 0 and report.flat
    orders = _orders(runtime)
    late = orders[pd.to_datetime(orders["decision_ts"], utc=True) > started]
    assert len(late) and "entry" not in set(late["intent"]) and (late["status"] == "filled").all()  # exits only
    reasons = [r for (r,) in runtime.store.query("SELECT reason FROM agent_decisions WHERE account = ? AND NOT allowed",
                                                 [runtime.account])]
    assert reasons and all("market context unavailable" in r and "connection reset" in r for r in reasons)
    assert len(_events(runtime, "data_unavailable")) == 1


def test_a_late_live_start_whose_missed_bars_cannot_be_read_enters_nothing(store):
    from tradenova_dagster.market import calendar

    _, close = calendar.session_open_close(pd.Timestamp(DAY).date())
    runtime = _runtime(store)
    report, signal = _live(runtime, close - pd.Timedelta(minutes=25),
                           source=Outage(get_source("synthetic"), {"bars"}, times=trading_day.START_TRIES))
    assert report.bars > 0 and signal.seen == 0 and _orders(runtime).empty  # the feed came back; no guess traded
    assert "earlier bars unavailable" in _events(runtime, "data_unavailable")[0][1]


def test_a_blip_at_a_live_start_is_retried_and_the_day_trades(store):
    from tradenova_dagster.market import calendar

    _, close = calendar.session_open_close(pd.Timestamp(DAY).date())
    runtime = _runtime(store)
    report, signal = _live(runtime, close - pd.Timedelta(minutes=25),
                           source=Outage(get_source("synthetic"), {"bars", "vix_history"},
                                         times=trading_day.START_TRIES - 1))
    assert signal.seen > 300 and report.entries >= 1 and _events(runtime, "data_unavailable") == []
