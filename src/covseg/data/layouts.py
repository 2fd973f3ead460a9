"""A user's labelled data set by its folder layout: which image goes with which mask, per case.

Three layouts. `folder`: images and masks found by name patterns (`{case}` marks the part that
pairs them, `{patient}` optionally groups cases of one patient; `*` and `**/` are wildcards),
with presets for MosMedData and Ma et al.'s release. `nnunet`: the nnU-Net / Medical
Segmentation Decathlon layout (imagesTr, labelsTr, dataset.json). `pictures`: picture/mask pairs.
Every problem found here (unpaired files, two images for one case) is one `InputError` line
naming the files, raised before anything is read.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from covseg.errors import InputError

LAYOUTS = ("folder", "nnunet", "pictures")
ROLES = ("background", "lung", "abnormal")
PLANES = ("axial", "coronal", "sagittal")
TRAIN_SLICES = ("lungs", "lesions", "all")


@dataclass
class Layout:
    """File patterns relative to the data set's folder; `rename` turns an image's `{case}` into
    its masks' (pairs of old, new substrings, applied in order)."""

    image: str | None = None
    label: str | None = None
    lungs: str | None = None  # a separate lung mask per case (non-zero = lung)
    rename: list[list[str]] = field(default_factory=list)
    unlabelled: str = "error"  # images without a mask: error | skip

    def __post_init__(self) -> None:
        if self.unlabelled not in ("error", "skip"):
            raise InputError(f"layout.unlabelled: '{self.unlabelled}' is not one of error, skip")


PRESETS: dict[str, dict] = {
    # MosMedData (COVID19_1110): 1,110 studies in studies/CT-0..CT-4, masks for the 50 of CT-1
    "mosmed": {"image": "studies/**/{case}.nii.gz", "label": "masks/{case}_mask.nii.gz",
               "unlabelled": "skip"},
    # Ma et al. 2020 (Zenodo 3757476): CT, lung-mask and infection-mask folders, masks named
    # without the CTs' "_org_" / "covid-19-pneumonia-" / "-dcm" parts
    "ma2020": {"image": "COVID-19-CT-Seg_20cases/{case}.nii*", "label": "Infection_Mask/{case}.nii*",
               "lungs": "Lung_Mask/{case}.nii*",
               "rename": [["coronacases_org_", "coronacases_"],
                          ["radiopaedia_org_covid-19-pneumonia-", "radiopaedia_"], ["-dcm", ""]]},
}
DEFAULT_PATTERNS = {"folder": {"image": "images/{case}.nii.gz", "label": "labels/{case}.nii.gz"},
                    "pictures": {"image": "images/{case}.png", "label": "masks/{case}.png"}}


@dataclass
class Case:
    """One labelled scan (or picture): its files and the patient it belongs to."""

    id: str
    patient: str
    image: Path
    label: Path
    lungs: Path | None = None


def resolve_layout(kind: str, preset: str | None, overrides: dict | None) -> Layout:
    """The preset's (or the layout kind's default) patterns, with the config's overrides."""
    if preset is not None and preset not in PRESETS:
        raise InputError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
    values = dict(PRESETS[preset] if preset else DEFAULT_PATTERNS.get(kind, {}))
    overrides = dict(overrides or {})
    known = {f.name for f in fields(Layout)}
    if set(overrides) - known:
        raise InputError(f"layout: unknown setting(s) {', '.join(sorted(set(overrides) - known))}; "
                         f"known: {', '.join(sorted(known))}")
    values.update(overrides)
    return Layout(**values)


def _regex(pattern: str) -> re.Pattern:
    """A pattern's regular expression: `{case}`/`{patient}` become groups, `**/` any folders."""
    out = []
    for token in re.split(r"(\{case\}|\{patient\}|\*\*/|\*)", pattern):
        if token in ("{case}", "{patient}"):
            out.append(f"(?P<{token[1:-1]}>[^/]+?)")
        elif token == "**/":
            out.append("(?:.*/)?")
        elif token == "*":
            out.append("[^/]*")
        else:
            out.append(re.escape(token))
    return re.compile("".join(out) + "$")


def _find(root: Path, pattern: str, rename: list[list[str]] = ()) -> dict[str, tuple[Path, str]]:
    """{case key: (path, patient)} for every file (or DICOM folder) the pattern matches."""
    if "{case}" not in pattern:
        raise InputError(f"the file pattern '{pattern}' has no {{case}} part to pair files by")
    regex = _regex(pattern)
    found: dict[str, tuple[Path, str]] = {}
    for path in sorted(root.glob(pattern.replace("{case}", "*").replace("{patient}", "*"))):
        match = regex.match(path.relative_to(root).as_posix())
        if match is None:
            continue
        key = match["case"]
        for old, new in rename:
            key = key.replace(old, new)
        patient = match.groupdict().get("patient")
        key = f"{patient}/{key}" if patient else key  # a case is named within its patient
        if key in found:
            raise InputError(f"{found[key][0]} and {path} are both case '{key}'; keep one of them "
                             "or make the pattern tell them apart")
        found[key] = (path, patient or key)
    return found


