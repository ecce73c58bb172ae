"""Configuration merges field by field, or refuses (DESIGN.md §2).

Precedence for the ``broker`` and ``market_data`` resources of ``defs``:
run config (``resources.<name>.config``) > environment variable > built-in default. A
mode or source that needs Alpaca keys and lacks them refuses to start, naming exactly the
missing variable; it never falls back to ``sim``. Keys never reach run config, the event
log or any file. Every test runs a real Dagster job on the real ``defs`` resources and
never contacts the internet: endpoints are a local fake server or a closed local port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from broker_helpers import StepClock
from conftest import REPO_ROOT
from fake_alpaca_trading import API_KEY, SECRET_KEY, FakeAlpacaTrading
from resources.broker import BrokerResource
from resources.market_data import MarketDataResource
from resources.secrets import MissingCredentials
from tradenova_dagster.broker import AlpacaBroker, SimBroker

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, and nothing here connects
ENV_VARS = ("TRADENOVA_BROKER_MODE", "TRADENOVA_DATA_SOURCE", "TRADENOVA_DATA_DIR", "TRADENOVA_ALLOW_LIVE",
            "ALPACA_API_KEY", "ALPACA_SECRET_KEY", "APCA_API_KEY_ID", "APCA_API_SECRET_KEY",
            "APCA_API_BASE_URL", "APCA_API_DATA_URL")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def defs_resources():
    """The resources block of the real definitions, exactly as ``dagster dev`` loads it."""
    from tradenova_dagster.definitions import defs

    return dict(defs.resources)


@dg.op
def resolve(context, broker: BrokerResource, market_data: MarketDataResource) -> dict:
    """What the run's resources resolved to, and what the Alpaca client was built with."""
    out = {"mode": broker.mode, "url_override": broker.url_override, "broker_data_url": broker.data_url,
           "source": market_data.source, "data_dir": market_data.data_dir, "data_url": market_data.data_url}
    if broker.mode != "sim":
        client = broker.get_broker()  # builds alpaca-py's client; connects to nothing
        assert isinstance(client, AlpacaBroker)
        out["client_url"] = str(client.client._base_url)
        out["client_key"] = client._keys[0]
        out["paper"] = client.paper
    return out


@dg.job
def resolve_job():
    resolve()


def run(resources: dict, run_config: dict | None = None, **kwargs) -> dg.ExecuteInProcessResult:
    job = dg.Definitions(jobs=[resolve_job], resources=resources).get_job_def("resolve_job")
    return job.execute_in_process(run_config=run_config or {}, **kwargs)


def resolved(resources: dict, run_config: dict | None = None) -> dict:
    result = run(resources, run_config)
    assert result.success
    return result.output_for_node("resolve")


def refusal(resources: dict, run_config: dict | None = None) -> str:
    """The run fails while its resources start, before any op: the error's message."""
    result = run(resources, run_config, raise_on_error=False)
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_START"], "an op ran"
    failures = [e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE"]
    assert failures, [e.event_type_value for e in result.all_events]
    error = failures[0].event_specific_data.error
    assert error.cls_name == MissingCredentials.__name__
    return error.message


def paper_env(monkeypatch, **extra):
    monkeypatch.setenv("TRADENOVA_BROKER_MODE", "alpaca_paper")
    monkeypatch.setenv("TRADENOVA_DATA_SOURCE", "file")
    monkeypatch.setenv("ALPACA_API_KEY", "fake-key-id")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "fake-secret")
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


# --------------------------------------------------------------------------- merging


def test_run_config_with_only_the_endpoints_keeps_mode_and_source_from_the_environment(
        defs_resources, monkeypatch, tmp_path):
    paper_env(monkeypatch, TRADENOVA_DATA_DIR=str(tmp_path))
    out = resolved(defs_resources, {"resources": {
        "broker": {"config": {"url_override": CLOSED, "data_url": CLOSED}},
        "market_data": {"config": {"data_url": CLOSED}},
    }})
    assert (out["mode"], out["source"], out["data_dir"]) == ("alpaca_paper", "file", str(tmp_path))
    assert (out["url_override"], out["broker_data_url"], out["data_url"]) == (CLOSED, CLOSED, CLOSED)
    assert out["client_url"] == CLOSED and out["paper"] and out["client_key"] == "fake-key-id"


def test_run_config_beats_the_environment_which_beats_the_default(defs_resources, monkeypatch):
    assert resolved(defs_resources)["mode"] == "sim"  # nothing set: the built-in defaults
    assert resolved(defs_resources)["source"] == "synthetic"
    paper_env(monkeypatch, APCA_API_BASE_URL=CLOSED)
    out = resolved(defs_resources, {"resources": {"broker": {"config": {"mode": "sim", "timeout_s": 3.0}},
                                                  "market_data": {"config": {"source": "synthetic"}}}})
    assert (out["mode"], out["source"]) == ("sim", "synthetic")  # run config wins, field by field
    assert out["url_override"] == CLOSED  # the field it left out still comes from the environment
    other = "http://127.0.0.1:10"
    out = resolved(defs_resources, {"resources": {"broker": {"config": {"url_override": other}}}})
    assert (out["mode"], out["url_override"], out["client_url"]) == ("alpaca_paper", other, other)


