"""Writing results back in the source's geometry, atomically, never over a user's file.

A label map in covseg's (z, y, x) order goes back to the source's own voxel grid: NIfTI sources
get a NIfTI with their affine and header, DICOM sources a NIfTI with the series' physical
geometry, 2-D sources a PNG (a stack of 2-D slices: .npy). Every file is written to a temporary
name beside its target and renamed into place, so a crash leaves no half-written file.
"""
from __future__ import annotations

import csv
import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from covseg.errors import OutputError, OutputExistsError
from covseg.io.outputs import disk_full, file_mode, is_disk_full
from covseg.io.scan import Scan


def check_writable(path: str | Path, force: bool) -> Path:
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists; choose another output or pass --force "
                                "to replace it")
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None], force: bool = False) -> Path:
    """Call `write(tmp)` on a temporary file next to `path`, then rename it into place."""
    path = check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # mkstemp made it 0600; results follow the user's umask
        os.replace(tmp, path)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(path) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_csv(path: str | Path, rows: list[dict], fields: list[str] | tuple[str, ...],
              force: bool = False) -> Path:
    """A table with a header row, written atomically; keys missing from a row stay empty."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(fields))
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write, force)


def mask_suffix(scan: Scan) -> str:
    """File ending for a result of this scan: NIfTI for volumes with geometry, else PNG/.npy."""
    if scan.geometry.kind in ("nifti", "itk"):
        return ".nii.gz"
    return ".png" if scan.array.shape[0] == 1 else ".npy"


def write_mask(scan: Scan, labels: np.ndarray, path: str | Path, force: bool = False) -> Path:
    """Write a (z, y, x) label map so it overlays `scan`'s source voxel for voxel."""
    labels = np.asarray(labels, dtype=np.uint8)
    if labels.shape != scan.array.shape:
        raise ValueError(f"label map {labels.shape} does not match the scan {scan.array.shape}")
    kind = scan.geometry.kind
    if kind == "nifti":
        return atomic_write(path, lambda tmp: _write_nifti(scan, labels, tmp), force)
    if kind == "itk":
        return atomic_write(path, lambda tmp: _write_itk(scan, labels, tmp), force)
    if labels.shape[0] == 1:
        return atomic_write(path, lambda tmp: _write_png(labels[0], tmp), force)
    return atomic_write(path, lambda tmp: np.save(tmp, labels), force)


def _write_nifti(scan: Scan, labels: np.ndarray, tmp: Path) -> None:
    import nibabel as nib
    from nibabel.orientations import apply_orientation

    g = scan.geometry
    data = apply_orientation(np.transpose(labels, (2, 1, 0)), g.to_source)
    header = g.header.copy()
    header.set_data_dtype(np.uint8)
    img = nib.Nifti1Image(data, g.affine, header)
    img.header.set_slope_inter(1, 0)
    nib.save(img, str(tmp))


def _write_itk(scan: Scan, labels: np.ndarray, tmp: Path) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(labels)
    img.CopyInformation(scan.geometry.itk_reference)
    img = sitk.DICOMOrient(img, scan.geometry.source_orientation)
    try:
        sitk.WriteImage(img, str(tmp), useCompression=True)
    except RuntimeError as exc:  # ITK names no errno: a full disk is told by the space left
        if shutil.disk_usage(tmp.parent).free < labels.nbytes:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp)) from None
        raise OutputError(f"could not write a mask into {tmp.parent}: "
                          f"{str(exc).strip().splitlines()[-1]}; check the output folder") from None


def _write_png(plane: np.ndarray, tmp: Path) -> None:
    from PIL import Image
    Image.fromarray(plane).save(tmp, format="PNG")
