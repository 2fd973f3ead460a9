"""`compare(before, after)`: what changed between two scans of one patient (follow-up).

Each side is a scan covseg can read (it is segmented) or an output folder of `covseg segment`
(recognised by its report.json; its masks and numbers are read back). The change is measured
from each scan's own numbers; the two are aligned (SimpleITK rigid registration of the lung
masks) only to show matching slices side by side.

The verdict's stable band comes from covseg's measured test-retest noise, the same object
segmented again after a shift or a resampling (shipped model, onnx-int8):

* phantom (32 x 128 x 128 at 5 x 2.8 x 2.8 mm, truth 7.74 %): shifted one voxel in x, y or z
  7.26-7.29 % (158.5-158.8 mL); built at 4 x 2.24 x 2.24 mm 7.29 % and at 2.5 x 2 x 2 mm 7.55 %
  (164.4 mL): at most 0.29 percentage points and 5.9 mL (3.7 %) apart;
* real_ct (an abdomen CT that ends at the lung bases): shifted one voxel in x or y 3.48-3.79 %
  (4.2-4.6 mL), 0.31 points apart. Shifting it a slice in z or resampling it in-plane changes
  which lung the cut scan holds (lungs 93 or 416 mL instead of 122 mL): on a partial scan the
  coverage, not the segmentation, dominates; compare warns when coverage differs.

So the overall involvement must change by more than STABLE_BAND_PP = 1.0 percentage point, over
three times the largest measured test-retest difference (0.31), to be called progression or
regression; within it the scans are "stable".
"""
from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from covseg import __version__
from covseg.errors import InputError
from covseg.intensity import Intensity

STABLE_BAND_PP = 1.0
NOISE = {"phantom_shift_and_resample_max_pp": 0.29, "phantom_max_lesion_ml": 5.9,
         "real_ct_shift_max_pp": 0.31, "real_ct_max_lesion_ml": 0.38}
DICOM_FORMATS = ("dicom-series", "dicom")
SLICES_SHOWN = 4


@dataclass
class Examination:
    """One side of a comparison: masks, numbers and, where at hand, the image."""

    source: str
    labels: np.ndarray  # (z, y, x) 0 / 1 abnormal / 2 normal lung
    lungs: np.ndarray  # (z, y, x) 0 / 1 right / 2 left
    spacing: tuple[float, float, float]
    report: dict
    image: np.ndarray | None = None
    intensity: Intensity = Intensity.HU
    patient_id: str | None = None

    @property
    def quantification(self) -> dict:
        return self.report["quantification"]


@dataclass
class Comparison:
    """What `compare` returns: compare.json's numbers, the aligned masks and the files written."""

    summary: dict
    before: Examination
    after: Examination
    after_labels_aligned: np.ndarray
    files: dict[str, Path] = field(default_factory=dict)


def _report_dict(report) -> dict:
    return report.to_dict() if hasattr(report, "to_dict") else dict(report)


def _patient_id(source: Path, fmt: str) -> str | None:
    """The DICOM PatientID of a DICOM source (first file of a folder); None for other inputs."""
    if fmt not in DICOM_FORMATS or not source.exists():
        return None
    import pydicom

    first = source if source.is_file() else next(iter(sorted(source.glob("*.dcm"))), None)
    if first is None:
        return None
    value = getattr(pydicom.dcmread(first, stop_before_pixels=True), "PatientID", None)
    return str(value) if value else None


def _is_results_folder(path: Path) -> bool:
    return path.is_dir() and any((path / n).exists() for n in
                                 ("report.json", "lesions.nii.gz", "lungs.nii.gz", "report.html"))


def _from_results(folder: Path) -> Examination:
    """An output folder of `covseg segment`: its masks and report read back, one-line errors."""
    from covseg.io import read_scan

    if not (folder / "report.json").is_file():
        raise InputError(f"{folder}: holds covseg results but no report.json; segment the scan "
                         "again into an empty folder")
    try:
        report = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder / 'report.json'}: not readable as JSON ({exc})") from None
    names = report.get("files") or {}
    masks = {}
    for key, default in (("labels", "lesions.nii.gz"), ("lungs", "lungs.nii.gz")):
        path = folder / names.get(key, default)
        if not path.is_file():
            raise InputError(f"{folder}: {path.name} is missing; compare needs the masks "
                             "`covseg segment` writes (a folder made with --format dicom-seg only "
                             "has none)")
        masks[key] = read_scan(path)
    source, fmt = Path(report["input"]["source"]), report["input"]["format"]
    image, intensity = None, Intensity(report["input"].get("intensity", "hu"))
    if source.exists():
        scan = read_scan(source)
        if scan.array.shape == masks["labels"].array.shape:
            image, intensity = scan.array, scan.intensity
    return Examination(str(folder), masks["labels"].array.astype(np.uint8),
                       masks["lungs"].array.astype(np.uint8), masks["labels"].spacing, report,
                       image, intensity, _patient_id(source, fmt))


