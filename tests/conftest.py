"""Shared fixtures: the real data under ../shared/data, and a runner for the CLI."""
from __future__ import annotations

import pytest

from covseg.cli import main
from covseg.data.root import data_root


DATA_FIXTURES = {"data_dir", "real_ct"}


def pytest_collection_modifyitems(config, items):
    """Mark every test that reads the shared data `needs_data` (by the fixtures it uses), so
    `pytest -m "not needs_data"` runs the contract tests, which build their inputs in code."""
    for item in items:
        if DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.needs_data)


@pytest.fixture(scope="session")
def data_dir():
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set COVSEG_DATA_ROOT)")
    return root


@pytest.fixture(scope="session")
def real_ct(data_dir):
    return data_dir / "real_ct"


@pytest.fixture
def cli(capsys):
    """Run the covseg CLI in-process; returns (exit code, stdout, stderr)."""
    def run(*args: str):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err
    return run
