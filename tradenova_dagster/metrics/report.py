"""The daily report: one account, one New York trading day, as HTML with PNG charts.

It shows the day (P&L, trades, win rate, drawdown at the close), the rolling window
before it (30 days by default: P&L, Sharpe, Sortino, max drawdown, trade statistics),
the per-agent split, the risk events, and what the RL signal predicted and the agents
decided; below them, the tearsheet of the window (``metrics.tearsheet``: return vs SPY
buy and hold, underwater chart, monthly returns, rolling Sharpe, trade P&L distribution,
exit reasons, agents, risk refusals by rule). Every number comes from ``MetricsTracker`` (SQL in DuckDB), so the report, the
Dagster metadata and ``calculate_metrics`` cannot disagree. In the HTML each number
also carries its exact value in a ``data-value`` attribute (``data-metric`` names it),
for tools and tests that read the file.

Files: the default account's report is ``<reports_dir>/<day>.html``; any other account
(a backtest, a paper account) gets ``<reports_dir>/<account>/<day>.html`` (``:``
replaced by ``_``), so a backtest never overwrites the paper report of the same day.
Charts are PNGs in the folder ``<day>/`` beside the HTML, and are embedded in it too, so
the HTML file is complete on its own.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from tradenova_dagster import config
from tradenova_dagster.market import calendar
from tradenova_dagster.metrics import charts
from tradenova_dagster.metrics.page import CSS, DEFINITIONS, METRIC_ROWS, fmt, ny_time, table
from tradenova_dagster.metrics.tearsheet import Tearsheet, collect
from tradenova_dagster.metrics.tearsheet_html import sections
from tradenova_dagster.metrics.tracker import DEFAULT_ACCOUNT, MetricsTracker

# (key in the metrics dict, label, format) for the two summary tables.
_DAY_ROWS = (
    ("total_pnl", "P&L", "money"),
    ("num_trades", "Trades", "int"),
    ("wins", "Winning trades", "int"),
    ("losses", "Losing trades", "int"),
    ("win_rate", "Win rate", "pct"),
    ("best_trade", "Best trade", "money"),
    ("worst_trade", "Worst trade", "money"),
    ("commission", "Commission", "money"),
    ("end_equity", "Equity at the close (realised)", "dollars"),
    ("drawdown", "Drawdown at the close (from the window's peak)", "pct"),
)
_UNDEFINED_WHY = {
    "sharpe_ratio": "undefined: fewer than 2 days or no variation in daily returns",
    "sortino_ratio": "undefined: fewer than 2 days or no losing day",
    "profit_factor": "undefined: no losing trade",
    "win_rate": "undefined: no trades",
    "avg_win": "undefined: no winning trade",
    "avg_loss": "undefined: no losing trade",
    "expectancy": "undefined: no trades",
    "best_trade": "no trades",
    "worst_trade": "no trades",
    "drawdown": "no trading history",
    "total_return": "undefined: equity at the start <= 0",
}

@dataclass(frozen=True)
class DailyReport:
    """What ``build_daily_report`` produced: the numbers, the tables and the files."""

    day: date
    account: str
    lookback_days: int
    html_path: Path
    charts: dict[str, Path]
    day_metrics: dict[str, Any]
    window_metrics: dict[str, Any]
    trades: pd.DataFrame
    agents: pd.DataFrame
    risk_events: pd.DataFrame
    predictions: pd.DataFrame
    decisions: pd.DataFrame
    tearsheet: Tearsheet  # the window, as a tearsheet

    @property
    def has_trades(self) -> bool:
        return self.day_metrics["num_trades"] > 0

    def numbers(self) -> dict[str, Any]:
        """Every number of the report, flat: ``day.<metric>``, ``window.<metric>``, counts."""
        flat: dict[str, Any] = {}
        for key, _label, _fmt in _DAY_ROWS:
            flat[f"day.{key}"] = self.day_metrics.get(key)
        for key, _label, _fmt in METRIC_ROWS:
            flat[f"window.{key}"] = self.window_metrics.get(key)
        flat["risk_events"] = len(self.risk_events)
        flat["predictions"] = int(self.predictions["predictions"].sum()) if len(self.predictions) else 0
        flat["decisions_refused"] = int(self.decisions["refused"].sum()) if len(self.decisions) else 0
        return flat

    def summary(self) -> str:
        """A few lines for a terminal: the day, the window, the counts, the file."""
        d, w = self.day_metrics, self.window_metrics
        if self.has_trades:
            day_line = (
                f"P&L {fmt(d['total_pnl'], 'money')} | {_plural(d['num_trades'], 'trade')} "
                f"({d['wins']} won, {d['losses']} lost) | win rate {fmt(d['win_rate'], 'pct')}"
            )
        else:
            day_line = "no trades on this day"
        numbers = self.numbers()
        return "\n".join([
            f"TradeNova daily report {self.day} (account {self.account})",
            f"  day:        {day_line}",
            f"  {self.lookback_days} days:    P&L {fmt(w['total_pnl'], 'money')} | "
            f"{_plural(w['num_trades'], 'trade')} | win rate {fmt(w['win_rate'], 'pct')} | "
            f"Sharpe {fmt(w['sharpe_ratio'], 'ratio')} | Sortino {fmt(w['sortino_ratio'], 'ratio')} | "
            f"max drawdown {fmt(w['max_drawdown'], 'pct')}",
            f"  risk events: {numbers['risk_events']} | predictions: {numbers['predictions']} | "
            f"refused decisions: {numbers['decisions_refused']}",
            f"  report: {self.html_path}",
        ])


def report_paths(day: date, account: str, reports_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(HTML file, chart folder) of one account's report for one day."""
    base = Path(reports_dir) if reports_dir is not None else config.reports_dir()
    if account != DEFAULT_ACCOUNT:
        base = base / re.sub(r"[^A-Za-z0-9_.\-]", "_", account)
    return base / f"{day.isoformat()}.html", base / day.isoformat()


