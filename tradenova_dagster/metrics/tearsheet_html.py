"""The tearsheet as HTML: a self-contained page (charts as base64 PNG data, inline CSS, no
script, nothing fetched), and the same sections for the daily report to include.

Each number of the per-strategy table carries its exact value in ``data-value`` and its
name in ``data-metric`` (``strategy.<account>.<metric>``), as in the daily report, so tools
and tests can read the page without parsing formatted text.
"""

from __future__ import annotations

import base64
import html
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from tradenova_dagster import config
from tradenova_dagster.metrics.page import CSS, DEFINITIONS, METRIC_ROWS, fmt, ny_time, table
from tradenova_dagster.metrics.tearsheet import BENCHMARK, MAX_TRADE_ROWS, Tearsheet

CHART_ALT = {
    "cumulative_returns": f"cumulative return of each strategy and of {BENCHMARK} buy and hold",
    "underwater": "drawdown from the running peak of equity",
    "monthly_returns": "heatmap of monthly returns",
    "rolling_sharpe": "rolling Sharpe ratio",
    "pnl_distribution": "histogram of trade P&L",
    "exit_reasons": "trades per exit reason",
    "risk_refusals": "risk refusals per rule",
}
def tearsheet_path(sheet: Tearsheet, reports_dir: str | Path | None = None) -> Path:
    base = Path(reports_dir) if reports_dir is not None else config.reports_dir()
    names = "+".join(re.sub(r"[^A-Za-z0-9_.\-]", "_", a) for a in sheet.accounts)
    return base / "tearsheets" / f"{names}_{sheet.start}_{sheet.end}.html"


def _image(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}"></figure>'


def _cell(account: str, key: str, value: Any, kind: str) -> str:
    exact = "" if value is None else repr(value)
    sign = "" if value is None or kind not in ("money", "pct") or key == "max_drawdown" else (
        " pos" if value > 0 else " neg" if value < 0 else "")
    return (f'<td class="num{sign}" data-metric="strategy.{html.escape(account)}.{key}" '
            f'data-value="{exact}">{html.escape(fmt(value, kind))}</td>')


def strategy_table(sheet: Tearsheet) -> str:
    """Rows: the metrics of ``calculate_metrics`` over the span; columns: the strategies
    (one account each), then SPY buy and hold's return over the same days."""
    head = "".join(f"<th>{html.escape(a)}</th>" for a in sheet.accounts)
    rows = []
    for key, label, kind in METRIC_ROWS:
        cells = "".join(_cell(a, key, sheet.metrics[a].get(key), kind) for a in sheet.accounts)
        rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    bench = "undefined" if sheet.benchmark is None else fmt(float(sheet.benchmark.iloc[-1]), "pct")
    rows.append(f'<tr><th>{BENCHMARK} buy and hold, same span</th><td class="num" colspan="{len(sheet.accounts)}" '
                f'data-metric="benchmark.total_return">{html.escape(bench)}</td></tr>')
    return f'<table class="strategies"><tr><th>metric</th>{head}</tr>{"".join(rows)}</table>'


def _cards(sheet: Tearsheet) -> str:
    """The headline numbers, large, above everything else (one strategy only: with
    several, the per-strategy table is the comparison)."""
    if len(sheet.accounts) != 1:
        return ""
    account = sheet.accounts[0]
    m = sheet.metrics[account]
    cards = []
    for key, label, kind in (("total_pnl", "P&L", "money"), ("total_return", "Return", "pct"),
                             ("sharpe_ratio", "Sharpe", "ratio"), ("max_drawdown", "Max drawdown", "pct"),
                             ("win_rate", "Win rate", "pct"), ("num_trades", "Trades", "int")):
        cards.append(f'<div class="card"><div class="label">{label}</div><div class="value">'
                     f'{html.escape(fmt(m.get(key), kind))}</div></div>')
    return f'<div class="cards">{"".join(cards)}</div>'


