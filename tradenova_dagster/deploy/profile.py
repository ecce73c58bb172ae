"""The ``dagster.yaml`` profiles TradeNova writes into DAGSTER_HOME.

``local`` is the embedded default (SQLite under DAGSTER_HOME, the run queue with one
session per account, run monitoring): what ``config.dagster_home()`` writes on first use.
``production`` keeps the same limits and adds what several processes or machines need:
run, event-log and schedule storage on PostgreSQL (dagster-postgres, pinned with the
Dagster family at 0.29.27), the queued run coordinator with limits on backtests and
training too, and run monitoring.

The connection settings are ``env:`` entries, resolved by Dagster in each process when it
loads the instance, so no host, user or password is ever written into a file, and one
``dagster.yaml`` serves a laptop, compose and Kubernetes alike.

Why ``scheme: postgresql+psycopg2``: with the SQLAlchemy 2.1 this environment resolves,
a bare ``postgresql://`` URL means the psycopg 3 driver (``No module named 'psycopg'``),
and dagster-postgres 0.29.27 with psycopg 3 fails on ``NOTIFY run_events, $1``. Naming the
psycopg2 driver (``psycopg2-binary``) keeps SQLAlchemy where the project's other
dependencies put it instead of pinning it below 2.1 for everyone.
"""

from __future__ import annotations

import os
from pathlib import Path

from tradenova_dagster import config

PROFILES = ("local", "production")

# The environment variables the production profile reads (the names Dagster's Helm chart
# uses for the password), field of ``postgres_db`` -> variable.
PG_ENV = {
    "hostname": "DAGSTER_PG_HOST",
    "port": "DAGSTER_PG_PORT",
    "username": "DAGSTER_PG_USERNAME",
    "password": "DAGSTER_PG_PASSWORD",
    "db_name": "DAGSTER_PG_DB",
}
PG_SCHEME = "postgresql+psycopg2"

# Run tags the production limits key on. Every run of a backfill carries Dagster's own
# backfill tag, and a backtest is a backfill of ``backtest_day``; training runs carry
# ``tradenova/job: training`` (the tag the other TradeNova jobs use for their name).
BACKFILL_TAG = "dagster/backfill"
JOB_TAG = "tradenova/job"
TRAINING_JOB = "training"

DEFAULT_MAX_BACKTESTS = 2
DEFAULT_MAX_RUNS = 8

_PRODUCTION = """\
# Written by `tradenova init --profile production`. Edit freely: `tradenova init` refuses
# to overwrite it without --force.
telemetry:
  enabled: false

# Run, event-log and schedule storage on PostgreSQL. Every connection setting is read from
# the environment by each Dagster process (webserver, daemon, code location, run worker):
# no password is ever written here. The psycopg2 driver is named because SQLAlchemy 2.1
# would otherwise pick psycopg 3, which dagster-postgres 0.29.27 does not work with.
storage:
  postgres:
    postgres_db:
      scheme: {scheme}
      hostname:
        env: {hostname}
      port:
        env: {port}
      username:
        env: {username}
      password:
        env: {password}
      db_name:
        env: {db_name}

# Runs wait in a queue that the daemon (`dagster-daemon run`) starts within the limits below.
run_coordinator:
  module: dagster
  class: QueuedRunCoordinator

concurrency:
  runs:
    # Runs in progress at once, of any kind.
    max_concurrent_runs: {max_runs}
    tag_concurrency_limits:
      # One trading session per account (the tag's value is the account); two accounts
      # trade side by side. The account's lease refuses a second session too.
      - key: "{session_tag}"
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      # Backfill runs (backtests are backfills of backtest_day) at once, all backfills
      # together: each replays days on a core of its own.
      - key: "{backfill_tag}"
        limit: {max_backtests}
      # The same limit for the runs `tradenova backtest` and `tradenova sweep` start (not
      # backfills: each carries tradenova/job backtest or sweep instead).
      - key: "{job_tag}"
        value: "backtest"
        limit: {max_backtests}
      - key: "{job_tag}"
        value: "sweep"
        limit: {max_backtests}
      # One training run at a time: it takes every core it is given.
      - key: "{job_tag}"
        value: "{training_job}"
        limit: 1
      # One run per partition at a time: two backfills of the same day or sweep run never
      # write its results at once; the second waits in the queue.
      - key: "dagster/partition"
        value:
          applyLimitPerUniqueValue: true
        limit: 1

""" + config.RUN_MONITORING_YAML


