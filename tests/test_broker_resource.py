"""BrokerResource in real Dagster runs: sim by default with no keys, Alpaca paper through
dg.EnvVar keys (against the local server), live refused without the opt-in."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pandas as pd
import pytest

from broker_helpers import StepClock
from conftest import REPO_ROOT
from fake_alpaca_trading import API_KEY, SECRET_KEY, FakeAlpacaTrading
from resources.broker import BrokerResource
from tradenova_dagster.broker import AlpacaBroker, LiveTradingRefused, SimBroker
from tradenova_dagster.ledger.accounts import ledger_store
from tradenova_dagster.store import Store


@dg.op
def buy_and_report(context, broker: BrokerResource) -> dict:
    clock = StepClock()
    executor = broker.get_executor(clock=clock, run_id=context.run_id)
    if isinstance(executor.broker, SimBroker):
        executor.broker.on_bar(clock.t, "SPY", 500.0)
    result = executor.execute_market_order("SPY", 2, "buy")
    return {"outcome": result.outcome, "coid": result.client_order_id, "account": broker.account_name(),
            "status": executor.get_account_status().as_dict()}


@dg.job
def broker_job():
    buy_and_report()


def test_sim_is_the_default_and_keeps_its_account_in_duckdb(tradenova_home, monkeypatch):
    monkeypatch.delenv("ALPACA_API_KEY", raising=False)
    monkeypatch.delenv("TRADENOVA_BROKER_MODE", raising=False)  # BrokerResource() defaults from it
    result = broker_job.execute_in_process(resources={"broker": BrokerResource()})
    assert result.success
    out = result.output_for_node("buy_and_report")
    assert out["outcome"] == "submitted" and out["account"] == "sim:default"
    rows = ledger_store("sim:default").query("SELECT account, client_order_id, run_id FROM sim_orders")
    assert rows == [("sim:default", out["coid"], result.run_id)]
    assert Store().query("SELECT count(*) FROM sim_orders") == [(0,)]  # the account's file, not the shared one


def test_alpaca_paper_with_keys_from_env_vars(store, monkeypatch):
    clock = StepClock()
    sim = SimBroker("alpaca_paper:default", store, clock=clock)
    sim.on_bar(clock.t, "SPY", 500.0)
    monkeypatch.setenv("ALPACA_API_KEY", API_KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET_KEY)
    with FakeAlpacaTrading(sim) as fake:
        resource = BrokerResource(mode="alpaca_paper", api_key=dg.EnvVar("ALPACA_API_KEY"),
                                  secret_key=dg.EnvVar("ALPACA_SECRET_KEY"), url_override=fake.url,
                                  data_url=fake.url, timeout_s=5)
        result = broker_job.execute_in_process(resources={"broker": resource})
    assert result.success
    out = result.output_for_node("buy_and_report")
    assert out["outcome"] == "submitted" and out["status"]["can_trade"]
    assert sim.get_order_by_client_id(out["coid"]).qty == 2
    assert SECRET_KEY not in str(result.dagster_run.run_config)  # keys are not run config


def test_modes_and_settings_are_validated(monkeypatch):
    monkeypatch.delenv("TRADENOVA_ALLOW_LIVE", raising=False)
    for name in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "APCA_API_KEY_ID", "APCA_API_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)  # the resource reads keys from the environment
    with pytest.raises(ValueError, match="'alpaca_live' refused: set TRADENOVA_ALLOW_LIVE=1"):
        BrokerResource(mode="alpaca_live", api_key="k", secret_key="s")
    with pytest.raises(ValueError, match="unknown value 'paper'"):
        BrokerResource(mode="paper")
    with pytest.raises(ValueError, match="timeout_s"):
        BrokerResource(timeout_s=0)
    with pytest.raises(ValueError, match="needs the ALPACA_API_KEY"):
        BrokerResource(mode="alpaca_paper").get_broker()
    monkeypatch.setenv("TRADENOVA_ALLOW_LIVE", "1")
    live = BrokerResource(mode="alpaca_live", api_key="k", secret_key="s", url_override="http://127.0.0.1:9")
    broker = live.get_broker()
    assert isinstance(broker, AlpacaBroker) and not broker.paper
    monkeypatch.delenv("TRADENOVA_ALLOW_LIVE")
    with pytest.raises(LiveTradingRefused):
        live.get_broker()  # the opt-in is checked again when the broker is built


@pytest.mark.slow
def test_definitions_load_without_any_alpaca_key(tradenova_home):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "APCA_", "TRADENOVA_BROKER"))}
    code = ("from tradenova_dagster.definitions import defs; r = defs.resources['broker']; "
            "print(r.mode, r.api_key, r.get_broker().name)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["sim", "None", "sim"]


def test_stale_order_age_reaches_the_executor(tradenova_home):
    executor = BrokerResource(stale_order_age_s=60, max_attempts=2).get_executor(clock=StepClock())
    assert (executor.stale_order_age_s, executor.max_attempts) == (60, 2)
    sim = executor.broker
    sim.on_bar(pd.Timestamp("2024-03-04 14:30", tz="UTC"), "SPY", 500.0)
    executor.execute_limit_order("SPY", 1, "buy", 400)
    assert executor.cancel_stale_orders(now=pd.Timestamp("2024-03-04 14:32", tz="UTC").to_pydatetime())
