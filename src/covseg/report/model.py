"""The report of one scan as typed values: built once by the pipeline, read by every writer.

report.json is `Report.to_dict()` and `Report.from_dict()` reads it back (for `covseg compare`
and other readers of earlier results), so writers name fields, not string paths, and a field
that changes changes here, in one place. The layout is checked by report.schema.json beside this
file; `SCHEMA_VERSION` goes up when a reader of an older file would misread a newer one.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from importlib import resources
from typing import Any, TypeVar

SCHEMA_VERSION = 1
NO_DENSITY_NOTE = "no HU in a picture: density is not measured and lesions are not gated"

T = TypeVar("T")


def json_schema() -> dict:
    """The JSON Schema of report.json, shipped in the package for validators outside covseg."""
    return json.loads(resources.files("covseg.report").joinpath("report.schema.json").read_text())


class Flat:
    """A dataclass whose dict holds plain values only: read back field by field, so a missing
    one fails loudly (one with a default, added after reports were first written, takes it)."""

    @classmethod
    def from_dict(cls: type[T], data: dict) -> T:
        return cls(**{f.name: data[f.name] for f in fields(cls)
                      if f.name in data or f.default is MISSING})


@dataclass
class InputInfo(Flat):
    """What was read: where from, its format, grid and intensity kind."""

    source: str
    format: str
    shape_zyx: list[int]
    spacing_mm_zyx: list[float]
    spacing_known: bool
    intensity: str


@dataclass
class LungNumbers(Flat):
    """Volumes and involvement of one lung."""

    lung_ml: float
    lesion_ml: float
    involvement_percent: float


@dataclass
class Severity(Flat):
    """The CT-0..CT-4 grade, what it means, and the rule that decided it."""

    grade: str
    meaning: str
    rule: str


@dataclass
class Quantification:
    """Both lungs' volumes, involvement and grade, each lung's, and involvement per slice."""

    lung_ml: float
    lesion_ml: float
    involvement_percent: float
    severity: Severity
    right: LungNumbers
    left: LungNumbers
    per_slice_involvement_percent: list[float]

    def sides(self) -> dict[str, LungNumbers]:
        """The lungs by name, right first, as report.json lists them."""
        return {"right": self.right, "left": self.left}

    def to_dict(self) -> dict:
        return {"lung_ml": self.lung_ml, "lesion_ml": self.lesion_ml,
                "involvement_percent": self.involvement_percent, "severity": asdict(self.severity),
                "lungs": {name: asdict(side) for name, side in self.sides().items()},
                "per_slice_involvement_percent": list(self.per_slice_involvement_percent)}

    @classmethod
    def from_dict(cls, data: dict) -> Quantification:
        lungs = data["lungs"]
        return cls(data["lung_ml"], data["lesion_ml"], data["involvement_percent"],
                   Severity.from_dict(data["severity"]), LungNumbers.from_dict(lungs["right"]),
                   LungNumbers.from_dict(lungs["left"]), list(data["per_slice_involvement_percent"]))


@dataclass
class DensityBand(Flat):
    """One HU band of the lungs: its volume, its share, and how much of it was called abnormal."""

    ml: float
    percent: float
    called_abnormal_ml: float


def _bands(data: dict) -> dict[str, DensityBand]:
    return {name: DensityBand.from_dict(band) for name, band in data.items()}


def _bands_dict(bands: dict[str, DensityBand]) -> dict:
    return {name: asdict(band) for name, band in bands.items()}


@dataclass
class DensityInfo:
    """Lung density on HU scans (covseg.quantify.density): bands overall and per lung."""

    bands: dict[str, DensityBand]
    mean_lung_hu: float | None
    lungs: dict[str, dict[str, DensityBand]]  # side -> band -> numbers
    band_edges_hu: dict[str, list[float | None]]
    histogram: dict[str, Any]  # first_hu and counts in 8-HU bins

    def to_dict(self) -> dict:
        return {"bands": _bands_dict(self.bands), "mean_lung_hu": self.mean_lung_hu,
                "lungs": {side: {"bands": _bands_dict(b)} for side, b in self.lungs.items()},
                "band_edges_hu": {k: list(v) for k, v in self.band_edges_hu.items()},
                "histogram": dict(self.histogram)}

    @classmethod
    def from_dict(cls, data: dict) -> DensityInfo:
        return cls(_bands(data["bands"]), data["mean_lung_hu"],
                   {side: _bands(v["bands"]) for side, v in data["lungs"].items()},
                   {k: list(v) for k, v in data["band_edges_hu"].items()}, dict(data["histogram"]))


@dataclass
class DensityGateInfo(Flat):
    """What the density gate removed, the dense lung and lesion edges it took in and what it left
    uncalled."""

    rule: str
    removed_ml: float
    dense_not_called_abnormal_ml: float
    dense_rule: str
    dense_taken_in_ml: float = 0.0
    edge_taken_in_ml: float = 0.0
    edge_rule: str = ""


@dataclass
class ModelInfo(Flat):
    """The lesion network as it actually ran: its weights' hash, backend and precision, and the
    hash of the file whose numbers ran (the int8 ONNX model for onnx-int8, else the weights)."""

    name: str
    weights_sha256: str | None
    trained_on: str | list | None
    mirror: bool
    backend: str
    precision: str
    file_sha256: str | None = None  # None only in reports written before it was recorded
    # the int8 audit (covseg.infer.predictor.AUDIT_SLICES): slices checked against fp32, and
    # slices run in fp32 because a check failed; 0 on the other backends
    audited_slices: int = 0
    fp32_slices: int = 0


@dataclass
class Preprocessing(Flat):
    """How slices were framed for the model and which lung method actually ran."""

    model_plane_px: list[int]
    zoom: float
    quarter_turns: int
    zoom_from: str
    zooms_voted: int  # the lesion model's runs at zooms around an estimate (Framing.zooms)
    lungs: str  # the method that ran (covseg.lungs.resolve_method), or "given" (a user mask)
    contrast: str  # the contrast step as it ran (covseg.pipeline._contrast)
    contract: str = "covseg.preprocess.contract.model_input"
    views: int = 1  # slices averaged per slice: 4 flips for a picture, 2 with --mirror


@dataclass
class QAFinding(Flat):
    """One reason the input QA would refuse the scan."""

    code: str
    message: str


@dataclass
class QA:
    """The input QA's refusals and whether an expert overrode them."""

    refusals: list[QAFinding]
    overridden: bool

    def to_dict(self) -> dict:
        return {"refusals": [asdict(f) for f in self.refusals], "overridden": self.overridden}

    @classmethod
    def from_dict(cls, data: dict) -> QA:
        return cls([QAFinding.from_dict(f) for f in data["refusals"]], data["overridden"])


