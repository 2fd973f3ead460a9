"""A user's labelled CT volumes (or pictures) as the `SliceSet` the trainer and `evaluate` use.

Per case: the image through covseg's reader and input QA, the masks through its mask reader and
checked onto the image's grid, label values mapped to Anam-Net's classes, the lungs from a given
lung mask or covseg's lung extractor (recorded per case), the volume cut into slices of the
configured plane at `pixel_mm`, and the result cached on disk (keyed by the files' sizes and
times and every setting that shapes it), so later runs and epochs never read NIfTI again.

The lung class: with a lung mask, abnormal = lesion inside the lungs, normal = lungs - lesion
(as ma20). Without one, covseg's extractor gives the lungs and every reference lesion is joined
to them (dense lesions against the pleura are what extractors miss); test slices are masked by
the extractor alone unless `oracle_test_lungs`, so a lesion it misses is a miss.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covseg.data.layouts import ROLES, Case, nnunet_cases, nnunet_roles, pair_files, resolve_layout
from covseg.data.ma20 import SliceSet, labels_from_masks
from covseg.data.recipes import prepare, source_intensity
from covseg.errors import InputError
from covseg.intensity import Intensity

CACHE_VERSION = 1


@dataclass
class CaseArrays:
    """One case cut into planes: raw image values, lungs, lesions, and what they came from."""

    image: np.ndarray  # (n, h, w) float32, the source's values
    lungs: np.ndarray  # (n, h, w) bool: the given lung mask, or the extractor's
    lesion: np.ndarray  # (n, h, w) bool: every reference lesion
    info: dict


def discover(data) -> tuple[list[Case], dict[int, str] | None]:
    """The data set's cases and its {label value: role} (None: a binary mask, any one value)."""
    root = Path(data.path) if data.path else None
    if root is None:
        raise InputError(f"dataset '{data.dataset}' needs data.path: the data set's folder")
    if data.dataset == "nnunet":
        cases, names = nnunet_cases(root)
        return cases, _checked_roles(nnunet_roles(names, data.labels))
    cases = pair_files(root, resolve_layout(data.dataset, data.preset, data.layout))
    return cases, _checked_roles({int(k): v for k, v in data.labels.items()}) if data.labels else None


def _checked_roles(roles: dict[int, str]) -> dict[int, str]:
    bad = {k: v for k, v in roles.items() if v not in ROLES}
    if bad:
        raise InputError(f"labels: {bad} are not roles; each label value maps to one of: {', '.join(ROLES)}")
    return {0: "background", **roles}


def to_planes(volume: np.ndarray, plane: str) -> np.ndarray:
    """(z, y, x) -> (n, rows, cols) slices of `plane`, head up in coronal and sagittal slices."""
    if plane == "axial":
        return volume
    order = (1, 0, 2) if plane == "coronal" else (2, 0, 1)
    return np.transpose(volume, order)[:, ::-1, :]


def plane_spacing(spacing: tuple[float, float, float], plane: str) -> tuple[float, float, float]:
    """(between slices, rows, cols) in mm for `plane`."""
    dz, dy, dx = spacing
    return {"axial": (dz, dy, dx), "coronal": (dy, dz, dx), "sagittal": (dx, dz, dy)}[plane]


