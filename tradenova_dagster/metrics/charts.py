"""PNG charts for the daily report, drawn with matplotlib's Agg canvas.

Figures are built with the object API (``matplotlib.figure.Figure`` on a
``FigureCanvasAgg``), never through pyplot: no global figure state, no GUI backend,
safe in Dagster's worker processes and in threads. Each function writes one PNG and
returns its path; an empty input still gives a readable chart that says why it is empty.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, DateFormatter, DayLocator
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

GREEN = "#1a9850"
RED = "#d73027"
BLUE = "#2c7bb6"
GREY = "#7f7f7f"
DPI = 110



def _money(value: float, _pos=None) -> str:
    """$1,234 / -$56 (cents when the axis is that fine)."""
    sign = "-" if value < 0 else ""
    text = f"{abs(value):,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{abs(value):,.2f}"
    return f"{sign}${text}"


_dollars = FuncFormatter(_money)


def _new_figure(height: float = 4.2, width: float = 9.0) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=13, color=GREY,
            transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _date_axis(ax, fig, days) -> None:
    """Dates as YYYY-MM-DD; one tick per day on a short span (no midnight/noon ticks)."""
    days = pd.to_datetime(pd.Index(days))
    if not len(days):
        return
    span = (days.max() - days.min()).days
    # The x range is the span's days, whatever is plotted: a lone defined point would
    # otherwise widen the axis to years (and DayLocator would draw a tick for each day).
    pad = pd.Timedelta(days=max(0.5, 0.03 * span))
    ax.set_xlim(days.min() - pad, days.max() + pad)
    ax.xaxis.set_major_locator(DayLocator() if span <= 12 else AutoDateLocator(minticks=4, maxticks=10))
    ax.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
    fig.autofmt_xdate(rotation=30)


def equity_chart(series: pd.DataFrame, path: Path, title: str) -> Path:
    """End-of-day equity over the window (top) and its drawdown from the peak (bottom).

    ``series`` is ``MetricsTracker.daily_series()``: day, end_equity, peak, drawdown.
    """
    fig = _new_figure(height=5.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.3])
    fig.suptitle(title, fontsize=12)
    if series.empty:
        _empty(top, "No trading history for this account yet")
        _empty(bottom, "")
        return _save(fig, path)
    days = pd.to_datetime(series["day"])
    top.plot(days, series["end_equity"], color=BLUE, marker="o", markersize=3, linewidth=1.6,
             label="equity (end of day)")
    top.plot(days, series["peak"], color=GREY, linestyle="--", linewidth=1, label="running peak")
    top.yaxis.set_major_formatter(_dollars)
    top.set_ylabel("equity")
    top.legend(loc="best", fontsize=8, framealpha=0.8)
    top.grid(alpha=0.3)
    drawdown = -series["drawdown"].fillna(0.0)
    bottom.fill_between(days, drawdown, 0, color=RED, alpha=0.35, step=None)
    bottom.plot(days, drawdown, color=RED, linewidth=1)
    bottom.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
    bottom.set_ylabel("drawdown")
    bottom.set_ylim(min(drawdown.min() * 1.15, -0.001), 0.0002)
    bottom.grid(alpha=0.3)
    _date_axis(bottom, fig, days)
    return _save(fig, path)


def intraday_equity_chart(curve: pd.DataFrame, path: Path, title: str, timezone: str) -> Path:
    """Mark-to-market equity through the session (the ``equity_curve`` rows of the day)."""
    fig = _new_figure(height=3.6)
    ax = fig.subplots()
    ax.set_title(title, fontsize=12)
    times = pd.to_datetime(curve["ts"], utc=True).dt.tz_convert(timezone).dt.tz_localize(None)
    ax.plot(times, curve["equity"], color=BLUE, linewidth=1.4)
    ax.yaxis.set_major_formatter(_dollars)
    ax.set_ylabel("equity")
    ax.set_xlabel(f"time ({timezone})")
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    return _save(fig, path)


def trade_pnl_chart(trades: pd.DataFrame, path: Path, title: str) -> Path:
    """One bar per trade of the day in exit order (green win, red loss) on top, and the
    running total of the day below it."""
    fig = _new_figure(height=4.6)
    if trades.empty:
        ax = fig.subplots()
        ax.set_title(title, fontsize=12)
        _empty(ax, "No trades on this day")
        return _save(fig, path)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1.2])
    fig.suptitle(title, fontsize=12)
    pnl = trades["pnl"].astype(float).to_numpy()
    positions = np.arange(1, len(pnl) + 1)
    top.bar(positions, pnl, width=0.7, color=[GREEN if v > 0 else RED for v in pnl], alpha=0.85)
    top.axhline(0, color="black", linewidth=0.8)
    top.yaxis.set_major_formatter(_dollars)
    top.set_ylabel("P&L per trade")
    top.grid(axis="y", alpha=0.3)
    bottom.plot(positions, pnl.cumsum(), color=BLUE, marker="o", markersize=4, linewidth=1.4)
    bottom.axhline(0, color="black", linewidth=0.8)
    bottom.yaxis.set_major_formatter(_dollars)
    bottom.set_ylabel("cumulative")
    bottom.set_xlabel("trade (in exit order)")
    bottom.set_xlim(0.4, len(pnl) + 0.6)
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=15, min_n_ticks=1))
    bottom.grid(alpha=0.3)
    return _save(fig, path)


def agent_pnl_chart(agents: pd.DataFrame, path: Path, title: str, window_label: str) -> Path:
    """Horizontal bars of P&L per agent: the day (left) and the window (right).

    ``agents`` has columns agent, day_pnl, window_pnl.
    """
    fig = _new_figure(height=max(2.6, 1.2 + 0.45 * len(agents)))
    left, right = fig.subplots(1, 2, sharey=True)
    fig.suptitle(title, fontsize=12)
    if agents.empty:
        _empty(left, "No trades")
        _empty(right, "")
        return _save(fig, path)
    names = agents["agent"].tolist()
    for ax, column, label in ((left, "day_pnl", "this day"), (right, "window_pnl", window_label)):
        values = agents[column].fillna(0.0).astype(float).to_numpy()
        ax.barh(names, values, color=[GREEN if v > 0 else RED if v < 0 else GREY for v in values])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.xaxis.set_major_formatter(_dollars)
        ax.set_title(label, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelrotation=20)
    left.invert_yaxis()
    return _save(fig, path)
