"""Inputs built in code for the tests: DICOM series written with pydicom from any HU volume."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_dicom_series(volume: np.ndarray, spacing: tuple[float, float, float], folder: Path,
                       modality: str = "CT", orientation=(1, 0, 0, 0, 1, 0),
                       positions: list[float] | None = None, **tags) -> Path:
    """Write a (z, y, x) HU volume (covseg's LPS order, z from feet to head) as one DICOM series.

    `positions` overrides the slices' z positions (mm) to make gaps; `tags` are set on every
    slice (e.g. GantryDetectorTilt=15, ImageType=[...]).
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    dz, dy, dx = spacing
    zs = positions if positions is not None else [k * dz for k in range(volume.shape[0])]
    normal = np.cross(np.array(orientation[:3], float), np.array(orientation[3:], float))
    for k, plane in enumerate(volume):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName = "TEST", "Test^Patient"
        ds.Modality = modality
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in normal * float(zs[k])]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = [float(dy), float(dx)]
        ds.SliceThickness = float(dz)
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.PixelData = np.ascontiguousarray(plane, dtype=np.int16).tobytes()
        ds.save_as(folder / f"{k:04d}.dcm", enforce_file_format=True)
    return folder


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
