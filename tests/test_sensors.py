"""The kill switch, session watchdog and model promotion sensors, on a real Dagster
instance (a queued run coordinator, as DAGSTER_HOME's dagster.yaml configures) and the
real DuckDB of an isolated TRADENOVA_HOME."""


import threading
import time
from datetime import date

import dagster as dg
import pandas as pd
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin, LoadableTargetOrigin, RemoteRepositoryOrigin

from ops.trading import trading_session_job
from resources.risk import RiskResource
from resources.store import StoreResource
from schedules.trading_day import DATE_TAG
from sensors import SENSORS
from sensors import watchdog
from sensors.kill_switch import kill_switch_sensor
from sensors.promotion import model_promotion_sensor
from sensors.watchdog import MAX_RESTARTS_PER_DAY, RESTARTED_BY_TAG, session_watchdog_sensor
from tradenova_dagster.config import SESSION_CONCURRENCY_TAG
from tradenova_dagster.risk import GLOBAL, KillSwitch
from tradenova_dagster.rl import registry

Status = dg.DagsterRunStatus
QUEUED_COORDINATOR = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}}
# Queued runs need to say where their code lives; an in-process origin stands for the code location.
SESSION_ORIGIN = RemoteRepositoryOrigin(
    InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="tradenova_dagster.definitions", attribute="defs")),
    "__repository__",
).get_job_origin("trading_session_job")
DAY = "2026-11-24"  # a normal Tuesday


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    monkeypatch.delenv("TRADENOVA_ACCOUNT", raising=False)


@pytest.fixture
def instance(tradenova_home):
    with dg.instance_for_test(overrides=QUEUED_COORDINATOR) as instance:
        yield instance


@pytest.fixture
def risk(store):
    return RiskResource(db_path=str(store.path))


def session_run(instance, status, day=DAY, account="sim:default", mode="live", **config) -> dg.DagsterRun:
    """A trading_session_job run in ``status``; FAILURE / CANCELED are reported through
    the instance as Dagster reports them."""
    run_config = {"ops": {"trading_session": {"config": {"date": day, "mode": mode, "account": account, **config}}}}
    tags = {SESSION_CONCURRENCY_TAG: account, DATE_TAG: day}
    if status is Status.QUEUED:
        return instance.create_run_for_job(trading_session_job, run_config=run_config, tags=tags, status=status,
                                           remote_job_origin=SESSION_ORIGIN)
    if status in (Status.FAILURE, Status.CANCELED):
        run = instance.create_run_for_job(trading_session_job, run_config=run_config, tags=tags)
        instance.report_run_failed(run) if status is Status.FAILURE else instance.report_run_canceled(run)
        return run
    return instance.create_run_for_job(trading_session_job, run_config=run_config, tags=tags, status=status)


def status_of(instance, run) -> Status:
    return instance.get_run_by_id(run.run_id).status


