"""TRADENOVA_HOME, DAGSTER_HOME and the dagster.yaml TradeNova writes."""

import dagster as dg
import yaml

from tradenova_dagster import config


def test_home_defaults_to_dot_tradenova_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("TRADENOVA_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert config.home() == tmp_path / ".tradenova"
    assert config.db_path() == tmp_path / ".tradenova" / "tradenova.duckdb"
    for folder in (config.models_dir(), config.reports_dir(), config.tensorboard_dir()):
        assert folder.is_dir() and folder.parent == tmp_path / ".tradenova"


def test_dagster_home_defaults_inside_tradenova_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADENOVA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert config.dagster_home() == tmp_path / "home" / "dagster"


def test_dagster_yaml_limits_sessions_to_one_run_per_account_and_monitors_runs(tradenova_home):
    home = config.dagster_home()
    settings = yaml.safe_load((home / "dagster.yaml").read_text())
    limits = settings["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": config.SESSION_CONCURRENCY_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    assert settings["run_monitoring"]["enabled"] is True
    # Dagster itself accepts the file: an instance built on it carries the limit.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run_queue = instance.get_concurrency_config().run_queue_config
        assert run_queue.tag_concurrency_limits == limits
        assert instance.run_monitoring_enabled


def test_dagster_yaml_is_never_overwritten(tradenova_home):
    home = config.dagster_home()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config.dagster_home()
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
