"""The tearsheet's charts, drawn with matplotlib's Agg canvas and returned as PNG bytes.

Same rules as ``charts`` (object API, no pyplot, no GUI backend). The tearsheet embeds
the PNGs in its page as base64 data, so each function returns bytes rather than writing
a file: the page is the only artefact. Every chart takes values already computed by the
tearsheet (from ``MetricsTracker``); none computes a metric itself. An empty input still
gives a readable chart that says why it is empty.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.ticker import PercentFormatter

from tradenova_dagster.metrics.charts import BLUE, DPI, GREEN, GREY, RED, _date_axis, _dollars, _empty, _new_figure

# One colour per account (strategy); SPY is always black and dashed.
PALETTE = ("#2c7bb6", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#666666")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def cumulative_returns(curves: dict[str, pd.Series], benchmark: pd.Series | None, title: str) -> bytes:
    """Each account's cumulative return by day, and the benchmark's (buy and hold) on the
    same days. ``curves``: account -> Series (index day) of returns since the span's start."""
    fig = _new_figure(height=4.4)
    ax = fig.subplots()
    ax.set_title(title, fontsize=12)
    if not any(len(c) for c in curves.values()):
        _empty(ax, "No trading history in this span")
        return _png(fig)
    for i, (account, curve) in enumerate(curves.items()):
        ax.plot(pd.to_datetime(curve.index), curve.to_numpy(), color=_colour(i), marker="o", markersize=3,
                linewidth=1.6, label=account)
    if benchmark is not None and len(benchmark):
        ax.plot(pd.to_datetime(benchmark.index), benchmark.to_numpy(), color="black", linestyle="--",
                linewidth=1.3, label=f"{benchmark.name} buy and hold")
    ax.axhline(0, color=GREY, linewidth=0.8)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=2))
    ax.set_ylabel("return since the start")
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    ax.grid(alpha=0.3)
    _date_axis(ax, fig, [d for c in curves.values() for d in c.index])
    return _png(fig)


def underwater(drawdowns: dict[str, pd.Series], title: str) -> bytes:
    """Drawdown from the running peak of end-of-day equity, per account (0 = at a peak)."""
    fig = _new_figure(height=3.2)
    ax = fig.subplots()
    ax.set_title(title, fontsize=12)
    if not any(len(d) for d in drawdowns.values()):
        _empty(ax, "No trading history in this span")
        return _png(fig)
    lowest = 0.0
    for i, (account, drawdown) in enumerate(drawdowns.items()):
        values = -drawdown.fillna(0.0).to_numpy(dtype=float)
        days = pd.to_datetime(drawdown.index)
        ax.fill_between(days, values, 0, color=_colour(i), alpha=0.25)
        ax.plot(days, values, color=_colour(i), marker="o", markersize=3, linewidth=1.2, label=account)
        lowest = min(lowest, float(values.min()) if len(values) else 0.0)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=2))
    ax.set_ylim(min(lowest * 1.15, -0.0005), 0.0001)
    ax.set_ylabel("drawdown")
    ax.legend(loc="lower left", fontsize=8, framealpha=0.85)
    ax.grid(alpha=0.3)
    _date_axis(ax, fig, [d for dd in drawdowns.values() for d in dd.index])
    return _png(fig)


def monthly_heatmap(monthly: dict[str, pd.DataFrame], title: str) -> bytes:
    """Return per calendar month (rows: years, columns: months), one panel per account.
    ``monthly``: account -> frame with columns year, month (1-12), total_return."""
    panels = [(a, m) for a, m in monthly.items()]
    years = sorted({int(y) for _a, m in panels for y in m["year"]}) or [0]
    fig = _new_figure(height=1.0 + 0.55 * len(years) * max(1, len(panels)) + 0.5 * len(panels))
    axes = np.atleast_1d(fig.subplots(max(1, len(panels)), 1, squeeze=False)[:, 0])
    fig.suptitle(title, fontsize=12)
    if not panels or all(m.empty for _a, m in panels):
        _empty(axes[0], "No trading history in this span")
        return _png(fig)
    values = [v for _a, m in panels for v in m["total_return"].dropna()]
    bound = max(max((abs(v) for v in values), default=0.0), 1e-6)
    norm = TwoSlopeNorm(vmin=-bound, vcenter=0.0, vmax=bound)
    for ax, (account, frame) in zip(axes, panels):
        grid = np.full((len(years), 12), np.nan)
        for row in frame.itertuples():
            if row.total_return is not None and not pd.isna(row.total_return):
                grid[years.index(int(row.year)), int(row.month) - 1] = row.total_return
        ax.imshow(grid, cmap="RdYlGn", norm=norm, aspect="auto")
        for (r, c), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(c, r, f"{100 * value:+.2f}%", ha="center", va="center", fontsize=9,
                        color="white" if abs(value) > 0.6 * bound else "black")
        ax.set_xticks(range(12), MONTHS, fontsize=8)
        ax.set_yticks(range(len(years)), [str(y) for y in years], fontsize=8)
        ax.set_title(account, fontsize=10)
    return _png(fig)


