"""`covseg segment --engine ray`: the same cohort results as the local engine, on a local Ray."""
from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install "
                               "'covseg[ray]'); the ray engine cannot be tested")
PATHS_AND_TIMES = ("scan", "output")  # what may differ between two folders of equal results


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> list[Path]:
    """Three small synthetic chest CTs and one file that is not a scan at all."""
    from covseg import make_phantom
    from covseg.demo import save_phantom

    folder = tmp_path_factory.mktemp("cohort")
    scans = [save_phantom(make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6), seed=k),
                          folder / f"scan{k}.nii.gz") for k in range(3)]
    broken = folder / "broken.nii.gz"
    broken.write_bytes(b"this is not a NIfTI file")
    return [*scans, broken]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs for the module; the engine finds it and leaves it running."""
    if not HAS_RAY:
        pytest.skip("ray is not installed")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def _summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _without_paths(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in PATHS_AND_TIMES} for r in rows]


def _mask(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


@needs_ray
def test_ray_cohort_equals_local_and_reruns_skip(cohort, local_ray, tmp_path):
    from covseg.pipeline import segment_many
    from covseg.ray_engine import segment_many_ray
    from covseg.io.outputs import DONE_NAME

    local, remote = tmp_path / "local", tmp_path / "ray"
    segment_many(cohort, local, progress=False)
    rows = segment_many_ray(cohort, remote, progress=False, workers=2)
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "refused"]
    assert "broken.nii.gz" in rows[3]["message"] and not (remote / "broken").exists()
    assert _without_paths(_summary(remote)) == _without_paths(_summary(local))
    assert sorted(p.name for p in remote.iterdir()) == sorted(p.name for p in local.iterdir())
    for k in range(3):
        folder = f"scan{k}"
        assert sorted(p.name for p in (remote / folder).iterdir()) == \
            sorted(p.name for p in (local / folder).iterdir())
        assert (remote / folder / DONE_NAME).is_file()
        for name in ("lesions.nii.gz", "lungs.nii.gz"):
            assert np.array_equal(_mask(remote / folder / name), _mask(local / folder / name))
    again = segment_many_ray(cohort, remote, progress=False, workers=2)
    assert all("skipped" in r["message"] for r in again[:3]), again
    assert again[3]["status"] == "refused"
    numbers = [{k: v for k, v in r.items() if k != "message"} for r in _without_paths(again)]
    assert numbers[:3] == _without_paths(rows[:3])


@needs_ray
def test_ray_cohort_skips_what_the_local_engine_did(cohort, local_ray, tmp_path):
    """One folder, either engine: a scan the local engine finished is not redone by Ray."""
    from covseg.pipeline import segment_many
    from covseg.ray_engine import segment_many_ray

    out = tmp_path / "out"
    segment_many(cohort[:2], out, progress=False)
    rows = segment_many_ray(cohort[:3], out, progress=False, workers=1)
    assert ["skipped" in r.get("message", "") for r in rows] == [True, True, False]
    assert [r["status"] for r in _summary(out)] == ["ok", "ok", "ok"]


def test_ray_engine_without_ray_is_one_line(cohort, tmp_path):
    check = ("import sys; sys.modules['ray'] = None; from covseg.cli import main; "
             f"sys.exit(main(['segment', {str(cohort[0])!r}, '-o', {str(tmp_path / 'out')!r}, "
             "'--engine', 'ray']))")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("covseg: error: the ray engine needs covseg[ray]: pip install "
                           "'covseg[ray]'\n")
    assert not (tmp_path / "out").exists()


def _segmenter_that_dies_on_crash_scans():
    """Runs in each Ray worker: the worker's process ends, as in a segfault or the OOM killer,
    when it starts on a scan named crash*."""
    import os

    from covseg import pipeline
    from covseg.infer import LesionSegmenter

    real = pipeline.build_scan

    def build(path, *args, **kwargs):
        if Path(path).name.startswith("crash"):
            os._exit(1)
        return real(path, *args, **kwargs)

    pipeline.build_scan = build
    return LesionSegmenter()


@needs_ray
def test_a_dead_worker_is_a_failed_row_and_the_cohort_goes_on(cohort, local_ray, tmp_path):
    import shutil

    from covseg.ray_engine import segment_many_ray

    local_ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack tests/
    crash = shutil.copy(cohort[1], tmp_path / "crash.nii.gz")
    out = tmp_path / "out"
    rows = segment_many_ray([cohort[0], crash, cohort[2]], out, progress=False, workers=2,
                            segmenter=_segmenter_that_dies_on_crash_scans)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"], rows
    assert "Ray worker segmenting this scan died" in rows[1]["message"]
    assert sorted(p.name for p in out.iterdir()) == [".covseg.lock", "scan0", "scan2",
                                                     "summary.csv"]


@needs_ray
def test_the_ray_cli_says_nothing_but_its_progress_on_stderr(cohort, tmp_path):
    """A local Ray started by covseg: no Ray log line reaches the user's terminal, and a batch
    whose only problem is a bad input exits 2 (refused), not 1 (a covseg bug)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    done = subprocess.run([sys.executable, "-m", "covseg", "segment", *map(str, cohort[2:]),
                           "-o", str(tmp_path / "out"), "--engine", "ray", "--workers", "1"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert lines and all(line.startswith("cohort:") for line in lines), done.stderr
    assert "broken.nii.gz: refused:" in done.stdout
