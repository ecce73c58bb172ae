"""The tearsheet: one or more accounts (strategies) over a span of days, read from their
ledgers, with SPY buy-and-hold over the same days.

What it shows: cumulative return vs SPY buy-and-hold, the underwater (drawdown) chart,
monthly returns, the rolling Sharpe ratio, the distribution of trade P&L, exit reasons,
a per-strategy and a per-agent table, risk refusals by rule, and every trade with entry
and exit times in New York time. The HTML is ``tearsheet_html``; charts are
``tearsheet_charts``.

Why not quantstats' own tearsheet (``qs.reports.html``): it computes every number itself
from a returns series (its own Sharpe, drawdown, win rate...), so the page could disagree
with ``calculate_metrics``, which the rule for this project forbids; it knows nothing of
trades, agents, exit reasons or risk refusals; and it is a dev dependency only. So every
number here comes from ``MetricsTracker``: the span's figures are ``calculate_metrics``
over the span, the rolling Sharpe is ``calculate_metrics`` over the trailing window on
each day and a month's return ``calculate_metrics`` over that month (both computed in one
``metrics_for_windows`` call, from one read of the ledger), the equity and
drawdown curves are ``daily_series`` (the same SQL ``calculate_metrics`` aggregates),
and per-agent figures are ``get_agent_performance``. quantstats stays what it is: the
cross-check of ``calculate_metrics`` in the tests. No runtime dependency is added.

Breakdowns ``calculate_metrics`` has no notion of are counted here in SQL, read-only:
exit reasons are grouped by the text before the first ``:`` of ``trades.exit_reason``
("stop loss: SPY... at 2.13 ..." -> "stop loss"), and refusals are the risk framework's
``risk_events`` of kind ``refusal`` grouped by rule (the same refusals appear once more as
refused ``agent_decisions``, counted per agent in the agent table). Metrics owns no state:
nothing here writes to a ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.metrics import tearsheet_charts as tc
from tradenova_dagster.metrics.tracker import MetricsTracker

BENCHMARK = "SPY"
ROLLING_DAYS = 30  # calendar days of the rolling Sharpe window
MAX_TRADE_ROWS = 1_000  # the trades table shows the latest ones beyond this


@dataclass(frozen=True)
class Tearsheet:
    """Everything the tearsheet page shows, already computed (``collect``)."""

    accounts: tuple[str, ...]
    start: date
    end: date
    metrics: dict[str, dict[str, Any]]  # account -> calculate_metrics over the span
    curves: dict[str, pd.Series]  # account -> cumulative return since the span's start, by day
    drawdowns: dict[str, pd.Series]  # account -> drawdown from the running peak, by day
    rolling_sharpe: dict[str, pd.Series]  # account -> Sharpe of the trailing ROLLING_DAYS, by day
    monthly: dict[str, pd.DataFrame]  # account -> year, month, total_return
    agents: pd.DataFrame
    trades: pd.DataFrame
    exit_reasons: pd.DataFrame
    refusals: pd.DataFrame
    benchmark: pd.Series | None  # SPY buy-and-hold return since the span's first open, by day
    benchmark_note: str
    charts: dict[str, bytes] = field(default_factory=dict)

    @property
    def span_days(self) -> int:
        return (self.end - self.start).days + 1


def recorded_span(trackers: Sequence[MetricsTracker]) -> tuple[date | None, date | None]:
    """The earliest and the latest day with a trade or an equity row in any of these
    accounts (None, None: nothing recorded)."""
    firsts, lasts = [], []
    for t in trackers:
        t.flush()
        first, last = t.store.query(
            "SELECT least((SELECT min(day) FROM trades WHERE account = $a),"
            " (SELECT min(day) FROM equity_curve WHERE account = $a)),"
            " greatest((SELECT max(day) FROM trades WHERE account = $a),"
            " (SELECT max(day) FROM equity_curve WHERE account = $a))", {"a": t.account})[0]
        firsts += [first] if first is not None else []
        lasts += [last] if last is not None else []
    return (min(firsts) if firsts else None), (max(lasts) if lasts else None)


def collect(trackers: Sequence[MetricsTracker], start: date | str, end: date | str, *,
            benchmark_source=None, rolling_days: int = ROLLING_DAYS) -> Tearsheet:
    """Compute the tearsheet of ``trackers`` (one account each) over ``[start, end]``.

    ``benchmark_source`` is a market data source (``MarketDataSource``) for SPY's daily
    bars; without one, or when it cannot serve the span, the page says so instead of
    drawing the benchmark.
    """
    if not trackers:
        raise ValueError("trackers: at least one account is needed for a tearsheet")
    accounts = [t.account for t in trackers]
    if len(set(accounts)) != len(accounts):
        raise ValueError(f"trackers: each account once, got {accounts}")
    start, end = calendar.as_date(start, "start"), calendar.as_date(end, "end")
    if start > end:
        raise ValueError(f"start {start} is after end {end}")
    if isinstance(rolling_days, bool) or not isinstance(rolling_days, int) or rolling_days < 2:
        raise ValueError(f"rolling_days must be a whole number of days >= 2, got {rolling_days!r}")
    span = (end - start).days + 1

    metrics, curves, drawdowns, sharpes, monthly = {}, {}, {}, {}, {}
    for t in trackers:
        with t.store.hold():  # one connection for the many reads below
            m = t.calculate_metrics(lookback_days=span, as_of=end)
            metrics[t.account] = m
            series = t.daily_series(lookback_days=span, as_of=end).set_index("day")
            curves[t.account] = series["end_equity"] / m["start_equity"] - 1
            drawdowns[t.account] = series["drawdown"]
            days = list(series.index)
            months = _months(days)
            windows = t.metrics_for_windows([(rolling_days, d) for d in days]
                                            + [((last - first).days + 1, last) for _, _, first, last in months])
            sharpes[t.account] = pd.Series([w["sharpe_ratio"] for w in windows[:len(days)]], index=days, dtype=float)
            monthly[t.account] = pd.DataFrame(
                [{"year": year, "month": month, "total_return": w["total_return"]}
                 for (year, month, _, _), w in zip(months, windows[len(days):])],
                columns=["year", "month", "total_return"])
    # The benchmark covers the days the accounts traded: from the first day of their series
    # (a 30-day window of an account that began a week ago compares that week).
    first_days = [c.index[0] for c in curves.values() if len(c)]
    bench, note = _benchmark(benchmark_source, min(first_days) if first_days else start, end)
    sheet = Tearsheet(
        accounts=tuple(accounts), start=start, end=end, metrics=metrics, curves=curves,
        drawdowns=drawdowns, rolling_sharpe=sharpes, monthly=monthly,
        agents=_agents(trackers, span, start, end), trades=_trades(trackers, start, end),
        exit_reasons=_exit_reasons(trackers, start, end), refusals=_refusals(trackers, start, end),
        benchmark=bench, benchmark_note=note,
    )
    span_label = f"{start} to {end}"
    window = f"trailing {rolling_days} days"
    sheet.charts.update({
        "cumulative_returns": tc.cumulative_returns(curves, bench, f"Return vs {BENCHMARK} buy and hold, {span_label}"),
        "underwater": tc.underwater(drawdowns, "Drawdown from the running peak (underwater)"),
        "monthly_returns": tc.monthly_heatmap(monthly, "Monthly returns"),
        "rolling_sharpe": tc.rolling_sharpe(sharpes, window, f"Rolling Sharpe ratio ({window}, annualised)"),
        "pnl_distribution": tc.pnl_distribution(sheet.trades, "Distribution of trade P&L"),
        "exit_reasons": tc.counts_by(sheet.exit_reasons, "exit reason", "trades", "Exit reasons",
                                     "No trades in this span", pnl="pnl"),
        "risk_refusals": tc.counts_by(sheet.refusals, "rule", "refusals", "Risk refusals by rule",
                                      "No risk refusals in this span"),
    })
    return sheet


def _months(days: list[date]) -> list[tuple[int, int, date, date]]:
    """Each calendar month the days cover: (year, month, first day, last day), in order. A
    month's return is over the part of it the series covers (a partial first or last month
    is its covered part)."""
    months: dict[tuple[int, int], list[date]] = {}
    for day in days:
        months.setdefault((day.year, day.month), []).append(day)
    return [(year, month, min(part), max(part)) for (year, month), part in sorted(months.items())]


def configured_source(name: str | None = None):
    """The market data source the configuration names (``TRADENOVA_DATA_SOURCE``,
    ``TRADENOVA_DATA_DIR``, as every command reads them), or ``name``. Returns (source,
    None), or (None, why) when it cannot be built (e.g. alpaca without keys): a report
    still renders, and says why the benchmark is missing. An unknown name is an error."""
    from resources.market_data import MarketDataResource

    resource = MarketDataResource(**({"source": name} if name else {}))
    try:
        return resource.get_source(), None
    except Exception as exc:
        return None, f"{BENCHMARK} buy and hold not drawn: {exc}"


def _benchmark(source, start: date, end: date) -> tuple[pd.Series | None, str]:
    """SPY bought at the open of the span's first trading day and held: its return at each
    day's close. Returns (series or None, a sentence naming the source or why not)."""
    if source is None:
        return None, f"{BENCHMARK} buy and hold: not drawn (no market data source given)"
    name = getattr(source, "name", type(source).__name__)
    try:
        bars = source.daily_bars(BENCHMARK, start, end)
    except Exception as exc:  # a report still renders; the page names the failure
        return None, f"{BENCHMARK} buy and hold: not drawn ({name} source: {exc})"
    if bars is None or bars.empty or pd.isna(bars["open"].iloc[0]):
        return None, f"{BENCHMARK} buy and hold: not drawn ({name} source has no {BENCHMARK} bars {start} to {end})"
    days = [pd.Timestamp(d).date() for d in bars.index]
    series = pd.Series(bars["close"].to_numpy(dtype=float) / float(bars["open"].iloc[0]) - 1,
                       index=days, name=BENCHMARK)
    return series, (f"{BENCHMARK} buy and hold from the open of {days[0]} to the close of {days[-1]}, "
                    f"{name} source: {series.iloc[-1]:+.2%}")


