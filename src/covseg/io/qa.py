"""Input QA before any model runs: is this something covseg can measure?

Two kinds of finding, each one line saying what is wrong and what to do:
- refusals: what covseg cannot measure (not CT, not HU, a localiser, a non-axial, tilted or
  gapped series). `check_input` raises one `InputError` for them, unless an expert overrides;
  then they are kept, marked as overridden, and the report puts them first, in red.
- warnings: pictures without HU or pixel size, partial doubts; the run goes on and says so.

The checks read the voxels (any format) and, for DICOM, the headers (pydicom, no pixel data).
"""
from __future__ import annotations

import warnings as _warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covseg.errors import InputError
from covseg.io.scan import Scan

AIR_BAND_HU = (-1100.0, -850.0)  # outside air and aerated lung
SOFT_TISSUE_HU = (-100.0, 150.0)  # fat edge, water, muscle, organs
MIN_AIR_SHARE = 0.005
MIN_TISSUE_SHARE = 0.02
MAX_TILT_DEG = 1.0  # beyond this the slices are sheared: resampling them as a box is wrong
MAX_AXIAL_DEG = 10.0  # slice normal within this of the patient's head-foot axis
GAP_TOLERANCE = 0.1  # a slice step more than 10 % off the usual step is a gap or an overlap
OVERRIDE_OPTION = "--override-qa"


@dataclass(frozen=True)
class Finding:
    code: str
    message: str

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


@dataclass
class QAResult:
    """What the QA found and whether a refusal was overridden: recorded in report.json."""

    refusals: list[Finding]
    overridden: bool

    def as_dict(self) -> dict:
        return {"refusals": [f.as_dict() for f in self.refusals], "overridden": self.overridden}

    def warnings(self) -> list[str]:
        return [f"QA OVERRIDDEN: {f.message}" for f in self.refusals] if self.overridden else []


def check_input(scan: Scan, override: bool = False) -> QAResult:
    """Refuse (InputError) what covseg cannot measure, unless `override`; the findings either way."""
    found = refusals(scan)
    if found and not override:
        first = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise InputError(f"{scan.source}: {first.message}{more}; an expert can measure it anyway "
                         f"with {OVERRIDE_OPTION}")
    return QAResult(found, bool(found))


def refusals(scan: Scan) -> list[Finding]:
    """Every reason covseg cannot measure this scan, from the voxels and the DICOM headers."""
    found = _modality(scan) + _units(scan)
    if scan.format in ("dicom", "dicom-series"):
        found += dicom_findings(_dicom_files(scan.source))
    return found


def _modality(scan: Scan) -> list[Finding]:
    if scan.modality and scan.modality != "CT":
        return [Finding("modality", f"DICOM modality is {scan.modality}, not CT: covseg measures "
                        "chest CT only; give the CT series")]
    return []


def hu_evidence(array: np.ndarray) -> tuple[float, float]:
    """Shares of voxels in the air/lung band and in the soft-tissue band (a sample suffices)."""
    sample = array[:, ::2, ::2]
    air = float(np.mean((sample >= AIR_BAND_HU[0]) & (sample <= AIR_BAND_HU[1])))
    tissue = float(np.mean((sample >= SOFT_TISSUE_HU[0]) & (sample <= SOFT_TISSUE_HU[1])))
    return air, tissue


def _units(scan: Scan) -> list[Finding]:
    """A volume (or a DICOM slice) must be in HU: air near -1000 and soft tissue near 0-100."""
    if not scan.is_volume and scan.format != "dicom":
        return []  # a picture or a 2-D array: accepted with its warning
    air, tissue = hu_evidence(scan.array)
    if scan.is_hu and air >= MIN_AIR_SHARE and tissue >= MIN_TISSUE_SHARE:
        return []
    lo, hi = float(scan.array.min()), float(scan.array.max())
    return [Finding("not-hu", f"not a CT in HU: values {lo:g}..{hi:g}, {100 * air:.1f} % of voxels "
                    f"near air and {100 * tissue:.1f} % near soft tissue (a CT has both; an MR or "
                    "a rescaled image?); give the CT in Hounsfield units")]


def _dicom_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted(p for p in source.iterdir() if p.is_file())


def _headers(files: list[Path]) -> list:
    import pydicom

    out = []
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        for path in files:
            try:
                out.append(pydicom.dcmread(str(path), stop_before_pixels=True))
            except Exception:  # noqa: BLE001 - not DICOM: the series reader already chose its files
                continue
    return [ds for ds in out if ds.get("Modality", "CT") == "CT" and "Rows" in ds]


def dicom_findings(files: list[Path]) -> list[Finding]:
    """Localisers, non-axial or tilted series, missing positions and slice gaps."""
    headers = _headers(files)
    if not headers:
        return []
    found = []
    if any("LOCALIZER" in [str(v).upper() for v in ds.get("ImageType", [])] for ds in headers):
        found.append(Finding("localizer", "this is a localiser (scout) image, not a cross-section: "
                             "give the axial CT series"))
        return found
    tilt = max(abs(float(ds.get("GantryDetectorTilt", 0) or 0)) for ds in headers)
    if tilt > MAX_TILT_DEG:
        found.append(Finding("gantry-tilt", f"the series was taken with a gantry tilt of {tilt:g} "
                             "degrees: its slices are sheared; give an untilted (or resampled) series"))
    orientation = headers[0].get("ImageOrientationPatient")
    if orientation is None or len(orientation) != 6:
        return found + [Finding("orientation", "the DICOM files carry no ImageOrientationPatient: "
                                "their geometry is unknown; export the series with its geometry")]
    row, col = np.array(orientation[:3], float), np.array(orientation[3:], float)
    normal = np.cross(row, col)
    angle = float(np.degrees(np.arccos(min(1.0, abs(normal[2]) / max(np.linalg.norm(normal), 1e-9)))))
    if angle > MAX_AXIAL_DEG:
        found.append(Finding("non-axial", f"the slices are not axial (their normal is {angle:.0f} "
                             "degrees from the head-foot axis): covseg measures axial CT; give "
                             "the axial series"))
    if len(headers) > 1:
        found += _positions(headers, normal)
    return found


def _positions(headers: list, normal: np.ndarray) -> list[Finding]:
    """Slice positions along the normal: all present, distinct and evenly stepped."""
    if any(ds.get("ImagePositionPatient") is None for ds in headers):
        return [Finding("positions", "some slices carry no ImagePositionPatient: the slice order "
                        "and spacing are unknown; export the series with its geometry")]
    where = np.sort([float(np.dot(np.array(ds.ImagePositionPatient, float), normal))
                     for ds in headers])
    steps = np.diff(where)
    if (steps < 1e-3).any():
        return [Finding("positions", "two slices share one position (a duplicated or mixed "
                        "series); give a folder with one series")]
    usual = float(np.median(steps))
    off = np.abs(steps - usual) > GAP_TOLERANCE * usual
    if off.any():
        k = int(np.argmax(np.abs(steps - usual)))
        return [Finding("slice-gap", f"the slices are not evenly spaced ({steps[k]:.2f} mm between "
                        f"two slices where the series steps {usual:.2f} mm: a missing slice?); "
                        "give the complete series")]
    return []