def render(profile: str, max_backtests: int = DEFAULT_MAX_BACKTESTS, max_runs: int = DEFAULT_MAX_RUNS) -> str:
    """The ``dagster.yaml`` text of a profile."""
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(PROFILES)}")
    if profile == "local":
        return config.DAGSTER_YAML
    for name, value in (("max_backtests", max_backtests), ("max_runs", max_runs)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if max_backtests > max_runs:
        raise ValueError(f"max_backtests {max_backtests} is above max_runs {max_runs}: it could never be reached")
    return _PRODUCTION.format(scheme=PG_SCHEME, **PG_ENV, max_runs=max_runs, max_backtests=max_backtests,
                              session_tag=config.SESSION_CONCURRENCY_TAG, backfill_tag=BACKFILL_TAG,
                              job_tag=JOB_TAG, training_job=TRAINING_JOB)


def dagster_home_path() -> Path:
    """Where DAGSTER_HOME is, by the same rule as ``config.dagster_home()``, without writing
    the local profile there (which would make ``init`` find a file it must not overwrite)."""
    explicit = os.environ.get("DAGSTER_HOME")
    return Path(explicit).expanduser().resolve() if explicit else config.home() / "dagster"


def write(profile: str, *, force: bool = False, max_backtests: int = DEFAULT_MAX_BACKTESTS,
          max_runs: int = DEFAULT_MAX_RUNS, home: Path | None = None) -> Path:
    """Write the profile's ``dagster.yaml`` into DAGSTER_HOME (or ``home``); an existing one
    is kept (a user's edits live there) unless ``force``."""
    text = render(profile, max_backtests=max_backtests, max_runs=max_runs)
    folder = home or dagster_home_path()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "dagster.yaml"
    if target.exists() and not force:
        raise RuntimeError(f"{target} already exists; not overwritten (pass --force to replace it "
                           f"with the {profile} profile)")
    temporary = target.with_name(".dagster.yaml.tmp")
    temporary.write_text(text)
    temporary.replace(target)
    return target


def postgres_settings(environ: dict | None = None) -> dict:
    """The connection settings from the environment; a missing one is named."""
    environ = os.environ if environ is None else environ
    missing = [name for field, name in PG_ENV.items() if field != "password" and not environ.get(name)]
    if missing:
        raise RuntimeError(f"the production profile reads PostgreSQL settings from the environment; "
                           f"not set: {', '.join(missing)}")
    port = environ[PG_ENV["port"]]
    if not port.isdigit():
        raise ValueError(f"{PG_ENV['port']} must be a port number, got {port!r}")
    return {field: environ.get(name, "") for field, name in PG_ENV.items()}


def check_postgres(environ: dict | None = None, timeout_s: int = 5) -> str:
    """Connect once to the PostgreSQL the production profile names; an unreachable server is
    an error naming its host and port (never a silent fall back to SQLite)."""
    import psycopg2

    settings = postgres_settings(environ)
    where = f"{settings['hostname']}:{settings['port']}"
    try:
        connection = psycopg2.connect(host=settings["hostname"], port=int(settings["port"]),
                                      user=settings["username"], password=settings["password"] or None,
                                      dbname=settings["db_name"], connect_timeout=timeout_s)
    except psycopg2.OperationalError as exc:
        detail = " ".join(str(exc).split())
        raise RuntimeError(f"PostgreSQL at {where} (database {settings['db_name']!r}, user "
                           f"{settings['username']!r}) is unreachable: {detail}") from None
    try:
        version = connection.server_version
    finally:
        connection.close()
    return f"PostgreSQL {version // 10000}.{version % 10000} at {where}, database {settings['db_name']!r}"
