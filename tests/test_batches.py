"""Outputs and batches: checked before work, umask, full disk, resumable, isolated, locked."""
from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from covseg.errors import OutputError
from covseg.io import atomic_write
from covseg.io.outputs import DONE_NAME, LOCK_NAME, TMP_PREFIX, batch_lock

SCANS = 5


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> list[Path]:
    """Small synthetic chest CTs, each a little different (seconds a scan, not minutes)."""
    from covseg import make_phantom
    from covseg.demo import save_phantom

    folder = tmp_path_factory.mktemp("scans")
    return [save_phantom(make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6), seed=k),
                         folder / f"scan{k}.nii.gz") for k in range(SCANS)]


def _segment_cmd(scans: list[Path], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "covseg", "segment", *map(str, scans), "-o", str(out), *extra]


def _run(scans: list[Path], out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_segment_cmd(scans, out, *extra), capture_output=True, text=True,
                          timeout=600)


def _summary(out: Path) -> list[dict]:
    import csv

    with open(out / "summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {n: np.asarray(nib.load(folder / n).dataobj) for n in ("lesions.nii.gz", "lungs.nii.gz")}


def _leftovers(out: Path) -> list[Path]:
    """Hidden files and folders a finished batch must not hold (its lock file and records aside)."""
    keep = {LOCK_NAME, DONE_NAME}
    return [p for p in out.rglob(".*") if p.name not in keep]


@pytest.fixture(scope="module")
def reference(scans, tmp_path_factory) -> Path:
    """An uninterrupted batch of all scans."""
    out = tmp_path_factory.mktemp("reference") / "out"
    done = _run(scans, out)
    assert done.returncode == 0, done.stderr
    return out


def test_a_killed_batch_resumes_to_the_same_results(scans, reference, tmp_path):
    out = tmp_path / "out"
    child = subprocess.Popen(_segment_cmd(scans, out), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "scan0").is_dir() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    finished = {p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert "scan0" in finished and len(finished) < SCANS, finished
    stamps = {n: (out / n / "lesions.nii.gz").stat().st_mtime_ns for n in finished}
    # what else an interrupted run can leave: a half-written file, a dead run's folder
    (out / "scan0" / ".lungs.nii.ab12cd_3.nii.gz").write_bytes(b"half")
    (out / f"{TMP_PREFIX}scan9-{child.pid}").mkdir(exist_ok=True)

    done = _run(scans, out)
    assert done.returncode == 0, done.stderr
    assert _leftovers(out) == []
    rows = {Path(r["scan"]).name: r for r in _summary(out)}
    for k, scan in enumerate(scans):
        name = f"scan{k}"
        row = rows[scan.name]
        assert row["status"] == "ok"
        assert ("skipped" in row["message"]) == (name in finished), row
        assert all(np.array_equal(a, b) for a, b in
                   zip(_masks(out / name).values(), _masks(reference / name).values())), name
    for name, stamp in stamps.items():
        assert (out / name / "lesions.nii.gz").stat().st_mtime_ns == stamp  # not redone


def test_rerun_skips_and_force_redoes(scans, reference, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(reference, out)
    done = _run(scans[:2], out)
    assert done.returncode == 0 and done.stdout.count("skipped") == 2, done.stdout
    done = _run(scans[:2], out, "--force")
    assert done.returncode == 0 and "skipped" not in done.stdout, done.stdout
    assert all(not r["message"] for r in _summary(out))


def test_a_changed_scan_is_redone(scans, tmp_path):
    import shutil

    pair = [tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"]
    for src, dest in zip(scans, pair):
        shutil.copy(src, dest)
    out = tmp_path / "out"
    assert _run(pair, out).returncode == 0
    shutil.copy(scans[2], pair[1])  # b is another scan now
    done = _run(pair, out)
    assert done.returncode == 0
    rows = _summary(out)
    assert "skipped" in rows[0]["message"] and not rows[1]["message"], rows
    record = json.loads((out / "b" / DONE_NAME).read_text())
    assert record["input"]["size"] == pair[1].stat().st_size


def test_a_failure_of_any_kind_is_a_row(scans, tmp_path, monkeypatch, capsys):
    from covseg import pipeline

    real = pipeline.segment
    faults = {"scan1": RuntimeError("a library broke"), "scan2": MemoryError()}

    def flaky(path, *args, **kwargs):
        fault = faults.get(pipeline.scan_name(Path(path)))
        if fault is not None:
            raise fault
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "segment", flaky)
    out = tmp_path / "out"
    rows = pipeline.segment_many(scans[:4], out, progress=False)
    assert [r["status"] for r in rows] == ["ok", "failed", "failed", "ok"]
    assert "RuntimeError: a library broke" in rows[1]["message"]
    assert "MemoryError" in rows[2]["message"]
    assert "Traceback" not in capsys.readouterr().err  # only with --debug
    assert not (out / "scan1").exists() and _leftovers(out) == []
    assert len(_summary(out)) == 4


def test_a_second_writer_is_kept_out(scans, tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    with batch_lock(out):
        code, _, err = cli("segment", scans[0], scans[1], "-o", out)
    assert code == 2 and "another covseg run is writing into" in err and err.count("\n") == 1
    assert list(out.iterdir()) == [out / LOCK_NAME]


@pytest.mark.parametrize("case", ["file", "under_a_file", "not_writable"])
def test_outputs_are_checked_before_any_work(scans, tmp_path, cli, monkeypatch, case):
    import covseg.io.outputs as outputs

    target = tmp_path / "taken"
    target.write_text("mine")
    out = {"file": target, "under_a_file": target / "sub", "not_writable": tmp_path / "new"}[case]
    if case == "not_writable":
        monkeypatch.setattr(outputs.os, "access", lambda path, mode: False)  # root writes anywhere
    for args in ([scans[0]], scans[:2]):
        code, _, err = cli("segment", *args, "-o", out)
        assert code == 2 and err.count("\n") == 1, err
        assert "torch" not in err
    assert target.read_text() == "mine" and not (tmp_path / "new").exists()


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "r.json", lambda tmp: tmp.write_text("{}"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_full_disk_is_one_line_and_leaves_nothing(scans, tmp_path, cli, monkeypatch):
    import covseg.io.writers as writers

    real, calls = writers._write_nifti, []

    def second_write_fails(scan, labels, tmp):
        calls.append(tmp)
        if len(calls) == 2:  # the lesion mask is written, the lung mask hits a full disk
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(scan, labels, tmp)

    monkeypatch.setattr(writers, "_write_nifti", second_write_fails)
    out = tmp_path / "out"
    code, _, err = cli("segment", scans[0], "-o", out)
    assert code == 2 and "no space left" in err and err.count("\n") == 1, err
    assert not out.exists()
    with pytest.raises(OutputError):
        atomic_write(tmp_path / "x.csv", lambda tmp: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    assert list(tmp_path.glob(".x*")) == []


def test_a_batch_exit_code_tells_the_users_problems_from_covsegs(scans, tmp_path, cli,
                                                                 monkeypatch):
    from covseg import pipeline

    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti")
    code, out, _ = cli("segment", scans[0], bad, "-o", tmp_path / "refused")
    assert code == 2 and "broken.nii.gz: refused:" in out, out
    assert [r["status"] for r in _summary(tmp_path / "refused")] == ["ok", "refused"]

    real = pipeline.segment

    def bug(path, *args, **kwargs):
        if Path(path).name == "scan1.nii.gz":
            raise ZeroDivisionError("a covseg bug")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "segment", bug)
    code, out, _ = cli("segment", scans[0], scans[1], bad, "-o", tmp_path / "failed")
    assert code == 1 and "scan1.nii.gz: failed: internal error: ZeroDivisionError" in out, out
    assert [r["status"] for r in _summary(tmp_path / "failed")] == ["ok", "failed", "refused"]


def _no_compute(monkeypatch):
    from covseg import pipeline

    def never(*args, **kwargs):
        raise AssertionError("the lesion model ran although the output was refused")

    monkeypatch.setattr(pipeline, "_find_lesions", never)


def test_free_space_is_checked_before_any_compute(scans, tmp_path, cli, monkeypatch):
    import shutil

    from covseg.io import outputs

    real = shutil.disk_usage
    monkeypatch.setattr(outputs.shutil, "disk_usage",
                        lambda path: real(path)._replace(free=3 * 2**20))
    _no_compute(monkeypatch)
    out = tmp_path / "out"
    code, _, err = cli("segment", scans[0], "-o", out)
    assert code == 2 and err.count("\n") == 1, err
    assert "not enough free space for the results" in err and "MB free" in err
    assert not out.exists()
    code, stdout, _ = cli("segment", scans[0], scans[1], "-o", out)  # each scan of a batch
    assert code == 2 and stdout.count("refused: not enough free space") == 2, stdout
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, "summary.csv"]


def test_expected_size_is_generous_for_what_covseg_writes(scans, tmp_path, cli):
    from covseg.io.outputs import expected_bytes

    out = tmp_path / "out"
    assert cli("segment", scans[0], "-o", out)[0] == 0
    written = sum(p.stat().st_size for p in out.iterdir())
    voxels = int(np.prod(nib.load(scans[0]).shape))
    assert written < expected_bytes(voxels) < written + 16 * 2**20
    assert expected_bytes(voxels, "fractional") > expected_bytes(voxels, "binary") \
        > expected_bytes(voxels)


def _dicom_chest(tmp_path: Path) -> Path:
    from builders import write_dicom_series

    from covseg import make_phantom

    phantom = make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6), seed=7)
    return write_dicom_series(phantom.hu, (6.0, 3.6, 3.6), tmp_path / "series")


def test_a_full_disk_under_a_dicom_source_is_one_line(tmp_path, cli, monkeypatch):
    """SimpleITK says only 'could not write': covseg tells a full disk by the space left."""
    import shutil

    import SimpleITK as sitk

    from covseg import pipeline
    from covseg.io import writers

    series = _dicom_chest(tmp_path)
    monkeypatch.setattr(pipeline, "check_space", lambda out, need: None)  # pass the pre-check

    def fail(*args, **kwargs):
        raise RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute: could not "
                           "write")

    monkeypatch.setattr(sitk, "WriteImage", fail)
    real = shutil.disk_usage
    monkeypatch.setattr(writers.shutil, "disk_usage", lambda path: real(path)._replace(free=0))
    out = tmp_path / "out"
    code, _, err = cli("segment", series, "-o", out)
    assert code == 2 and "no space left on the device" in err and err.count("\n") == 1, err
    assert not out.exists()
    monkeypatch.setattr(writers.shutil, "disk_usage", real)  # room, yet ITK fails: still one line
    code, _, err = cli("segment", series, "-o", out)
    assert code == 2 and "could not write a mask into" in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB file system (tmpfs), where this machine lets the tests mount one."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'}); the "
                    "monkeypatched full-disk tests above cover the same paths")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_full_disk(tiny_disk, tmp_path, cli, monkeypatch):
    """On a real 1 MiB disk: refused before compute; and with the pre-check passed, the full
    disk met while writing a DICOM source's masks is one line and leaves nothing."""
    from covseg import pipeline

    series = _dicom_chest(tmp_path)
    (tiny_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 64 * 1024))
    out = tiny_disk / "out"
    code, _, err = cli("segment", series, "-o", out)
    assert code == 2 and "not enough free space for the results" in err, err
    monkeypatch.setattr(pipeline, "check_space", lambda out, need: None)
    code, _, err = cli("segment", series, "-o", out)
    assert code == 2 and "no space left on the device" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]