def _listing(paths: list[Path]) -> str:
    names = ", ".join(str(p) for p in paths[:3])
    return names + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def pair_files(root: Path, layout: Layout) -> list[Case]:
    """Cases of a `folder` or `pictures` layout; unpaired files are refused, naming them."""
    if not root.is_dir():
        raise InputError(f"data folder {root} not found; set data.path to the data set's folder")
    if not layout.image or not layout.label:
        raise InputError("layout: give both an image and a label pattern (or a preset)")
    images = _find(root, layout.image, layout.rename)
    labels = _find(root, layout.label)
    lungs = _find(root, layout.lungs) if layout.lungs else {}
    if not images:
        raise InputError(f"{root}: no file matches the image pattern '{layout.image}'")
    orphans = sorted(labels[k][0] for k in set(labels) - set(images))
    if layout.lungs:
        orphans += sorted(lungs[k][0] for k in set(lungs) - set(images))
    if orphans:
        raise InputError(f"masks without an image ({layout.image}): {_listing(orphans)}")
    missing = sorted(images[k][0] for k in set(images) - set(labels))
    if missing and layout.unlabelled == "error":
        raise InputError(f"images without a mask ({layout.label}): {_listing(missing)}; add their "
                         "masks, or set layout.unlabelled: skip")
    no_lungs = sorted(images[k][0] for k in set(images) & set(labels) - set(lungs))
    if layout.lungs and no_lungs:
        raise InputError(f"images without a lung mask ({layout.lungs}): {_listing(no_lungs)}")
    return [Case(k, images[k][1], images[k][0], labels[k][0], lungs[k][0] if layout.lungs else None)
            for k in sorted(set(images) & set(labels))]


def nnunet_cases(root: Path) -> tuple[list[Case], dict[str, int]]:
    """Cases of an nnU-Net / Decathlon folder and its label names ({name: value}).

    imagesTr/labelsTr pair by name (nnU-Net v2's `_0000` channel suffix or the Decathlon's none);
    imagesTs joins only where a labelsTs folder gives its masks (unlabelled cases cannot be scored).
    """
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise InputError(f"{root}: no dataset.json; an nnU-Net folder has dataset.json, imagesTr "
                         "and labelsTr")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{meta_path}: not valid JSON ({exc.__class__.__name__})") from None
    channels = meta.get("channel_names") or meta.get("modality") or {"0": "CT"}
    if len(channels) != 1:
        raise InputError(f"{meta_path}: {len(channels)} input channels ({', '.join(channels.values())}); "
                         "covseg trains on one CT channel")
    ending = meta.get("file_ending", ".nii.gz")
    cases: list[Case] = []
    for images, labels in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        if not (root / labels).is_dir():
            continue
        suffix = "_0000" if any((root / images).glob(f"*_0000{ending}")) else ""
        cases += pair_files(root, Layout(f"{images}/{{case}}{suffix}{ending}", f"{labels}/{{case}}{ending}"))
    return cases, _label_names(meta.get("labels", {}), meta_path)


def _label_names(labels: dict, where: Path) -> dict[str, int]:
    """{name: value} from nnU-Net v2's {name: value} or the Decathlon's {"value": name}."""
    out = {}
    for key, value in labels.items():
        name, number = (value, key) if str(key).isdigit() else (key, value)
        if not isinstance(number, (int, str)) or not str(number).isdigit():
            raise InputError(f"{where}: label '{name}' is a region ({number}); give one value per label")
        out[str(name)] = int(number)
    if not out:
        raise InputError(f"{where}: no labels listed; dataset.json must name its label values")
    return out


def nnunet_roles(names: dict[str, int], mapping: dict | None) -> dict[int, str]:
    """{value: role} for dataset.json's labels: background by name, names with 'lung' are lung,
    every other label abnormal; `mapping` (by name or value) overrides."""
    mapping = {str(k): v for k, v in (mapping or {}).items()}
    roles = {}
    for name, value in names.items():
        default = "background" if value == 0 or name.lower() == "background" else \
            "lung" if "lung" in name.lower() else "abnormal"
        roles[value] = mapping.get(name, mapping.get(str(value), default))
    return roles
