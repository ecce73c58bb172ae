"""A sweep's results per strategy: what the report and the learner's promotion gate read.

``sweep_summary(sweep_dir)`` reads every run's result file with DuckDB
(``read_parquet`` over the ``result-*.parquet`` glob: a crashed write's temporary file
never matches) and gives one row per strategy:

- ``runs``, ``days``: (seed, fold) runs and replayed days behind the row;
- ``mean_daily_pnl``: P&L per replayed day, over every day of every run;
- ``iqm_daily_pnl``: the interquartile mean (the middle half, 25% trimmed from each end)
  of the runs' mean daily P&L across seeds x folds, and ``ci_low`` / ``ci_high``, its 95%
  bootstrap confidence interval (``rl.gate.bootstrap_ci``: the gate's own statistics,
  percentile method, 2000 resamples, a fixed seed so a summary is reproducible). The IQM with a bootstrap CI is
  how a handful of noisy runs is compared without one lucky seed or fold deciding it
  (Agarwal et al., "Deep RL at the edge of the statistical precipice", 2021).
  Fewer than two runs give no interval (NaN).
- ``win_rate``: winning trades / trades, over all runs (NaN: no trade), the tracker's
  definition (``metrics.tracker``), so every table means the same by it;
- ``max_drawdown``: the worst intraday drawdown of any run (a fraction of peak equity);
- ``trades_per_day``: trades / replayed days.

``sweep_verdicts(sweep_dir)`` is the promotion gate (``rl.gate.gate``) applied to the same
files: for every strategy that is not a baseline (a trained agent, or ``model``), its P&L
per (seed, fold, day) against each baseline's P&L on the same (fold, day), averaged over
the baseline's own seeds (the rule-based baselines ignore seeds and may have run once).
"""


from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from tradenova_dagster.research.sweep import RESULT_GLOB
from tradenova_dagster.rl.gate import Verdict, bootstrap_ci, gate, iqm  # the gate's statistics: one definition
from tradenova_dagster.strategies import BASELINES

SUMMARY_COLUMNS = {"strategy": "string", "runs": "int", "days": "int", "mean_daily_pnl": "float",
                   "iqm_daily_pnl": "float", "ci_low": "float", "ci_high": "float", "win_rate": "float",
                   "max_drawdown": "float", "trades_per_day": "float"}


def sweep_summary(sweep_dir) -> pd.DataFrame:
    """One row per strategy of the sweep in ``sweep_dir`` (columns: ``SUMMARY_COLUMNS``;
    definitions in the module docstring), strategies in name order."""
    runs = query_results(sweep_dir,
                  "SELECT strategy, seed, fold, count(*) AS days, avg(pnl) AS mean_daily_pnl, sum(pnl) AS pnl, "
                  "sum(trades) AS trades, sum(wins) AS wins, sum(losses) AS losses, max(max_drawdown) AS max_drawdown "
                  "FROM results GROUP BY strategy, seed, fold ORDER BY strategy, seed, fold")
    rows = []
    for strategy, group in runs.groupby("strategy", sort=True):
        low, high = bootstrap_ci(group["mean_daily_pnl"], iqm)
        days = int(group["days"].sum())
        rows.append({"strategy": strategy, "runs": len(group), "days": days,
                     "mean_daily_pnl": float(group["pnl"].sum() / days),
                     "iqm_daily_pnl": float(iqm(group["mean_daily_pnl"].to_numpy(dtype=float))),
                     "ci_low": low, "ci_high": high,
                     "win_rate": win_rate(group["wins"].sum(), group["trades"].sum()),
                     "max_drawdown": float(group["max_drawdown"].max()),
                     "trades_per_day": float(group["trades"].sum() / days)})
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def win_rate(wins: int, trades: int) -> float:
    """Winning trades / trades; NaN without a trade (undefined, not 0)."""
    return float(wins / trades) if trades else float("nan")


def sweep_verdicts(sweep_dir) -> dict[str, Verdict]:
    """The gate's verdict for every strategy of the sweep that is not a baseline (module
    docstring); empty when the sweep has no such strategy or no baseline to beat."""
    daily = query_results(sweep_dir, "SELECT strategy, seed, fold, day, pnl FROM results")
    is_baseline = daily["strategy"].isin(BASELINES)
    baselines = (daily[is_baseline].groupby(["strategy", "fold", "day"])["pnl"].mean()
                 .unstack("strategy"))  # (fold, day) x baseline, averaged over the baseline's seeds
    verdicts = {}
    for strategy, runs in daily[~is_baseline].groupby("strategy", sort=True):
        if baselines.empty:
            break
        runs = runs.sort_values(["seed", "fold", "day"])
        aligned = baselines.reindex(pd.MultiIndex.from_frame(runs[["fold", "day"]]))
        missing = aligned.columns[aligned.isna().any()].tolist()
        if missing:
            raise ValueError(f"sweep_dir {str(sweep_dir)!r}: baseline(s) {missing} did not replay every day "
                             f"{strategy} traded; run their partitions first")
        verdicts[strategy] = gate(runs["pnl"].to_numpy(dtype=float),
                                  {name: aligned[name].to_numpy(dtype=float) for name in aligned.columns})
    return verdicts


def query_results(sweep_dir, sql: str) -> pd.DataFrame:
    """``sql`` over the sweep's result files, visible as the view ``results``."""
    folder = Path(sweep_dir)
    if not any(folder.glob(RESULT_GLOB)):
        raise ValueError(f"sweep_dir {str(folder)!r}: no result file ({RESULT_GLOB}); run the sweep's partitions first")
    pattern = str(folder / RESULT_GLOB).replace("'", "''")
    with duckdb.connect() as con:  # in memory: the files are only read
        con.execute(f"CREATE VIEW results AS SELECT * FROM read_parquet('{pattern}')")
        return con.execute(sql).df()
