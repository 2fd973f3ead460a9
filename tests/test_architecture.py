"""The package's layers, checked by import-linter's contracts in pyproject.toml: a scan flows
one way (io -> preprocess -> lungs -> infer -> quantify -> report -> pipeline), report and
quantify never reach into training, io knows nothing above it, and there is no import cycle
between covseg's top-level packages, with no exception listed."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    done = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "4 kept, 0 broken" in done.stdout


def test_no_import_is_excused_from_the_contracts():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11+")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert all("ignore_imports" not in c for c in config["contracts"])
    assert {c["type"] for c in config["contracts"]} >= {"acyclic_siblings", "layers"}
