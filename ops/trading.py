"""The trading day's op jobs: warmup, session, flatten, monitor.

Thin: each op builds the account's runtime from the resources and calls one function of
``tradenova_dagster.session.day``; what it did goes into the run's metadata and logs.
"""

import dagster as dg
import pandas as pd

from resources.broker import BrokerResource
from resources.market_data import MarketDataResource
from resources.risk import RiskResource
from resources.store import StoreResource
from tradenova_dagster import config as tn_config
from tradenova_dagster.ledger.lease import SESSION, AccountLease, lease_holder
from tradenova_dagster.market import calendar
from tradenova_dagster.session import day as trading_day
from tradenova_dagster.session.engine import SessionSettings
from tradenova_dagster.strategies import NoTradableModel

DEFAULT_ACCOUNT = "sim:default"


class AccountConfig(dg.Config):
    account: str = DEFAULT_ACCOUNT


class DayConfig(AccountConfig):
    date: str = ""  # YYYY-MM-DD; empty means today in New York

    def trading_day(self):
        day = self.date or calendar.as_date(pd.Timestamp.now(tz="UTC"))
        return calendar.require_trading_day(day, "date")


class WarmupConfig(DayConfig):
    model_path: str = ""  # the model the session will trade; empty: the promoted model


class SessionRunConfig(WarmupConfig):
    mode: str = "live"  # live: wall clock, polling the data source; replay: the day's bars on a simulated clock
    pace_s: float = 0.0  # replay only: real seconds per bar (0 = as fast as possible)
    contracts: int = 1


class FlattenConfig(AccountConfig):
    reason: str = "scheduled flatten before the close"


def build_runtime(account: str, broker: BrokerResource, risk: RiskResource, store: StoreResource,
                  run_id: str | None, session_day=None, lease: AccountLease | None = None) -> trading_day.Runtime:
    """The account's parts from the resources, on the account's ledger file. In sim mode
    the op's ``account`` names the simulated account; with Alpaca it names the records of
    the one Alpaca account. Build it while holding the account's ``lease``."""
    from tradenova_dagster.broker import BrokerExecutor, SimBroker
    from tradenova_dagster.broker.sim import SimConfig
    from tradenova_dagster.alerts import Alerter
    from tradenova_dagster.ledger.records import AccountRecords

    ledger, shared = store.ledger(account), store.get_store()
    if broker.mode == "sim":
        client = SimBroker(account, ledger, SimConfig(initial_cash=broker.initial_cash,
                                                      option_commission_per_contract=broker.option_commission_per_contract))
    else:
        client = broker.get_broker(store=ledger)
    executor_run = trading_day.session_key(account, session_day) if session_day else run_id
    executor = BrokerExecutor(client, strategy=broker.strategy, run_id=executor_run, max_attempts=broker.max_attempts,
                              backoff_s=broker.backoff_s, stale_order_age_s=broker.stale_order_age_s,
                              timeout_s=broker.timeout_s)
    switch = risk.kill_switch(account, shared)  # one switch, read by the session and by the risk gate
    return trading_day.Runtime(
        ledger, account, client, executor,
        risk.build_manager(account, ledger, run_id, kill_switch=switch), risk.build_profit_manager(account, ledger, run_id),
        AccountRecords(ledger, account, run_id),
        switch, sim=client if broker.mode == "sim" else None, run_id=run_id, shared=shared, lease=lease,
        alerts=Alerter.from_env(),
    )


def load_signal(model_path: str, symbol: str, account: str, db):
    """The strategy a session trades: the model at ``model_path`` when one is named (an
    explicit choice: a file that does not load is an error), else the account's promoted
    model if it may still trade (``registry.tradable_model``: the gate). Otherwise FLAT,
    with the reason (``NoTradableModel``): no entry without a model that passed the gate."""
    from tradenova_dagster.rl import SignalModel, registry

    if model_path:
        return SignalModel.load(model_path, symbol=symbol)
    record, why = registry.tradable_model(symbol, account, db)
    if record is not None:
        try:
            return SignalModel.from_record(record, symbol=symbol)
        except ValueError as exc:
            why = f"the promoted model {record.model_id} does not load ({exc})"
    return NoTradableModel(f"{why}: the session trades FLAT (it still manages exits and flattens); "
                           "train and promote a model that passes the gate (tradenova train --promote)")


