"""Where TradeNova keeps its state on disk.

Everything a run writes lives under one folder, ``TRADENOVA_HOME`` (default
``./.tradenova``), so that a user can inspect, back up or delete it as one thing:

    tradenova.duckdb   the shared database: market data, market context, models, kill switch
    ledgers/           one DuckDB file per account (``sim+default.duckdb``, ...): its orders,
                       fills, risk state, ladder, equity and decisions (``ledger/accounts.py``)
    models/            trained models and their normalisation statistics
    reports/           daily HTML reports and charts
    tensorboard/       TensorBoard logs from training
    dagster/           DAGSTER_HOME, unless DAGSTER_HOME is set explicitly

Paths are resolved at call time, not import time, so tests (and users) can point
``TRADENOVA_HOME`` elsewhere without re-importing anything.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "TRADENOVA_HOME"
DEFAULT_HOME = ".tradenova"

# Tag that every trading-session run carries, valued with its account; dagster.yaml limits
# it to one run per account at a time.
SESSION_CONCURRENCY_TAG = "tradenova/session"


def home() -> Path:
    """The TradeNova home folder, created on first use."""
    path = Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path() -> Path:
    return home() / "tradenova.duckdb"


def ledgers_dir() -> Path:
    return _subdir("ledgers")


def _subdir(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    return _subdir("models")


def reports_dir() -> Path:
    return _subdir("reports")


def tensorboard_dir() -> Path:
    return _subdir("tensorboard")


RUN_MONITORING_YAML = """\
# Detect runs whose worker died (a crashed session) and enforce dagster/max_runtime tags.
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  poll_interval_seconds: 30
"""

DAGSTER_YAML = f"""\
# Written by TradeNova on first use; edit freely, it is not overwritten.
telemetry:
  enabled: false

# One trading session per account at a time, whatever launched it (schedule, sensor, UI,
# CLI); two accounts trade side by side. (The account's lease refuses a second session
# too, naming the holder: this queue keeps the second from starting at all.)
concurrency:
  runs:
    max_concurrent_runs: 8
    tag_concurrency_limits:
      - key: "{SESSION_CONCURRENCY_TAG}"
        value:
          applyLimitPerUniqueValue: true
        limit: 1

{RUN_MONITORING_YAML}"""


def dagster_home() -> Path:
    """DAGSTER_HOME: the environment variable if set, else ``$TRADENOVA_HOME/dagster``.

    A ``dagster.yaml`` with TradeNova's run-queue limits and run monitoring is written
    on first use (never overwritten, so a user's edits stay).
    """
    explicit = os.environ.get("DAGSTER_HOME")
    path = Path(explicit).expanduser().resolve() if explicit else home() / "dagster"
    path.mkdir(parents=True, exist_ok=True)
    yaml_path = path / "dagster.yaml"
    if not yaml_path.exists():
        yaml_path.write_text(DAGSTER_YAML)
    return path


# Dagster records a run over a range of partitions (a backtest's year) as one "planned"
# event per partition unless this is set, each its own SQLite commit: 251 of them took
# 6-14 s before a year's backtest could start. Set, a single-run backfill records one event
# naming the whole range; the price (Dagster's own note): when such a run fails, the UI
# shows its days as missing rather than failed (the failed run itself is still shown).
PLANNED_EVENTS_AS_RANGE = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def use_dagster_home() -> Path:
    """Point this process (and the Dagster processes it starts) at TradeNova's DAGSTER_HOME,
    with a range's planned events recorded as one (``PLANNED_EVENTS_AS_RANGE``, unless the
    environment already says otherwise)."""
    path = dagster_home()
    os.environ["DAGSTER_HOME"] = str(path)
    os.environ.setdefault(PLANNED_EVENTS_AS_RANGE, "true")
    return path
