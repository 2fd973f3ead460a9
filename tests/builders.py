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
