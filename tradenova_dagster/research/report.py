"""A sweep's (or a walk-forward evaluation's) HTML report, read from its summary.

``write_sweep_report(sweep_dir)`` writes ``report.html`` beside the result files: the
per-strategy table of ``summary.sweep_summary`` (mean daily P&L, IQM with its 95% CI,
win rate, drawdown, trades per day), the gate's verdict for each trained strategy
(``summary.sweep_verdicts``, the same rule that decides promotion), one chart of every
strategy's IQM with its interval against zero and the best baseline, and one of every
run's mean daily P&L, so a reader sees how much seeds and folds disagree. Every number on
the page comes from those two functions; the page computes none itself. The chart is
embedded as base64 PNG: the page is one file that can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import pandas as pd

from tradenova_dagster.metrics.charts import DPI, GREY, RED, _dollars, _new_figure
from tradenova_dagster.metrics.page import CSS, fmt, table
from tradenova_dagster.research.summary import query_results, sweep_summary, sweep_verdicts
from tradenova_dagster.research.sweep import write_atomic
from tradenova_dagster.strategies import BASELINES

REPORT_FILE = "report.html"
_FORMATS = {"runs": "int", "days": "int", "mean_daily_pnl": "money", "iqm_daily_pnl": "money", "ci_low": "money",
            "ci_high": "money", "win_rate": "pct", "max_drawdown": "pct", "trades_per_day": "ratio"}


def write_sweep_report(sweep_dir) -> Path:
    """Write ``report.html`` in ``sweep_dir`` (atomically) and return its path."""
    folder = Path(sweep_dir)
    summary, verdicts = sweep_summary(folder), sweep_verdicts(folder)
    per_run = query_results(folder, "SELECT strategy, seed, fold, avg(pnl) AS mean_daily_pnl FROM results "
                             "GROUP BY strategy, seed, fold ORDER BY strategy, seed, fold")
    page = _page(folder.name, summary, verdicts, per_run)
    path = folder / REPORT_FILE
    write_atomic(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return path


def _page(sweep_id: str, summary: pd.DataFrame, verdicts: dict, per_run: pd.DataFrame) -> str:
    shown = summary.copy()
    for column, kind in _FORMATS.items():
        shown[column] = [fmt(v, kind) for v in shown[column]]
    gate_rows = pd.DataFrame([{"strategy": name, "verdict": "promotable" if v.promotable else "not promotable",
                               "IQM": fmt(v.iqm, "money"), "CI of mean": f"[{fmt(v.ci_low, 'money')}, "
                               f"{fmt(v.ci_high, 'money')}]", "reason": v.reason} for name, v in verdicts.items()])
    chart = base64.b64encode(_chart(summary, per_run)).decode("ascii")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sweep {html.escape(sweep_id)}</title>
<style>{CSS}</style></head><body>
<h1>Sweep {html.escape(sweep_id)}</h1>
<p class="note">Every run replays its fold's unseen days through the session loop on a simulated account
(risk rules, ladder and costs on). IQM: the interquartile mean of the runs' mean daily P&amp;L across seeds
&times; folds, with its 95% bootstrap interval.</p>
<h2>Per strategy</h2>
{table(shown, "no results")}
<h2>The gate</h2>
<p class="note">Promotable only if the 95% bootstrap CI of the mean daily P&amp;L is above 0 and the IQM beats
every baseline's.</p>
{table(gate_rows, "no trained strategy in this sweep: nothing to gate")}
<h2>IQM and every run</h2>
<figure><img alt="IQM with 95% CI, and each run's mean daily P&amp;L, per strategy"
src="data:image/png;base64,{chart}"></figure>
</body></html>
"""


def _chart(summary: pd.DataFrame, per_run: pd.DataFrame) -> bytes:
    """Per strategy (one row each): its runs' mean daily P&L as dots, its IQM as a bar
    with the 95% interval; zero and the best baseline's IQM as vertical lines."""
    fig = _new_figure(height=1.0 + 0.45 * max(len(summary), 1))
    ax = fig.subplots()
    names = list(summary["strategy"])
    for i, row in enumerate(summary.itertuples()):
        colour = GREY if row.strategy in BASELINES else "#2c7bb6"
        runs = per_run.loc[per_run["strategy"] == row.strategy, "mean_daily_pnl"]
        ax.scatter(runs, [i] * len(runs), s=12, color=colour, alpha=0.5, zorder=2)
        ax.barh(i, row.iqm_daily_pnl, height=0.5, color=colour, alpha=0.35, zorder=1)
        if not math.isnan(row.ci_low):
            ax.errorbar(row.iqm_daily_pnl, i, xerr=[[row.iqm_daily_pnl - row.ci_low], [row.ci_high - row.iqm_daily_pnl]],
                        fmt="none", ecolor="black", capsize=3, zorder=3)
    ax.axvline(0.0, color="black", linewidth=0.8)
    baselines = summary[summary["strategy"].isin(BASELINES)]
    if not baselines.empty:
        best = baselines.loc[baselines["iqm_daily_pnl"].idxmax()]
        ax.axvline(best["iqm_daily_pnl"], color=RED, linestyle="--", linewidth=0.8,
                   label=f"best baseline ({best['strategy']})")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(_dollars)
    ax.set_xlabel("mean daily P&L (dots: runs; bar: IQM; whiskers: 95% CI)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