def evaluate(sensor, instance, cursor=None, **resources):
    """One tick of the sensor, as the daemon evaluates it (targets checked)."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return sensor.evaluate_tick(context)


def test_the_three_sensors_and_their_targets():
    assert [s.name for s in SENSORS] == ["kill_switch_sensor", "session_watchdog_sensor", "model_promotion_sensor"]
    assert kill_switch_sensor.job_name == "flatten_job"
    assert kill_switch_sensor.default_status is dg.DefaultSensorStatus.RUNNING
    assert {j.name for j in session_watchdog_sensor.jobs} == {"flatten_job", "trading_session_job"}
    assert session_watchdog_sensor.default_status is dg.DefaultSensorStatus.STOPPED
    assert model_promotion_sensor.default_status is dg.DefaultSensorStatus.STOPPED


# --------------------------------------------------------------------------- kill switch


def test_kill_switch_off_leaves_sessions_alone(instance, risk, store):
    queued = session_run(instance, Status.QUEUED)
    result = evaluate(kill_switch_sensor, instance, risk=risk)
    assert result.run_requests == [] and "off (never set)" in result.skip_message
    KillSwitch(store).turn_on("drill")
    KillSwitch(store).turn_off("drill over")
    result = evaluate(kill_switch_sensor, instance, risk=risk)
    assert result.run_requests == [] and "off since" in result.skip_message
    assert status_of(instance, queued) is Status.QUEUED


def test_kill_switch_on_cancels_the_accounts_sessions_and_flattens_once(instance, risk, store):
    queued = session_run(instance, Status.QUEUED)
    started = session_run(instance, Status.STARTED)
    backtest = session_run(instance, Status.QUEUED, account="backtest:b1", mode="replay")
    KillSwitch(store).turn_on("broker outage", set_by="ops")  # the global row

    result = evaluate(kill_switch_sensor, instance, risk=risk)
    [flatten] = result.run_requests
    assert flatten.job_name == "flatten_job"
    assert flatten.run_config == {"ops": {"flatten": {"config": {"account": "sim:default",
                                                                 "reason": "kill switch: broker outage"}}}}
    assert result.cursor.startswith(f"{GLOBAL}@")
    assert flatten.run_key == f"flatten-kill-switch-sim:default-{result.cursor}"
    assert SESSION_CONCURRENCY_TAG not in flatten.tags  # must not wait behind the session it replaces
    assert status_of(instance, queued) is Status.CANCELED  # taken off the queue
    # a started run gets Dagster's termination; with no worker to reach here, it stays CANCELING
    assert status_of(instance, started) is Status.CANCELING
    assert status_of(instance, backtest) is Status.QUEUED  # the global switch does not cover backtests

    # the same switch-on: no second flatten, but a session queued meanwhile is still stopped
    late = session_run(instance, Status.QUEUED)
    again = evaluate(kill_switch_sensor, instance, cursor=result.cursor, risk=risk)
    assert again.run_requests == [] and "flatten already requested" in again.skip_message
    assert late.run_id in again.skip_message and status_of(instance, late) is Status.CANCELED
    assert again.cursor is None or again.cursor == result.cursor

    # off, then on again for the account alone: a new event, a new flatten
    KillSwitch(store).turn_off("resolved")
    KillSwitch(store, account="sim:default").turn_on("loss spike")
    third = evaluate(kill_switch_sensor, instance, cursor=result.cursor, risk=risk)
    [flatten2] = third.run_requests
    assert third.cursor.startswith("sim:default@") and flatten2.run_key != flatten.run_key
    assert flatten2.run_config["ops"]["flatten"]["config"]["reason"] == "kill switch: loss spike"


def test_kill_switch_of_another_account_does_not_touch_this_one(instance, risk, store):
    queued = session_run(instance, Status.QUEUED)
    KillSwitch(store, account="alpaca_paper:other").turn_on("their problem")
    result = evaluate(kill_switch_sensor, instance, risk=risk)
    assert result.run_requests == [] and status_of(instance, queued) is Status.QUEUED


# --------------------------------------------------------------------------- watchdog


@pytest.fixture
def clock(monkeypatch):
    def set_time(text: str):
        monkeypatch.setattr(watchdog, "now", lambda: pd.Timestamp(text, tz="America/New_York").tz_convert("UTC"))
    return set_time


EPOCH = "2000-01-01T00:00:00+00:00"  # a cursor before every run of the test instance


@pytest.mark.parametrize("status", [Status.FAILURE, Status.CANCELED])
def test_a_session_that_died_during_market_hours_is_flattened_and_restarted(instance, risk, clock, status):
    died = session_run(instance, status, contracts=2, model_path="/models/m1")
    clock(f"{DAY} 11:00")
    result = evaluate(session_watchdog_sensor, instance, cursor=EPOCH, risk=risk)
    flatten, restart = result.run_requests  # the flatten first: the restart queues behind it
    assert flatten.job_name == "flatten_job" and flatten.run_key == f"flatten-after-{died.run_id}"
    assert flatten.run_config["ops"]["flatten"]["config"] == {
        "account": "sim:default",
        "reason": f"watchdog: session run {died.run_id} ended {status.value} during market hours"}
    assert flatten.tags[SESSION_CONCURRENCY_TAG] == "sim:default"
    assert restart.job_name == "trading_session_job" and restart.run_key == f"session-restart-{died.run_id}"
    assert restart.run_config["ops"]["trading_session"]["config"] == {
        "date": DAY, "mode": "live", "account": "sim:default", "contracts": 2, "model_path": "/models/m1"}
    assert restart.tags[SESSION_CONCURRENCY_TAG] == "sim:default"
    assert restart.tags["dagster/max_runtime"] == str(int(5.5 * 3600))  # 11:00 until 16:30
    assert restart.tags["tradenova/restart_of"] == died.run_id and restart.tags[DATE_TAG] == DAY

    # handled: the next tick finds nothing new; a later failure is new again
    again = evaluate(session_watchdog_sensor, instance, cursor=result.cursor, risk=risk)
    assert again.run_requests == [] and "no session run failed or was canceled" in again.skip_message
    second = session_run(instance, Status.FAILURE)
    third = evaluate(session_watchdog_sensor, instance, cursor=result.cursor, risk=risk)
    assert [r.run_key for r in third.run_requests] == [f"flatten-after-{second.run_id}",
                                                       f"session-restart-{second.run_id}"]


def test_no_restart_while_the_kill_switch_is_on(instance, risk, store, clock):
    died = session_run(instance, Status.CANCELED)
    KillSwitch(store).turn_on("manual stop")
    clock(f"{DAY} 11:00")
    result = evaluate(session_watchdog_sensor, instance, cursor=EPOCH, risk=risk)
    assert [r.run_key for r in result.run_requests] == [f"flatten-after-{died.run_id}"]


def test_no_restart_when_the_risk_state_is_halted(instance, risk, clock):
    died = session_run(instance, Status.FAILURE)
    risk.build_manager("sim:default").halt("three losses in a row", rule="loss_streak")
    clock(f"{DAY} 11:00")
    result = evaluate(session_watchdog_sensor, instance, cursor=EPOCH, risk=risk)
    assert [r.run_key for r in result.run_requests] == [f"flatten-after-{died.run_id}"]


def test_no_restart_after_flatten_time_on_an_early_close(instance, risk, clock):
    died = session_run(instance, Status.FAILURE, day="2026-11-27")
    clock("2026-11-27 12:52")  # market still open until 13:00, flatten time was 12:50
    result = evaluate(session_watchdog_sensor, instance, cursor=EPOCH, risk=risk)
    assert [r.run_key for r in result.run_requests] == [f"flatten-after-{died.run_id}"]
    clock("2026-11-27 12:45")
    result = evaluate(session_watchdog_sensor, instance, cursor=EPOCH, risk=risk)
    assert [r.run_key for r in result.run_requests] == [f"flatten-after-{died.run_id}",
                                                        f"session-restart-{died.run_id}"]
    assert result.run_requests[1].tags["dagster/max_runtime"] == str(45 * 60)  # until 13:30


def test_restarts_stop_after_the_daily_limit_and_when_a_session_is_active(instance, risk, clock):
    clock(f"{DAY} 11:00")
    for _ in range(MAX_RESTARTS_PER_DAY):
        instance.create_run_for_job(trading_session_job, status=Status.SUCCESS, tags={
            DATE_TAG: DAY, SESSION_CONCURRENCY_TAG: "sim:default", RESTARTED_BY_TAG: "session_watchdog_sensor"})
    died = session_run(instance, Status.FAILURE)
    result = evaluate(session_watchdog_sensor, instance, cursor=EPOCH, risk=risk)
    assert [r.run_key for r in result.run_requests] == [f"flatten-after-{died.run_id}"]

    with dg.instance_for_test(overrides=QUEUED_COORDINATOR) as other:
        session_run(other, Status.QUEUED)  # someone already queued a session
        died = session_run(other, Status.FAILURE)
        result = evaluate(session_watchdog_sensor, other, cursor=EPOCH, risk=risk)
        assert [r.run_key for r in result.run_requests] == [f"flatten-after-{died.run_id}"]


@pytest.mark.parametrize("when,phase", [(f"{DAY} 16:30", "after_hours"), (f"{DAY} 07:00", "pre_market"),
                                        ("2026-11-26 11:00", "closed"), ("2026-11-28 11:00", "closed")])
def test_outside_market_hours_nothing_is_done_and_the_cursor_stays(instance, risk, clock, when, phase):
    session_run(instance, Status.FAILURE)
    clock(when)
    result = evaluate(session_watchdog_sensor, instance, cursor=EPOCH, risk=risk)
    assert result.run_requests == [] and f"market {phase}" in result.skip_message
    assert result.cursor in (None, EPOCH)


def test_replays_other_accounts_and_other_days_are_not_watched(instance, risk, clock):
    session_run(instance, Status.FAILURE, mode="replay")
    session_run(instance, Status.FAILURE, account="alpaca_paper:other")
    session_run(instance, Status.CANCELED, day="2026-11-23")
    clock(f"{DAY} 11:00")
    result = evaluate(session_watchdog_sensor, instance, cursor=EPOCH, risk=risk)
    assert result.run_requests == []
    assert "replay session of sim:default" in result.skip_message
    assert "live session of alpaca_paper:other" in result.skip_message
    assert "a session for 2026-11-23, not today" in result.skip_message
    assert result.cursor and result.cursor != EPOCH  # seen, not looked at again


def test_the_watchdog_acts_for_the_configured_account(instance, risk, clock, monkeypatch):
    monkeypatch.setenv("TRADENOVA_ACCOUNT", "alpaca_paper:main")
    died = session_run(instance, Status.FAILURE, account="alpaca_paper:main")
    clock(f"{DAY} 11:00")
    result = evaluate(session_watchdog_sensor, instance, cursor=EPOCH, risk=risk)
    assert [r.run_key for r in result.run_requests] == [f"flatten-after-{died.run_id}",
                                                        f"session-restart-{died.run_id}"]
    assert result.run_requests[0].run_config["ops"]["flatten"]["config"]["account"] == "alpaca_paper:main"


def test_without_a_cursor_only_runs_since_midnight_new_york_are_read():
    from sensors.watchdog import _cursor_time

    local = pd.Timestamp(f"{DAY} 11:00", tz="America/New_York")
    assert pd.Timestamp(_cursor_time(None, local)) == pd.Timestamp(f"{DAY} 05:00", tz="UTC")
    assert pd.Timestamp(_cursor_time("2026-11-24T15:00:00+00:00", local)) == pd.Timestamp(f"{DAY} 15:00", tz="UTC")


# --------------------------------------------------------------------------- model promotion


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A real (tiny) GRPO model, trained once for the module."""
    from rl_helpers import planted_days
    from tradenova_dagster.rl.dataset import TrainingDataset
    from tradenova_dagster.rl.train import train_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRADENOVA_HOME", str(tmp_path_factory.mktemp("train_home")))
        days = planted_days(2, seed=5)
        result = train_model("grpo", TrainingDataset("SPY", days), 256, seed=0, register=False, tensorboard=False,
                             hyperparams={"group_size": 2, "n_groups": 2, "episode_bars": 32, "batch_size": 64})
    return result, [d.day for d in days]