def _ny_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """UTC instants of midnight New York at ``start`` and the day after ``end``."""
    lo = pd.Timestamp(datetime.combine(start, time(0)), tz=calendar.NEW_YORK).tz_convert("UTC")
    hi = pd.Timestamp(datetime.combine(end + timedelta(days=1), time(0)), tz=calendar.NEW_YORK).tz_convert("UTC")
    return lo.to_pydatetime(), hi.to_pydatetime()


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _trades(trackers: Sequence[MetricsTracker], start: date, end: date) -> pd.DataFrame:
    columns = ["account", "trade_id", "entry_time", "exit_time", "agent", "symbol", "contract", "side",
               "qty", "entry_price", "exit_price", "pnl", "commission", "exit_reason"]
    return _concat([t.store.query_df(
        f"SELECT {', '.join(columns)} FROM trades WHERE account = ? AND day BETWEEN ? AND ?"
        " ORDER BY exit_time, trade_id", [t.account, start, end]) for t in trackers], columns)


def _exit_reasons(trackers: Sequence[MetricsTracker], start: date, end: date) -> pd.DataFrame:
    columns = ["account", "exit reason", "trades", "pnl"]
    return _concat([t.store.query_df(
        "SELECT account, coalesce(nullif(trim(split_part(exit_reason, ':', 1)), ''), '(none)') AS \"exit reason\","
        " count(*) AS trades, sum(pnl) AS pnl FROM trades WHERE account = ? AND day BETWEEN ? AND ?"
        " GROUP BY ALL ORDER BY trades DESC, 2", [t.account, start, end]) for t in trackers], columns)