def test_endpoints_come_from_alpacas_environment_variables(defs_resources, monkeypatch):
    paper_env(monkeypatch, APCA_API_BASE_URL=CLOSED + "/v2/", APCA_API_DATA_URL="http://127.0.0.1:11")
    out = resolved(defs_resources)  # no run config at all
    assert out["url_override"] == CLOSED and out["client_url"] == CLOSED  # alpaca-py adds /v2 itself
    assert out["broker_data_url"] == out["data_url"] == "http://127.0.0.1:11"


def test_build_resources_merges_the_same_way(monkeypatch):
    paper_env(monkeypatch)
    with dg.build_resources({"broker": BrokerResource(), "market_data": MarketDataResource()},
                            resource_config={"broker": {"config": {"url_override": CLOSED}}}) as built:
        assert (built.broker.mode, built.broker.url_override, built.market_data.source) == (
            "alpaca_paper", CLOSED, "file")


def test_alpacas_key_names_work_and_ours_win_when_both_are_set(defs_resources, monkeypatch):
    monkeypatch.setenv("TRADENOVA_BROKER_MODE", "alpaca_paper")
    monkeypatch.setenv("APCA_API_BASE_URL", CLOSED)
    monkeypatch.setenv("APCA_API_KEY_ID", "apca-key")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "apca-secret")
    assert resolved(defs_resources)["client_key"] == "apca-key"
    monkeypatch.setenv("ALPACA_API_KEY", "alpaca-key")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "alpaca-secret")
    assert resolved(defs_resources)["client_key"] == "alpaca-key"


def test_paper_mode_refuses_alpacas_live_endpoint(monkeypatch):
    paper_env(monkeypatch, APCA_API_BASE_URL="https://api.alpaca.markets")
    with pytest.raises(ValueError, match="'alpaca_paper' refused: url_override .* live endpoint"):
        BrokerResource()
    assert BrokerResource(url_override="https://paper-api.alpaca.markets").mode == "alpaca_paper"


# --------------------------------------------------------------------------- refusing


def test_only_the_missing_secret_is_named_and_nothing_falls_back_to_sim(defs_resources, monkeypatch):
    paper_env(monkeypatch)
    monkeypatch.delenv("ALPACA_SECRET_KEY")
    message = refusal(defs_resources, {"resources": {"broker": {"config": {"url_override": CLOSED}}}})
    assert "broker.mode 'alpaca_paper'" in message and "ALPACA_SECRET_KEY" in message
    assert "ALPACA_API_KEY" not in message and "APCA_" not in message


def test_only_the_missing_key_id_is_named(defs_resources, monkeypatch):
    paper_env(monkeypatch)
    monkeypatch.delenv("ALPACA_API_KEY")
    message = refusal(defs_resources)
    assert "ALPACA_API_KEY" in message and "ALPACA_SECRET_KEY" not in message


def test_alpacas_pair_is_named_when_that_is_the_pair_in_use(defs_resources, monkeypatch):
    monkeypatch.setenv("TRADENOVA_BROKER_MODE", "alpaca_paper")
    monkeypatch.setenv("APCA_API_KEY_ID", "apca-key")
    message = refusal(defs_resources)
    assert "APCA_API_SECRET_KEY" in message and "APCA_API_KEY_ID" not in message and "ALPACA_" not in message


def test_no_keys_at_all_names_both(defs_resources, monkeypatch):
    monkeypatch.setenv("TRADENOVA_BROKER_MODE", "alpaca_paper")
    message = refusal(defs_resources)
    assert "ALPACA_API_KEY and ALPACA_SECRET_KEY" in message


def test_live_mode_without_keys_refuses_too(defs_resources, monkeypatch):
    monkeypatch.setenv("TRADENOVA_ALLOW_LIVE", "1")
    monkeypatch.setenv("ALPACA_API_KEY", "fake-key-id")
    message = refusal(defs_resources, {"resources": {"broker": {"config": {"mode": "alpaca_live"}}}})
    assert "broker.mode 'alpaca_live'" in message and "ALPACA_SECRET_KEY" in message
    assert "ALPACA_API_KEY" not in message


def test_the_alpaca_data_source_refuses_naming_the_missing_variable(defs_resources, monkeypatch):
    monkeypatch.setenv("TRADENOVA_DATA_SOURCE", "alpaca")
    monkeypatch.setenv("ALPACA_API_KEY", "fake-key-id")
    message = refusal(defs_resources, {"resources": {"market_data": {"config": {"data_url": CLOSED}}}})
    assert "market_data.source 'alpaca'" in message and "ALPACA_SECRET_KEY" in message
    assert "ALPACA_API_KEY" not in message
    monkeypatch.setenv("ALPACA_SECRET_KEY", "fake-secret")
    out = resolved(defs_resources, {"resources": {"market_data": {"config": {"data_url": CLOSED}}}})
    assert (out["mode"], out["source"], out["data_url"]) == ("sim", "alpaca", CLOSED)