def _say_if_flat(context: dg.OpExecutionContext, signal):
    """Log a warning when the day will be traded FLAT for want of a model, and pass it on."""
    if isinstance(signal, NoTradableModel):
        context.log.warning(signal.reason)
    return signal


# How long a job waits for an account held by another run before it refuses (a session
# never waits for another session: it refuses at once). A session waits out a warmup,
# flatten or monitor; the flatten waits out a session finishing its own flatten.
SESSION_WAIT_S = 120.0
WARMUP_WAIT_S = 120.0
FLATTEN_WAIT_S = 900.0
MONITOR_WAIT_S = 30.0
SESSION_HEARTBEAT_LIMIT_S = 180.0  # a live session heartbeats every bar (a minute)


@dg.op(description="Before the open: broker and account status, calendar, kill switch, the day's risk "
                   "state, the promoted model, and today's market context.")
def warmup(context: dg.OpExecutionContext, config: WarmupConfig, broker: BrokerResource, risk: RiskResource,
           store: StoreResource, market_data: MarketDataResource) -> None:
    day = config.trading_day()
    with AccountLease(config.account, context.run_id, "warmup", wait_s=WARMUP_WAIT_S) as lease:
        runtime = build_runtime(config.account, broker, risk, store, context.run_id, lease=lease)
        report = trading_day.warmup(runtime, day, market_data.get_source(),
                                    model_loader=lambda: _say_if_flat(context, load_signal(
                                        config.model_path, "SPY", config.account, runtime.market)))
    context.log_event(dg.AssetMaterialization("market_context", partition=day.isoformat(),
                                              metadata={k: v for k, v in report.context.items() if k != "day"}))
    for problem in report.problems:
        context.log.warning(problem)
    context.log.info(f"warmup {day}: equity {report.equity:,.2f}, risk {report.risk_level}, model {report.model}, "
                     f"kill switch {report.kill_switch}")
    if not report.ok:
        raise dg.Failure(description="warmup found problems: " + "; ".join(report.problems),
                         metadata={"problems": "\n".join(report.problems)})


@dg.op(description="The trading session: bar by bar, signal → risk → orders, until flatten time. It holds "
                   "the account's lease and its ledger connection for the whole run.")
def trading_session(context: dg.OpExecutionContext, config: SessionRunConfig, broker: BrokerResource,
                    risk: RiskResource, store: StoreResource, market_data: MarketDataResource) -> None:
    day = config.trading_day()
    with AccountLease(config.account, context.run_id, SESSION, wait_s=SESSION_WAIT_S) as lease:
        runtime = build_runtime(config.account, broker, risk, store, context.run_id, session_day=day, lease=lease)
        signal = _say_if_flat(context, load_signal(config.model_path, "SPY", config.account, runtime.market))
        if isinstance(signal, NoTradableModel):
            runtime.alert("no_model", f"session of {day} trades FLAT: no model may trade", {"reason": signal.reason})
        with runtime.store.hold():  # one ledger connection for the run: no connect per bar
            _run_session(context, runtime, day, config, market_data, signal)


