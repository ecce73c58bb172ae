"""The deployable stack: Dockerfile, docker-compose.yaml, the Helm chart's values and the gRPC
workspace agree with each other and with the code (image, ports, module, env names, run
limits); and the code location really serves over gRPC to a web server that loads it
through deploy/workspace.grpc.yaml. (No Docker daemon here: the files are read, not run.)"""

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import requests
import yaml

from conftest import REPO_ROOT
from tradenova_dagster import alerts
from tradenova_dagster.deploy import profile

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
IMAGE = f"tradenova:{PYPROJECT['project']['version']}"
MODULE = PYPROJECT["tool"]["dagster"]["module_name"]
LOCATION = PYPROJECT["tool"]["dagster"]["code_location_name"]
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
HELM = yaml.safe_load((REPO_ROOT / "deploy" / "helm" / "values.yaml").read_text())
WORKSPACE = yaml.safe_load((REPO_ROOT / "deploy" / "workspace.grpc.yaml").read_text())
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
ENV_EXAMPLE = (REPO_ROOT / "deploy" / "tradenova.env.example").read_text()
TRADENOVA_SERVICES = ("init", "code", "webserver", "daemon")
SOURCE_DIRS = ("tradenova_dagster", "resources", "assets", "ops", "sensors", "schedules")


def _command(service: str) -> list[str]:
    """A compose service's command as words (a `sh -c` wrapper unwrapped)."""
    command = COMPOSE["services"][service]["command"]
    return shlex.split(command[2]) if command[:2] == ["sh", "-c"] else command


def _option(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def _dockerfile_cmd() -> list[str]:
    return yaml.safe_load(re.search(r"^CMD (.+)$", DOCKERFILE, re.M).group(1))


def _helm_deployment() -> dict:
    [deployment] = HELM["dagster-user-deployments"]["deployments"]
    return deployment


def _compose_env(service: str = "code") -> dict:
    return COMPOSE["services"][service]["environment"]


def test_one_image_for_every_process():
    for service in TRADENOVA_SERVICES:
        assert COMPOSE["services"][service]["image"] == IMAGE, service
    helm_images = [HELM["dagsterWebserver"]["image"], HELM["dagsterDaemon"]["image"], _helm_deployment()["image"]]
    assert {f"{image['repository']}:{image['tag']}" for image in helm_images} == {IMAGE}
    assert COMPOSE["services"]["init"]["build"] == "."
    # The image pins the Dagster family's extras at the versions this environment runs.
    for package in ("dagster-postgres", "dagster-k8s"):
        assert f'"{package}==0.29.27"' in DOCKERFILE
    assert version("dagster-postgres") == "0.29.27" and version("dagster") == "1.13.27"
    torch_pin = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch"))
    assert f'"{torch_pin}"' in DOCKERFILE


def test_the_code_location_module_and_ports_agree():
    code_port = _option(_command("code"), "-p")
    assert _compose_env()["TRADENOVA_CODE_PORT"] == code_port == str(_helm_deployment()["port"])
    assert _option(_dockerfile_cmd(), "-p") == code_port
    assert _option(_command("code"), "-m") == _option(_dockerfile_cmd(), "-m") == MODULE
    assert _helm_deployment()["dagsterApiGrpcArgs"] == ["-m", MODULE]
    web_port = _option(_command("webserver"), "-p")
    assert COMPOSE["services"]["webserver"]["ports"] == [f"{web_port}:{web_port}"]
    assert str(HELM["dagsterWebserver"]["service"]["port"]) == web_port
    assert set(re.search(r"^EXPOSE (.+)$", DOCKERFILE, re.M).group(1).split()) == {web_port, code_port}
    # The web server and the daemon load the location through the gRPC workspace file.
    for service in ("webserver", "daemon"):
        assert _option(_command(service), "-w") == "deploy/workspace.grpc.yaml"
    [entry] = WORKSPACE["load_from"]
    assert entry["grpc_server"] == {"host": {"env": "TRADENOVA_CODE_HOST"}, "port": {"env": "TRADENOVA_CODE_PORT"},
                                    "location_name": LOCATION}
    assert _compose_env()["TRADENOVA_CODE_HOST"] == "code" and "code" in COMPOSE["services"]


def test_homes_are_volumes_at_the_images_paths():
    env = _compose_env()
    for name in ("DAGSTER_HOME", "TRADENOVA_HOME"):
        assert f"{name}={env[name]}" in DOCKERFILE
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in COMPOSE["services"]["code"]["volumes"]}
    assert mounts[env["DAGSTER_HOME"]] in COMPOSE["volumes"] and mounts[env["TRADENOVA_HOME"]] in COMPOSE["volumes"]
    assert HELM["global"]["dagsterHome"] == env["DAGSTER_HOME"]
    assert {"name": "TRADENOVA_HOME", "value": env["TRADENOVA_HOME"]} in _helm_deployment()["env"]
    assert f"TRADENOVA_HOME={env['TRADENOVA_HOME']}" in HELM["runLauncher"]["config"]["k8sRunLauncher"]["envVars"]