def _from_scan(scan, segmenter) -> Examination:
    """A scan: segmented now, in memory."""
    from covseg.pipeline import segment

    result = segment(scan, None, segmenter=segmenter, pictures=False)
    return Examination(str(scan.source), result.labels, result.lungs, scan.spacing,
                       _report_dict(result.report), scan.array, scan.intensity,
                       _patient_id(scan.source, scan.format))


def _open(path: str | Path):
    """A results folder (read later) or a Scan: read first, so both inputs are checked early."""
    from covseg.io import read_scan

    path = Path(path)
    return path if _is_results_folder(path) else read_scan(path)


def _shape_of(item) -> tuple[int, ...]:
    """(z, y, x) of a scan, or of a results folder's scan (from its report)."""
    if not isinstance(item, Path):
        return item.array.shape
    try:
        return tuple(json.loads((item / "report.json").read_text())["input"]["shape_zyx"])
    except (OSError, ValueError, KeyError):
        _from_results(item)  # its one-line error
        raise


def _refuse_pictures(before, after) -> None:
    """Follow-up compares volumes: a picture (one slice) has no lung volume to compare."""
    flat = [n for n, item in (("BEFORE", before), ("AFTER", after)) if _shape_of(item)[0] == 1]
    if flat:
        what = "a picture (one slice) with a volume" if len(flat) == 1 else "two pictures"
        raise InputError(f"cannot compare {what} ({' and '.join(flat)} is 2-D): follow-up needs two "
                         "CT volumes of the lungs")


def _image_for_display(ex: Examination) -> tuple[np.ndarray, Intensity]:
    """The scan's voxels, or a stand-in from the masks when the source is gone."""
    if ex.image is not None:
        return ex.image, ex.intensity
    return np.where(ex.lungs > 0, -850.0, 40.0).astype(np.float32), Intensity.HU


def _itk(array: np.ndarray, spacing: tuple[float, float, float]):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in spacing[::-1]])
    return image


def register_lungs(fixed: Examination, moving: Examination):
    """Rigid (Euler3D) alignment of `moving`'s lungs onto `fixed`'s: mean squares of the
    smoothed lung masks, from a centre-of-mass start, coarse to fine. Deterministic (no
    random sampling), so comparing a scan with itself gives the identity."""
    import SimpleITK as sitk

    def smooth(ex: Examination):
        return sitk.SmoothingRecursiveGaussian(_itk((ex.lungs > 0).astype(np.float32), ex.spacing), 3.0)

    f, m = smooth(fixed), smooth(moving)
    start = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(),
                                              sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMeanSquares()
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=4.0, minStep=0.01,
                                                 numberOfIterations=150)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([4.0, 2.0, 0.0])
    reg.SetInitialTransform(start, inPlace=False)
    transform = reg.Execute(f, m)
    return transform, float(reg.GetMetricValue())


def _resample(array: np.ndarray, moving: Examination, fixed: Examination, transform,
              labels: bool) -> np.ndarray:
    """`moving`'s (z, y, x) map on `fixed`'s grid through the registration."""
    import SimpleITK as sitk

    out = sitk.Resample(_itk(array, moving.spacing), _itk(np.zeros(fixed.labels.shape, array.dtype),
                                                          fixed.spacing), transform,
                        sitk.sitkNearestNeighbor if labels else sitk.sitkLinear,
                        0.0 if labels else float(array.min()))
    return sitk.GetArrayFromImage(out)


def _numbers(q: dict) -> dict:
    """The figures of one scan compare.json keeps."""
    side = {s: {"lesion_ml": q["lungs"][s]["lesion_ml"],
                "involvement_percent": q["lungs"][s]["involvement_percent"]} for s in ("right", "left")}
    return {"grade": q["severity"]["grade"], "lung_ml": q["lung_ml"], "lesion_ml": q["lesion_ml"],
            "involvement_percent": q["involvement_percent"], **side}


