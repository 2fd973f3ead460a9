"""Inputs built in code for the tests (DICOM series: covseg.demo.dicom, which the demo and the
red-team use too)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from covseg.demo.dicom import write_dicom_series  # noqa: F401 - the tests' one DICOM writer


def real_ct_hu(real_ct: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """real_ct/example_ct.nii.gz in covseg's (z, y, x) order, and its spacing."""
    from covseg.io import read_scan

    scan = read_scan(real_ct / "example_ct.nii.gz")
    return scan.array, scan.spacing


ABDOMEN_SLICES = slice(0, 90)  # real_ct's lungs start at slice 100: below lies abdomen and pelvis


def write_nifti(array: np.ndarray, spacing: tuple[float, float, float], path: Path,
                origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Path:
    """Write a (z, y, x) LPS array as NIfTI with the matching RAS affine (as covseg.demo does)."""
    import nibabel as nib

    dz, dy, dx = spacing
    affine = np.diag([-dx, -dy, dz, 1.0])
    affine[:3, 3] = origin_mm
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.int16 if np.issubdtype(array.dtype, np.floating) else np.uint8
    nib.save(nib.Nifti1Image(np.transpose(array, (2, 1, 0)).astype(dtype), affine), str(path))
    return path


PHANTOM_SHAPE, PHANTOM_SPACING = (20, 96, 96), (6.0, 3.5, 3.5)


def phantoms(n: int) -> list:
    """`n` small phantom patients (different seeds: lesions differ)."""
    from covseg.demo.phantom import make_phantom

    return [make_phantom(PHANTOM_SHAPE, PHANTOM_SPACING, seed=k) for k in range(n)]


def write_mosmed(root: Path, n: int = 4, unlabelled: int = 0) -> Path:
    """MosMedData's layout: studies/CT-1/study_XXXX.nii.gz and masks/study_XXXX_mask.nii.gz
    (binary lesion masks, no lungs); `unlabelled` more studies without masks in studies/CT-0."""
    for k, ph in enumerate(phantoms(n + unlabelled)):
        folder = "CT-1" if k < n else "CT-0"
        write_nifti(ph.hu, ph.spacing, root / "studies" / folder / f"study_{k:04d}.nii.gz")
        if k < n:
            mask = root / "masks" / f"study_{k:04d}_mask.nii.gz"
            write_nifti(ph.lesions.astype(np.uint8), ph.spacing, mask)
    return root
