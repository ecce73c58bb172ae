"""``tradenova backtest``: check everything up front, then launch Dagster runs and follow them.

There is one implementation of a backtest: the ``backtest_day`` asset (``backtest_job``),
which the UI's backfills run too. The command checks what a user can get wrong before
anything runs (dates, strategies, the model, the data), then launches one run per
strategy on the Dagster instance in ``DAGSTER_HOME`` (``ops/launch.py``: through the run
queue when the instance's dagster.yaml configures one) — each strategy is an account of its
own, ``backtest:<id>-<strategy>`` — tagged with the account, strategy and source so that
the runs read in the UI as what they are, and shows a progress bar fed by the run's own
log (one line per replayed day). Several strategies end in one table, side by side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

TAG_ACCOUNT = "tradenova/account"
TAG_STRATEGY = "tradenova/strategy"
TAG_SOURCE = "tradenova/source"
TAG_JOB = "tradenova/job"  # the tag deploy/profile.py's queue limits read; "backtest" for these runs


@dataclass(frozen=True)
class BacktestPlan:
    """A checked backtest request: the days, and one (account id, strategy) per strategy."""

    days: list[date]
    runs: list[tuple[str, str]]  # (backtest id, strategy)
    source: str
    data_dir: str | None
    model: str
    seed: int

    def run_config(self, backtest_id: str, strategy: str) -> dict:
        from ops.launch import QUIET

        market = {"source": self.source, **({"data_dir": self.data_dir} if self.data_dir else {})}
        backtest = {"backtest_id": backtest_id, "strategy": strategy, "seed": self.seed, "model_path": self.model}
        return {"ops": {"backtest_day": {"config": backtest}},
                "resources": {"market_data": {"config": market}},
                **QUIET}  # the bar shows progress; a failure is one line naming the run


def plan_backtest(start: str, end: str, strategies: list[str], *, source: str, data_dir: str | None = None,
                  model: str = "", backtest_id: str = "", seed: int = 0) -> BacktestPlan:
    """Everything a user can get wrong, refused before any run starts with a one-line
    ValueError naming the field and the value: the dates, the strategies, the model (when
    a strategy needs one; a model trained on any of the days is look-ahead), the data of
    each day (file source)."""
    from tradenova_dagster.market import calendar
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.session.day import backtest_account
    from tradenova_dagster.strategies import build_strategy, refuse_look_ahead, require_strategy

    first, last = calendar.as_date(start, "--start"), calendar.as_date(end, "--end")
    completed = calendar.last_completed_session()
    if last > completed:
        raise ValueError(f"--end {last} has not happened yet: the last completed session is {completed}")
    if first > last:
        raise ValueError(f"--start {first} is after --end {last}")
    days = calendar.trading_days(first, last)
    if not days:
        raise ValueError(f"no trading day from {first} to {last}")
    strategies = list(dict.fromkeys(require_strategy(s, "--strategy") for s in strategies or ["model"]))
    if "model" in strategies:  # refused now, saying how to get one, if there is none or it saw these days
        refuse_look_ahead(build_strategy("model", model_path=model), days[0], days[-1])
    data = get_source(source, **({"data_dir": data_dir} if source == "file" else {}))
    if source == "file":
        for day in days:
            data.bars("SPY", day)  # MarketDataError names the day and the files' spans
    base = backtest_id or f"cli-{days[0]:%Y%m%d}-{days[-1]:%Y%m%d}"
    runs = [(base if len(strategies) == 1 else f"{base}-{s}", s) for s in strategies]
    for run_id, _ in runs:
        backtest_account(run_id)  # a bad --id is named here, not in a run
    folder = str(Path(data_dir).resolve()) if source == "file" and data_dir else None
    return BacktestPlan(days, runs, source, folder, model, seed)


def backtest_tags(plan: BacktestPlan, backtest_id: str, strategy: str) -> dict:
    """The tags of one strategy's run: the days (as a UI backfill of the range tags them),
    the account, the strategy, the source, and ``tradenova/job: backtest``."""
    from tradenova_dagster.session.day import backtest_account

    return {"dagster/asset_partition_range_start": plan.days[0].isoformat(),
            "dagster/asset_partition_range_end": plan.days[-1].isoformat(),
            TAG_ACCOUNT: backtest_account(backtest_id), TAG_STRATEGY: strategy, TAG_SOURCE: plan.source,
            TAG_JOB: "backtest"}


def run_backtest_command(args) -> int:
    """The ``tradenova backtest`` command (see the module docstring)."""
    import dagster as dg

    from assets.backtest import DAY_DONE
    from ops.launch import Launcher, progress_bar
    from tradenova_dagster import config
    from tradenova_dagster.metrics import MetricsTracker
    from tradenova_dagster.session.day import backtest_account

    plan = plan_backtest(args.start, args.end, args.strategy, source=args.source, data_dir=args.data_dir,
                         model=args.model, backtest_id=args.id, seed=args.seed)
    config.use_dagster_home()
    rows, failed = [], []
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance, Launcher(instance) as launcher:
        for backtest_id, strategy in plan.runs:
            account = backtest_account(backtest_id)
            bar, progress = progress_bar(len(plan.days), f"{account} ({strategy})", "day", args.no_progress)
            with bar:
                result = launcher.run("backtest_job", plan.run_config(backtest_id, strategy),
                                      backtest_tags(plan, backtest_id, strategy), progress=progress, marker=DAY_DONE)
            if not result.success:
                failed.append(result.failure(account))
                continue
            metrics = MetricsTracker(account=account).calculate_metrics(
                lookback_days=len(plan.days) * 2, as_of=plan.days[-1])
            rows.append((account, strategy, str(result.metadata["model"]), metrics, result.run_id))
    print(f"backtest: {len(plan.days)} days {plan.days[0]} .. {plan.days[-1]}, data {plan.source}"
          f"{f' ({plan.data_dir})' if plan.data_dir else ''}, {time.perf_counter() - started:.1f} s")
    print(f"  {'account':<40} {'strategy':<12} {'trades':>6} {'P&L':>11} {'win':>5} {'Sharpe':>7} {'max DD':>7}")
    for account, strategy, model, m, _ in rows:
        sharpe = "n/a" if m["sharpe_ratio"] is None else f"{m['sharpe_ratio']:.2f}"
        print(f"  {account:<40} {strategy:<12} {m['num_trades']:>6} {m['total_pnl']:>+11,.2f} "
              f"{(m['win_rate'] or 0):>5.0%} {sharpe:>7} {(m['max_drawdown'] or 0):>7.2%}")
    for account, _, model, _, run_id in rows:
        print(f"  {account}: model {model}, dagster run {run_id}; "
              f"report: tradenova report --account {account} --date {plan.days[-1]}")
    for line in failed:
        print(f"  FAILED {line}")
    return 1 if failed else 0
