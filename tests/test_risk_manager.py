"""AdvancedRiskManager: the seed's rules at their exact boundaries, persistence, bad input."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone

import pytest

from tradenova_dagster.domain import Position
from tradenova_dagster.risk import AdvancedRiskManager, KillSwitch, RiskLevel

CALL = "SPY260116C00600000"
DAY = date(2025, 3, 3)


def entry(rm, symbol="SPY", qty=1, price=100.0, **kw):
    return rm.check_trade_allowed(symbol, qty, price, "buy", **kw)


# --------------------------------------------------------------------------- seed API


def test_seed_usage_works_in_memory():
    rm = AdvancedRiskManager(initial_balance=100000, daily_loss_limit_pct=0.02, max_drawdown_pct=0.10,
                             max_loss_streak=3)
    allowed, reason, level = rm.check_trade_allowed("SPY", 10, 500.0, "buy", iv_rank=50, vix=18, spread_pct=0.01)
    assert (allowed, level) == (True, RiskLevel.LOW)
    assert "allowed" in reason
    assert rm.record_trade("SPY", 10, 500.0, 495.0, -50.0, "buy") is RiskLevel.LOW
    assert rm.state.realized_pnl == -50.0 and rm.state.loss_streak == 1


# --------------------------------------------------------------------------- daily loss


@pytest.mark.parametrize("loss, halted", [(1999.99, False), (2000.0, True), (2000.01, True)])
def test_daily_loss_boundary_realised(loss, halted):
    rm = AdvancedRiskManager(initial_balance=100000)
    rm.record_trade("SPY", 1, 100.0, 90.0, -loss, "buy")
    allowed, reason, level = entry(rm)
    assert rm.is_halted is halted
    assert allowed is not halted
    if halted:
        assert level is RiskLevel.HALTED
        assert "daily loss" in reason and "2.00%" in reason and "no new entries" in reason


def test_daily_loss_counts_realised_plus_unrealised():
    rm = AdvancedRiskManager(initial_balance=100000)
    rm.start_day(DAY, 100000)
    rm.record_trade("SPY", 1, 100.0, 90.0, -1000.1, "buy")
    rm.update_equity(unrealized_pnl={CALL: -999.8})
    assert not rm.is_halted  # 1999.90
    rm.update_equity(unrealized_pnl={CALL: -999.9})  # 2000.00 in total: the float sum is 1999.9999999999998
    assert rm.is_halted and rm.state.halt_rule == "daily_loss"


def test_daily_loss_from_broker_equity_exactly_two_percent():
    rm = AdvancedRiskManager(initial_balance=50000)
    rm.start_day(DAY, 50000)
    rm.update_equity(equity=49000.01)
    assert not rm.is_halted
    rm.update_equity(equity=49000.0)
    assert rm.is_halted
    assert rm.snapshot()["daily_loss_pct"] == pytest.approx(0.02)


def test_closing_a_marked_position_does_not_count_its_loss_twice():
    rm = AdvancedRiskManager(initial_balance=100000)
    rm.start_day(DAY, 100000)
    rm.update_equity(unrealized_pnl={CALL: -1500.0})
    rm.record_trade(CALL, 3, 5.0, 0.0 + 4.5, -1500.0, "buy")  # the same loss, now realised
    assert rm.state.daily_pnl == -1500.0
    assert not rm.is_halted


def test_equity_is_the_lower_of_ledger_and_broker():
    rm = AdvancedRiskManager(initial_balance=100000)
    rm.start_day(DAY, 100000)
    rm.update_equity(equity=100500.0, unrealized_pnl=-300.0)
    assert rm.state.equity == 99700.0
    rm.update_equity(equity=99000.0, unrealized_pnl=-300.0)  # a fee the ledger never heard of
    assert rm.state.equity == 99000.0


# --------------------------------------------------------------------------- loss streak


def test_third_loss_in_a_row_shuts_down_for_the_day_and_a_win_resets():
    rm = AdvancedRiskManager(initial_balance=100000)
    rm.record_trade("SPY", 1, 100, 99, -10, "buy")
    rm.record_trade("SPY", 1, 100, 99, -10, "buy")
    rm.record_trade("SPY", 1, 100, 101, +10, "buy")  # a win resets the streak
    assert rm.state.loss_streak == 0
    rm.record_trade("SPY", 1, 100, 99, -10, "buy")
    rm.record_trade("SPY", 1, 100, 100, 0.0, "buy")  # a scratch trade neither extends nor resets
    rm.record_trade("SPY", 1, 100, 99, -10, "buy")
    assert rm.state.loss_streak == 2 and not rm.is_halted
    assert entry(rm)[2] is RiskLevel.MEDIUM  # 2/3 of the streak limit used
    rm.record_trade("SPY", 1, 100, 99, -10, "buy")
    allowed, reason, level = entry(rm)
    assert not allowed and level is RiskLevel.HALTED
    assert "3 losing trades in a row" in reason
    rm.start_day(DAY, 100000)  # the next day starts clean
    assert not rm.is_halted and rm.state.loss_streak == 0
    assert entry(rm)[0]


# --------------------------------------------------------------------------- drawdown


def test_drawdown_of_exactly_ten_percent_stops_and_survives_a_new_day():
    rm = AdvancedRiskManager(initial_balance=100000)
    rm.start_day(date(2025, 3, 3), 100000)
    rm.update_equity(equity=120000.0, unrealized_pnl=20000.0)
    assert rm.state.peak_equity == 120000.0
    rm.start_day(date(2025, 3, 4), 110000)
    rm.update_equity(equity=108000.01)
    assert not rm.is_halted  # 9.99999%
    rm.update_equity(equity=108000.0)  # exactly 10% below the 120,000 peak (and 1.8% today)
    assert rm.is_halted and rm.state.halt_rule == "max_drawdown" and rm.state.halt_scope == "stop"
    rm.start_day(date(2025, 3, 5), 108000)
    assert rm.is_halted, "a drawdown stop is not lifted by a new day"
    assert "drawdown 10.00%" in entry(rm)[1]
    rm.clear_halt("reviewed by the operator")
    assert not rm.is_halted and rm.state.peak_equity == 108000.0
    assert entry(rm)[0]


def test_drawdown_upgrades_a_day_halt_to_a_stop():
    rm = AdvancedRiskManager(initial_balance=100000)
    rm.start_day(DAY, 100000)
    rm.update_equity(equity=97000.0)
    assert rm.state.halt_rule == "daily_loss"
    rm.update_equity(equity=89000.0)
    assert (rm.state.halt_rule, rm.state.halt_scope) == ("max_drawdown", "stop")
    assert [e.rule for e in rm.events if e.kind == "halt"] == ["daily_loss", "max_drawdown"]


def test_first_start_day_sets_the_baseline():
    rm = AdvancedRiskManager()  # 100,000 placeholder
    rm.start_day(DAY, 25000.0)
    assert rm.state.peak_equity == 25000.0 and not rm.is_halted


# --------------------------------------------------------------------------- market conditions


@pytest.mark.parametrize(
    "kw, allowed, text",
    [
        ({"iv_rank": 95.0}, True, None),
        ({"iv_rank": 95.01}, False, "IV rank 95.01 > 95.00: no new entries"),
        ({"vix": 32.0}, True, None),
        ({"vix": 32.01}, False, "VIX 32.01 > 32.00: no new entries"),
        ({"vix": 32.001}, False, "VIX 32.001 > 32.000: no new entries"),
        ({"spread_pct": 0.05}, True, None),
        ({"spread_pct": 0.0501}, False, "spread 5.01% of mid > 5.00%: no entry in SPY"),
    ],
)
def test_market_condition_boundaries(kw, allowed, text):
    rm = AdvancedRiskManager(initial_balance=100000)
    ok, reason, _ = entry(rm, **kw)
    assert ok is allowed
    if text:
        assert reason == text
        (event,) = rm.events
        assert event.kind == "refusal" and event.reason == text and event.symbol == "SPY"
    else:
        assert rm.events == []


def test_spread_of_exactly_five_percent_from_a_quote_is_allowed():
    from tradenova_dagster.domain import Quote

    quote = Quote(CALL, datetime(2025, 3, 3, 15, tzinfo=timezone.utc), bid=0.0195, ask=0.0205)  # 0.001 / 0.02
    assert quote.spread_pct > 0.05  # float noise: 0.050000000000000044
    rm = AdvancedRiskManager(initial_balance=100000)
    assert rm.check_trade_allowed(CALL, 1, quote.ask, "buy", spread_pct=quote.spread_pct)[0]


def test_conditions_are_configurable():
    rm = AdvancedRiskManager(initial_balance=100000, max_vix=25, max_iv_rank=80, max_spread_pct=0.02)
    assert not entry(rm, vix=25.5)[0]
    assert not entry(rm, iv_rank=81)[0]
    assert not entry(rm, spread_pct=0.03)[0]
    assert entry(rm, vix=25, iv_rank=80, spread_pct=0.02)[0]


# --------------------------------------------------------------------------- position limits


def test_max_open_positions_and_position_size():
    rm = AdvancedRiskManager(initial_balance=100000, max_open_positions=2, max_position_pct=0.10)
    rm.set_positions({"AAPL": 10, "MSFT": -5})
    ok, reason, _ = entry(rm, "SPY")
    assert not ok and reason == "2 positions open, the limit is 2: no new position in SPY"
    assert entry(rm, "AAPL", qty=1, price=100)[0], "adding to an open position opens no new one"
    rm.set_positions([Position("AAPL", 10, 100.0)])
    # an option contract is 100 shares: 21 x 4.80 x 100 = 10,080 > 10,000
    ok, reason, _ = rm.check_trade_allowed(CALL, 21, 4.80, "buy")
    assert not ok and "above 10.00% of equity (10,000.00)" in reason
    assert rm.check_trade_allowed(CALL, 20, 5.00, "buy")[0]  # exactly 10,000
    # the size after the trade counts what is held: (90 + 11) x 100 > 10,000
    rm.set_positions({"AAPL": 90})
    assert not rm.check_trade_allowed("AAPL", 11, 100.0, "buy")[0]


# --------------------------------------------------------------------------- exits


def test_exits_are_always_allowed_under_every_lockout():
    rm = AdvancedRiskManager(initial_balance=100000)
    rm.kill_switch.turn_on("test")
    rm.record_trade("SPY", 1, 100, 50, -5000, "buy")
    rm.set_positions({"AAPL": 10, "TSLA": -3})
    bad = {"iv_rank": 100.0, "vix": 80.0, "spread_pct": 0.9}
    assert not entry(rm, **bad)[0]
    for symbol, side in [("AAPL", "sell"), ("TSLA", "buy"), (CALL, "sell")]:
        ok, reason, level = rm.check_trade_allowed(symbol, 1_000_000, 1.0, side, **bad)
        assert ok and "always allowed" in reason and level is RiskLevel.HALTED
    assert rm.check_trade_allowed("QQQ", 5, 400, "sell", is_exit=True, **bad)[0]
    # without is_exit an equity sell with no known position opens a short: an entry
    assert not rm.check_trade_allowed("QQQ", 5, 400, "sell")[0]
    assert not rm.check_trade_allowed(CALL, 1, 2.0, "buy")[0]  # buying an option opens


def test_is_exit_order_rules():
    rm = AdvancedRiskManager()
    rm.set_positions({"AAPL": 10, "TSLA": -3})
    assert rm.is_exit_order("AAPL", "sell") and not rm.is_exit_order("AAPL", "buy")
    assert rm.is_exit_order("TSLA", "buy") and not rm.is_exit_order("TSLA", "sell")
    assert rm.is_exit_order(CALL, "sell") and not rm.is_exit_order(CALL, "buy")
    assert not rm.is_exit_order("QQQ", "sell") and not rm.is_exit_order("QQQ", "buy")


# --------------------------------------------------------------------------- levels, halt, kill switch


def test_risk_level_thresholds():
    rm = AdvancedRiskManager(initial_balance=100000)
    rm.start_day(DAY, 100000)
    for equity, level in [(99001, RiskLevel.LOW), (99000, RiskLevel.MEDIUM), (98401, RiskLevel.MEDIUM),
                          (98400, RiskLevel.HIGH), (98000.5, RiskLevel.HIGH), (98000, RiskLevel.HALTED)]:
        assert rm.update_equity(equity=equity) is level, equity


def test_manual_halt_and_kill_switch_refuse_entries():
    rm = AdvancedRiskManager()
    rm.halt("market_bars failed its checks")
    ok, reason, level = entry(rm)
    assert not ok and reason == "halted: market_bars failed its checks: no new entries"
    assert level is RiskLevel.HALTED
    rm.clear_halt("data fixed")
    assert entry(rm)[0]
    rm.kill_switch.turn_on("broker incident")
    ok, reason, level = entry(rm)
    assert not ok and "kill switch on" in reason and "broker incident" in reason and level is RiskLevel.HALTED
    rm.kill_switch.turn_off()
    assert entry(rm) == (True, "entry in SPY allowed", RiskLevel.LOW)


def test_daily_loss_halt_cannot_be_cleared_while_the_loss_stands():
    rm = AdvancedRiskManager(initial_balance=100000)
    rm.record_trade("SPY", 1, 100, 50, -2500, "buy")
    with pytest.raises(ValueError, match="still 2.50%"):
        rm.clear_halt("try")
    assert rm.is_halted


def test_start_day_is_idempotent_within_a_day_and_refuses_the_past():
    rm = AdvancedRiskManager(initial_balance=100000)
    rm.start_day(DAY, 100000)
    rm.record_trade("SPY", 1, 100, 99, -700, "buy")
    rm.start_day(DAY, 99300)  # a restarted session must not wipe the morning
    assert rm.state.realized_pnl == -700 and rm.state.start_of_day_equity == 100000
    with pytest.raises(ValueError, match="already on 2025-03-03"):
        rm.start_day(date(2025, 2, 28), 100000)
    assert rm.state.day == DAY


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (("SPY", 0, 100.0, "buy"), {}, "qty must be > 0, got 0"),
        (("SPY", -1, 100.0, "buy"), {}, "qty must be > 0"),
        (("SPY", 1, math.nan, "buy"), {}, "price must be a finite number, got nan"),
        (("SPY", 1, -5.0, "buy"), {}, "price must be > 0, got -5.0"),
        (("SPY", 1, 100.0, "hold"), {}, "side: unknown value 'hold'"),
        (("", 1, 100.0, "buy"), {}, "symbol must be a non-empty symbol"),
        (("SPY", 1, 100.0, "buy"), {"vix": math.inf}, "vix must be a finite number"),
        (("SPY", 1, 100.0, "buy"), {"iv_rank": 101}, r"iv_rank must be in \[0, 100\], got 101"),
        (("SPY", 1, 100.0, "buy"), {"spread_pct": -0.01}, "spread_pct must be in >= 0"),
        (("SPY", 1, 100.0, "buy"), {"is_exit": "yes"}, "is_exit must be True, False or None"),
    ],
)
def test_check_rejects_bad_input(args, kwargs, match):
    rm = AdvancedRiskManager()
    with pytest.raises(ValueError, match=match):
        rm.check_trade_allowed(*args, **kwargs)
    assert rm.events == []


def test_updates_reject_bad_input_and_leave_state_unchanged():
    rm = AdvancedRiskManager(initial_balance=100000)
    rm.record_trade("SPY", 1, 100, 99, -10, "buy")
    before = rm.snapshot()
    for call, match in [
        (lambda: rm.record_trade("SPY", 1, 100, 99, math.nan, "buy"), "pnl must be a finite number"),
        (lambda: rm.record_trade("SPY", 0, 100, 99, -1, "buy"), "qty must be > 0"),
        (lambda: rm.record_trade("SPY", 1, -100, 99, -1, "buy"), "entry_price must be > 0"),
        (lambda: rm.record_trade("SPY", 1, 100, 99, -1, "short-ish"), "side: unknown value"),
        (lambda: rm.update_equity(), "needs equity, unrealized_pnl or both"),
        (lambda: rm.update_equity(equity=math.nan), "equity must be a finite number"),
        (lambda: rm.update_equity(unrealized_pnl={"SPY": math.inf}), "unrealized_pnl of SPY"),
        (lambda: rm.start_day("2025-03-03", 100000), "day must be a date"),
        (lambda: rm.start_day(DAY, 0), "equity must be > 0"),
        (lambda: rm.halt(""), "halt needs a reason"),
        (lambda: rm.set_positions({"SPY": math.nan}), "qty of SPY must be a finite number"),
    ]:
        with pytest.raises(ValueError, match=match):
            call()
        assert rm.snapshot() == before


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="daily_loss_limit_pct must be a fraction in \\(0, 1\\]"):
        AdvancedRiskManager(daily_loss_limit_pct=2)
    with pytest.raises(ValueError, match="max_loss_streak must be a whole number >= 1, got 0"):
        AdvancedRiskManager(max_loss_streak=0)
    with pytest.raises(ValueError, match="initial_balance must be > 0"):
        AdvancedRiskManager(initial_balance=-1)
    with pytest.raises(ValueError, match="max_iv_rank must be in \\(0, 100\\]"):
        AdvancedRiskManager(max_iv_rank=120)


# --------------------------------------------------------------------------- persistence


def test_state_and_events_persist_across_instances(store):
    rm = AdvancedRiskManager(initial_balance=100000, store=store, account="sim:default", run_id="run-1")
    rm.start_day(DAY, 100000)
    rm.record_trade("SPY", 1, 100, 99, -500, "buy")
    rm.record_trade("SPY", 1, 100, 99, -500, "buy")
    assert not entry(rm, vix=40)[0]
    # a second process (the monitor) sees the same day, P&L and streak, even before a flush
    other = AdvancedRiskManager(initial_balance=1, store=store, account="sim:default")
    assert other.state.realized_pnl == -1000 and other.state.loss_streak == 2 and other.state.day == DAY
    rm.record_trade("SPY", 1, 100, 99, -500, "buy")  # the third loss halts
    assert other.is_halted, "the halt is seen by the other instance on its next check"
    assert not entry(other)[0]
    rm.flush()
    other.flush()
    events = store.query_df("SELECT * FROM risk_events WHERE account = 'sim:default' ORDER BY ts")
    assert list(events["kind"]) == ["refusal", "halt", "refusal"]
    assert list(events["rule"]) == ["vix", "loss_streak", "loss_streak"]
    vix_event = events.iloc[0]
    assert vix_event["run_id"] == "run-1" and vix_event["symbol"] == "SPY"
    assert json.loads(vix_event["values_json"])["vix"] == 40.0
    assert vix_event["reason"] == "VIX 40.00 > 32.00: no new entries"
    # accounts never mix
    backtest = AdvancedRiskManager(store=store, account="backtest:abc")
    assert not backtest.is_halted and backtest.state.realized_pnl == 0


def test_refusals_are_batched_and_flushed(store):
    rm = AdvancedRiskManager(store=store, account="sim:batch", flush_interval_s=3600)
    for _ in range(5):
        entry(rm, vix=50)
    assert store.query("SELECT count(*) FROM risk_events WHERE account = 'sim:batch'")[0][0] == 0
    with rm:
        entry(rm, iv_rank=99)
    rows = store.query("SELECT rule, count(*) FROM risk_events WHERE account = 'sim:batch' GROUP BY rule ORDER BY rule")
    assert rows == [("iv_rank", 1), ("vix", 5)]


def test_marks_are_batched_but_a_halt_is_written_at_once(store):
    rm = AdvancedRiskManager(initial_balance=100000, store=store, account="sim:marks", flush_interval_s=3600)
    rm.start_day(DAY, 100000)
    rm.update_equity(equity=101000.0, unrealized_pnl={CALL: 1000.0})
    stored = store.query("SELECT unrealized_pnl, halted FROM risk_state WHERE account = 'sim:marks'")[0]
    assert stored == (0.0, False)
    rm.update_equity(equity=97900.0, unrealized_pnl={CALL: -2100.0})
    stored = store.query("SELECT unrealized_pnl, peak_equity, halted, halt_rule FROM risk_state"
                         " WHERE account = 'sim:marks'")[0]
    assert stored == (-2100.0, 101000.0, True, "daily_loss")


def test_batched_marks_do_not_overwrite_a_halt_from_another_process(store):
    session = AdvancedRiskManager(store=store, account="sim:race", flush_interval_s=3600)
    session.start_day(DAY, 100000)
    session.update_equity(unrealized_pnl={CALL: -100.0})  # dirty, not yet written
    monitor = AdvancedRiskManager(store=store, account="sim:race")
    monitor.halt("monitor saw the broker disconnect")
    session.flush()
    row = store.query("SELECT halted, halt_reason, unrealized_pnl FROM risk_state WHERE account = 'sim:race'")[0]
    assert row == (True, "monitor saw the broker disconnect", -100.0)
    assert session.is_halted


def test_a_lowered_limit_halts_on_load(store):
    AdvancedRiskManager(store=store, account="sim:cfg").record_trade("SPY", 1, 100, 99, -1500, "buy")
    assert not AdvancedRiskManager(store=store, account="sim:cfg").is_halted
    stricter = AdvancedRiskManager(store=store, account="sim:cfg", daily_loss_limit_pct=0.01)
    assert stricter.is_halted and stricter.state.halt_rule == "daily_loss"


def test_global_kill_switch_reaches_the_manager_but_not_backtests(store):
    live = AdvancedRiskManager(store=store, account="alpaca_paper:abc")
    backtest = AdvancedRiskManager(store=store, account="backtest:2025")
    KillSwitch(store).turn_on("halt everything")
    assert not entry(live)[0] and entry(backtest)[0]
    KillSwitch(store, account="backtest:2025").turn_on("this backtest only")
    assert not entry(backtest)[0]


# --------------------------------------------------------------------------- following the ledger

PUT = "SPY260116P00580000"
OPEN = datetime(2025, 3, 3, 15, 0, tzinfo=timezone.utc)  # 10:00 New York on DAY


def _trade(book, n: int, symbol: str, buy: float, sell: float, qty: int = 1, fee: float = 0.0) -> None:
    from tradenova_dagster.domain import Side
    from tradenova_dagster.ledger import LedgerFill

    ts = OPEN.replace(minute=n)
    book.apply(LedgerFill(f"b{n}", symbol, Side.BUY, qty, buy, fee, ts))
    book.apply(LedgerFill(f"s{n}", symbol, Side.SELL, qty, sell, fee, ts.replace(second=30)))


def _following(store, book, **limits):
    rm = AdvancedRiskManager(initial_balance=100_000, store=store, account="sim:default", **limits)
    rm.follow(book)
    rm.start_day(DAY, 100_000)
    return rm


def test_following_the_ledger_risk_reads_pnl_trades_and_streak_from_its_fills(store):
    from tradenova_dagster.ledger import Book

    book = Book(100_000)
    rm = _following(store, book)
    _trade(book, 1, CALL, 2.0, 1.5, fee=0.65)  # -50 - 1.30 in fees
    rm.record_trade(CALL, 1, 2.0, 1.5, 123.0, "buy")  # the caller's figure is not tallied: the ledger's is read
    assert rm.state.realized_pnl == pytest.approx(-51.30) and rm.state.loss_streak == 1
    _trade(book, 2, PUT, 1.0, 0.9)
    _trade(book, 3, CALL, 1.0, 0.8)  # a third loss the manager was never told of directly
    assert rm.record_trade(CALL, 1, 1.0, 0.8, 0.0, "buy") is RiskLevel.HALTED
    assert (rm.state.trades_today, rm.state.loss_streak, rm.state.halt_rule) == (3, 3, "loss_streak")
    rm.clear_halt("reviewed by a person")
    restarted = _following(store, book)  # a restarted session re-reads the same ledger
    assert not restarted.is_halted and restarted.state.loss_streak == 0  # the clear holds across a restart
    _trade(book, 4, PUT, 1.0, 0.5)
    restarted.record_trade(PUT, 1, 1.0, 0.5, 0.0, "buy")
    assert restarted.state.loss_streak == 1 and not restarted.is_halted


def test_following_the_ledger_a_partial_exit_counts_toward_the_daily_loss(store):
    from tradenova_dagster.domain import Side
    from tradenova_dagster.ledger import Book, LedgerFill

    book = Book(100_000)
    rm = _following(store, book)
    book.apply(LedgerFill("b", CALL, Side.BUY, 30, 2.0, 0.0, OPEN))
    book.apply(LedgerFill("s", CALL, Side.SELL, 20, 1.0, 0.0, OPEN.replace(minute=5)))  # -2,000 realised, 10 held
    rm.record_trade(CALL, 20, 2.0, 1.0, 0.0, "buy")
    assert rm.state.realized_pnl == -2000.0 and rm.state.trades_today == 0  # the holding is still open
    assert rm.is_halted and rm.state.halt_rule == "daily_loss"


def test_following_the_ledger_positions_come_from_it_and_the_open_position_limit_holds(store):
    from tradenova_dagster.domain import Side
    from tradenova_dagster.ledger import Book, LedgerFill

    book = Book(100_000)
    rm = _following(store, book, max_open_positions=2)
    for i, symbol in enumerate((CALL, PUT)):
        book.apply(LedgerFill(f"b{i}", symbol, Side.BUY, 1, 1.0, 0.0, OPEN))
    allowed, reason, _ = rm.check_trade_allowed("SPY260116C00610000", 1, 1.0, "buy")
    assert not allowed and "2 positions open" in reason
    assert rm.is_exit_order(CALL, "sell") and rm.check_trade_allowed(CALL, 1, 1.0, "sell")[0]
    with pytest.raises(ValueError, match="follows the ledger"):
        rm.set_positions({CALL: 1})


def test_fail_closed_an_unreadable_risk_state_refuses_entries_but_allows_exits(tradenova_home):
    from filelock import FileLock

    from tradenova_dagster.store import Store

    path = tradenova_home / "ledger.duckdb"
    rm = AdvancedRiskManager(store=Store(path, lock_timeout_s=0.2), account="sim:default", max_age_s=0)
    assert entry(rm)[0]
    other = FileLock(str(path) + ".lock", thread_local=False)  # another process holds the file
    other.acquire()
    try:
        allowed, reason, level = entry(rm)
        assert not allowed and level is RiskLevel.HALTED
        assert "could not be read" in reason and "fail closed" in reason
        assert rm.check_trade_allowed(CALL, 1, 1.0, "sell")[0]  # exits still go
    finally:
        other.release()
    rm.flush()
    rules = [r for (r,) in Store(path).query("SELECT rule FROM risk_events WHERE kind = 'refusal'")]
    assert rules == ["unreadable"]  # the refusal was recorded once the file was free again
    assert entry(rm)[0]