def register(tiny_model, store) -> registry.ModelRecord:
    result, days = tiny_model
    return registry.save_model(result.model, result.vec_normalize, agent="grpo", symbol="SPY",
                               timesteps=result.timesteps, seed=0, train_days=days, meta={"env_config": {}},
                               store=store)


class FakeEvaluationConfig(dg.Config):
    model_id: str
    check_passes: bool = True
    recorded_promotable: bool = True
    wait: bool = False
    crash_after_output: bool = False


GATE = threading.Event()


@dg.asset(name="model_evaluation", check_specs=[dg.AssetCheckSpec("promotable", asset="model_evaluation")])
def fake_model_evaluation(config: FakeEvaluationConfig, store: StoreResource):
    """Writes what the real model_evaluation writes (the verdict in DuckDB, the output,
    then the promotable check with best_model_id), without training anything."""
    registry.record_evaluation(config.model_id, eval_days=[date(2026, 11, 20)],
                               promotable=config.recorded_promotable, reason="test verdict", metrics={},
                               store=store.get_store())
    best = config.model_id if config.check_passes else ""
    yield dg.Output({"best_model_id": best}, metadata={"best_model_id": best})
    if config.wait:
        assert GATE.wait(60), "the test never opened the gate"
    if config.crash_after_output:
        raise RuntimeError("evaluation crashed after its output")
    yield dg.AssetCheckResult(check_name="promotable", passed=config.check_passes,
                              description="beats flat and random" if config.check_passes else "beats nothing",
                              metadata={"best_model_id": best})


