"""`covseg demo`: a synthetic chest CT built in code, segmented and reported, fully offline."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from covseg.demo.phantom import Phantom, make_phantom
from covseg.io import atomic_write

PHANTOM_NAME = "phantom_ct.nii.gz"
PHANTOM_DICOM = "phantom_ct"  # the series' folder


def save_phantom(phantom: Phantom, path: str | Path, force: bool = False) -> Path:
    """Write the phantom as a NIfTI in LPS voxel order with the matching (RAS) affine."""
    import nibabel as nib

    dz, dy, dx = phantom.spacing
    affine = np.diag([-dx, -dy, dz, 1.0])  # x toward the patient's left, y posterior, z up
    img = nib.Nifti1Image(np.transpose(phantom.hu, (2, 1, 0)).astype(np.int16), affine)
    img.header.set_xyzt_units("mm")
    return atomic_write(path, lambda tmp: nib.save(img, str(tmp)), force)


def run_demo(output: str | Path = "covseg-demo", force: bool = False, quiet: bool = False,
             dicom: bool = False):
    """Build the phantom, segment it into `output`, print the findings against the truth.

    `dicom`: hand it over as a DICOM CT series (output/phantom_ct/), as a PACS would, so the
    results include the DICOM Segmentation lesions.seg.dcm.
    """
    from covseg.pipeline import check_outputs, output_names, segment

    out = Path(output)
    ct_path = out / (PHANTOM_DICOM if dicom else PHANTOM_NAME)
    results = [*output_names(".nii.gz").values(), *(["lesions.seg.dcm"] if dicom else [])]
    check_outputs(out, [ct_path.name, *results], force)
    phantom = make_phantom()
    if dicom:
        from covseg.demo.dicom import write_dicom_series

        shutil.rmtree(ct_path, ignore_errors=True)  # only with --force: checked just above
        write_dicom_series(phantom.hu, phantom.spacing, ct_path)
    else:
        save_phantom(phantom, ct_path, force=force)
    result = segment(ct_path, out, force=force)
    q = result.quantification
    if not quiet:
        print(f"synthetic chest CT: {ct_path}")
        print(f"lungs {q.lung_ml:.0f} mL (truth {phantom.lung_volume_ml:.0f}), lesions "
              f"{q.lesion_ml:.0f} mL (truth {phantom.lesion_volume_ml:.0f}), involvement "
              f"{q.involvement_percent:.1f} % (truth {phantom.involvement_percent:.1f} %), "
              f"grade {q.severity.grade}")
        print(f"report: {result.files['html']}")
    return result, phantom


__all__ = ["make_phantom", "run_demo", "save_phantom"]
