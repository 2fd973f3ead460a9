"""DICOM Segmentation objects for DICOM inputs: results a PACS or a DICOM viewer shows over the scan.

A hospital reads results where its scans live, and those systems speak DICOM, not NIfTI. For a
DICOM input covseg writes `lesions.seg.dcm`, one Segmentation (highdicom) that references the
source series by its UIDs and holds three coded segments: the abnormal lung, the right lung and
the left lung. Its frames are the same voxels as lesions.nii.gz / lungs.nii.gz, slice by slice
of the source files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from covseg import __version__
from covseg.errors import InputError
from covseg.io.scan import Scan
from covseg.labels import ABNORMAL, LEFT, RIGHT

FORMATS = ("nifti", "dicom-seg")
SEG_TYPES = ("binary", "fractional")
SEG_NAME = "lesions.seg.dcm"
DICOM_FORMATS = ("dicom-series", "dicom")

# SNOMED CT codes, as DICOM's CID 7150 (categories) and CID 7151/7159 (types) use them
_SEGMENTS = (
    ("abnormal lung (COVID-19 lesion)", ("49755003", "Morphologically Altered Structure"),
     ("52988006", "Lesion")),
    ("right lung", ("91723000", "Anatomical Structure"), ("3341006", "Right lung")),
    ("left lung", ("91723000", "Anatomical Structure"), ("44029006", "Left lung")),
)


def parse_formats(text: str | None) -> tuple[str, ...] | None:
    """'nifti,dicom-seg' -> ('nifti', 'dicom-seg'); None stays None (the input decides)."""
    if text is None:
        return None
    chosen = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    unknown = [t for t in chosen if t not in FORMATS]
    if unknown or not chosen:
        raise InputError(f"--format {text!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    return chosen


def _frames_in_file(path: Path) -> int:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return int(getattr(ds, "NumberOfFrames", 1) or 1)


def dicom_seg_obstacle(scan: Scan) -> str | None:
    """Why no DICOM-SEG can be made for this scan, or None when one can.

    A SEG references single-frame source images that share a frame of reference; anything
    else (NIfTI, pictures, multi-frame files, anonymised slices stripped of FrameOfReferenceUID)
    has nothing a viewer could lay it over.
    """
    if scan.format not in DICOM_FORMATS or scan.geometry.kind != "itk":
        return f"a {scan.format} input has no DICOM images to reference"
    if scan.format == "dicom" and _frames_in_file(scan.source) != 1:
        return "a multi-frame DICOM file is not supported"
    try:
        sources = source_datasets(scan)
    except InputError as exc:
        return str(exc).split(": ", 1)[-1]
    if any(not str(getattr(ds, "FrameOfReferenceUID", "") or "") for ds in sources):
        return "its images have no FrameOfReferenceUID, which a DICOM-SEG must share with them"
    return None


def choose_formats(scan: Scan, formats: tuple[str, ...] | None) -> tuple[str, ...]:
    """The outputs for this scan: by default NIfTI, plus DICOM-SEG where one can be made.

    Asked for a DICOM-SEG that cannot be made, it refuses before any work, saying why.
    """
    if formats is None:
        return FORMATS if dicom_seg_obstacle(scan) is None else ("nifti",)
    if "dicom-seg" in formats:
        why = dicom_seg_obstacle(scan)
        if why is not None:
            raise InputError(f"{scan.source}: --format dicom-seg cannot be written: {why}; use "
                             "--format nifti")
    return formats


def select_outputs(names: dict[str, str], formats: tuple[str, ...]) -> dict[str, str]:
    """Output file names for the chosen formats: masks only with nifti, the SEG with dicom-seg."""
    chosen = dict(names)
    if "nifti" not in formats:
        chosen.pop("labels", None)
        chosen.pop("lungs", None)
    if "dicom-seg" in formats:
        chosen["seg"] = SEG_NAME
    return chosen


def source_datasets(scan: Scan) -> list:
    """The source images' headers (pydicom), one per slice: of the series the reader took."""
    import pydicom

    if scan.format == "dicom":
        return [_with_type2(pydicom.dcmread(scan.source, stop_before_pixels=True))]
    from covseg.io.readers import _dicom_candidates

    by_series: dict[str, list] = {}
    for path in _dicom_candidates(scan.source):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        by_series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    groups = list(by_series.values())
    if len(groups) > 1:
        groups = [g for g in groups if getattr(g[0], "Modality", None) in (None, "CT")]
    groups = [g for g in groups if len(g) == scan.array.shape[0]]
    if len(groups) != 1:
        raise InputError(f"{scan.source}: cannot tell which DICOM series the scan was read from, "
                         "so the DICOM-SEG cannot reference it; put one series in the folder")
    return [_with_type2(ds) for ds in groups[0]]


# Patient and study attributes a SEG copies from its source (type 2: present, may be empty);
# anonymised exports often drop them, so they are added empty to covseg's in-memory copies
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "StudyID", "AccessionNumber", "ReferringPhysicianName")