def _change(before: dict, after: dict) -> dict:
    """after - before, overall and per lung."""
    out = {"overall": {"lesion_ml": round(after["lesion_ml"] - before["lesion_ml"], 2),
                       "involvement_pp": round(after["involvement_percent"]
                                               - before["involvement_percent"], 2)}}
    for s in ("right", "left"):
        out[s] = {"lesion_ml": round(after[s]["lesion_ml"] - before[s]["lesion_ml"], 2),
                  "involvement_pp": round(after[s]["involvement_percent"]
                                          - before[s]["involvement_percent"], 2)}
    return out


def verdict(change_pp: float, band: float = STABLE_BAND_PP) -> str:
    """progression / stable / regression from the change in overall involvement (points)."""
    if change_pp > band:
        return "progression"
    if change_pp < -band:
        return "regression"
    return "stable"


def _warnings(before: Examination, after: Examination) -> list[str]:
    """What makes the comparison doubtful: other patients, different coverage, notes of the scans."""
    out = []
    if before.patient_id and after.patient_id and before.patient_id != after.patient_id:
        out.append(f"different patients: PatientID {before.patient_id!r} before and "
                   f"{after.patient_id!r} after; the comparison is only meaningful for one patient")
    cov = [ex.report.get("coverage", {}).get("covered") for ex in (before, after)]
    if cov[0] != cov[1]:
        out.append(f"the scans cover different parts of the lungs ({cov[0]} before, {cov[1]} after): "
                   "volumes compare different regions")
    lung = [ex.quantification["lung_ml"] for ex in (before, after)]
    if min(lung) > 0 and max(lung) / min(lung) > 1.3:
        out.append(f"lung volume differs by more than 30 % ({lung[0]:.0f} vs {lung[1]:.0f} mL): "
                   "inspiration or coverage differ; trust involvement (%) more than mL")
    return out


def _per_slice(labels: np.ndarray) -> list[float]:
    lung = np.count_nonzero(labels, axis=(1, 2))
    lesion = np.count_nonzero(labels == 1, axis=(1, 2))
    return [round(100.0 * a / b, 2) if b else 0.0 for a, b in zip(lesion, lung)]


def compare(before: str | Path, after: str | Path, output: str | Path | None = None,
            force: bool = False, segmenter=None) -> Comparison:
    """Compare two scans (or two `covseg segment` output folders) of one patient.

    With `output`, writes compare.json (the numbers, the verdict and its rule) and compare.html
    (matching slices side by side with both overlays, per-slice involvement of both).
    """
    from covseg.pipeline import check_outputs

    if output is not None:
        check_outputs(Path(output), ["compare.json", "compare.html"], force)
    items = [_open(before), _open(after)]
    _refuse_pictures(*items)
    if segmenter is None and not all(isinstance(i, Path) for i in items):
        from covseg.infer import LesionSegmenter

        segmenter = LesionSegmenter()
    exams = [_from_results(i) if isinstance(i, Path) else _from_scan(i, segmenter) for i in items]
    first, second = exams
    transform, metric = register_lungs(first, second)
    aligned = _resample(second.labels, second, first, transform, labels=True)
    nums = [_numbers(ex.quantification) for ex in exams]
    change = _change(*nums)
    word = verdict(change["overall"]["involvement_pp"])
    summary = {
        "covseg_version": __version__,
        "before": {"source": first.source, "patient_id": first.patient_id, **nums[0]},
        "after": {"source": second.source, "patient_id": second.patient_id, **nums[1]},
        "change": change, "verdict": word,
        "rule": {"measure": "change in overall involvement (after - before, percentage points)",
                 "stable_band_pp": STABLE_BAND_PP, "measured_test_retest_noise": NOISE,
                 "why": "over three times the largest involvement difference measured when the "
                        "same scan is segmented again shifted by a voxel or resampled"},
        "registration": {"transform": "Euler3D (rigid)", "metric": "mean squares of smoothed lung "
                         "masks", "final_metric": round(metric, 6),
                         "parameters": [round(float(p), 4) for p in transform.GetParameters()]},
        "warnings": _warnings(first, second),
    }
    result = Comparison(summary, first, second, aligned)
    if output is not None:
        result.files = _write(result, Path(output), transform, force)
    return result


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _slice_pairs(result: Comparison, transform) -> list[tuple[int, bytes, bytes]]:
    """The most affected slices (before's grid, both scans' lesions): before | after aligned."""
    from covseg.report.figures import overlay, png_bytes

    first, second = result.before, result.after
    area = np.count_nonzero(first.labels == 1, axis=(1, 2)) + \
        np.count_nonzero(result.after_labels_aligned == 1, axis=(1, 2))
    zs = sorted(int(z) for z in np.argsort(area)[::-1][:SLICES_SHOWN])
    image1, intensity1 = _image_for_display(first)
    image2, intensity2 = _image_for_display(second)
    moved = _resample(image2.astype(np.float32), second, first, transform, labels=False)
    return [(z, png_bytes(overlay(image1[z], first.labels[z], intensity1)),
             png_bytes(overlay(moved[z], result.after_labels_aligned[z], intensity2))) for z in zs]


