"""The project's shape: the core stays free of Dagster, and Dagster loads the definitions."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

CORE = REPO_ROOT / "tradenova_dagster"


def _dagster_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0].startswith("dagster")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0].startswith("dagster"):
            found.append(node.module)
    return found


def test_core_imports_no_dagster_outside_definitions():
    offenders = {
        str(p.relative_to(REPO_ROOT)): imports
        for p in CORE.rglob("*.py")
        if p.name != "definitions.py" or p.parent != CORE
        for imports in [_dagster_imports(p)]
        if imports
    }
    assert offenders == {}, f"the core must not import Dagster: {offenders}"


def test_the_import_scan_would_catch_a_dagster_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom dagster import asset\nimport dagster_webserver\n")
    assert _dagster_imports(module) == ["dagster", "dagster_webserver"]


def test_definitions_expose_the_market_data_assets_checks_and_resources():
    from tradenova_dagster.definitions import defs

    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"market_bars", "market_context"} <= keys
    checks = {c.name for c in defs.resolve_asset_graph().asset_check_keys}
    assert {"no_nan", "timestamps_unique_and_ordered", "ohlc_consistent", "prices_positive",
            "bar_count_matches_session"} <= checks
    assert {"store", "market_data"} <= set(defs.resources)


def test_workspace_yaml_loads_the_definitions_module():
    text = (REPO_ROOT / "workspace.yaml").read_text()
    assert "module_name: tradenova_dagster.definitions" in text


@pytest.mark.slow
def test_dagster_definitions_validate_from_the_repo_root(tradenova_home):
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr
