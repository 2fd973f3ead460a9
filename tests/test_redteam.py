"""Smoke test of benchmarks/redteam.py: the command runs, refuses and accepts, and writes JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "redteam.py"
DATA = ROOT.parent / "shared" / "data"


@pytest.mark.skipif(not (DATA / "ma20" / "ct" / "0100.png").is_file(), reason="no shared data")
def test_redteam_runs_a_few_kinds(tmp_path: Path) -> None:
    """Three refusals and one acceptance come out as expected, with exit 0 and a JSON record."""
    out = tmp_path / "redteam.json"
    kinds = ["path_missing", "png_tiny", "nifti_dim0_out_of_range", "png_ma20"]
    proc = subprocess.run([sys.executable, str(SCRIPT), "--only", *kinds, "--json", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads(out.read_text())
    outcomes = {k["kind"]: k["outcome"] for k in record["kinds"]}
    assert outcomes == {"path_missing": "REFUSED", "png_tiny": "REFUSED",
                        "nifti_dim0_out_of_range": "REFUSED", "png_ma20": "ACCEPTED"}
    assert record["totals"] == {"tried": 4, "refused": 3, "accepted": 1, "failed": 0}


def test_redteam_has_at_least_90_kinds() -> None:
    """The red-team covers at least 90 kinds, each with an expectation and a reason."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--list"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(None, 3) for line in proc.stdout.splitlines() if line.strip()]
    assert len(rows) >= 90
    assert {row[2] for row in rows} <= {"refuse", "accept", "either"}
