"""A (z, y, x) HU volume as a DICOM CT series, written with pydicom: the demo's phantom as a
user's PACS would hand it over (so DICOM-SEG output can be tried offline), and the series the
tests and the red-team build their DICOM cases from."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_dicom_series(volume: np.ndarray, spacing: tuple[float, float, float], folder: Path,
                       modality: str = "CT", orientation: tuple = (1, 0, 0, 0, 1, 0),
                       positions: list[float] | None = None, series_uid: str | None = None,
                       study_uid: str | None = None, frame_uid: str | None = None,
                       start: int = 0, patient_id: str = "PHANTOM", **tags) -> Path:
    """Write a (z, y, x) HU volume (covseg's LPS order, z from feet to head) as one series of
    explicit-little-endian slices, `start`-numbered files in `folder`.

    `positions` overrides the slices' z positions (mm), to make gaps; the UIDs, when given,
    join several series into one study or frame of reference; `tags` are set on every slice
    (e.g. GantryDetectorTilt=15, ImageType=[...]).
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study, series = study_uid or generate_uid(), series_uid or generate_uid()
    frame = frame_uid or generate_uid()
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
        ds.PatientID, ds.PatientName = patient_id, f"{patient_id.title()}^Demo"
        ds.Modality = modality
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = start + k + 1
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
        ds.save_as(folder / f"{start + k:04d}.dcm", enforce_file_format=True)
    return folder