def build_daily_report(
    tracker: MetricsTracker,
    day: date | str,
    *,
    lookback_days: int = 30,
    reports_dir: str | Path | None = None,
    run_id: str | None = None,
    benchmark_source=None,
) -> DailyReport:
    """Compute, draw and write the report of ``tracker.account`` for one trading day.

    ``benchmark_source`` (a market data source) gives SPY's daily bars for the window's
    buy-and-hold comparison; without it the page says the benchmark is not drawn.
    Writes the HTML and PNGs (replacing an earlier report of the same day and account)
    and records the report in the ``daily_reports`` table.
    """
    day = calendar.require_trading_day(day, "day")
    if isinstance(lookback_days, bool) or not isinstance(lookback_days, int) or lookback_days < 1:
        raise ValueError(f"lookback_days must be a whole number of days >= 1, got {lookback_days!r}")
    account = tracker.account
    day_metrics = tracker.calculate_metrics(lookback_days=1, as_of=day)
    window_metrics = tracker.calculate_metrics(lookback_days=lookback_days, as_of=day)
    series = tracker.daily_series(lookback_days=lookback_days, as_of=day)
    at_close = series[series["day"] == day]
    day_metrics["drawdown"] = float(at_close["drawdown"].iloc[0]) if len(at_close) else None

    agents = _agent_table(
        tracker.get_agent_performance(lookback_days=1, as_of=day),
        tracker.get_agent_performance(lookback_days=lookback_days, as_of=day),
    )
    store, params = tracker.store, [account, day]
    trades = store.query_df(
        "SELECT entry_time, exit_time, agent, symbol, contract, side, qty, entry_price, exit_price, pnl,"
        " commission, exit_reason FROM trades WHERE account = ? AND day = ?"
        " ORDER BY exit_time, trade_id", params,
    )
    intraday = store.query_df(
        "SELECT ts, equity FROM equity_curve WHERE account = ? AND day = ? ORDER BY ts", params
    )
    predictions = store.query_df(
        "SELECT model, count(*) AS predictions,"
        " count(*) FILTER (WHERE decision = 'BUY_CALL') AS buy_call,"
        " count(*) FILTER (WHERE decision = 'BUY_PUT') AS buy_put,"
        " count(*) FILTER (WHERE decision = 'FLAT') AS flat,"
        " avg(raw_action) AS mean_raw_action, avg(smoothed_action) AS mean_smoothed_action"
        " FROM rl_predictions WHERE account = ? AND day = ? GROUP BY model ORDER BY model", params,
    )
    decisions = store.query_df(
        "SELECT agent, count(*) AS decisions, count(*) FILTER (WHERE allowed) AS allowed,"
        " count(*) FILTER (WHERE NOT allowed) AS refused,"
        " mode(reason) FILTER (WHERE NOT allowed) AS most_common_refusal"
        " FROM agent_decisions WHERE account = ? AND day = ? GROUP BY agent ORDER BY agent", params,
    )
    risk_events = _risk_events(store, account, day)
    tearsheet = collect([tracker], day - timedelta(days=lookback_days - 1), day,
                        benchmark_source=benchmark_source)

    html_path, chart_dir = report_paths(day, account, reports_dir)
    window_label = f"last {lookback_days} days"
    drawn = {
        "equity": charts.equity_chart(
            series, chart_dir / "equity.png",
            f"Equity and drawdown, {window_label} to {day} ({account})"),
        "trade_pnl": charts.trade_pnl_chart(
            trades, chart_dir / "trade_pnl.png", f"P&L per trade on {day}"),
        "agent_pnl": charts.agent_pnl_chart(
            agents, chart_dir / "agent_pnl.png", f"P&L per agent to {day}", window_label),
    }
    stale_intraday = chart_dir / "intraday_equity.png"
    if len(intraday):
        drawn["intraday_equity"] = charts.intraday_equity_chart(
            intraday, stale_intraday, f"Intraday equity on {day}", calendar.NEW_YORK)
    elif stale_intraday.exists():
        stale_intraday.unlink()

    report = DailyReport(
        day=day, account=account, lookback_days=lookback_days, html_path=html_path,
        charts=drawn, day_metrics=day_metrics, window_metrics=window_metrics, trades=trades,
        agents=agents, risk_events=risk_events, predictions=predictions, decisions=decisions,
        tearsheet=tearsheet,
    )
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(render_html(report), encoding="utf-8")
    _save_row(tracker, report, run_id)
    return report


