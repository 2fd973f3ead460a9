"""Bounds every reader checks before it allocates: voxel counts, memory, spacing, file kinds.

A malformed header can declare a volume of terabytes or a spacing of 0 or NaN; these helpers
turn such declarations into one `InputError` line before any library allocates memory for them.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from covseg.errors import InputError

MAX_VOXELS = 2**31 - 1  # beyond any chest CT (1024 x 1024 x 2000); keeps int32 indices valid
MIN_SPACING_MM = 1e-3  # below a micrometre the header is wrong, not the scanner
MAX_SPACING_MM = 50.0  # no CT has voxels of 5 cm
MAX_PICTURE_PIXELS = 100_000_000  # a 10,000 x 10,000 slice; far larger ones are decompression bombs
MEMORY_FRACTION = 0.8  # leave room for the rest of covseg (model, masks) when judging a volume


def available_memory() -> int | None:
    """Bytes the system can still give us (MemAvailable), or None where it cannot be asked."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_volume(shape: Sequence[int], bytes_per_voxel: float, source: Path) -> int:
    """Refuse a declared shape that is empty, absurd, or would not fit in memory; return voxels.

    `bytes_per_voxel` counts every copy the reader makes (raw data, scaled, float32 result)."""
    dims = [int(d) for d in shape]
    if any(d < 1 for d in dims):
        raise InputError(f"{source}: the header declares an empty or negative image size "
                         f"{tuple(dims)}; the file is damaged, export it again")
    voxels = math.prod(dims)
    if voxels > MAX_VOXELS:
        raise InputError(f"{source}: the header declares {voxels:.3g} voxels {tuple(dims)}, more than "
                         f"any CT ({MAX_VOXELS:.3g}); the header is damaged, export the scan again")
    need = voxels * bytes_per_voxel
    free = available_memory()
    if free is not None and need > free * MEMORY_FRACTION:
        raise InputError(f"{source}: reading {tuple(dims)} voxels needs about {_gib(need)} of memory "
                         f"but only {_gib(free)} is free; use a machine with more memory or a "
                         "smaller (cropped or resampled) scan")
    return voxels


def check_spacing(spacing: Sequence[float], source: Path, what: str = "voxel spacing") -> None:
    """Refuse a spacing that is zero, negative, NaN or absurd: never guess 1 mm for it."""
    values = [float(s) for s in spacing]
    for s in values:
        if not math.isfinite(s) or s <= 0:
            raise InputError(f"{source}: the {what} {_fmt(values)} mm is not a positive number; "
                             "the header is damaged, export the scan again with its real spacing")
        if not MIN_SPACING_MM <= s <= MAX_SPACING_MM:
            raise InputError(f"{source}: the {what} {_fmt(values)} mm is outside "
                             f"{MIN_SPACING_MM:g}-{MAX_SPACING_MM:g} mm, not a CT's; the header "
                             "is damaged, export the scan again with its real spacing")


def _fmt(values: Sequence[float]) -> str:
    return " x ".join(f"{v:g}" for v in values)


def regular_file_size(path: Path, smallest: int = 1) -> int:
    """Size of a plain file; refuse devices, pipes (/dev/zero never ends) and too-short files."""
    if not path.is_file():
        raise InputError(f"{path}: not a regular file (a device, pipe or socket); give a scan file")
    size = path.stat().st_size
    if size < smallest:
        raise InputError(f"{path}: the file is only {size} bytes, too short for its format; "
                         "the file is empty or truncated, copy it again")
    return size


@contextlib.contextmanager
def quiet_python() -> Iterator[None]:
    """Python warnings and `logging` records raised while a library parses a file stay unshown:
    the file's problems reach the user as covseg's one line, or not at all."""
    disabled = logging.root.manager.disable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        try:
            yield
        finally:
            logging.disable(disabled)


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[list[str]]:
    """Hold back what C libraries (GDCM, OpenJPEG, ITK) print on file descriptor 2.

    Yields a list that receives the held-back text (to quote in a refusal); Python warnings
    and logging are silenced too (`quiet_python`), so only covseg's line remains."""
    captured: list[str] = []
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (embedded interpreter): nothing to hold back
        saved = None
    with tempfile.TemporaryFile() as sink, quiet_python():
        if saved is not None:
            os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
            sink.seek(0)
            text = sink.read(1 << 16).decode("utf-8", "replace")
            captured.extend(line.strip() for line in text.splitlines() if line.strip())
