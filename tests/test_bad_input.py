"""Bad input: one clear line on stderr, exit code 2, no traceback, nothing written.

Every input is built here, from the phantom (as NIfTI and as a pydicom DICOM series), so these
contract tests run without the shared data."""
from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pytest
import scipy.io


def _dicom_copy(src, dst, **changes):
    import pydicom
    ds = pydicom.dcmread(src)
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.save_as(dst)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A good NIfTI and a good DICOM series of the phantom, for the bad inputs made from them."""
    from builders import write_dicom_series

    import covseg
    from covseg.demo import save_phantom

    root = tmp_path_factory.mktemp("sources")
    phantom = covseg.make_phantom(shape=(8, 64, 64), spacing=(6.0, 5.0, 5.0))
    nifti = save_phantom(phantom, root / "ct.nii.gz")
    series = write_dicom_series(phantom.hu, phantom.spacing, root / "series")
    return {"nifti": nifti, "dicom": sorted(series.iterdir())[:2]}


def _make_bad(kind: str, tmp, sources):
    """Create one kind of bad input under tmp; return its path."""
    if kind == "missing":
        return tmp / "nope.nii.gz"
    if kind == "empty folder":
        (tmp / "d").mkdir()
        (tmp / "d" / "notes.txt").write_text("no images here")
        return tmp / "d"
    if kind == "mixed series":
        import pydicom
        d = tmp / "mixed"
        d.mkdir()
        _dicom_copy(sources["dicom"][0], d / "a.dcm")
        _dicom_copy(sources["dicom"][1], d / "b.dcm",
                    SeriesInstanceUID=pydicom.uid.generate_uid())
        return d
    if kind == "mixed sizes":
        import pydicom
        d = tmp / "sizes"
        d.mkdir()
        _dicom_copy(sources["dicom"][0], d / "a.dcm")
        ds = pydicom.dcmread(sources["dicom"][1])
        small = ds.pixel_array[::2, ::2].copy()
        ds.Rows, ds.Columns = small.shape
        ds.PixelData = small.tobytes()
        ds.save_as(d / "b.dcm")
        return d
    if kind == "truncated nii.gz":
        data = sources["nifti"].read_bytes()
        (tmp / "cut.nii.gz").write_bytes(data[: len(data) // 3])
        return tmp / "cut.nii.gz"
    if kind == "text named .nii":
        (tmp / "fake.nii").write_text("this is not an image\n" * 40)
        return tmp / "fake.nii"
    if kind == "gzip of text named .nii.gz":
        (tmp / "fake.nii.gz").write_bytes(gzip.compress(b"hello" * 100))
        return tmp / "fake.nii.gz"
    if kind == "4-D array":
        np.save(tmp / "a.npy", np.zeros((2, 3, 32, 32), np.float32))
        return tmp / "a.npy"
    if kind == "1-D array":
        np.save(tmp / "a.npy", np.zeros(100, np.float32))
        return tmp / "a.npy"
    if kind == "all NaN":
        np.save(tmp / "a.npy", np.full((4, 32, 32), np.nan, np.float32))
        return tmp / "a.npy"
    if kind == "empty image":
        np.save(tmp / "a.npy", np.zeros((0, 32, 32), np.float32))
        return tmp / "a.npy"
    if kind == "tiny image":
        np.save(tmp / "a.npy", np.zeros((3, 4), np.float32))
        return tmp / "a.npy"
    if kind == "constant image":
        np.save(tmp / "a.npy", np.full((2, 32, 32), -1000.0, np.float32))
        return tmp / "a.npy"
    if kind == "mat without image":
        scipy.io.savemat(tmp / "a.mat", {"note": "hello", "x": np.array([1.0, 2.0])})
        return tmp / "a.mat"
    if kind == "unknown type":
        (tmp / "scan.xyz").write_text("?")
        return tmp / "scan.xyz"
    if kind == "truncated dicom":
        data = (sources["dicom"][0]).read_bytes()
        (tmp / "cut.dcm").write_bytes(data[: len(data) // 2])
        return tmp / "cut.dcm"
    if kind == "broken png":
        (tmp / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
        return tmp / "x.png"
    raise AssertionError(kind)


KINDS = ["missing", "empty folder", "mixed series", "mixed sizes", "truncated nii.gz",
         "text named .nii", "gzip of text named .nii.gz", "4-D array", "1-D array", "all NaN",
         "empty image", "tiny image", "constant image", "mat without image", "unknown type",
         "truncated dicom", "broken png"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", ["info", "segment"])
def test_bad_input_gives_one_line_and_exit_2(kind, command, cli, sources, tmp_path):
    bad = _make_bad(kind, tmp_path, sources)
    out_dir = tmp_path / "out"
    args = [command, bad] + (["-o", out_dir] if command == "segment" else [])
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, stdout, stderr = cli(*args)
    assert code == 2, (kind, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("covseg: error: "), stderr
    assert "Traceback" not in stderr
    assert not out_dir.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing created anywhere


def test_console_script_reports_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "covseg", "info", str(tmp_path / "none.nii")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "covseg", "--debug", "info",
                           str(tmp_path / "none.nii")], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