def _lesion_and_lungs(case: Case, scan, roles: dict[int, str] | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(lesion, lungs, where the lungs came from), every mask checked against the image."""
    from covseg.io.grid import grid_mismatch
    from covseg.io.readers import read_mask

    mask = read_mask(case.label)
    why = grid_mismatch(scan, mask)
    if why:
        raise InputError(f"{case.label}: not on the grid of its image {case.image}: {why}")
    values = np.unique(mask.array)
    if roles is None:
        nonzero = values[values != 0]
        if nonzero.size > 1:
            raise InputError(f"{case.label}: labels {nonzero.astype(int).tolist()} where a binary "
                             "lesion mask has one; map them in data.labels (value: abnormal|lung|background)")
        lesion, labelled_lungs = mask.array != 0, None
    else:
        outside = sorted(set(values.astype(int).tolist()) - set(roles))
        if outside or not np.all(values == np.round(values)):
            raise InputError(f"{case.label}: label values {outside} are outside data.labels "
                             f"({roles}); add them to the mapping")
        lesion = np.isin(mask.array, [v for v, r in roles.items() if r == "abnormal"])
        lung_values = [v for v, r in roles.items() if r in ("lung", "abnormal")]
        labelled_lungs = np.isin(mask.array, lung_values) if "lung" in roles.values() else None
    if case.lungs is not None:
        lung_mask = read_mask(case.lungs)
        why = grid_mismatch(scan, lung_mask)
        if why:
            raise InputError(f"{case.lungs}: not on the grid of its image {case.image}: {why}")
        return lesion, lung_mask.array > 0, f"lung mask {case.lungs.name}"
    if labelled_lungs is not None:
        return lesion, labelled_lungs, f"lung labels of {case.label.name}"
    from covseg.lungs import extract_lungs, resolve_method

    method = resolve_method("auto", scan.intensity, scan.array)
    found = extract_lungs(scan.array, scan.spacing, scan.intensity, method) > 0
    return lesion, found, f"covseg.lungs:{method}"


def read_case(case: Case, data, roles: dict[int, str] | None) -> CaseArrays:
    """Read, check and cut one case (no cache)."""
    from covseg.io import read_scan
    from covseg.io.qa import refusals

    scan = read_scan(case.image)
    scan.intensity = source_intensity(data.recipe, scan.intensity, scan.array, case.image)
    found = [f for f in refusals(scan) if not (f.code == "not-hu" and data.recipe == "enhanced")]
    if found and not data.override_qa:
        raise InputError(f"{case.image}: {found[0].message} (set data.override_qa to train on it anyway)")
    if data.plane != "axial" and not scan.is_volume:
        raise InputError(f"{case.image}: one slice cannot be cut in the {data.plane} plane; use plane: axial")
    lesion, lungs, lung_source = _lesion_and_lungs(case, scan, roles)
    between, rows, cols = plane_spacing(scan.spacing, data.plane)
    image, lungs, lesion = (to_planes(a, data.plane) for a in (scan.array, lungs, lesion))
    if data.pixel_mm and scan.spacing_known:
        from covseg.preprocess.resample import resize_planes

        size = (max(16, round(image.shape[1] * rows / data.pixel_mm)),
                max(16, round(image.shape[2] * cols / data.pixel_mm)))
        rows, cols = rows * image.shape[1] / size[0], cols * image.shape[2] / size[1]
        image = resize_planes(np.ascontiguousarray(image), size)
        lungs, lesion = (resize_planes(np.ascontiguousarray(a), size, labels=True) for a in (lungs, lesion))
    info = {"case": case.id, "patient": case.patient, "image": str(case.image), "label": str(case.label),
            "lung_source": lung_source, "lungs_given": not lung_source.startswith("covseg.lungs"),
            "intensity": scan.intensity.value, "plane": data.plane,
            "voxel_ml": between * rows * cols / 1000.0 if scan.spacing_known else None,
            "qa_overridden": [f.code for f in found]}
    return CaseArrays(np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(lungs),
                      np.ascontiguousarray(lesion), info)


def _fingerprint(path: Path | None) -> list:
    if path is None:
        return []
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return [str(path.resolve())] + [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def cache_dir(data) -> Path:
    if data.cache:
        return Path(data.cache)
    import platformdirs

    return Path(platformdirs.user_cache_dir("covseg")) / "volumes"


def load_case(case: Case, data, roles: dict[int, str] | None) -> CaseArrays:
    """`read_case` through the disk cache (keyed by covseg's version too: its lung extractor and
    readers shape what is cached)."""
    from covseg import __version__

    key = json.dumps([CACHE_VERSION, __version__, _fingerprint(case.image), _fingerprint(case.label),
                      _fingerprint(case.lungs), case.id, case.patient, data.plane, data.pixel_mm,
                      data.recipe == "enhanced", data.recipe == "thesis", data.override_qa,
                      sorted((roles or {}).items())])
    path = cache_dir(data) / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
    if path.is_file():
        with np.load(path) as z:
            return CaseArrays(z["image"], z["lungs"], z["lesion"], json.loads(str(z["info"])))
    arrays = read_case(case, data, roles)
    from covseg.io import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, image=arrays.image, lungs=arrays.lungs, lesion=arrays.lesion,
                     info=json.dumps(arrays.info))

    atomic_write(path, write, force=True)
    return arrays


def load_all(data) -> tuple[list[Case], list[CaseArrays]]:
    """Every case of the data set, checked and cached, so that any problem with a user's data is
    one `InputError` before training starts."""
    cases, roles = discover(data)
    arrays = [load_case(c, data, roles) for c in cases]
    if not any(a.lesion.any() for a in arrays):
        raise InputError(f"every mask is empty ({_names([c.label for c in cases])}): no lesion to "
                         "learn; check data.labels and the label pattern")
    return cases, arrays


def _names(paths: list[Path]) -> str:
    return ", ".join(p.name for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def slice_set(arrays: list[CaseArrays], data, split: str) -> SliceSet:
    """The cases' slices prepared by the recipe, padded to one size; training keeps the slices
    `train_slices` names, testing every slice (so per-case figures are 3-D)."""
    images, lungs, labels, ids, cases, infos = [], [], [], [], [], {}
    for a in arrays:
        given = a.info["lungs_given"]
        region = a.lungs if given else a.lungs | a.lesion
        label = labels_from_masks(region, a.lesion)
        mask = region if given or split == "train" or data.oracle_test_lungs else a.lungs
        keep = np.arange(len(a.image))
        if split == "train" and data.train_slices != "all":
            wanted = label == 1 if data.train_slices == "lesions" else label > 0
            keep = np.nonzero(wanted.any(axis=(1, 2)))[0]
        prepared = prepare(a.image[keep], Intensity(a.info["intensity"]), data.recipe)
        images.append(prepared)
        lungs.append(mask[keep])
        labels.append(label[keep])
        ids += [f"{a.info['case']}/{data.plane}/{k:04d}" for k in keep]
        cases += [a.info["case"]] * len(keep)
        infos[a.info["case"]] = dict(a.info, plane_shape=list(a.image.shape[1:]),
                                     lesion_outside_lungs_px=int((a.lesion & ~region).sum()))
    if not ids:
        raise InputError(f"no {split} slices with {data.train_slices} in the {split} cases; "
                         "check the masks or set data.train_slices: all")
    # one size for all, a multiple of 32 so whole slices pass every encoder's downsampling
    h, w = (-(-max(a.shape[k] for a in images) // 32) * 32 for k in (1, 2))

    def padded(blocks: list[np.ndarray], fill) -> np.ndarray:
        return np.concatenate([np.pad(b, ((0, 0), (0, h - b.shape[1]), (0, w - b.shape[2])),
                                      constant_values=fill(b)) for b in blocks])

    return SliceSet(padded(images, lambda b: b.min() if b.size else 0), padded(lungs, lambda b: False),
                    padded(labels, lambda b: 0), ids, Intensity.PREPARED, cases, infos)