def _refusals(trackers: Sequence[MetricsTracker], start: date, end: date) -> pd.DataFrame:
    columns = ["account", "rule", "refusals", "first", "last", "most common reason"]
    lo, hi = _ny_bounds(start, end)
    return _concat([t.store.query_df(
        "SELECT account, rule, count(*) AS refusals, min(ts) AS first, max(ts) AS last,"
        " mode(reason) AS \"most common reason\" FROM risk_events"
        " WHERE account = ? AND kind = 'refusal' AND ts >= ? AND ts < ? GROUP BY ALL ORDER BY refusals DESC, rule",
        [t.account, lo, hi]) for t in trackers], columns)


def _agents(trackers: Sequence[MetricsTracker], span: int, start: date, end: date) -> pd.DataFrame:
    """Per account and agent: ``get_agent_performance`` over the span, with how many of
    the agent's decisions risk allowed and refused (``agent_decisions``)."""
    rows = []
    for t in trackers:
        perf = t.get_agent_performance(lookback_days=span, as_of=end)
        decisions = {r[0]: (r[1], r[2]) for r in t.store.query(
            "SELECT agent, count(*) FILTER (WHERE allowed), count(*) FILTER (WHERE NOT allowed)"
            " FROM agent_decisions WHERE account = ? AND day BETWEEN ? AND ? GROUP BY agent",
            [t.account, start, end])}
        for agent in list(perf) + sorted(set(decisions) - set(perf)):
            p = perf.get(agent, {})
            allowed, refused = decisions.get(agent, (0, 0))
            rows.append({"account": t.account, "agent": agent, "num_trades": p.get("num_trades", 0),
                         "total_pnl": p.get("total_pnl", 0.0), "win_rate": p.get("win_rate"),
                         "profit_factor": p.get("profit_factor"), "expectancy": p.get("expectancy"),
                         "decisions_allowed": int(allowed), "decisions_refused": int(refused)})
    return pd.DataFrame(rows, columns=["account", "agent", "num_trades", "total_pnl", "win_rate", "profit_factor",
                                       "expectancy", "decisions_allowed", "decisions_refused"])


def build_tearsheet(trackers: Sequence[MetricsTracker], start: date | str | None = None,
                    end: date | str | None = None, *, benchmark_source=None,
                    reports_dir: str | Path | None = None, rolling_days: int = ROLLING_DAYS) -> tuple[Tearsheet, Path]:
    """Collect and write the tearsheet page; returns it and the HTML file's path.

    ``start`` / ``end`` default to the first and last day any of the accounts recorded.
    The file is ``<reports_dir>/tearsheets/<accounts>_<start>_<end>.html``.
    """
    from tradenova_dagster.metrics.tearsheet_html import render_tearsheet, tearsheet_path

    first, last = recorded_span(trackers)
    if start is None and first is None:
        raise ValueError(f"accounts {[t.account for t in trackers]} have no recorded trades or equity: "
                         "nothing to report (pass start and end to report an empty span)")
    start = start if start is not None else first
    end = end if end is not None else (last or start)
    sheet = collect(trackers, start, end, benchmark_source=benchmark_source, rolling_days=rolling_days)
    path = tearsheet_path(sheet, reports_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_tearsheet(sheet), encoding="utf-8")
    return sheet, path