def _was_interrupted(exc: BaseException) -> bool:
    """An interrupt, seen directly or behind what it caused: DuckDB reports one that lands in
    a statement as ``RuntimeError('Query interrupted')``, and cleanup that then touches the
    aborted transaction raises an error of its own with the interrupt as its context."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if (isinstance(exc, KeyboardInterrupt) or "Interrupt" in type(exc).__name__
                or "query interrupted" in str(exc).lower()):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _run_session(context: dg.OpExecutionContext, runtime, day, config: SessionRunConfig,
                 market_data: MarketDataResource, signal) -> None:
    try:
        report = trading_day.run_session(
            runtime, day, market_data.get_source(), signal, mode=config.mode, pace_s=config.pace_s,
            settings=SessionSettings(contracts=config.contracts),
        )
    except BaseException as exc:
        # Terminated from the UI (Dagster's interrupt, or DuckDB's if it landed in a query),
        # Ctrl-C, or a failure: no order of this session may stay working unattended.
        interrupted = _was_interrupted(exc)
        canceled = runtime.executor.cancel_all_orders()
        reason = "run terminated (interrupt)" if interrupted else f"session failed: {exc!r}"
        runtime.record("session", "interrupted" if interrupted else "failed",
                       {"reason": reason, "canceled_orders": canceled})
        if not interrupted:
            runtime.alert("crash", f"session of {day} failed: {exc!r}",
                          {"canceled_orders": canceled, "watchdog": "flattens and may restart it"})
        context.log.warning(f"{reason}: canceled {len(canceled)} open order(s); positions are left to the flatten job")
        raise
    context.log.info(report.summary())
    if not report.flat and report.stopped.startswith("kill switch"):
        context.log.warning("kill switch: positions remain for the flatten job")


@dg.op(description="Cancel every open order, close every position, verify the account is flat.")
def flatten(context: dg.OpExecutionContext, config: FlattenConfig, broker: BrokerResource, risk: RiskResource,
            store: StoreResource) -> None:
    with AccountLease(config.account, context.run_id, "flatten", wait_s=FLATTEN_WAIT_S) as lease:
        runtime = build_runtime(config.account, broker, risk, store, context.run_id, lease=lease)
        report = trading_day.flatten(runtime, config.reason)
        if not report.flat:
            runtime.alert("flatten_failed", f"{config.account} not flat after {report.attempts} attempt(s)",
                          {"remaining": report.remaining, "reason": config.reason})
    context.log.info(f"flatten ({config.reason}): canceled {report.canceled} order(s), "
                     f"{len(report.closing_orders)} closing order(s), flat: {report.flat}")
    if not report.flat:
        raise dg.Failure(description=f"not flat after {report.attempts} attempt(s): {', '.join(report.remaining)}")


@dg.op(description="Reconcile, cancel stale orders, enforce daily loss and drawdown, heartbeat. While a "
                   "session holds the account it does that itself: the monitor only checks it is alive.")
def monitor(context: dg.OpExecutionContext, config: AccountConfig, broker: BrokerResource, risk: RiskResource,
            store: StoreResource) -> None:
    holder = lease_holder(config.account)
    if holder is not None and holder.job == SESSION:
        age = holder.heartbeat_age_s()
        if age > SESSION_HEARTBEAT_LIMIT_S:
            raise dg.Failure(description=f"the session holding {config.account} has not heartbeaten for {age:.0f} s "
                                         f"(limit {SESSION_HEARTBEAT_LIMIT_S:.0f} s): {holder.describe()}")
        context.log.info(f"monitor: {config.account} is held by {holder.describe()}; the session monitors itself")
        return
    with AccountLease(config.account, context.run_id, "monitor", wait_s=MONITOR_WAIT_S) as lease:
        runtime = build_runtime(config.account, broker, risk, store, context.run_id, lease=lease)
        report = trading_day.monitor(runtime)
    context.log.info(f"monitor: equity {report.equity:,.2f}, {report.positions} position(s), "
                     f"{report.open_orders} open order(s), risk {report.risk_level}, halted {report.halted}, "
                     f"stale canceled {len(report.stale_canceled)}")


@dg.job(tags={"tradenova/job": "warmup"})
def warmup_job():
    warmup()


# One session per account at a time (the tag is limited to 1 per value in dagster.yaml; a run
# launched by hand for another account should set the tag to that account); ended at the latest by
# run monitoring after 8 hours, which no session (09:30-16:00) can need.
@dg.job(tags={tn_config.SESSION_CONCURRENCY_TAG: DEFAULT_ACCOUNT, "dagster/max_runtime": str(8 * 3600)})
def trading_session_job():
    trading_session()


@dg.job(tags={"tradenova/job": "flatten"})
def flatten_job():
    flatten()


@dg.job(tags={"tradenova/job": "monitor"})
def monitor_job():
    monitor()


JOBS = [warmup_job, trading_session_job, flatten_job, monitor_job]
