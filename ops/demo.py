"""The offline demo day: what ``tradenova demo`` runs, through Dagster on a persistent instance.

market data → a small model (reused if one exists) → warmup → session replay → flatten →
report, each as a real Dagster run in TradeNova's DAGSTER_HOME (``ops/launch.py``: through
the run queue when the instance's dagster.yaml configures one), so that afterwards
``tradenova ui`` shows every run, asset and check of the day in the web UI.
"""

from dataclasses import dataclass, field

import dagster as dg

from assets.partitions import trading_day_partitions
from ops.launch import QUIET, FinishedRun, Launcher, progress_bar
from tradenova_dagster import config
from tradenova_dagster.market import calendar
from tradenova_dagster.ledger.accounts import ledger_store, shared_store
from tradenova_dagster.store import Store

DEMO_ACCOUNT = "sim:demo"
STEPS = 6  # data, model, warmup, session, flatten, report: the progress bar's total

# The asset selections the demo materialises, as named jobs: a queued run is created from a
# job of the code location, and the UI lists them.
market_data_job = dg.define_asset_job(
    "market_data_job", selection=["market_bars", "market_context"], partitions_def=trading_day_partitions,
    description="One trading day's market bars (with their checks) and market context.")
demo_model_job = dg.define_asset_job(
    "demo_model_job", selection=["training_dataset", "ppo_model"], tags={"tradenova/job": "training"},
    description="The small PPO model `tradenova demo` trains when there is none to reuse.")
JOBS = [market_data_job, demo_model_job]


@dataclass
class DemoSummary:
    day: str
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def step(self, name: str, result: FinishedRun, detail: str = "") -> bool:
        status = "ok" if result.success else "FAILED"
        self.lines.append(f"  {name:<10} {status:<6} run {result.run_id[:8]}  {detail}".rstrip())
        self.ok = self.ok and result.success
        return result.success

    def render(self) -> str:
        header = [
            f"TradeNova demo day {self.day}: {'OK' if self.ok else 'FAILED'}",
            f"  home:    {config.home()}",
            f"  dagster: {config.dagster_home()}  (see it all with: tradenova ui)",
        ]
        return "\n".join(header + self.lines)


def _fresh_demo_account(day) -> None:
    """The demo replays a past day on its own simulated account: start it afresh each time."""
    from tradenova_dagster.broker import SimBroker
    from tradenova_dagster.metrics import MetricsTracker

    store = ledger_store(DEMO_ACCOUNT)
    SimBroker(DEMO_ACCOUNT, store).reset()
    MetricsTracker(store=store, account=DEMO_ACCOUNT).clear_day(day)
    with store.transaction() as con:
        con.execute("DELETE FROM risk_state WHERE account = ?", [DEMO_ACCOUNT])
        con.execute("DELETE FROM ladder_state WHERE account = ?", [DEMO_ACCOUNT])


def _demo_model(launcher: Launcher, store: Store, day, timesteps: int, summary: DemoSummary):
    """The promoted model, else the newest trained one, else a small PPO trained now."""
    from tradenova_dagster.rl import registry

    record = registry.promoted_model("SPY", DEMO_ACCOUNT, store)
    if record is None and registry.list_models("SPY", store=store):
        record = registry.list_models("SPY", store=store)[0]
    if record is not None:
        summary.lines.append(f"  model      reused {record.model_id}")
        return record
    result = launcher.run(demo_model_job.name, {**QUIET, "ops": {
        "training_dataset": {"config": {"end": calendar.previous_session(day).isoformat(),
                                        "n_train_days": 20, "n_eval_days": 5}},
        "ppo_model": {"config": {"timesteps": timesteps}},
    }}, {"tradenova/account": DEMO_ACCOUNT})
    if not summary.step("train", result, f"PPO, {timesteps:,} steps on the 20 sessions before {day}"):
        return None
    return registry.list_models("SPY", agent="ppo", store=store)[0]


def run_demo(day: str | None = None, timesteps: int = 100_000, progress: bool = True) -> DemoSummary:
    from tradenova_dagster.metrics import MetricsTracker
    from tradenova_dagster.metrics.report import report_paths

    target = calendar.require_trading_day(day, "date") if day else calendar.last_completed_session()
    date = target.isoformat()
    summary = DemoSummary(date)
    config.use_dagster_home()
    store = shared_store()
    tags = {"tradenova/account": DEMO_ACCOUNT, "tradenova/date": date}
    bar, follow = progress_bar(STEPS, f"demo {date}", "step", not progress)
    with dg.DagsterInstance.get() as instance, Launcher(instance) as launcher, bar:
        result = launcher.run(market_data_job.name, QUIET, tags, partition_key=date, progress=follow)
        bar.update()
        if not summary.step("data", result, "market_bars (5 checks) + market_context"):
            return summary
        model = _demo_model(launcher, store, target, timesteps, summary)
        bar.update()
        if model is None:
            return summary
        _fresh_demo_account(target)
        steps = [
            ("warmup", "warmup_job", {"warmup": {"config": {"date": date, "account": DEMO_ACCOUNT,
                                                             "model_path": str(model.path)}}}),
            ("session", "trading_session_job", {"trading_session": {"config": {
                "date": date, "account": DEMO_ACCOUNT, "mode": "replay", "model_path": str(model.path)}}}),
            ("flatten", "flatten_job", {"flatten": {"config": {"account": DEMO_ACCOUNT, "reason": "demo: end of day"}}}),
        ]
        for name, job, ops in steps:  # the session carries the tag the queue's one-session-per-account reads
            extra = {config.SESSION_CONCURRENCY_TAG: DEMO_ACCOUNT} if name == "session" else {}
            result = launcher.run(job, {**QUIET, "ops": ops}, {**tags, **extra}, progress=follow)
            bar.update()
            if not summary.step(name, result):
                return summary
        result = launcher.run("reporting_job", {**QUIET, "ops": {"daily_report": {"config": {"account": DEMO_ACCOUNT}}}},
                              tags, partition_key=date, progress=follow)
        bar.update()
        summary.step("report", result)
    tracker = MetricsTracker(account=DEMO_ACCOUNT)
    day_metrics = tracker.calculate_metrics(lookback_days=1, as_of=target)
    equity = tracker.store.query("SELECT equity FROM equity_curve WHERE account = ? ORDER BY ts DESC LIMIT 1", [DEMO_ACCOUNT])
    report_path, _ = report_paths(target, DEMO_ACCOUNT)
    summary.lines += [
        f"  trades:    {day_metrics['num_trades']}, P&L {day_metrics['total_pnl']:+,.2f}, "
        f"win rate {(day_metrics['win_rate'] or 0):.0%}",
        f"  equity:    {equity[0][0]:,.2f}" if equity else "  equity:    (no bars traded)",
        f"  report:    {report_path}",
    ]
    return summary
