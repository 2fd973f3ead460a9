"""`segment(scan)`: the main job, from a scan file to masks, numbers and pictures.

read -> input QA -> lungs and the model's framing (zoom by pixel size for CT; for pictures, from
the lungs found, turned upright first) -> lung-masked slices -> network in batches ->
labels back on the source grid -> quantification -> pictures -> files. All outputs are checked
before any work starts and written atomically at the end, so a failure leaves nothing behind.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from covseg import __version__
from covseg.errors import CovsegError, InputError, OutputExistsError
from covseg.infer.predictor import LesionSegmenter, PrecisionAudit
from covseg.infer.density import DensityGate, gate_by_density
from covseg.infer.framing import Framing, from_geometry, from_lungs, turns_upright
from covseg.preprocess.contract import model_input, picture_clahe
from covseg.preprocess.resample import model_plane_size, resize_planes
from covseg.io.outputs import check_space, expected_bytes, folder_lock
from covseg.io.qa import check_input
from covseg.io.dicom_seg import choose_formats, select_outputs, write_result_seg
from covseg.io import (Scan, atomic_write, chest_ct_warnings, mask_suffix, read_scan,
                       write_csv, write_mask)
from covseg.intensity import Intensity
from covseg.labels import ABNORMAL, NORMAL
from covseg.lungs import extract_lungs, resolve_method, split_left_right, split_slices
from covseg.quantify import quantify
from covseg.quantify.density import quantify_density
from covseg.report import render_html, render_pictures
from covseg.report.model import (QA, Coverage, DensityGateInfo, DensityInfo, InputInfo, ModelInfo,
                                 Preprocessing, Quantification, Report)

LESION_SLAB = 64  # slices prepared and labelled at a time: bounds memory on long scans


@dataclass
class SegmentationResult:
    """Everything `covseg segment` produces, in memory."""

    scan: Scan
    labels: np.ndarray  # (z, y, x) uint8: 0 background, 1 abnormal, 2 normal lung
    lungs: np.ndarray  # (z, y, x) uint8: 0 none, 1 right lung, 2 left lung
    report: Report
    pictures: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def quantification(self) -> Quantification:
        return self.report.quantification


class Stopwatch:
    """Seconds per pipeline stage, kept in report.json: where the time went, for every scan."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 3)
        self._last = now


def output_names(mask_ending: str) -> dict[str, str]:
    """File names in the output folder; masks end as the scan's results do (.nii.gz, .png)."""
    return {"labels": f"lesions{mask_ending}", "lungs": f"lungs{mask_ending}",
            "json": "report.json", "html": "report.html", "montage": "montage.png",
            "profile": "involvement.png", "overlay": "overlay.png", "overlay_2": "overlay_2.png",
            "overlay_3": "overlay_3.png"}


def check_outputs(out: Path, names: list[str], force: bool) -> None:
    """Refuse, before any work, to replace files the user already has."""
    clash = [n for n in names if (out / n).exists()]
    if clash and not force:
        raise OutputExistsError(f"{out} already holds {', '.join(clash)}; choose another "
                                "folder or pass --force to replace them")


def _no_lungs_error(scan: Scan) -> InputError:
    how = ("no air-filled region large enough to be lung (a lung's axial section exceeds 10 cm^2; "
           "gas in the bowel or stomach is not lung)") if scan.is_hu else \
        "the lung model found no lung in the picture"
    return InputError(f"{scan.source}: no lungs in this scan: {how}; give a chest CT that covers "
                      "the lungs")


def lung_coverage(lungs: np.ndarray) -> dict:
    """Which part of the lungs the scan holds: cut at the lowest and/or highest slice?"""
    if lungs.shape[0] == 1:
        return {"covered": "one slice", "cut_below": True, "cut_above": True}
    per_slice = np.count_nonzero(lungs, axis=(1, 2))
    peak = per_slice.max()
    below, above = bool(per_slice[0] > 0.2 * peak), bool(per_slice[-1] > 0.2 * peak)
    covered = {(False, False): "whole lungs", (True, False): "upper part (the bases are cut off)",
               (False, True): "lower part (the apices are cut off)",
               (True, True): "middle part (bases and apices cut off)"}[(below, above)]
    return {"covered": covered, "cut_below": below, "cut_above": above}


