"""``tradenova backtest``: check everything up front, then launch Dagster runs and follow them.

There is one implementation of a backtest: the ``backtest_day`` asset (``backtest_job``),
which the UI's backfills run too. The command checks what a user can get wrong before
anything runs (dates, strategies, the model, the data), then launches one run per
strategy on the Dagster instance in ``DAGSTER_HOME`` — each strategy is an account of its
own, ``backtest:<id>-<strategy>`` — tagged with the account, strategy and source so that
the runs read in the UI as what they are, and shows a progress bar fed by the run's own
log (one line per replayed day). Several strategies end in one table, side by side.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

TAG_ACCOUNT = "tradenova/account"
TAG_STRATEGY = "tradenova/strategy"
TAG_SOURCE = "tradenova/source"


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
        market = {"source": self.source, **({"data_dir": self.data_dir} if self.data_dir else {})}
        backtest = {"backtest_id": backtest_id, "strategy": strategy, "seed": self.seed, "model_path": self.model}
        return {"ops": {"backtest_day": {"config": backtest}},
                "resources": {"market_data": {"config": market}},
                "loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the bar shows progress


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


def launch(plan: BacktestPlan, backtest_id: str, strategy: str, instance, *, progress=None):
    """Run ``backtest_job`` over the plan's days for one strategy on ``instance``; calls
    ``progress(days_done)`` as the run's log reports each day. Returns the run's result."""
    from assets.backtest import DAY_DONE
    from tradenova_dagster.definitions import defs
    from tradenova_dagster.session.day import backtest_account

    run_id = str(uuid.uuid4())
    tags = {
        "dagster/asset_partition_range_start": plan.days[0].isoformat(),
        "dagster/asset_partition_range_end": plan.days[-1].isoformat(),
        TAG_ACCOUNT: backtest_account(backtest_id), TAG_STRATEGY: strategy, TAG_SOURCE: plan.source,
    }
    outcome: dict = {}

    def execute() -> None:
        try:
            outcome["result"] = defs.resolve_job_def("backtest_job").execute_in_process(
                run_config=plan.run_config(backtest_id, strategy), instance=instance, run_id=run_id, tags=tags,
                raise_on_error=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=execute, name=f"backtest {backtest_id}")
    worker.start()
    done, cursor = 0, None

    def read_new_days() -> int:  # only the run's events since the last read (the cursor)
        nonlocal cursor
        page = instance.get_records_for_run(run_id, cursor=cursor)
        cursor = page.cursor
        return sum(1 for record in page.records if record.event_log_entry.user_message.startswith(DAY_DONE))

    while True:
        alive = worker.is_alive()
        if progress is not None and instance.has_run(run_id):
            new = read_new_days()
            if new:
                done += new
                progress(done)
        if not alive:
            break
        worker.join(0.25)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def run_backtest_command(args) -> int:
    """The ``tradenova backtest`` command (see the module docstring)."""
    import dagster as dg
    from tqdm import tqdm

    from tradenova_dagster import config
    from tradenova_dagster.metrics import MetricsTracker
    from tradenova_dagster.session.day import backtest_account

    plan = plan_backtest(args.start, args.end, args.strategy, source=args.source, data_dir=args.data_dir,
                         model=args.model, backtest_id=args.id, seed=args.seed)
    config.use_dagster_home()
    rows, failed = [], []
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        for backtest_id, strategy in plan.runs:
            account = backtest_account(backtest_id)
            with tqdm(total=len(plan.days), desc=f"{account} ({strategy})", unit="day",
                      disable=args.no_progress) as bar:
                result = launch(plan, backtest_id, strategy, instance,
                                progress=lambda n: bar.update(n - bar.n))
            if not result.success:
                failed.append(f"{account}: run {result.run_id} failed (dagster UI, or `dagster run logs`)")
                continue
            meta = result.asset_materializations_for_node("backtest_day")[-1].metadata
            metrics = MetricsTracker(account=account).calculate_metrics(
                lookback_days=len(plan.days) * 2, as_of=plan.days[-1])
            rows.append((account, strategy, str(meta["model"].value), metrics, result.run_id))
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