def _read_by_the_code(name: str) -> bool:
    literal = re.compile(rf"[\"']{re.escape(name)}[\"']")
    return any(literal.search(path.read_text()) for folder in SOURCE_DIRS
               for path in (REPO_ROOT / folder).rglob("*.py"))


def _env_example_names() -> set[str]:
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE, re.M))


def test_env_names_are_the_ones_the_code_reads_and_secrets_stay_in_the_env_file():
    env = _compose_env()
    # PostgreSQL: the production profile's variables; the password only from the env file.
    assert {name for name in env if name.startswith("DAGSTER_PG_")} == set(profile.PG_ENV.values()) - {
        "DAGSTER_PG_PASSWORD"}
    assert "DAGSTER_PG_PASSWORD" in _env_example_names()
    workspace_text = (REPO_ROOT / "deploy" / "workspace.grpc.yaml").read_text()
    for name in set(env) | _env_example_names():
        assert (_read_by_the_code(name) or name in workspace_text), f"{name} is read by nothing"
    # Every credential or endpoint the code reads can be set in the env file.
    for name in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "APCA_API_BASE_URL", alerts.ENV_WEBHOOK_URL,
                 alerts.ENV_SMTP_PASSWORD, "TRADENOVA_BROKER_MODE"):
        assert name in _env_example_names(), name
    for service in (*TRADENOVA_SERVICES, "postgres"):
        assert COMPOSE["services"][service]["env_file"] == "deploy/tradenova.env"
        assert not any("PASSWORD" in name for name in COMPOSE["services"][service].get("environment", {}))
    assert "$$DAGSTER_PG_PASSWORD" in " ".join(COMPOSE["services"]["postgres"]["entrypoint"])
    assert "deploy/tradenova.env" in (REPO_ROOT / ".dockerignore").read_text().splitlines()


def test_helm_values_carry_the_production_profiles_storage_queue_and_monitoring():
    production = yaml.safe_load(profile.render("production"))
    runs = HELM["concurrency"]["runs"]
    assert runs["maxConcurrentRuns"] == production["concurrency"]["runs"]["max_concurrent_runs"]
    assert runs["tagConcurrencyLimits"] == production["concurrency"]["runs"]["tag_concurrency_limits"]
    assert HELM["postgresql"]["postgresqlScheme"] == production["storage"]["postgres"]["postgres_db"]["scheme"]
    assert HELM["dagsterDaemon"]["runCoordinator"] == {"enabled": True, "type": "QueuedRunCoordinator"}
    monitoring = HELM["dagsterDaemon"]["runMonitoring"]
    assert {"enabled": monitoring["enabled"], "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            "cancel_timeout_seconds": monitoring["cancelTimeoutSeconds"],
            "poll_interval_seconds": monitoring["pollIntervalSeconds"]} == production["run_monitoring"]
    secrets = [{"name": "tradenova-secrets"}]
    assert _helm_deployment()["envSecrets"] == secrets == HELM["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, what: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: exited {proc.returncode}; see {log}")
        try:
            if predicate():
                return
        except (OSError, requests.RequestException):
            pass
        time.sleep(1)
    raise TimeoutError(f"{what}: not ready after {timeout} s; see {log}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


LOCATION_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries {
  name displayMetadata { key value }
  locationOrLoadError { __typename ... on RepositoryLocation { repositories { jobs { name } } }
                        ... on PythonError { message } } } } } }"""


@pytest.mark.slow
def test_a_web_server_loads_the_code_location_over_grpc_through_the_workspace_file(tradenova_home, tmp_path):
    bin_dir = Path(sys.executable).parent
    code_port, web_port = _free_port(), _free_port()
    env = {**os.environ, "TRADENOVA_CODE_HOST": "127.0.0.1", "TRADENOVA_CODE_PORT": str(code_port)}
    code_log, web_log = tmp_path / "grpc.log", tmp_path / "webserver.log"
    code = subprocess.Popen([str(bin_dir / "dagster"), "api", "grpc", "-h", "127.0.0.1", "-p", str(code_port),
                             "-m", MODULE], cwd=REPO_ROOT, env=env, stdout=code_log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    web = None
    try:
        _wait(lambda: socket.create_connection(("127.0.0.1", code_port), timeout=1).close() is None,
              "dagster api grpc", code, code_log)
        web = subprocess.Popen([str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port),
                                "-w", "deploy/workspace.grpc.yaml"], cwd=REPO_ROOT, env=env,
                               stdout=web_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{web_port}"
        _wait(lambda: requests.get(f"{url}/server_info", timeout=2).ok, "dagster-webserver", web, web_log)
        body = requests.post(f"{url}/graphql", json={"query": LOCATION_QUERY}, timeout=60).json()
    finally:
        for proc in (web, code):
            if proc is not None:
                _stop(proc)
    [entry] = body["data"]["workspaceOrError"]["locationEntries"]
    assert entry["name"] == LOCATION
    assert {"key": "port", "value": str(code_port)} in entry["displayMetadata"]  # served over gRPC, not in-process
    location = entry["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    jobs = {job["name"] for repository in location["repositories"] for job in repository["jobs"]}
    assert {"warmup_job", "trading_session_job", "flatten_job", "monitor_job", "reporting_job",
            "training_job"} <= jobs