def _plot(before: list[float], after: list[float]) -> bytes:
    """Per-slice involvement of both scans on the before scan's slices."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from covseg.report.figures import figure_png

    fig, ax = plt.subplots(figsize=(8, 2.8), dpi=100)
    ax.plot(before, color="tab:blue", label="before")
    ax.plot(after, color="tab:red", label="after (aligned)")
    ax.set_xlabel("slice of the before scan (feet \u2192 head)")
    ax.set_ylabel("lung involved (%)")
    ax.set_ylim(0, max(5.0, max(before + after, default=0) * 1.15))
    ax.legend()
    ax.grid(alpha=0.3)
    return figure_png(fig)


def _page(result: Comparison, transform) -> str:
    """compare.html: one self-contained file (images as data URIs)."""
    s, e = result.summary, html.escape
    rows = "".join(
        f"<tr><td>{name}</td><td>{s['before'][k]['lesion_ml'] if k else s['before']['lesion_ml']}</td>"
        f"<td>{s['after'][k]['lesion_ml'] if k else s['after']['lesion_ml']}</td>"
        f"<td>{s['change'][k or 'overall']['lesion_ml']:+.2f}</td>"
        f"<td>{s['before'][k]['involvement_percent'] if k else s['before']['involvement_percent']}</td>"
        f"<td>{s['after'][k]['involvement_percent'] if k else s['after']['involvement_percent']}</td>"
        f"<td>{s['change'][k or 'overall']['involvement_pp']:+.2f}</td></tr>"
        for name, k in (("both lungs", None), ("right lung", "right"), ("left lung", "left")))
    warn = "".join(f"<p class='warn'>warning: {e(w)}</p>" for w in s["warnings"])
    pairs = "".join(f"<figure><figcaption>slice {z}</figcaption><img src='{_data_uri(a)}' "
                    f"alt='before'><img src='{_data_uri(b)}' alt='after'></figure>"
                    for z, a, b in _slice_pairs(result, transform))
    plot = _data_uri(_plot(_per_slice(result.before.labels), _per_slice(result.after_labels_aligned)))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>covseg follow-up</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}td,th{{padding:4px 10px;text-align:right}}
.warn{{color:#b00;font-weight:bold}}figure img{{width:45%;margin:0 1%;image-rendering:pixelated}}
.verdict{{font-size:1.6em}}</style></head><body>
<h1>covseg follow-up</h1>{warn}
<p class="verdict">{e(s['verdict'])}: overall involvement {s['change']['overall']['involvement_pp']:+.2f}
percentage points, grade {e(s['before']['grade'])} &rarr; {e(s['after']['grade'])}</p>
<p>Rule: a change within &plusmn;{STABLE_BAND_PP} percentage point is stable; covseg's measured
test-retest difference (same scan shifted by a voxel or resampled) is at most
{max(NOISE['phantom_shift_and_resample_max_pp'], NOISE['real_ct_shift_max_pp'])} points.</p>
<p>before: {e(s['before']['source'])}<br>after: {e(s['after']['source'])}</p>
<table><tr><th></th><th>lesion before (mL)</th><th>after (mL)</th><th>change (mL)</th>
<th>involved before (%)</th><th>after (%)</th><th>change (points)</th></tr>{rows}</table>
<h2>Per-slice involvement</h2><img src="{plot}" alt="per-slice involvement">
<h2>Matching slices (left: before, right: after aligned; red abnormal, green normal lung)</h2>
{pairs}</body></html>"""


def _write(result: Comparison, out: Path, transform, force: bool) -> dict[str, Path]:
    from covseg.io import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result.summary, indent=2)
    page = _page(result, transform)
    return {"json": atomic_write(out / "compare.json", lambda tmp: tmp.write_text(text), force),
            "html": atomic_write(out / "compare.html", lambda tmp: tmp.write_text(page), force)}