def _coverage_warnings(coverage: dict) -> list[str]:
    if coverage["covered"] in ("whole lungs", "one slice"):
        return []
    return [f"partial chest coverage: the scan holds the {coverage['covered']}; volumes and "
            "involvement describe that part only"]


def _density_warnings(gate: DensityGate | None, voxel_ml: float, lung_sides: np.ndarray) -> list[str]:
    """Say where the lesion model and density disagree strongly (HU scans only)."""
    if gate is None:
        return []
    lung_ml = float(np.count_nonzero(lung_sides)) * voxel_ml
    out = []
    removed, missed = gate.removed_voxels * voxel_ml, gate.dense_missed_voxels * voxel_ml
    if removed > max(5.0, 0.02 * lung_ml):
        out.append(f"the lesion model called {removed:.1f} mL of well-aerated lung abnormal; the "
                   "density gate removed it (see density_gate in report.json)")
    if missed > max(5.0, 0.02 * lung_ml):
        out.append(f"{missed:.1f} mL of lung at consolidation density (>= -100 HU) was not called "
                   "abnormal: check for consolidation or effusion the model missed")
    return out


def _find_lungs(scan: Scan, small: np.ndarray, zoom: float, method: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """Lung sides on the source grid and on the model's grid, for a scan with a pixel size.

    They are found on the coarser of the two grids: upsampling first would blur gas pockets in
    the bowel towards lung density, downsampling first saves time on fine matrices.
    """
    if zoom > 1:
        sides = extract_lungs(scan.array, scan.spacing, scan.intensity, method)
        return sides, resize_planes(sides, small.shape[1:], labels=True)
    small_spacing = (scan.spacing[0], scan.array.shape[1] * scan.spacing[1] / small.shape[1],
                     scan.array.shape[2] * scan.spacing[2] / small.shape[2])
    small_sides = extract_lungs(small, small_spacing, scan.intensity, method)
    return resize_planes(small_sides, scan.array.shape[1:], labels=True), small_sides


@dataclass
class Frame:
    """The slices as the lesion model sees them: turned upright, on the model's grid."""

    framing: Framing
    image: np.ndarray  # the source voxels, turned (a view)
    sides: np.ndarray  # lung sides on `image`'s grid
    small: np.ndarray  # `image` on the model's grid at the framing's zoom (dropped once run)
    small_sides: np.ndarray
    oriented: bool  # the source says which way is up (a CT); False for a picture

    def to_source(self, a: np.ndarray) -> np.ndarray:
        """Undo the turn: a (z, y, x) map on `image`'s grid -> the source's grid."""
        return np.ascontiguousarray(np.rot90(a, -self.framing.turns, axes=(1, 2)))

    def at_zoom(self, zoom: float) -> tuple[np.ndarray, np.ndarray]:
        """`image` and `sides` on the model's grid at `zoom`."""
        return _model_grid(self.image, self.sides, zoom)


def _model_grid(image: np.ndarray, sides: np.ndarray, zoom: float) -> tuple[np.ndarray, np.ndarray]:
    size = model_plane_size(image.shape[1:], zoom)
    return resize_planes(np.ascontiguousarray(image), size), resize_planes(sides, size, labels=True)


def _frame(scan: Scan, method: str, given: np.ndarray | None = None) -> Frame:
    """Lungs and the lesion model's grid: by pixel size for CT, from the lungs for pictures.

    `given`: a lung mask of the user's (any non-zero value is lung) instead of covseg's own.
    """
    if scan.spacing_known:
        framing = from_geometry(max(scan.array.shape[1:]), scan.spacing[2])
        small = resize_planes(scan.array, model_plane_size(scan.array.shape[1:], framing.zoom))
        if given is None:
            sides, small_sides = _find_lungs(scan, small, framing.zoom, method)
        else:
            sides = split_left_right(given > 0)
            small_sides = resize_planes(sides, small.shape[1:], labels=True)
        if not sides.any():
            raise _no_lungs_error(scan)
        return Frame(framing, scan.array, sides, small, small_sides, oriented=True)
    found = extract_lungs(scan.array, scan.spacing, scan.intensity, method) if given is None \
        else given > 0
    if not found.any():
        raise _no_lungs_error(scan)
    turns = turns_upright(found > 0)
    image = np.rot90(scan.array, turns, axes=(1, 2))
    sides = split_slices(np.rot90(found, turns, axes=(1, 2)))
    found_framing = from_lungs(sides > 0)
    framing = Framing(found_framing.zoom, turns, found_framing.basis)
    return Frame(framing, image, sides, *_model_grid(image, sides, framing.zoom), oriented=False)


def _given_lungs(scan: Scan, lung_mask: np.ndarray | str | Path) -> np.ndarray:
    """A user's lung mask as a boolean (z, y, x) array on the scan's grid, or one clear refusal."""
    if not isinstance(lung_mask, np.ndarray):
        lung_mask = read_scan(lung_mask).array
    mask = np.asarray(lung_mask)
    if mask.ndim == 2:
        mask = mask[None]
    if mask.shape != scan.array.shape:
        raise InputError(f"the lung mask has shape {mask.shape} but the scan {scan.array.shape}; "
                         "give a mask on the scan's own grid")
    return mask > 0


def _find_lesions(scan: Scan, small: np.ndarray, small_lungs: np.ndarray,
                  segmenter: LesionSegmenter, progress: bool, flips: bool, audit: PrecisionAudit,
                  on_slices: Callable[[int, int], None] = lambda done, total: None,
                  clahe: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """0/1/2 labels on the model's grid, and per slice whether its CLAHE step ran; slices without
    lungs are not run. `flips`: the mean over the four flips of each slice
    (LesionSegmenter.logits); `audit` counts what the int8 audit did. A picture's CLAHE step runs
    where its lungs then look like ma20's (covseg.preprocess.contract.picture_clahe), unless
    `clahe` says already, per slice, what was decided for it.

    The network's inputs are made and run a slab at a time, so they never exist for the whole
    volume at once.
    """
    labels = np.zeros(small.shape, dtype=np.uint8)
    picture = scan.intensity is Intensity.DISPLAY
    decided = np.ones(small.shape[0], dtype=bool) if clahe is None else clahe
    has_lungs = np.nonzero(small_lungs.any(axis=(1, 2)))[0]
    bar = tqdm(total=has_lungs.size, desc=scan.source.name, unit="slice", leave=False,
               disable=not progress, dynamic_ncols=True)
    for k in range(0, has_lungs.size, LESION_SLAB):
        zs = has_lungs[k:k + LESION_SLAB]
        if picture and clahe is None:
            decided[zs] = [picture_clahe(small[z], small_lungs[z]) for z in zs]
        inputs = np.stack([model_input(small[z], small_lungs[z], scan.intensity, clahe=decided[z])
                           for z in zs])
        labels[zs] = segmenter.predict(inputs, small_lungs[zs] > 0, flips, audit)
        bar.update(zs.size)
        on_slices(k + zs.size, has_lungs.size)
    bar.close()
    return labels, decided


def _lesions_by_zoom(scan: Scan, frame: Frame, segmenter: LesionSegmenter, progress: bool,
                     flips: bool, on_slices: Callable[[int, int], None]
                     ) -> tuple[np.ndarray, PrecisionAudit, str]:
    """0/1/2 labels on `frame.image`'s grid, what the int8 audit did and the contrast step
    (`_contrast`). The lesion model runs at each of the framing's zooms (`Framing.zooms`: a
    picture framed by its lung extent, whose zoom is an estimate, at three; anything else at
    one), and a pixel is abnormal where most runs call it. The contrast is decided once, at the
    estimated zoom, which runs first; its model-grid copies are dropped after it (the peak of a
    long scan is the full-resolution labels)."""
    zooms, audit, clahe = frame.framing.zooms, PrecisionAudit(), None
    with_lungs = frame.small_sides.any(axis=(1, 2))
    votes = np.zeros(frame.sides.shape, dtype=np.uint8) if len(zooms) > 1 else None  # not for CT
    for done, zoom in enumerate(zooms):
        small, small_sides = (frame.small, frame.small_sides) if done == 0 else frame.at_zoom(zoom)
        frame.small = frame.small_sides = np.empty((0, 0, 0), np.uint8)
        small_labels, clahe = _find_lesions(
            scan, small, small_sides, segmenter, progress, flips, audit,
            lambda d, t, done=done: on_slices(done * t + d, len(zooms) * t), clahe)
        del small, small_sides
        labels = _full_resolution_labels(small_labels, frame.sides)
        if votes is not None:
            votes += labels == ABNORMAL
    if votes is not None:
        lesion = (2 * votes > len(zooms)).view(np.uint8)
        labels = ((frame.sides > 0) * (NORMAL - lesion)).astype(np.uint8)
    contrast = _contrast(scan.intensity, int(clahe[with_lungs].sum()), int(with_lungs.sum()))
    return labels, audit, contrast


def _contrast(intensity: Intensity, enhanced: int, slices: int) -> str:
    """The contrast step as it ran, for report.json."""
    if intensity is Intensity.ENHANCED:
        return "as given (ma20-enhanced)"
    if intensity is Intensity.PREPARED:
        return "as given (prepared)"
    if enhanced == slices:
        return "min-max + CLAHE"
    if enhanced == 0:
        return "min-max (enhanced already)"
    return f"min-max + CLAHE on {enhanced} of {slices} pictures, min-max alone on the rest"


def _full_resolution_labels(small_labels: np.ndarray, lung_sides: np.ndarray) -> np.ndarray:
    """0/1/2 labels on the source grid: the full-resolution lungs, split by the model's lesions.

    Slab by slab, so the temporaries stay small however long the scan.
    """
    labels = np.empty(lung_sides.shape, dtype=np.uint8)
    for z in range(0, labels.shape[0], LESION_SLAB):
        zs = slice(z, z + LESION_SLAB)
        lesion = resize_planes(small_labels[zs] == ABNORMAL, lung_sides.shape[1:], labels=True)
        # lung x (2 - lesion): 0 outside, 1 abnormal, 2 normal, in one pass without masks
        np.multiply(lung_sides[zs] > 0, NORMAL - lesion.view(np.uint8), out=labels[zs],
                    casting="unsafe")
    return labels


def _model_info(segmenter: LesionSegmenter, audit: PrecisionAudit) -> ModelInfo:
    """The network as it ran: the hash of the weights file loaded (covseg.models.weights names
    a file by its own bytes), the backend and precision the segmenter settled on, and how many
    slices the int8 audit ran in fp32."""
    meta = segmenter.meta
    return ModelInfo(meta.get("name", "custom"), meta.get("sha256"), meta.get("trained_on"),
                     segmenter.mirror, segmenter.backend, segmenter.precision,
                     segmenter.file_sha256, audit.audited_slices, audit.fp32_slices)


def segment(scan: str | Path | Scan, output: str | Path | None = None, force: bool = False,
            segmenter: LesionSegmenter | None = None, pictures: bool = True,
            key: str | None = None, progress: bool = False,
            lungs: str = "auto", override_qa: bool = False,
            lung_mask: np.ndarray | str | Path | None = None,
            formats: tuple[str, ...] | None = None, seg_type: str = "binary",
            on_progress: Callable[[float, str], None] | None = None) -> SegmentationResult:
    """Segment a scan (path or `Scan`); with `output`, write masks, report and pictures there.

    `lungs`: the lung method (covseg.lungs.METHODS); "auto" uses HU thresholds for CT in HU and
    the learned lung model for pictures. The input QA refuses what covseg cannot measure (not
    CT, not HU, localisers, non-axial, tilted or gapped series) unless `override_qa`; a scan
    without lungs is always refused. `lung_mask`: the user's own lung mask (an array or a mask
    file on the scan's grid) instead of covseg's lung extraction, recorded as lungs "given".
    `formats`: "nifti" and/or "dicom-seg" (covseg.io.dicom_seg); default NIfTI masks, plus
    lesions.seg.dcm (`seg_type` binary or fractional) for a DICOM input. `on_progress(fraction,
    stage)` hears how far the run is (a service shows it while the job runs).
    """
    step = on_progress or (lambda fraction, stage: None)
    watch = Stopwatch()
    if not isinstance(scan, Scan):
        scan = read_scan(scan, key=key)
    qa = check_input(scan, override_qa)
    watch.lap("read")
    step(0.1, "read")
    names = select_outputs(output_names(mask_suffix(scan)), choose_formats(scan, formats))
    if output is not None:
        check_outputs(Path(output), list(names.values()), force)
        check_space(Path(output), expected_bytes(scan.array.size,
                                                 seg_type if "seg" in names else None))
    segmenter = segmenter or LesionSegmenter()
    watch.lap("load_model")

    given = None if lung_mask is None else _given_lungs(scan, lung_mask)
    method = resolve_method(lungs, scan.intensity, scan.array) if given is None else "given"
    frame = _frame(scan, method, given)
    coverage = lung_coverage(frame.sides)
    watch.lap("framing_and_lungs")
    step(0.2, "lungs")
    # a picture carries no orientation: it may be mirrored, upside down or (turned upright by
    # the framing) a quarter turn off, so its result is the mean over its four flips
    flips = not frame.oriented
    framing, size = frame.framing, frame.small.shape[1:]
    image_labels, audit, contrast = _lesions_by_zoom(
        scan, frame, segmenter, progress, flips,
        lambda done, total: step(0.2 + 0.6 * done / total, "lesions"))
    watch.lap("lesions")
    labels = frame.to_source(image_labels)
    del image_labels
    lung_sides = frame.to_source(frame.sides)
    del frame

    voxel_ml = scan.voxel_volume_ml if scan.spacing_known else 1e-3
    gate = gate_by_density(labels, scan.array, scan.spacing) if scan.is_hu else None
    density = quantify_density(scan.array, lung_sides, labels, voxel_ml) if scan.is_hu else None
    report = Report(
        covseg_version=__version__,
        input=InputInfo(str(scan.source), scan.format, list(scan.array.shape), list(scan.spacing),
                        scan.spacing_known, scan.intensity.value),
        quantification=Quantification.from_dict(quantify(labels, lung_sides, voxel_ml)),
        density=DensityInfo.from_dict(density) if density is not None else None,
        density_gate=DensityGateInfo.from_dict(gate.as_dict(voxel_ml)) if gate is not None else None,
        model=_model_info(segmenter, audit),
        preprocessing=Preprocessing(list(size), **framing.as_dict(), lungs=method,
                                    contrast=contrast, views=len(segmenter.views(flips))),
        qa=QA.from_dict(qa.as_dict()),
        coverage=Coverage.from_dict(coverage),
        warnings=qa.warnings() + chest_ct_warnings(scan) + _coverage_warnings(coverage)
        + _density_warnings(gate, voxel_ml, lung_sides),
        timings_s=watch.seconds,  # the same dict: the laps below still land in report.json
    )
    watch.lap("labels_and_numbers")
    step(0.85, "measures")
    result = SegmentationResult(scan, labels, lung_sides, report)
    if pictures:
        result.pictures = render_pictures(scan, labels, report.quantification)
        watch.lap("pictures")
        step(0.9, "pictures")
    if output is not None:
        step(0.95, "writing")
        _write(result, Path(output), names, force, seg_type)
    return result


def _write(result: SegmentationResult, out: Path, names: dict[str, str], force: bool,
           seg_type: str = "binary") -> None:
    """Write every output; on any failure (a full disk, a crash) remove what this call wrote, and
    the folder if it made it, so no partial set of results is left behind."""
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        with folder_lock(out):  # a second run into `out` waits, then finds these files
            check_outputs(out, list(names.values()), force)
            _write_files(result, out, names, force, written, seg_type)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if made and not any(out.iterdir()):
            out.rmdir()
        raise


def _write_files(result: SegmentationResult, out: Path, names: dict[str, str], force: bool,
                 written: list[Path], seg_type: str = "binary") -> None:
    """The files of one result, each atomically; `written` collects them as they appear."""
    files = {k: out / names[k] for k in ("labels", "lungs") if k in names}  # not with dicom-seg only
    for key, mask in (("labels", result.labels), ("lungs", result.lungs)):
        if key in files:
            written.append(write_mask(result.scan, mask, files[key], force=force))
    if "seg" in names:
        files["seg"] = write_result_seg(result, out / names["seg"], seg_type, force)
        written.append(files["seg"])
    for key, data in result.pictures.items():
        files[key] = atomic_write(out / names[key], lambda tmp, d=data: tmp.write_bytes(d), force)
        written.append(files[key])
    files["json"] = out / names["json"]
    result.report.files = {k: str(v.name) for k, v in files.items()}
    text = json.dumps(result.report.to_dict(), indent=2)
    atomic_write(files["json"], lambda tmp: tmp.write_text(text), force)
    written.append(files["json"])
    page = render_html(result.report, result.pictures, result.scan, result.labels)
    files["html"] = atomic_write(out / names["html"], lambda tmp: tmp.write_text(page), force)
    written.append(files["html"])
    result.files = files


SUMMARY_FIELDS = ("scan", "status", "grade", "involvement_percent", "right_percent", "left_percent",
                  "lung_ml", "lesion_ml", "mean_lung_hu", "well_aerated_percent", "output", "message")


def scan_name(path: Path) -> str:
    """Output sub-folder name for a scan: its file name without the image suffixes."""
    name = path.name
    for ending in (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".mat", ".npy"):
        if name.lower().endswith(ending):
            return name[: -len(ending)]
    return name


def _batch_targets() -> list[str]:
    """Every file name a batch writes, for spotting their half-written temporary files."""
    names = {n for ending in (".nii.gz", ".png", ".npy") for n in output_names(ending).values()}
    return sorted(names | {"summary.csv"})


def _batch_settings(segmenter: LesionSegmenter, lungs: str, override_qa: bool) -> dict:
    """What decides a scan's results besides the scan itself: other settings redo the scan."""
    return {"lungs": lungs, "override_qa": override_qa,
            "weights_sha256": segmenter.meta.get("sha256"), "backend": segmenter.backend,
            "mirror": segmenter.mirror, "precision": segmenter.precision,
            "postprocess": segmenter.postprocess.as_dict()}


def _quantified_row(q: Quantification, density: DensityInfo | None = None) -> dict:
    """The summary columns of one scan's numbers (density only for HU scans)."""
    row = {"status": "ok", "grade": q.severity.grade,
           "involvement_percent": q.involvement_percent,
           "right_percent": q.right.involvement_percent,
           "left_percent": q.left.involvement_percent,
           "lung_ml": q.lung_ml, "lesion_ml": q.lesion_ml}
    if density is not None:
        row.update(mean_lung_hu=density.mean_lung_hu,
                   well_aerated_percent=density.bands["well_aerated"].percent)
    return row


def failure_status(exc: BaseException) -> str:
    """"refused" when the scan or the output folder is at fault (the user can mend it: exit 2),
    "failed" when covseg or a library broke (a bug: exit 1)."""
    from covseg.io.outputs import is_disk_full

    return "refused" if isinstance(exc, CovsegError) or is_disk_full(exc) else "failed"


def batch_exit_code(rows: list[dict]) -> int:
    """0 when every scan is done, 1 when covseg failed on one (a bug), else 2 (a scan or the
    output was refused): a script can tell its own problems from covseg's."""
    statuses = {row["status"] for row in rows}
    return 1 if "failed" in statuses else 2 if "refused" in statuses else 0


def _failure_message(exc: BaseException, where: Path) -> str:
    """One line for a failed row: covseg's own message, or what broke inside a library."""
    from covseg.io.outputs import disk_full, is_disk_full

    if isinstance(exc, CovsegError):
        return str(exc)
    if is_disk_full(exc):
        return str(disk_full(where))
    return (f"internal error: {exc.__class__.__name__}: {exc} (rerun with --debug for the "
            "traceback and report it)")


def skipped_row(path: Path, final: Path, force: bool, settings: dict) -> dict | None:
    """The row of a scan that a finished earlier run did with these settings, else None: every
    engine checks this before it spends a model's time on the scan."""
    from covseg.io import outputs

    done = None if force or not path.exists() else outputs.finished_row(final, path, settings)
    if done is None:
        return None
    return {**done, "scan": str(path), "output": str(final),
            "message": "done in an earlier run; skipped (--force redoes it)"}


def _batch_one(path: Path, out: Path, name: str, force: bool, segmenter: LesionSegmenter,
               settings: dict, run: dict, debug: bool) -> dict:
    """One scan of a local batch: skipped if done, else built by this process."""
    from covseg.io import outputs

    final = out / name
    return skipped_row(path, final, force, settings) or build_scan(
        path, final, outputs.tmp_dir(out, name), force, segmenter, settings, run, debug)


def build_scan(path: Path, final: Path, tmp: Path, force: bool, segmenter: LesionSegmenter,
               settings: dict, run: dict, debug: bool) -> dict:
    """One scan built in the temporary folder `tmp` and renamed to `final` once complete, with
    its completion record: the unit of work of every engine (a Ray worker runs it on the shared
    filesystem). Any failure, covseg's or a library's, becomes a failed row."""
    import shutil
    import traceback

    from covseg.io import outputs

    row = {"scan": str(path), "output": str(final)}
    try:
        if final.exists() and not force and not (final / outputs.DONE_NAME).exists():
            raise OutputExistsError(f"{final} holds results not made by a finished covseg batch; "
                                    "choose another folder or pass --force to replace them")
        shutil.rmtree(tmp, ignore_errors=True)
        result = segment(path, tmp, force=True, segmenter=segmenter, **run)
        row.update(_quantified_row(result.quantification, result.report.density))
        outputs.write_done(tmp, outputs.done_record(path, settings, row))
        outputs.move_into_place(tmp, final)
    except Exception as exc:  # noqa: BLE001 - one scan's failure of any kind must not end the batch
        shutil.rmtree(tmp, ignore_errors=True)
        if debug:
            traceback.print_exc()
        row = {"scan": str(path), "output": str(final), "status": failure_status(exc),
               "message": _failure_message(exc, tmp)}
    return row


def segment_many(scans: list[str | Path], output: str | Path, force: bool = False,
                 segmenter: LesionSegmenter | Callable[[], LesionSegmenter] | None = None,
                 progress: bool = True, lungs: str = "auto", override_qa: bool = False,
                 debug: bool = False) -> list[dict]:
    """Segment several scans into `output/<name>/`; a failed scan is recorded, not fatal.

    Resumable: each scan is built in `output/.covseg-tmp-<name>-<pid>/` and renamed into place
    with a completion record, so a rerun skips finished scans (same file, settings and covseg
    version), removes an interrupted run's leftovers and redoes the rest; `force` redoes all.
    A lock on `output/.covseg.lock` keeps a second writer out for the whole batch. `segmenter`
    may be a function making one: it is then called once the folder is locked.
    Writes `output/summary.csv` with one row a scan and returns the rows; with `debug` a failed
    scan's traceback goes to stderr.
    """
    with batch_folder(scans, output, force) as (out, names):
        if not isinstance(segmenter, LesionSegmenter):
            segmenter = segmenter() if callable(segmenter) else LesionSegmenter()
        settings = _batch_settings(segmenter, lungs, override_qa)
        run = {"progress": progress, "lungs": lungs, "override_qa": override_qa}
        rows = [_batch_one(Path(path), out, name, force, segmenter, settings, run, debug)
                for path, name in zip(scans, names)]
        write_summary(out, rows)
    return rows


@contextmanager
def batch_folder(scans: list[str | Path], output: str | Path, force: bool
                 ) -> Iterator[tuple[Path, list[str]]]:
    """A batch's output folder, checked, locked and cleared of an interrupted run's leftovers,
    with each scan's sub-folder name: so every engine writes a cohort under the same guarantees."""
    from covseg.io import outputs

    out = outputs.check_output_dir(output)
    names = [scan_name(Path(s)) for s in scans]
    if len(set(names)) != len(names):
        raise InputError("two scans share a name, so their results would collide; rename one")
    if (out / "summary.csv").exists() and not force and not (out / outputs.LOCK_NAME).exists():
        raise OutputExistsError(f"{out / 'summary.csv'} already exists and is not from a covseg "
                                "batch; choose another folder or pass --force to replace it")
    out.mkdir(parents=True, exist_ok=True)
    with outputs.batch_lock(out):
        outputs.clean_leftovers(out, names, _batch_targets())
        yield out, names


def write_summary(out: Path, rows: list[dict]) -> None:
    """summary.csv, one row a scan, written while the batch still holds the folder's lock."""
    write_csv(out / "summary.csv", rows, SUMMARY_FIELDS, force=True)
