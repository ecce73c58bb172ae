"""Shared fixtures: an isolated TRADENOVA_HOME per test, a real DuckDB store, real data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SHARED_SPECS = REPO_ROOT.parent / "shared" / "specs"


@pytest.fixture
def tradenova_home(tmp_path, monkeypatch) -> Path:
    """A fresh TRADENOVA_HOME (and DAGSTER_HOME inside it) for one test."""
    home = tmp_path / "tradenova_home"
    home.mkdir()
    monkeypatch.setenv("TRADENOVA_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    (home / "dagster").mkdir()
    return home


# Settings a developer's shell may carry (a paper mode, keys, endpoints, alert channels):
# no test sees them unless it sets them itself, so no test can reach a real account.
_SHELL_SETTINGS = ("TRADENOVA_BROKER_MODE", "TRADENOVA_DATA_SOURCE", "TRADENOVA_DATA_DIR", "TRADENOVA_ALLOW_LIVE",
                   "TRADENOVA_ACCOUNT", "TRADENOVA_AUTOSTART", "ALPACA_API_KEY", "ALPACA_SECRET_KEY",
                   "APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "APCA_API_BASE_URL", "APCA_API_DATA_URL")


@pytest.fixture(autouse=True)
def _never_the_repos_home_nor_the_shells_settings(tradenova_home, monkeypatch):
    """Every test gets its own home, asked for or not (nothing lands in ./.tradenova), and
    none of the shell's trading settings."""
    import os

    for name in (*_SHELL_SETTINGS, *(n for n in os.environ if n.startswith("TRADENOVA_ALERT_"))):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store(tradenova_home):
    """A real DuckDB store file in the test's TRADENOVA_HOME, schema migrated."""
    from tradenova_dagster.store import Store

    return Store(tradenova_home / "tradenova.duckdb")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data with the real SPY and VIX files; skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real market data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_specs() -> Path:
    if not SHARED_SPECS.is_dir():
        pytest.skip(f"Alpaca OpenAPI specs folder {SHARED_SPECS} is absent")
    return SHARED_SPECS