def rolling_sharpe(sharpes: dict[str, pd.Series], window_label: str, title: str) -> bytes:
    """The annualised Sharpe ratio of the trailing window, day by day, per account (gaps
    where it is undefined: fewer than 2 days or no variation)."""
    fig = _new_figure(height=3.4)
    ax = fig.subplots()
    ax.set_title(title, fontsize=12)
    if not any(s.notna().any() for s in sharpes.values()):
        _empty(ax, f"Sharpe undefined on every day (needs 2 days with varying returns in {window_label})")
        return _png(fig)
    for i, (account, sharpe) in enumerate(sharpes.items()):
        ax.plot(pd.to_datetime(sharpe.index), sharpe.to_numpy(dtype=float), color=_colour(i), marker="o",
                markersize=3, linewidth=1.4, label=account)
    ax.axhline(0, color=GREY, linewidth=0.8)
    ax.set_ylabel(f"Sharpe ({window_label})")
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    ax.grid(alpha=0.3)
    _date_axis(ax, fig, [d for sh in sharpes.values() for d in sh.index])
    return _png(fig)


def pnl_distribution(trades: pd.DataFrame, title: str) -> bytes:
    """Histogram of the P&L of every trade in the span (``trades``: account, pnl)."""
    fig = _new_figure(height=3.4)
    ax = fig.subplots()
    ax.set_title(title, fontsize=12)
    if trades.empty:
        _empty(ax, "No trades in this span")
        return _png(fig)
    pnl = trades["pnl"].astype(float)
    bins = np.histogram_bin_edges(pnl, bins=min(40, max(5, len(pnl) // 2)))
    groups = [(a, g["pnl"].astype(float)) for a, g in trades.groupby("account", sort=False)]
    ax.hist([g for _a, g in groups], bins=bins, stacked=True, label=[a for a, _g in groups],
            color=[_colour(i) for i in range(len(groups))], alpha=0.85, edgecolor="white")
    ax.axvline(0, color="black", linewidth=0.9)
    ax.xaxis.set_major_formatter(_dollars)
    ax.set_xlabel("P&L per trade")
    ax.set_ylabel("trades")
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def counts_by(frame: pd.DataFrame, label: str, count: str, title: str, empty_message: str,
              pnl: str | None = None) -> bytes:
    """Horizontal bars of ``count`` per ``label`` (summed over accounts); with ``pnl``, the
    bars are green or red by the sign of the P&L of that label's trades."""
    fig = _new_figure(height=max(2.4, 1.2 + 0.42 * frame[label].nunique() if len(frame) else 2.4))
    ax = fig.subplots()
    ax.set_title(title, fontsize=12)
    if frame.empty:
        _empty(ax, empty_message)
        return _png(fig)
    totals = frame.groupby(label, sort=False)[[count] + ([pnl] if pnl else [])].sum()
    totals = totals.sort_values(count, ascending=True)
    colours = ([GREEN if v > 0 else RED if v < 0 else GREY for v in totals[pnl]] if pnl else [BLUE] * len(totals))
    ax.barh([str(i) for i in totals.index], totals[count], color=colours)
    for y, value in enumerate(totals[count]):
        ax.text(value, y, f" {int(value):,d}", va="center", fontsize=9)
    ax.set_xlabel(count)
    ax.grid(axis="x", alpha=0.3)
    ax.margins(x=0.12)
    return _png(fig)