def materialize_evaluation(instance, store, **config):
    return dg.materialize([fake_model_evaluation], instance=instance, raise_on_error=False,
                          resources={"store": StoreResource(db_path=str(store.path))},
                          run_config={"ops": {"model_evaluation": {"config": config}}})


def test_a_passed_evaluation_promotes_its_model_for_the_next_session(instance, store, tiny_model):
    model = register(tiny_model, store)
    resources = {"store": StoreResource(db_path=str(store.path))}
    assert "no new model_evaluation" in evaluate(model_promotion_sensor, instance, **resources).skip_message
    run = materialize_evaluation(instance, store, model_id=model.model_id)
    assert run.success

    result = evaluate(model_promotion_sensor, instance, **resources)
    assert result.run_requests == [] and f"promoted {model.model_id}" in result.skip_message
    assert registry.promoted_model("SPY", "sim:default", store) == model  # the account's next session
    [observation] = result.asset_events
    assert observation.metadata["promoted_model_id"].value == model.model_id
    assert store.query("SELECT account, run_id FROM model_promotions") == [("global", run.run_id)]

    again = evaluate(model_promotion_sensor, instance, cursor=result.cursor, **resources)
    assert "no new model_evaluation" in again.skip_message
    assert store.query("SELECT count(*) FROM model_promotions") == [(1,)]


