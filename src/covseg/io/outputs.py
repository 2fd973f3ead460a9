"""Output folders: checked (writable, room for the results) before any work, locked while
written, resumable.

A batch writes each scan into a hidden temporary folder inside the output folder and renames it
into place once complete, with a completion record in it. So an interrupted batch leaves only
hidden leftovers (removed by the next run) and finished scans that a rerun can skip.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from covseg import __version__
from covseg.errors import OutputError

LOCK_NAME = ".covseg.lock"
DONE_NAME = ".covseg-done.json"
TMP_PREFIX = ".covseg-tmp-"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def check_output_dir(out: str | Path) -> Path:
    """Refuse, before any work, a folder that is a file or cannot be created or written.

    The folder itself is not created here, so a refused or failed run leaves nothing behind.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file, not a folder; give -o a folder to write into")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot create the folder {out}: {probe} is a file; choose another "
                          "output folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "write into" if probe == out else f"create {out} in"
        raise OutputError(f"cannot {what} {probe}: permission denied; choose a folder you can "
                          "write to")
    return out


def free_bytes(out: Path) -> int:
    """Free space where `out` is or would be created (its nearest existing ancestor)."""
    probe = Path(out)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_space(out: Path, need: int) -> None:
    """Refuse, before any compute, an output folder whose disk cannot hold the results: a full
    disk found only while writing would cost the whole analysis."""
    free = free_bytes(out)
    if free < need:
        raise OutputError(f"not enough free space for the results in {out}: about "
                          f"{_mb(need)} MB needed, {_mb(free)} MB free; free some space or "
                          "choose another output folder")


def expected_bytes(voxels: int, dicom_seg: str | None = None) -> int:
    """A generous size of one scan's results, for `check_space`. Measured: real_ct's 1.4 M
    voxels gave 2.0 MB, a 300-slice 512^2 phantom (79 M voxels) 4.4 MB of report.html and a few
    MB more; compressed masks take well under a bit per voxel. A DICOM-SEG stores three
    segments a bit per voxel each (binary) or a byte each (fractional), uncompressed."""
    need = 8 * 2**20 + voxels // 8
    if dicom_seg == "binary":
        need += 3 * voxels // 8
    elif dicom_seg == "fractional":
        need += 3 * voxels
    return need


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f}"


def file_mode() -> int:
    """Mode of a new output file under the user's umask (mkstemp's 0600 would hide results)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def is_disk_full(exc: BaseException | None) -> bool:
    """An error caused by a full disk, also when a library re-raised it without its errno
    (pydicom's "With tag ... got exception: [Errno 28]")."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full(path: Path) -> OutputError:
    """The one-line refusal for a write that ran out of space."""
    return OutputError(f"no space left on the device while writing {path}; free some space or "
                       "choose another output folder (nothing was left half-written)")


@contextmanager
def batch_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on `out` for a whole batch: two writers would mix their results.

    The kernel drops the lock when the process dies, so a killed run never blocks the next one.
    """
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"another covseg run is writing into {out}; wait for it to finish "
                              "or choose another output folder") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock; the file stays (deleting it would race)


@contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder itself while one scan's results are written: a
    second run into the same folder waits, then finds the first one's files (never a mix of
    both runs' files). A lock on the directory leaves no lock file among the user's results."""
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def tmp_dir(out: Path, name: str) -> Path:
    """Where this process builds a scan's results before they are renamed into place."""
    return out / f"{TMP_PREFIX}{name}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _partial_pattern(targets: list[str]) -> re.Pattern:
    """Names `atomic_write` gives its temporary files for these targets (.lungs.nii.XXXXXXXX.nii.gz)."""
    parts = []
    for t in targets:
        p = Path(t)
        parts.append(re.escape(f".{p.stem}.") + r"[a-z0-9_]{8}" + re.escape("".join(p.suffixes) or ".tmp"))
    return re.compile("^(?:" + "|".join(parts) + ")$")


def clean_leftovers(out: Path, names: list[str], targets: list[str]) -> list[Path]:
    """Remove what an interrupted run left: temporary scan folders whose process is gone (with
    the lock held no live writer can own one) and half-written hidden files of known outputs."""
    removed = []
    partial = _partial_pattern(targets)
    for entry in out.iterdir() if out.is_dir() else []:
        if entry.name.startswith(TMP_PREFIX) and entry.is_dir():
            pid = entry.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or int(pid) == os.getpid() or not _pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        elif partial.match(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    for name in names:
        folder = out / name
        for entry in folder.iterdir() if folder.is_dir() else []:
            if partial.match(entry.name) and entry.is_file():
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def fingerprint(scan: str | Path) -> dict:
    """Size and modification time of a scan (every file of a DICOM folder): cheap, and changes
    whenever the scan is replaced, so a changed scan is redone rather than skipped."""
    path = Path(scan)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"kind": "folder", "listing_sha256": h.hexdigest()}
    st = path.stat()
    return {"kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def done_record(scan: str | Path, settings: dict, row: dict) -> dict:
    """What a finished scan's folder says about itself: which input, which settings, which result."""
    return {"scan": str(Path(scan).resolve()), "input": fingerprint(scan), "settings": settings,
            "covseg_version": __version__, "row": row}


def write_done(folder: Path, record: dict) -> None:
    """The completion record, written last: a folder without it is not finished."""
    (folder / DONE_NAME).write_text(json.dumps(record, indent=2))
    os.chmod(folder / DONE_NAME, file_mode())


def finished_row(folder: Path, scan: str | Path, settings: dict) -> dict | None:
    """The recorded result if `folder` holds a finished run of this very scan and settings."""
    try:
        record = json.loads((folder / DONE_NAME).read_text())
        same = (record["scan"] == str(Path(scan).resolve()) and record["input"] == fingerprint(scan)
                and record["settings"] == settings and record["covseg_version"] == __version__)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dict(record["row"]) if same else None


def move_into_place(tmp: Path, final: Path) -> None:
    """Replace `final` by the finished `tmp`: the old one is set aside first, then removed, so a
    crash in between leaves either the old or the new folder (and a hidden leftover), never a mix."""
    if final.exists():
        trash = final.parent / f"{TMP_PREFIX}{final.name}-old-{os.getpid()}"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