@dataclass
class Coverage(Flat):
    """Which part of the lungs the scan holds."""

    covered: str
    cut_below: bool
    cut_above: bool


def _as_dict(part: Any) -> dict:
    return part.to_dict() if hasattr(part, "to_dict") else asdict(part)


@dataclass
class Report:
    """Everything report.json holds about one scan. `density` is None for pictures (no HU),
    `density_gate` too; `files` is set once the outputs are written."""

    covseg_version: str
    input: InputInfo
    quantification: Quantification
    density: DensityInfo | None
    density_gate: DensityGateInfo | None
    model: ModelInfo
    preprocessing: Preprocessing
    qa: QA
    coverage: Coverage
    warnings: list[str]
    timings_s: dict[str, float]
    files: dict[str, str] | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def unit(self) -> str:
        """What the volumes are in: mL with a pixel size, else thousands of voxels."""
        return "mL" if self.input.spacing_known else "voxels/1000"

    def to_dict(self) -> dict:
        """report.json's layout: schema_version first, then the parts in a fixed order."""
        out = {"schema_version": self.schema_version, "covseg_version": self.covseg_version,
               "input": _as_dict(self.input), "quantification": self.quantification.to_dict(),
               "density": self.density.to_dict() if self.density else {"note": NO_DENSITY_NOTE},
               "density_gate": _as_dict(self.density_gate) if self.density_gate else None,
               "model": _as_dict(self.model), "preprocessing": _as_dict(self.preprocessing),
               "qa": self.qa.to_dict(), "coverage": _as_dict(self.coverage),
               "warnings": list(self.warnings), "timings_s": dict(self.timings_s)}
        if self.files is not None:
            out["files"] = dict(self.files)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        """A report read back from report.json; refuses a schema this covseg does not know."""
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"report schema_version {version!r} is not {SCHEMA_VERSION}: "
                             "written by another covseg version")
        density, gate = data["density"], data["density_gate"]
        return cls(
            covseg_version=data["covseg_version"], input=InputInfo.from_dict(data["input"]),
            quantification=Quantification.from_dict(data["quantification"]),
            density=None if "note" in density else DensityInfo.from_dict(density),
            density_gate=DensityGateInfo.from_dict(gate) if gate is not None else None,
            model=ModelInfo.from_dict(data["model"]),
            preprocessing=Preprocessing.from_dict(data["preprocessing"]),
            qa=QA.from_dict(data["qa"]), coverage=Coverage.from_dict(data["coverage"]),
            warnings=list(data["warnings"]), timings_s=dict(data["timings_s"]),
            files=dict(data["files"]) if "files" in data else None, schema_version=version)


__all__ = ["QA", "SCHEMA_VERSION", "Coverage", "DensityBand", "DensityGateInfo", "DensityInfo",
           "InputInfo", "LungNumbers", "ModelInfo", "Preprocessing", "QAFinding",
           "Quantification", "Report", "Severity", "json_schema"]
