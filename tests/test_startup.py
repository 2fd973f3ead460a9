"""Startup: reading, describing and refusing scans must not wait for torch, MONAI or onnxruntime."""
from __future__ import annotations

import subprocess
import sys
import time

HEAVY = ("torch", "monai", "onnxruntime")


def _run(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run a Python child; return it and its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)
    return done, time.perf_counter() - start


def test_cli_and_io_import_without_heavy_libraries():
    check = f"import covseg.cli, covseg.io, sys; loaded = [m for m in {HEAVY!r} if m in sys.modules]; " \
            "assert not loaded, loaded"
    done, _ = _run("-c", check)
    assert done.returncode == 0, done.stderr


def test_info_of_a_real_scan_loads_no_model_library(real_ct):
    check = ("import sys; from covseg.cli import main; "
             f"code = main(['info', {str(real_ct / 'example_ct.nii.gz')!r}]); "
             f"loaded = [m for m in {HEAVY!r} if m in sys.modules]; "
             "assert code == 0 and not loaded, (code, loaded)")
    done, _ = _run("-c", check)
    assert done.returncode == 0, done.stderr


def test_info_of_a_missing_file_answers_quickly(tmp_path):
    _run("-m", "covseg", "--version")  # warm the file cache: the figure is covseg's, not the disk's
    done, seconds = _run("-m", "covseg", "info", str(tmp_path / "nope.nii.gz"))
    print(f"covseg info <missing file>: {seconds:.2f} s")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert seconds < 1.5


def test_segment_of_a_missing_file_answers_quickly(tmp_path):
    done, seconds = _run("-m", "covseg", "segment", str(tmp_path / "nope.nii.gz"), "-o",
                         str(tmp_path / "out"))
    print(f"covseg segment <missing file>: {seconds:.2f} s")
    assert done.returncode == 2 and "no such file" in done.stderr, done.stderr
    assert seconds < 1.5 and not (tmp_path / "out").exists()