def test_a_second_run_into_one_folder_waits_and_never_mixes_files(scans, tmp_path, monkeypatch):
    """Held by another run while this one's results are ready, the folder is waited for; then
    this run finds the other's files and refuses, instead of mixing the two runs' files."""
    import fcntl
    import threading

    from covseg.errors import OutputExistsError
    from covseg import pipeline

    out = tmp_path / "out"
    out.mkdir()
    real, reached, outcome = pipeline.folder_lock, threading.Event(), {}
    monkeypatch.setattr(pipeline, "folder_lock", lambda folder: (reached.set(), real(folder))[1])

    def run():
        try:
            pipeline.segment(scans[0], out)
        except OutputExistsError as exc:
            outcome["refused"] = str(exc)

    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # "another run" holds the folder
    worker = threading.Thread(target=run)
    worker.start()
    assert reached.wait(120)
    time.sleep(0.5)
    assert worker.is_alive() and list(out.iterdir()) == []  # waiting, nothing written
    (out / "lesions.nii.gz").write_bytes(b"the other run's")
    os.close(fd)
    worker.join(60)
    assert "already holds lesions.nii.gz" in outcome["refused"]
    assert [p.name for p in out.iterdir()] == ["lesions.nii.gz"]
    assert (out / "lesions.nii.gz").read_bytes() == b"the other run's"