def test_a_failed_check_or_a_run_that_crashed_before_its_check_promotes_nothing(instance, store, tiny_model):
    model = register(tiny_model, store)
    resources = {"store": StoreResource(db_path=str(store.path))}
    materialize_evaluation(instance, store, model_id=model.model_id, check_passes=False)
    result = evaluate(model_promotion_sensor, instance, **resources)
    assert "promotable check failed (beats nothing): nothing promoted" in result.skip_message

    crashed = materialize_evaluation(instance, store, model_id=model.model_id, crash_after_output=True)
    assert not crashed.success
    result = evaluate(model_promotion_sensor, instance, cursor=result.cursor, **resources)
    assert "the promotable check did not run: nothing promoted" in result.skip_message
    assert registry.promoted_model("SPY", store=store) is None


def test_the_registry_still_refuses_a_model_whose_recorded_verdict_failed(instance, store, tiny_model):
    model = register(tiny_model, store)
    materialize_evaluation(instance, store, model_id=model.model_id, recorded_promotable=False)
    result = evaluate(model_promotion_sensor, instance, store=StoreResource(db_path=str(store.path)))
    assert "not promoted" in result.skip_message and "not promotable" in result.skip_message
    assert registry.promoted_model("SPY", store=store) is None
    assert result.cursor  # judged: not looked at again


def test_the_sensor_waits_for_the_check_of_a_run_still_in_progress(instance, store, tiny_model):
    model = register(tiny_model, store)
    resources = {"store": StoreResource(db_path=str(store.path))}
    GATE.clear()
    worker = threading.Thread(target=materialize_evaluation, args=(instance, store),
                              kwargs={"model_id": model.model_id, "wait": True})
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while not instance.fetch_materializations(dg.AssetKey("model_evaluation"), limit=1).records:
            assert time.monotonic() < deadline, "the materialization never arrived"
            time.sleep(0.05)
        waiting = evaluate(model_promotion_sensor, instance, **resources)
        assert "waiting for its promotable check" in waiting.skip_message
        assert waiting.cursor is None and registry.promoted_model("SPY", store=store) is None
    finally:
        GATE.set()
        worker.join(60)
    done = evaluate(model_promotion_sensor, instance, cursor=waiting.cursor, **resources)
    assert f"promoted {model.model_id}" in done.skip_message