# --------------------------------------------------------------------------- secrets stay secret


@dg.op
def trade_and_chatter(context, broker: BrokerResource, market_data: MarketDataResource) -> str:
    """A careless op: it logs everything it has, then trades once."""
    context.log.info(f"broker resource: {broker!r}; data resource: {market_data!r}")
    executor = broker.get_executor(clock=StepClock(), run_id=context.run_id)
    context.log.info(f"executor broker: {executor.broker!r}")
    return executor.execute_market_order("SPY", 1, "buy").outcome


@dg.job
def chatter_job():
    trade_and_chatter()


def _everything_stored(instance: dg.DagsterInstance, run_id: str, folder: Path) -> str:
    run = instance.get_run_by_id(run_id)
    parts = [serialize_value(run), json.dumps(run.run_config, default=str),
             serialize_value(instance.all_logs(run_id)),
             serialize_value(instance.get_job_snapshot(run.job_snapshot_id))]
    parts += [p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file()]
    return "\n".join(parts)


@pytest.mark.parametrize("secret", [SECRET_KEY, "a-wrong-secret-0451"])
def test_a_secret_never_reaches_run_config_event_log_or_files(defs_resources, store, tmp_path, monkeypatch,
                                                              secret):
    clock = StepClock()
    sim = SimBroker("alpaca_paper:default", store, clock=clock)
    sim.on_bar(clock.t, "SPY", 500.0)
    monkeypatch.setenv("TRADENOVA_BROKER_MODE", "alpaca_paper")
    monkeypatch.setenv("ALPACA_API_KEY", API_KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", secret)
    dagster_home = tmp_path / "instance"
    dagster_home.mkdir()
    with FakeAlpacaTrading(sim) as fake, dg.DagsterInstance.local_temp(str(dagster_home)) as instance:
        monkeypatch.setenv("APCA_API_BASE_URL", fake.url)
        monkeypatch.setenv("APCA_API_DATA_URL", fake.url)
        job = dg.Definitions(jobs=[chatter_job], resources=defs_resources).get_job_def("chatter_job")
        result = job.execute_in_process(
            run_config={"resources": {"broker": {"config": {"timeout_s": 2.0, "max_attempts": 1}}}},
            instance=instance, raise_on_error=False)
        assert result.success == (secret == SECRET_KEY)  # the fake refuses a wrong secret
        if result.success:
            assert result.output_for_node("trade_and_chatter") == "submitted"
        stored = _everything_stored(instance, result.run_id, tmp_path)
    assert "broker resource: BrokerResource(mode='alpaca_paper'" in stored  # the grep sees the logs
    assert "RESOURCE_INIT_SUCCESS" in stored and '"timeout_s": 2.0' in stored  # ... and the run config
    assert secret not in stored


# --------------------------------------------------------------------------- the CLI path

PROBE_MODULE = """
import json
import dagster as dg
from resources.broker import BrokerResource
from resources.market_data import MarketDataResource
import tradenova_dagster.definitions as real_module


@dg.op(config_schema={"out": str})
def probe(context, broker: BrokerResource, market_data: MarketDataResource):
    with open(context.op_config["out"], "w") as f:
        json.dump({"mode": broker.mode, "url_override": broker.url_override, "source": market_data.source,
                   "data_url": market_data.data_url}, f)


@dg.job
def probe_job():
    probe()


defs = dg.Definitions(jobs=[probe_job], resources=real_module.defs.resources)
"""


@pytest.mark.slow
def test_dagster_job_execute_with_a_partial_config_file(tradenova_home, tmp_path):
    module = tmp_path / "probe_defs.py"
    module.write_text(PROBE_MODULE)
    out = tmp_path / "resolved.json"
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "ops": {"probe": {"config": {"out": str(out)}}},
        "resources": {"broker": {"config": {"url_override": CLOSED}}, "market_data": {"config": {"data_url": CLOSED}}},
    }))
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(TRADENOVA_BROKER_MODE="alpaca_paper", TRADENOVA_DATA_SOURCE="file", ALPACA_API_KEY="fake-key-id",
               ALPACA_SECRET_KEY="fake-secret-cli-7731")
    command = [sys.executable, "-m", "dagster", "job", "execute", "-f", str(module), "-d", str(REPO_ROOT),
               "-j", "probe_job", "-c", str(config)]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads(out.read_text()) == {"mode": "alpaca_paper", "url_override": CLOSED, "source": "file",
                                           "data_url": CLOSED}
    assert "fake-secret-cli-7731" not in done.stdout + done.stderr
    del env["ALPACA_SECRET_KEY"]
    out.unlink()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and not out.exists()
    assert "broker.mode 'alpaca_paper' needs the ALPACA_SECRET_KEY environment variable" in done.stdout + done.stderr
