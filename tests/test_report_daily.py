"""The daily report (core, no Dagster): HTML numbers equal calculate_metrics, charts are
real PNGs, a day without trades is a valid report, accounts get their own files, risk
events and predictions appear, and ``tradenova report`` prints the summary and path."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pandas as pd
import pytest

from tradenova_dagster import cli
from tradenova_dagster.ledger.accounts import ledger_store
from tradenova_dagster.metrics import MetricsTracker
from tradenova_dagster.metrics.report import build_daily_report, display_tables, report_paths

NY = "America/New_York"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DAY = "2024-03-08"


def html_numbers(path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    return dict(re.findall(r'data-metric="([^"]+)" data-value="([^"]*)"', text))


def as_number(text: str):
    return None if text == "" else float(text)


def populate(tracker: MetricsTracker, seed: int = 7) -> None:
    """Three weeks of trades by three agents, and a full session of rows on DAY."""
    rng = np.random.default_rng(seed)
    with tracker.batch():
        for day in pd.bdate_range("2024-02-20", DAY):
            for i in range(int(rng.integers(1, 5))):
                ts = pd.Timestamp(f"{day.date()} 10:00", tz=NY) + pd.Timedelta(minutes=37 * i)
                tracker.record_trade("SPY", 2.0, 2.4, 2, "long", float(rng.normal(15, 120)),
                                     ["ppo", "grpo", "rules"][i % 3], ts - pd.Timedelta(minutes=9), ts,
                                     contract="SPY240315C00510000", exit_reason="tp1")
        open_ = pd.Timestamp(f"{DAY} 09:30", tz=NY)
        for minute in range(390):
            ts = open_ + pd.Timedelta(minutes=minute)
            tracker.record_equity(ts, 100_000 + 50 * np.sin(minute / 40), 95_000, 5_000)
            action = float(np.tanh(rng.normal()))
            tracker.log_prediction("ppo_v3", action, 0.7 * action, symbol="SPY", timestamp=ts)
        tracker.log_decision("ppo", "BUY_CALL", False, "VIX 33.0 > 32.0", symbol="SPY",
                             timestamp=open_ + pd.Timedelta(minutes=5))
        tracker.log_decision("ppo", "BUY_CALL", True, symbol="SPY",
                             timestamp=open_ + pd.Timedelta(minutes=6))


def add_risk_event(store, account: str, ts: str, rule: str, reason: str) -> None:
    # Matches migration 0200_risk_state.sql (owned by the risk framework).
    store.execute(
        "INSERT INTO risk_events (account, run_id, ts, kind, rule, symbol, values_json, reason)"
        " VALUES (?, NULL, ?, 'refusal', ?, 'SPY', ?, ?)",
        [account, pd.Timestamp(ts, tz=NY).to_pydatetime(), rule, json.dumps({"vix": 33.0}), reason],
    )


def test_report_numbers_match_calculate_metrics_and_charts_are_pngs(store, tradenova_home):
    tracker = MetricsTracker(store=store)
    populate(tracker)
    add_risk_event(store, "sim:default", f"{DAY} 09:35", "vix", "VIX 33.0 > 32.0")
    add_risk_event(store, "sim:default", f"{DAY} 09:36", "vix", "VIX 33.0 > 32.0")
    add_risk_event(store, "sim:default", "2024-03-07 10:00", "vix", "the day before")
    add_risk_event(store, "backtest:x", f"{DAY} 09:35", "spread", "another account")

    report = build_daily_report(tracker, DAY)

    assert report.html_path == tradenova_home / "reports" / f"{DAY}.html"
    numbers = html_numbers(report.html_path)
    window = tracker.calculate_metrics(lookback_days=30, as_of=DAY)
    day = tracker.calculate_metrics(lookback_days=1, as_of=DAY)
    for key in ("total_pnl", "num_trades", "win_rate", "avg_win", "avg_loss", "profit_factor",
                "expectancy", "sharpe_ratio", "sortino_ratio", "max_drawdown", "total_return",
                "num_days", "start_equity", "end_equity"):
        expected = window[key]
        assert as_number(numbers[f"window.{key}"]) == (None if expected is None else float(expected)), key
    for key in ("total_pnl", "num_trades", "wins", "losses", "win_rate", "end_equity"):
        assert as_number(numbers[f"day.{key}"]) == float(day[key]), key
    assert window["sharpe_ratio"] is not None and window["num_trades"] > 15
    series = tracker.daily_series(lookback_days=30, as_of=DAY)
    assert as_number(numbers["day.drawdown"]) == float(series["drawdown"].iloc[-1])

    assert set(report.charts) == {"equity", "trade_pnl", "agent_pnl", "intraday_equity"}
    for path in report.charts.values():
        assert path.parent == tradenova_home / "reports" / DAY
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    text = report.html_path.read_text(encoding="utf-8")
    # The day's four charts, then the window's tearsheet charts, all embedded.
    assert set(report.tearsheet.charts) == {"cumulative_returns", "underwater", "monthly_returns", "rolling_sharpe",
                                            "pnl_distribution", "exit_reasons", "risk_refusals"}
    assert text.count("data:image/png;base64,") == 4 + 7

    # Tables: the day's trades, agents, only this account's and this day's risk events.
    assert len(report.trades) == day["num_trades"]
    assert set(report.agents["agent"]) == {"ppo", "grpo", "rules"}
    agent_perf = tracker.get_agent_performance(lookback_days=30, as_of=DAY)
    for _, row in report.agents.iterrows():
        assert row["window_pnl"] == agent_perf[row["agent"]]["total_pnl"]
    assert report.risk_events["reason"].tolist() == ["VIX 33.0 > 32.0"] * 2
    # Shown once, with how many times and when (New York): a halted day repeats one refusal.
    shown = display_tables(report)["risk_events"]
    assert shown[["kind", "rule", "reason", "events", "first (New York)", "last (New York)"]].values.tolist() == [
        ["refusal", "vix", "VIX 33.0 > 32.0", 2, "09:35:00", "09:36:00"]]
    assert html.escape("VIX 33.0 > 32.0") in text and "another account" not in text
    assert report.predictions["predictions"].tolist() == [390]
    assert int(report.predictions[["buy_call", "buy_put", "flat"]].sum(axis=1).iloc[0]) == 390
    assert report.decisions[["decisions", "allowed", "refused"]].values.tolist() == [[2, 1, 1]]
    assert report.numbers()["risk_events"] == 2 and report.numbers()["decisions_refused"] == 1

    row = store.query_df("SELECT * FROM daily_reports").iloc[0]
    assert row["account"] == "sim:default" and row["html_path"] == str(report.html_path)
    assert row["window_sharpe"] == window["sharpe_ratio"] and row["day_trades"] == day["num_trades"]
    assert json.loads(row["metrics"])["numbers"]["window.total_pnl"] == window["total_pnl"]


def test_regenerating_a_day_replaces_the_report(store):
    tracker = MetricsTracker(store=store)
    populate(tracker)
    first = build_daily_report(tracker, DAY)
    tracker.record_trade("SPY", 1, 2, 1, "long", 1000.0, "ppo",
                         exit_time=pd.Timestamp(f"{DAY} 15:55", tz=NY))
    second = build_daily_report(tracker, DAY)
    assert second.day_metrics["total_pnl"] == pytest.approx(first.day_metrics["total_pnl"] + 1000)
    assert store.query("SELECT count(*), max(day_pnl) FROM daily_reports") == [
        (1, pytest.approx(second.day_metrics["total_pnl"]))]
    assert as_number(html_numbers(second.html_path)["day.total_pnl"]) == second.day_metrics["total_pnl"]


def test_a_day_without_trades_gives_a_valid_report_that_says_so(store, tradenova_home):
    tracker = MetricsTracker(store=store)
    tracker.record_trade("SPY", 1, 2, 1, "long", 300.0, "ppo",
                         exit_time=pd.Timestamp("2024-03-04 11:00", tz=NY))
    report = build_daily_report(tracker, DAY)
    assert not report.has_trades and report.trades.empty
    text = report.html_path.read_text(encoding="utf-8")
    assert 'data-metric="no_trades"' in text and f"No trades on {DAY}" in text
    numbers = html_numbers(report.html_path)
    assert as_number(numbers["day.total_pnl"]) == 0.0 and as_number(numbers["day.num_trades"]) == 0
    assert numbers["day.win_rate"] == ""  # undefined, not 0
    assert as_number(numbers["window.total_pnl"]) == 300.0
    assert "no trades on this day" in report.summary()
    for name in ("equity", "trade_pnl", "agent_pnl"):
        assert report.charts[name].read_bytes().startswith(PNG_MAGIC)
    assert "intraday_equity" not in report.charts


def test_an_account_with_no_history_at_all_still_reports(store):
    report = build_daily_report(MetricsTracker(store=store, account="backtest:empty"), DAY)
    numbers = html_numbers(report.html_path)
    assert numbers["window.sharpe_ratio"] == "" and as_number(numbers["window.max_drawdown"]) == 0.0
    assert "Sharpe undefined" in report.summary()


def test_other_accounts_get_their_own_files(store, tradenova_home):
    paper = MetricsTracker(store=store)
    backtest = MetricsTracker(store=store, account="backtest:grid-7")
    paper.record_trade("SPY", 1, 2, 1, "long", 10.0, "ppo", exit_time=pd.Timestamp(f"{DAY} 11:00", tz=NY))
    backtest.record_trade("SPY", 1, 2, 1, "long", -20.0, "ppo", exit_time=pd.Timestamp(f"{DAY} 11:00", tz=NY))
    a = build_daily_report(paper, DAY)
    b = build_daily_report(backtest, DAY)
    assert a.html_path == tradenova_home / "reports" / f"{DAY}.html"
    assert b.html_path == tradenova_home / "reports" / "backtest_grid-7" / f"{DAY}.html"
    assert b.charts["equity"].parent == tradenova_home / "reports" / "backtest_grid-7" / DAY
    assert as_number(html_numbers(a.html_path)["day.total_pnl"]) == 10.0
    assert as_number(html_numbers(b.html_path)["day.total_pnl"]) == -20.0
    assert store.query("SELECT account, day_pnl FROM daily_reports ORDER BY account") == [
        ("backtest:grid-7", -20.0), ("sim:default", 10.0)]
    assert report_paths(pd.Timestamp(DAY).date(), "alpaca_paper:PA1", "/r")[0].as_posix() == (
        f"/r/alpaca_paper_PA1/{DAY}.html")


def test_bad_report_input_is_refused(store):
    tracker = MetricsTracker(store=store)
    with pytest.raises(ValueError, match="not a trading day"):
        build_daily_report(tracker, "2024-03-09")
    with pytest.raises(ValueError, match="lookback_days"):
        build_daily_report(tracker, DAY, lookback_days=0)
    assert store.query("SELECT count(*) FROM daily_reports") == [(0,)]


def test_cli_report_prints_the_summary_and_the_path(tradenova_home, capsys):
    # `tradenova report` reads the account's ledger file (ledger/accounts.py).
    tracker = MetricsTracker(store=ledger_store("sim:default"))
    populate(tracker)
    assert cli.main(["report", "--date", DAY]) == 0
    out = capsys.readouterr().out
    path = tradenova_home / "reports" / f"{DAY}.html"
    assert f"report: {path}" in out and path.exists()
    pnl = tracker.calculate_metrics(lookback_days=1, as_of=DAY)["total_pnl"]
    assert f"${abs(pnl):,.2f}" in out
    assert cli.main(["report", "--date", DAY, "--account", "backtest:none"]) == 0
    assert (tradenova_home / "reports" / "backtest_none" / f"{DAY}.html").exists()
    assert cli.main(["report", "--date", "2024-03-09"]) == 1
    assert "not a trading day" in capsys.readouterr().err


# ---------------------------------------------------------------------- the tearsheet


def exits_and_refusals(tracker: MetricsTracker) -> None:
    """A second strategy: three trades with the session's exit reasons, two risk refusals
    and one halt (the halt is not a refusal)."""
    for minute, pnl, reason in ((0, -40.0, "stop loss: SPY240308C00510000 at 2.13 is -17.44% (stop -15.00%)"),
                                (60, -35.0, "stop loss: SPY240308C00510000 at 2.05 is -20.85% (stop -15.00%)"),
                                (120, 95.0, "take profit TP1: SPY240308C00510000 at 3.57 is +25.00%")):
        exit_time = pd.Timestamp(f"{DAY} 10:00", tz=NY) + pd.Timedelta(minutes=minute)
        tracker.record_trade("SPY", 2.5, 2.1, 1, "long", pnl, "always-call", exit_time - pd.Timedelta(minutes=9),
                             exit_time, contract="SPY240308C00510000", exit_reason=reason)
    add_risk_event(tracker.store, tracker.account, f"{DAY} 14:00", "loss_streak", "halted: 3 losing trades")
    add_risk_event(tracker.store, tracker.account, f"{DAY} 14:01", "loss_streak", "halted: 3 losing trades")
    tracker.store.execute(
        "INSERT INTO risk_events (account, run_id, ts, kind, rule, symbol, values_json, reason)"
        " VALUES (?, NULL, ?, 'halt', 'loss_streak', NULL, '{}', 'halt')",
        [tracker.account, pd.Timestamp(f"{DAY} 13:59", tz=NY).to_pydatetime()])


def test_tearsheet_numbers_charts_and_tables_come_from_the_tracker(store, tradenova_home):
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.metrics.tearsheet import build_tearsheet

    paper, strategy = MetricsTracker(store=store), MetricsTracker(store=store, account="backtest:calls")
    populate(paper)
    exits_and_refusals(strategy)
    source = get_source("synthetic")
    sheet, path = build_tearsheet([paper, strategy], "2024-02-20", DAY, benchmark_source=source)

    assert path == tradenova_home / "reports" / "tearsheets" / f"sim_default+backtest_calls_2024-02-20_{DAY}.html"
    numbers = html_numbers(path)
    for tracker in (paper, strategy):
        expected = tracker.calculate_metrics(lookback_days=18, as_of=DAY)  # 2024-02-20 .. 03-08
        for key in ("total_pnl", "total_return", "num_trades", "win_rate", "profit_factor", "sharpe_ratio",
                    "sortino_ratio", "max_drawdown", "end_equity"):
            value = expected[key]
            assert as_number(numbers[f"strategy.{tracker.account}.{key}"]) == (
                None if value is None else float(value)), (tracker.account, key)
    # Months chain into the span: (1 + February) * (1 + March) - 1 = the span's return.
    months = sheet.monthly["sim:default"]
    assert months[["year", "month"]].values.tolist() == [[2024, 2], [2024, 3]]
    chained = float(np.prod(1 + months["total_return"].to_numpy()) - 1)
    assert chained == pytest.approx(sheet.metrics["sim:default"]["total_return"], rel=1e-9)
    assert sheet.rolling_sharpe["sim:default"].iloc[-1] == paper.calculate_metrics(30, as_of=DAY)["sharpe_ratio"]
    # SPY bought at the open of 2024-02-20, valued at the close of DAY (the source's own bars).
    bars = source.daily_bars("SPY", "2024-02-20", DAY)
    assert sheet.benchmark.iloc[-1] == pytest.approx(bars["close"].iloc[-1] / bars["open"].iloc[0] - 1)
    assert len(sheet.benchmark) == 14 and "synthetic source" in sheet.benchmark_note

    exits = sheet.exit_reasons[sheet.exit_reasons["account"] == "backtest:calls"]
    assert dict(zip(exits["exit reason"], exits["trades"])) == {"stop loss": 2, "take profit TP1": 1}
    assert sheet.refusals[["account", "rule", "refusals"]].values.tolist() == [["backtest:calls", "loss_streak", 2]]
    agents = sheet.agents.set_index(["account", "agent"])
    assert agents.loc[("backtest:calls", "always-call"), "total_pnl"] == 20.0
    assert agents.loc[("sim:default", "ppo"), "decisions_refused"] == 1
    text = path.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 7 and "<script" not in text and "http" not in text
    # Trades in New York time: entry 09:51, exit 10:00 on DAY.
    assert f"<td>{DAY} 09:51:00</td>\n      <td>{DAY} 10:00:00</td>" in text
    for data in sheet.charts.values():
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000


def test_tearsheet_refuses_bad_input(store):
    from tradenova_dagster.metrics.tearsheet import build_tearsheet, collect

    tracker = MetricsTracker(store=store)
    with pytest.raises(ValueError, match="at least one account"):
        collect([], DAY, DAY)
    with pytest.raises(ValueError, match="each account once"):
        collect([tracker, MetricsTracker(store=store)], DAY, DAY)
    with pytest.raises(ValueError, match="start 2024-03-08 is after end 2024-03-01"):
        collect([tracker], DAY, "2024-03-01")
    with pytest.raises(ValueError, match="rolling_days must be a whole number of days >= 2, got 1"):
        collect([tracker], "2024-03-01", DAY, rolling_days=1)
    with pytest.raises(ValueError, match=r"accounts \['sim:default'\] have no recorded trades"):
        build_tearsheet([tracker])
    sheet, path = build_tearsheet([tracker], "2024-03-01", DAY)  # an empty span still renders
    assert sheet.metrics["sim:default"]["num_trades"] == 0 and sheet.benchmark is None
    assert "not drawn (no market data source given)" in path.read_text(encoding="utf-8")


def test_cli_report_writes_the_tearsheet_of_several_strategies(tradenova_home, capsys):
    paper, strategy = MetricsTracker(store=ledger_store("sim:default")), MetricsTracker(account="backtest:calls")
    populate(paper)
    exits_and_refusals(strategy)
    args = ["report", "--account", "sim:default", "--account", "backtest:calls", "--from", "2024-02-20",
            "--date", DAY]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    path = tradenova_home / "reports" / "tearsheets" / f"sim_default+backtest_calls_2024-02-20_{DAY}.html"
    assert f"tearsheet: {path}" in out and path.exists()
    pnl = strategy.calculate_metrics(lookback_days=18, as_of=DAY)["total_pnl"]
    assert f"backtest:calls 2024-02-20 to {DAY}: P&L {pnl:+,.2f} | 3 trades" in out
    assert "SPY buy and hold from the open of 2024-02-20 to the close of 2024-03-08, synthetic source" in out
    assert cli.main(["report", "--tearsheet", "--account", "backtest:nothing"]) == 1
    assert "have no recorded trades or equity" in capsys.readouterr().err