def _with_type2(ds):
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def _source_order_image(scan: Scan, volume: np.ndarray):
    """A (z, y, x) map of ours as an ITK image in the source files' own row/column order."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(volume)
    image.CopyInformation(scan.geometry.itk_reference)
    return sitk.DICOMOrient(image, scan.geometry.source_orientation)


def frames_for_sources(scan: Scan, volume: np.ndarray, sources: list) -> np.ndarray:
    """`volume`'s plane under each source image, in `sources`' order: found by its position.

    Matching by ImagePositionPatient (not by file order or InstanceNumber) is what makes the
    SEG's frames land on the right slices whatever order the files were listed or numbered in.
    """
    import SimpleITK as sitk

    image = _source_order_image(scan, volume)
    planes = sitk.GetArrayFromImage(image)
    out = np.empty((len(sources), *planes.shape[1:]), dtype=planes.dtype)
    for n, ds in enumerate(sources):
        i, j, k = image.TransformPhysicalPointToContinuousIndex([float(v) for v in
                                                                 ds.ImagePositionPatient])
        kk = int(round(k))
        if abs(i) > 0.01 or abs(j) > 0.01 or abs(k - kk) > 0.01 or not 0 <= kk < planes.shape[0]:
            raise InputError(f"{scan.source}: image {ds.SOPInstanceUID} is not one of the scan's "
                             "planes as read; the DICOM-SEG cannot be matched to the series")
        if (int(ds.Rows), int(ds.Columns)) != planes.shape[1:]:
            raise InputError(f"{scan.source}: image {ds.SOPInstanceUID} is {ds.Rows} x {ds.Columns}"
                             f" pixels where the scan's planes are {planes.shape[1:]}")
        out[n] = planes[kk]
    return out


def _segment_descriptions(model: dict) -> list:
    """The three segments, coded (SNOMED CT), each naming the algorithm that made it."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    params = {"weights_sha256": str(model.get("weights_sha256") or "unknown"),
              "backend": str(model.get("backend") or "unknown")}
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"covseg {model.get('name') or 'custom'}", family=codes.cid7162.ArtificialIntelligence,
        version=__version__, source="covseg", parameters=params)
    out = []
    for number, (label, category, kind) in enumerate(_SEGMENTS, start=1):
        out.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=label,
            segmented_property_category=hd.sr.CodedConcept(category[0], "SCT", category[1]),
            segmented_property_type=hd.sr.CodedConcept(kind[0], "SCT", kind[1]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=[codes.SCT.Lung] if number == 1 else None))
    return out


def segment_stack(labels: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """(z, y, x, 3) bool: abnormal lung, right lung, left lung, in the segments' order."""
    return np.stack([labels == ABNORMAL, lungs == RIGHT, lungs == LEFT], axis=-1)


def build_dicom_seg(scan: Scan, labels: np.ndarray, lungs: np.ndarray, model: dict,
                    seg_type: str = "binary"):
    """The Segmentation dataset for a DICOM scan's results (not yet written)."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    if seg_type not in SEG_TYPES:
        raise InputError(f"--seg-type {seg_type!r}: choose binary or fractional")
    sources = source_datasets(scan)
    masks = segment_stack(labels, lungs).view(np.uint8)
    frames = _segment_frames(scan, masks, sources)
    pixels = frames.astype(np.float32) if seg_type == "fractional" else frames.astype(bool)
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=seg_type.upper(),
        segment_descriptions=_segment_descriptions(model), series_instance_uid=generate_uid(),
        series_number=9901, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="covseg", manufacturer_model_name=f"covseg {model.get('name') or 'custom'}",
        software_versions=__version__, device_serial_number="none",
        content_description="COVID-19 lung lesions and lungs found by covseg",
        content_label="COVSEG", omit_empty_frames=False)


def _segment_frames(scan: Scan, masks: np.ndarray, sources: list) -> np.ndarray:
    """(sources, rows, columns, 3) of each segment's plane under each source image."""
    return np.stack([frames_for_sources(scan, np.ascontiguousarray(masks[..., s]), sources)
                     for s in range(masks.shape[-1])], axis=-1)


def write_dicom_seg(scan: Scan, labels: np.ndarray, lungs: np.ndarray, model: dict,
                    path: str | Path, seg_type: str = "binary", force: bool = False) -> Path:
    """Build and write lesions.seg.dcm atomically, like every other covseg output."""
    from covseg.io.writers import atomic_write

    seg = build_dicom_seg(scan, labels, lungs, model, seg_type)
    return atomic_write(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True), force)


def report_dict(report) -> dict:
    """A report as a dict, whether it is the typed Report (to_dict) or a plain dict."""
    return report.to_dict() if hasattr(report, "to_dict") else dict(report)


def write_result_seg(result, path: str | Path, seg_type: str = "binary",
                     force: bool = False) -> Path:
    """lesions.seg.dcm for a SegmentationResult, its algorithm named from the report's model."""
    model = report_dict(result.report).get("model") or {}
    return write_dicom_seg(result.scan, result.labels, result.lungs, model, path, seg_type, force)
