"""Do an image and its mask share one voxel grid? Compared in patient space, not in file order.

A mask written by another tool may store its axes in another order or sign (RAS vs LPS, a
flipped z): after covseg's reading both are (z, y, x) LPS, so what must agree is the shape and
the map from a voxel index to millimetres in the patient (origin, axes, spacing).
"""
from __future__ import annotations

import numpy as np

from covseg.io.scan import Scan

ORIGIN_TOLERANCE_VOXELS = 0.1  # origins may differ by rounding, not by a voxel
AXIS_TOLERANCE = 1e-3  # relative: spacing and direction written with float32 precision


def index_to_lps(scan: Scan) -> np.ndarray | None:
    """4x4 map from a canonical voxel index (x, y, z) to LPS millimetres; None for pictures."""
    g = scan.geometry
    if g.kind == "nifti":
        from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

        file_shape = tuple(int(n) for n in g.header.get_data_shape()[:3])
        file_shape = file_shape + (1,) * (3 - len(file_shape))
        to_lps = ornt_transform(io_orientation(g.affine), axcodes2ornt(("L", "P", "S")))
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ g.affine @ inv_ornt_aff(to_lps, file_shape)
    if g.kind == "itk":
        ref = g.itk_reference
        out = np.eye(4)
        out[:3, :3] = np.asarray(ref.GetDirection(), float).reshape(3, 3) * np.asarray(ref.GetSpacing())
        out[:3, 3] = ref.GetOrigin()
        return out
    return None


def grid_mismatch(image: Scan, mask: Scan) -> str | None:
    """Why `mask` is not on `image`'s grid (shape, spacing, orientation or origin), or None."""
    if image.array.shape != mask.array.shape:
        return f"shape {mask.array.shape} (z, y, x) where the image has {image.array.shape}"
    a, b = index_to_lps(image), index_to_lps(mask)
    if a is None or b is None:
        return None  # pictures: a shared shape is all there is
    axes_a, axes_b = a[:3, :3], b[:3, :3]
    if not np.allclose(axes_a, axes_b, rtol=AXIS_TOLERANCE, atol=AXIS_TOLERANCE * np.abs(axes_a).max()):
        return (f"spacing/orientation {np.round(np.linalg.norm(axes_b, axis=0), 3).tolist()} mm "
                f"where the image has {np.round(np.linalg.norm(axes_a, axis=0), 3).tolist()} mm, "
                "or its axes point another way")
    shift = float(np.linalg.norm(a[:3, 3] - b[:3, 3]))
    if shift > ORIGIN_TOLERANCE_VOXELS * float(min(image.spacing)):
        return f"origin {shift:.2f} mm away from the image's"
    return None