def _agent_table(day: dict[str, dict], window: dict[str, dict]) -> pd.DataFrame:
    """One row per agent seen in the window: the day's and the window's trade numbers."""
    rows = []
    for agent, w in window.items():  # the window includes the day, so it names every agent
        d = day.get(agent, {})
        rows.append({
            "agent": agent,
            "day_trades": d.get("num_trades", 0),
            "day_pnl": d.get("total_pnl", 0.0),
            "day_win_rate": d.get("win_rate"),
            "window_trades": w["num_trades"],
            "window_pnl": w["total_pnl"],
            "window_win_rate": w["win_rate"],
            "window_profit_factor": w["profit_factor"],
            "window_expectancy": w["expectancy"],
        })
    columns = ["agent", "day_trades", "day_pnl", "day_win_rate", "window_trades", "window_pnl",
               "window_win_rate", "window_profit_factor", "window_expectancy"]
    return pd.DataFrame(rows, columns=columns)


def _risk_events(store, account: str, day: date) -> pd.DataFrame:
    """The risk framework's events (table ``risk_events``, migration 0200) of that New
    York day: refusals, halts and clearances, with the rule and why."""
    start = pd.Timestamp(datetime.combine(day, time(0, 0)), tz=calendar.NEW_YORK).tz_convert("UTC")
    end = pd.Timestamp(datetime.combine(day + timedelta(days=1), time(0, 0)),
                       tz=calendar.NEW_YORK).tz_convert("UTC")
    return store.query_df(
        "SELECT ts, kind, rule, symbol, reason, values_json FROM risk_events"
        " WHERE account = ? AND ts >= ? AND ts < ? ORDER BY ts",
        [account, start.to_pydatetime(), end.to_pydatetime()],
    )


def _save_row(tracker: MetricsTracker, report: DailyReport, run_id: str | None) -> None:
    d, w = report.day_metrics, report.window_metrics
    payload = json.dumps({"numbers": report.numbers(), "day": d, "window": w}, default=str)
    with tracker.store.transaction() as con:
        con.execute("DELETE FROM daily_reports WHERE account = ? AND day = ?",
                    [report.account, report.day])
        con.execute(
            "INSERT INTO daily_reports (account, day, run_id, html_path, day_pnl, day_trades,"
            " day_win_rate, window_days, window_pnl, window_sharpe, window_max_drawdown, metrics)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [report.account, report.day, run_id, str(report.html_path), d["total_pnl"],
             d["num_trades"], d["win_rate"], report.lookback_days, w["total_pnl"],
             w["sharpe_ratio"], w["max_drawdown"], payload],
        )


# ---------------------------------------------------------------------- formatting