def tables(sheet: Tearsheet) -> dict[str, pd.DataFrame]:
    """The tearsheet's tables, formatted for reading."""
    t = sheet.trades.tail(MAX_TRADE_ROWS)
    trades = pd.DataFrame({
        "account": t["account"], "entry (New York)": ny_time(t["entry_time"]), "exit (New York)": ny_time(t["exit_time"]),
        "agent": t["agent"], "contract": t["contract"].fillna(t["symbol"]), "side": t["side"],
        "qty": t["qty"].map(lambda v: f"{v:g}"), "entry": t["entry_price"].map(lambda v: f"{v:,.2f}"),
        "exit": t["exit_price"].map(lambda v: f"{v:,.2f}"), "P&L": t["pnl"].map(lambda v: fmt(v, "money")),
        "commission": t["commission"].map(lambda v: fmt(v, "money")), "exit reason": t["exit_reason"].fillna(""),
    })
    a = sheet.agents
    agents = pd.DataFrame({
        "account": a["account"], "agent": a["agent"], "trades": a["num_trades"],
        "P&L": a["total_pnl"].map(lambda v: fmt(v, "money")),
        "win rate": a["win_rate"].map(lambda v: fmt(v, "pct")),
        "profit factor": a["profit_factor"].map(lambda v: fmt(v, "ratio")),
        "expectancy": a["expectancy"].map(lambda v: fmt(v, "money")),
        "decisions allowed": a["decisions_allowed"], "decisions refused": a["decisions_refused"],
    })
    e = sheet.exit_reasons
    exits = pd.DataFrame({"account": e["account"], "exit reason": e["exit reason"], "trades": e["trades"],
                          "P&L": e["pnl"].map(lambda v: fmt(v, "money"))})
    r = sheet.refusals
    refusals = pd.DataFrame({"account": r["account"], "rule": r["rule"], "refusals": r["refusals"],
                             "first (New York)": ny_time(r["first"]), "last (New York)": ny_time(r["last"]),
                             "most common reason": r["most common reason"]})
    if len(sheet.accounts) == 1:  # one account: the column says nothing
        trades, agents, exits, refusals = (f.drop(columns="account") for f in (trades, agents, exits, refusals))
    return {"trades": trades, "agents": agents, "exit_reasons": exits, "refusals": refusals}


def sections(sheet: Tearsheet, *, with_trades: bool = True) -> str:
    """The tearsheet's body: charts and tables (the daily report includes these)."""
    t = tables(sheet)
    img = {name: _image(data, CHART_ALT[name]) for name, data in sheet.charts.items()}
    shown = min(len(sheet.trades), MAX_TRADE_ROWS)
    more = "" if shown == len(sheet.trades) else f" (the latest {shown:,d} of {len(sheet.trades):,d})"
    trades = "" if not with_trades else (
        f"<h2>Trades{more}</h2>\n{table(t['trades'], 'No trades in this span.')}")
    return f"""
<h2>Return vs {BENCHMARK} buy and hold</h2>
<p class="note">{html.escape(sheet.benchmark_note)}</p>
{img['cumulative_returns']}
{img['underwater']}
<h2>Monthly returns and rolling Sharpe</h2>
{img['monthly_returns']}
{img['rolling_sharpe']}
<h2>Trade P&amp;L and exit reasons</h2>
{img['pnl_distribution']}
{img['exit_reasons']}
{table(t['exit_reasons'], 'No trades in this span.')}
<h2>Per agent</h2>
{table(t['agents'], 'No trades or decisions in this span.')}
<h2>Risk refusals by rule</h2>
{img['risk_refusals']}
{table(t['refusals'], 'No risk refusals in this span.')}
{trades}
"""


def render_tearsheet(sheet: Tearsheet) -> str:
    """The whole tearsheet page."""
    esc = html.escape
    names = ", ".join(sheet.accounts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<link rel="icon" href="data:,">
<title>TradeNova tearsheet {sheet.start} to {sheet.end} — {esc(names)}</title>
<style>{CSS}</style></head>
<body>
<h1>TradeNova tearsheet — {esc(names)}</h1>
<p>{sheet.start} to {sheet.end} ({sheet.span_days} calendar days) · times in New York ·
generated {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}</p>
{_cards(sheet)}
<h2>Per strategy</h2>
{strategy_table(sheet)}
{sections(sheet)}
<h2>Definitions</h2>
<p class="definitions">{esc(DEFINITIONS)} Rolling Sharpe: the Sharpe ratio of the trailing
window ending on each day. Monthly return: the return over the part of the month in the span.
{BENCHMARK} buy and hold: bought at the open of the span's first trading day, valued at each
close. Exit reasons: the text of a trade's exit reason before the first ':'.</p>
</body></html>
"""
