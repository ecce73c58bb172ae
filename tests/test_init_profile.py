"""`tradenova init`: the local and production dagster.yaml profiles, loaded by Dagster itself
(the production one against a real PostgreSQL server), never overwritten without --force,
never holding a password, and a connection check that names what it could not reach."""

import dagster as dg
import yaml

import postgres_helpers
from tradenova_dagster import cli, config
from tradenova_dagster.deploy import profile

postgres_server = postgres_helpers.postgres_server

SECRET = "s3cr3t-never-on-disk"


def _init(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["init", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_local_profile_is_the_embedded_sqlite_default(tradenova_home, capsys):
    code, out, _ = _init(capsys)
    written = tradenova_home / "dagster" / "dagster.yaml"
    assert code == 0 and str(written) in out
    with dg.DagsterInstance.from_config(str(written.parent)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert {"key": config.SESSION_CONCURRENCY_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits


def test_production_profile_runs_on_postgres_with_the_queue_limits(postgres_server, tradenova_home, monkeypatch,
                                                                   capsys):
    for name, value in postgres_server.create_database("init_profile").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", SECRET)
    code, out, err = _init(capsys, "--profile", "production", "--max-backtests", "3")
    assert code == 0, err
    written = tradenova_home / "dagster" / "dagster.yaml"
    text = written.read_text()
    assert SECRET not in text and "127.0.0.1" not in text  # settings stay in the environment
    postgres_db = yaml.safe_load(text)["storage"]["postgres"]["postgres_db"]
    assert {field: value for field, value in postgres_db.items() if field != "scheme"} == {
        "hostname": {"env": "DAGSTER_PG_HOST"}, "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USERNAME"}, "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"}}

    with dg.DagsterInstance.from_config(str(written.parent)) as instance:
        # Run, event-log and schedule storage all on the server (tables created through psycopg2).
        assert [type(s).__name__ for s in (instance.run_storage, instance.event_log_storage,
                                           instance.schedule_storage)] == [
            "PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"]
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_monitoring_enabled
        queue = instance.get_concurrency_config().run_queue_config
        assert instance.get_runs() == []
    assert queue.max_concurrent_runs == 8
    assert sorted(queue.tag_concurrency_limits, key=lambda limit: limit["key"]) == [
        {"key": "dagster/backfill", "limit": 3},
        {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
        {"key": "tradenova/job", "value": "backtest", "limit": 3},
        {"key": "tradenova/job", "value": "sweep", "limit": 3},
        {"key": "tradenova/job", "value": "training", "limit": 1},
        {"key": "tradenova/session", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
    ]
    code, out, _ = _init(capsys, "--check")
    assert code == 0 and f"127.0.0.1:{postgres_server.port}" in out and "PostgreSQL 1" in out


def test_an_existing_dagster_yaml_is_kept_unless_forced(tradenova_home, capsys):
    written = tradenova_home / "dagster" / "dagster.yaml"
    written.write_text("telemetry:\n  enabled: false\n")
    code, _, err = _init(capsys, "--profile", "production")
    assert code == 1 and str(written) in err and "--force" in err
    assert written.read_text() == "telemetry:\n  enabled: false\n"
    code, _, _ = _init(capsys, "--profile", "production", "--force")
    assert code == 0 and written.read_text() == profile.render("production")


def test_bad_limits_are_refused_naming_the_field_and_value(tradenova_home, capsys):
    code, _, err = _init(capsys, "--profile", "production", "--max-backtests", "0")
    assert code == 1 and "max_backtests" in err and "0" in err
    code, _, err = _init(capsys, "--profile", "production", "--max-backtests", "9", "--max-runs", "4")
    assert code == 1 and "max_backtests 9" in err and "max_runs 4" in err
    code, _, err = _init(capsys, "--max-backtests", "4")  # the local profile has no such limit
    assert code == 1 and "max_backtests" in err and "--profile local" in err
    assert not (tradenova_home / "dagster" / "dagster.yaml").exists()


def test_check_names_the_unreachable_host_and_port_or_the_missing_variables(tradenova_home, monkeypatch, capsys):
    for name in profile.PG_ENV.values():
        monkeypatch.delenv(name, raising=False)
    code, _, err = _init(capsys, "--check")
    assert code == 1 and "DAGSTER_PG_HOST" in err and "DAGSTER_PG_DB" in err
    closed = postgres_helpers._free_port()  # nothing listens there
    for name, value in {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(closed),
                        "DAGSTER_PG_USERNAME": "tradenova", "DAGSTER_PG_DB": "dagster"}.items():
        monkeypatch.setenv(name, value)
    code, _, err = _init(capsys, "--check")
    assert code == 1 and f"PostgreSQL at 127.0.0.1:{closed}" in err and "unreachable" in err
