"""What a scan is, and whether it looks like a chest CT in HU: the facts behind `covseg info`."""
from __future__ import annotations

import numpy as np

from covseg.io.qa import refusals
from covseg.io.scan import Scan

LUNG_HU = (-950.0, -600.0)  # aerated lung parenchyma
MIN_LUNG_FRACTION = 0.005


def orientation_code(scan: Scan) -> str:
    """The source's axis codes (e.g. RAS), or 'picture' for 2-D sources without geometry."""
    g = scan.geometry
    if g.kind == "nifti":
        import nibabel as nib
        return "".join(nib.aff2axcodes(g.affine))
    if g.kind == "itk":
        return g.source_orientation or "?"
    return "picture (no patient orientation)"


def chest_ct_warnings(scan: Scan) -> list[str]:
    """Plain-language doubts about a scan that covseg still measures (the refusals are `qa`'s)."""
    warnings = list(scan.notes)
    a = scan.array
    if not scan.is_hu:
        if float(a.min()) >= 0 and float(a.max()) <= 255:
            warnings.append("8-bit picture, not HU: results are approximate; give the NIfTI/DICOM "
                            "scan for volumes in mL")
        elif not scan.is_volume:  # a volume not in HU is refused by the QA, which says why
            warnings.append("values never reach air (about -1000 HU): not a CT in HU (an MR "
                            "image or a rescaled one?)")
        return warnings
    every_other = a[:, ::2, ::2]  # a quarter of the pixels is plenty for a fraction, 4x less memory
    lung_fraction = float(np.mean((every_other >= LUNG_HU[0]) & (every_other <= LUNG_HU[1])))
    if lung_fraction < MIN_LUNG_FRACTION:
        warnings.append(f"only {100 * lung_fraction:.2f}% of voxels have lung density "
                        f"({LUNG_HU[0]:.0f}..{LUNG_HU[1]:.0f} HU): the scan may not cover the chest")
    if not scan.spacing_known:
        warnings.append("voxel spacing unknown: volumes are reported in voxels, not mL")
    return warnings


def describe(scan: Scan) -> dict:
    """A JSON-ready summary of the scan."""
    a = scan.array
    return {
        "source": str(scan.source),
        "format": scan.format,
        "shape_zyx": list(a.shape),
        "spacing_mm_zyx": [round(s, 4) for s in scan.spacing] if scan.spacing_known else None,
        "orientation": orientation_code(scan),
        "intensity": scan.intensity.value,
        "modality": scan.modality,
        "range": [float(a.min()), float(a.max())],
        "warnings": [f.message for f in refusals(scan)] + chest_ct_warnings(scan),
    }