def display_tables(report: DailyReport) -> dict[str, pd.DataFrame]:
    """The report's tables with formatted values and readable headers (HTML and Markdown)."""
    trades = report.trades
    trades_view = pd.DataFrame({
        "entry (New York)": ny_time(trades["entry_time"]),
        "exit (New York)": ny_time(trades["exit_time"]),
        "agent": trades["agent"],
        "symbol": trades["symbol"],
        "contract": trades["contract"].fillna(""),
        "side": trades["side"],
        "qty": trades["qty"].map(lambda v: f"{v:g}"),
        "entry": trades["entry_price"].map(lambda v: f"{v:,.2f}"),
        "exit": trades["exit_price"].map(lambda v: f"{v:,.2f}"),
        "P&L": trades["pnl"].map(lambda v: fmt(v, "money")),
        "commission": trades["commission"].map(lambda v: fmt(v, "money")),
        "exit reason": trades["exit_reason"].fillna(""),
    })
    a = report.agents
    window = f"{report.lookback_days}d"
    agents_view = pd.DataFrame({
        "agent": a["agent"],
        "trades (day)": a["day_trades"],
        "P&L (day)": a["day_pnl"].map(lambda v: fmt(v, "money")),
        "win rate (day)": a["day_win_rate"].map(lambda v: fmt(v, "pct")),
        f"trades ({window})": a["window_trades"],
        f"P&L ({window})": a["window_pnl"].map(lambda v: fmt(v, "money")),
        f"win rate ({window})": a["window_win_rate"].map(lambda v: fmt(v, "pct")),
        f"profit factor ({window})": a["window_profit_factor"].map(lambda v: fmt(v, "ratio")),
        f"expectancy ({window})": a["window_expectancy"].map(lambda v: fmt(v, "money")),
    })
    # One row per (kind, rule, reason): a halted day refuses every bar with the same words.
    r = report.risk_events.assign(time=ny_time(report.risk_events["ts"]).str[11:])
    risk_view = (r.groupby(["kind", "rule", "reason"], sort=False)
                 .agg(events=("ts", "size"), first=("time", "min"), last=("time", "max"),
                      values=("values_json", "first"))
                 .reset_index()
                 .rename(columns={"first": "first (New York)", "last": "last (New York)",
                                  "values": "values (first event)"}))
    p = report.predictions
    predictions_view = pd.DataFrame({
        "model": p["model"],
        "predictions": p["predictions"],
        "BUY_CALL": p["buy_call"],
        "BUY_PUT": p["buy_put"],
        "FLAT": p["flat"],
        "mean raw action": p["mean_raw_action"].map(lambda v: f"{v:+.3f}"),
        "mean smoothed action": p["mean_smoothed_action"].map(lambda v: f"{v:+.3f}"),
    })
    decisions_view = report.decisions.rename(columns={"most_common_refusal": "most common refusal"})
    decisions_view = decisions_view.fillna({"most common refusal": ""})
    return {"trades": trades_view, "agents": agents_view, "risk_events": risk_view,
            "predictions": predictions_view, "decisions": decisions_view}


def _plural(count: int, noun: str) -> str:
    return f"{count:,d} {noun}{'' if count == 1 else 's'}"


def _metric_rows(prefix: str, rows: tuple, metrics: dict[str, Any]) -> str:
    out = []
    for key, label, kind in rows:
        value = metrics.get(key)
        exact = "" if value is None else repr(value)
        title = f' title="{html.escape(_UNDEFINED_WHY[key])}"' if value is None and key in _UNDEFINED_WHY else ""
        out.append(
            f"<tr><th>{html.escape(label)}</th><td class=\"num\" data-metric=\"{prefix}.{key}\" "
            f"data-value=\"{exact}\"{title}>{html.escape(fmt(value, kind))}</td></tr>"
        )
    return "\n".join(out)


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def render_html(report: DailyReport) -> str:
    """The report as one self-contained HTML page (charts embedded as PNG data)."""
    tables = display_tables(report)
    w = report.window_metrics
    esc = html.escape
    notice = "" if report.has_trades else (
        f'<p class="notice" data-metric="no_trades">No trades on {report.day}: the day\'s P&L is '
        f"{fmt(0.0, 'money')}; the window below still covers the last {report.lookback_days} days.</p>"
    )
    chart_html = "\n".join(_image(path, name) for name, path in report.charts.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<link rel="icon" href="data:,">
<title>TradeNova daily report {report.day} — {esc(report.account)}</title>
<style>{CSS}</style></head>
<body>
<h1>TradeNova daily report — {report.day}</h1>
<p>Account <code data-metric="account">{esc(report.account)}</code> · window
{esc(w['start'])} to {esc(w['as_of'])} ({report.lookback_days} calendar days) ·
generated {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}</p>
{notice}
<div class="summary">
<div><h2>The day</h2><table>
{_metric_rows("day", _DAY_ROWS, report.day_metrics)}
</table></div>
<div><h2>Last {report.lookback_days} days</h2><table>
{_metric_rows("window", METRIC_ROWS, w)}
</table></div>
</div>
<h2>Charts</h2>
{chart_html}
<h2>Trades</h2>
{table(tables["trades"], f"No trades on {report.day}.")}
<h2>Per agent</h2>
{table(tables["agents"], f"No trades in the last {report.lookback_days} days.")}
<h2>Risk events</h2>
{table(tables["risk_events"], "No risk events on this day.")}
<h2>Signal predictions</h2>
{table(tables["predictions"], "No predictions recorded on this day.")}
<h2>Agent decisions</h2>
{table(tables["decisions"], "No agent decisions recorded on this day.")}
<h1>The last {report.lookback_days} days as a tearsheet</h1>
{sections(report.tearsheet, with_trades=False)}
<h2>Definitions</h2>
<p class="definitions">{esc(DEFINITIONS)}</p>
</body></html>
"""
