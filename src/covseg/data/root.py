"""Where the research data sets live: `$COVSEG_DATA_ROOT`, else `../shared/data`."""
from __future__ import annotations

import os
from pathlib import Path

from covseg.errors import InputError

ENV_VAR = "COVSEG_DATA_ROOT"


def data_root(root: str | Path | None = None) -> Path:
    """Resolve the data root: an explicit path, the environment variable, or ../shared/data.

    The default is looked up beside the working directory first, then beside the source checkout,
    so the tests find it wherever pytest is started from inside the project.
    """
    if root is not None:
        return Path(root)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    candidates = [Path.cwd() / ".." / "shared" / "data",
                  Path(__file__).resolve().parents[3] / ".." / "shared" / "data"]
    for cand in candidates:
        if cand.is_dir():
            return cand.resolve()
    return candidates[0]


def require_dataset(name: str, root: str | Path | None = None) -> Path:
    """Path of one data set under the root, or a clear error saying how to point at it."""
    path = data_root(root) / name
    if not path.is_dir():
        raise InputError(f"data set '{name}' not found at {path}; "
                         f"set {ENV_VAR} to the folder that holds it")
    return path
