"""What the report pages share: number formats, tables, times in New York, the style sheet
and the metric definitions, so that the daily report and the tearsheet (``report``,
``tearsheet_html``) write a number the same way.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from tradenova_dagster.market import calendar

DEFINITIONS = (
    "Daily return = the day's P&L / start-of-day equity (initial capital + all earlier "
    "P&L). Sharpe = mean / sample standard deviation of daily returns × √252, risk-free 0. "
    "Sortino = mean / √(Σ min(r,0)² / days) × √252. Max drawdown = largest fall of "
    "end-of-day equity from its running peak, as a fraction of the peak. Days without "
    "trades count with return 0. A trade counts on the New York date of its exit."
)


def fmt(value: Any, kind: str) -> str:
    """A number as the pages show it; None and NaN read "undefined"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "undefined"
    if kind == "money":
        return f"{'-' if value < 0 else '+' if value > 0 else ''}${abs(value):,.2f}"
    if kind == "dollars":
        return f"{'-' if value < 0 else ''}${abs(value):,.2f}"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "int":
        return f"{int(value):,d}"
    return f"{value:.3f}"


def ny_time(values: pd.Series) -> pd.Series:
    """Instants as New York wall-clock time with the date (a trade may span days)."""
    return pd.to_datetime(values, utc=True).dt.tz_convert(calendar.NEW_YORK).dt.strftime("%Y-%m-%d %H:%M:%S")


def table(frame: pd.DataFrame, empty_message: str) -> str:
    """A frame as an HTML table (scrolling sideways when wide), or a sentence when empty."""
    if frame.empty:
        return f'<p class="empty">{html.escape(empty_message)}</p>'
    return '<div class="scroll">' + frame.to_html(index=False, escape=True, border=0, classes="data") + "</div>"


CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { padding: 0.25em 0.8em; text-align: left; border-bottom: 1px solid #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.summary { display: flex; gap: 3em; flex-wrap: wrap; }
.notice { background: #fff6d5; padding: 0.6em 1em; border-left: 4px solid #e6b800; }
.empty { color: #777; font-style: italic; }
figure { margin: 1em 0; } img { max-width: 100%; }
.definitions { color: #555; font-size: 0.85em; }
.cards { display: flex; gap: 1em; flex-wrap: wrap; margin: 1em 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 1em; min-width: 9em; }
.card .label { color: #666; font-size: 0.8em; } .card .value { font-size: 1.35em; font-weight: 600; }
.pos { color: #1a7f37; } .neg { color: #c62828; }
.note { color: #555; font-size: 0.9em; }
table.data td, table.data th { white-space: nowrap; }
.scroll { overflow-x: auto; }
"""

# (key in calculate_metrics, label, format): the metrics a report or a tearsheet shows, in order.
METRIC_ROWS = (
    ("total_pnl", "P&L", "money"),
    ("total_return", "Return", "pct"),
    ("num_trades", "Trades", "int"),
    ("num_days", "Trading days", "int"),
    ("win_rate", "Win rate", "pct"),
    ("avg_win", "Average win", "money"),
    ("avg_loss", "Average loss", "money"),
    ("profit_factor", "Profit factor", "ratio"),
    ("expectancy", "Expectancy (per trade)", "money"),
    ("sharpe_ratio", "Sharpe ratio (annualised)", "ratio"),
    ("sortino_ratio", "Sortino ratio (annualised)", "ratio"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("start_equity", "Equity at the start", "dollars"),
    ("end_equity", "Equity at the end", "dollars"),
)
