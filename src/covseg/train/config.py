"""Experiment configuration: a small YAML file, read into a typed object."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from covseg.data.splits import Split
from covseg.errors import InputError


@dataclass
class DataConfig:
    dataset: str = "ma20"  # ma20 | medseg100 | a user's data by layout: folder | nnunet | pictures
    train_folds: list[int] = field(default_factory=lambda: [1, 2, 3])
    test_folds: list[int] = field(default_factory=lambda: [4])
    source: str | None = None  # ma20 only: coronacases | radiopaedia (training slices)
    test_source: str | None = None  # ma20 only: source of the test slices (default: `source`)
    mask_lungs: bool = True
    target: str = "lesions"  # lesions: 3 classes | lungs: lung vs not (the lung model; its loss
    # reads lung = label > 0 of the same 0 / 1 abnormal / 2 normal maps)
    # medseg100's training pictures (pseudo lungs, 40 of 50) joined to the slices, framed for the target
    extra: str | None = None  # None | medseg100
    extra_share: float = 0.25  # share of the training samples drawn from `extra`
    max_slices: int | None = None  # evenly spaced subset, for quick runs
    # extracted lungs (medseg100, own data without lung masks): join reference lesions to test lungs
    oracle_test_lungs: bool = False
    root: str | None = None  # default: $COVSEG_DATA_ROOT or ../shared/data
    # a user's data set (docs/own_data.md): where, which files pair, what the labels mean
    path: str | None = None  # the data set's folder
    preset: str | None = None  # folder patterns: mosmed | ma2020
    layout: dict = field(default_factory=dict)  # image/label/lungs patterns, rename, unlabelled
    labels: dict | None = None  # {label value (nnunet: or name): background | lung | abnormal}
    plane: str = "axial"  # axial | coronal | sagittal
    recipe: str = "covseg"  # covseg | thesis | enhanced (covseg.data.recipes)
    pixel_mm: float | None = 1.4  # in-plane pixel the slices are resampled to (the model's scale)
    train_slices: str = "lungs"  # training slices of a volume: lungs | lesions | all
    split: Split = field(default_factory=Split)  # by patient: k folds, a held-out count, or a file
    cache: str | None = None  # where cut volumes are cached; default: the user cache folder
    override_qa: bool = False  # train on volumes the input QA refuses (recorded per case)

    def __post_init__(self) -> None:
        from covseg.data.layouts import LAYOUTS, PLANES, TRAIN_SLICES, resolve_layout
        from covseg.data.recipes import check_recipe

        if isinstance(self.split, dict):
            self.split = _build(Split, self.split, "[data.split]")
        check_recipe(self.recipe)
        for name, allowed in (("plane", PLANES), ("train_slices", TRAIN_SLICES)):
            if getattr(self, name) not in allowed:
                raise InputError(f"data.{name}: '{getattr(self, name)}' is not one of {', '.join(allowed)}")
        if self.dataset in LAYOUTS:
            resolve_layout(self.dataset, self.preset, self.layout)  # typos fail at load
        if self.extra not in (None, "medseg100"):
            raise InputError(f"data.extra '{self.extra}': only medseg100 (its training pictures) can join")
        if not 0.0 < self.extra_share < 1.0:
            raise InputError(f"data.extra_share {self.extra_share}: give a share between 0 and 1")


@dataclass
class TrainConfig:
    name: str = "experiment"
    model: str = "anamnet"
    model_args: dict = field(default_factory=dict)
    init: str | None = None  # weights to start from (fine-tuning); default: random
    data: DataConfig = field(default_factory=DataConfig)
    loss: str = "dice_ce"  # ce_weighted (the paper's) | ce | dice | dice_ce
    optimizer: str = "adam"  # adam (the paper's) | adamw
    lr: float = 5e-4
    weight_decay: float = 0.0
    schedule: str = "step"  # step (x gamma every step_epochs, the paper's) | onecycle | constant
    step_epochs: int = 33
    gamma: float = 0.1
    epochs: int = 100
    patience: int | None = None  # early stopping: epochs without a better validation Dice
    steps_per_epoch: int | None = None  # default: one pass over the training slices
    batch_size: int = 5
    scale: float = 1.0  # in-plane zoom of the training slices before cropping
    crop: int | None = 128  # lung-centred training crop; None trains on whole slices
    flips: bool = True
    zoom: list[float] | None = None  # content zoom range [lo, hi] (log-uniform); None: off
    rotate_deg: float = 0.0  # small rotations, +-degrees
    quarter_turns: bool = False  # random quarter turns (pictures come turned)
    reenhance: float = 0.0  # share of samples given the user-picture intensity (enhanced again)
    resample: float = 0.0  # share of samples resampled as a picture of another size would be
    dense_wall: float = 0.0  # share of samples with consolidation painted against the lung's wall
    intensity_jitter: bool = True
    lesion_weight: float = 0.0  # lung model: added cross-entropy on lesion pixels (they are lung)
    # distillation: weights (trained on the same training slices) whose mean logits on each
    # training slice are soft targets, added to the loss as a KL term times `distill_weight`
    teachers: list[str] = field(default_factory=list)
    distill_weight: float = 1.0
    ema: float | None = None  # decay of an exponential moving average of the weights, shipped
    # BatchNorm normalises with its running statistics and leaves them as they are (fine-tuning
    # from `init` with small batches; DDP on CPU, where SyncBatchNorm cannot pool statistics)
    freeze_batchnorm: bool = False
    seed: int = 0
    threads: int | None = None
    precision: str = "auto"  # fp32 | bf16 | auto: the faster of the two on this CPU, timed at the start

    def __post_init__(self) -> None:
        choices = {"optimizer": ("adam", "adamw"), "precision": ("auto", "fp32", "bf16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"{name}: '{getattr(self, name)}' is not one of {', '.join(allowed)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> "TrainConfig":
        """Settings that only make sense together: the thesis recipe's inputs lie in [-1, 1],
        which the intensity jitter and re-enhancement (made for [0, 1]) would destroy."""
        if self.data.recipe == "thesis" and (self.intensity_jitter or self.reenhance or self.resample
                                          or self.dense_wall):
            raise InputError("recipe 'thesis' gives inputs in [-1, 1]: set intensity_jitter: false, "
                             "reenhance: 0, resample: 0 and dense_wall: 0")
        if self.patience is not None and not self.data.split.val:
            raise InputError("patience (early stopping) needs validation patients: set data.split.val")
        if self.lesion_weight and self.data.target != "lungs":
            raise InputError("lesion_weight weighs the lung model's lesion pixels: use it with "
                             "data.target lungs")
        if self.teachers and self.data.target != "lesions":
            raise InputError("teachers (distillation) give lesion-model soft targets: use them "
                             "with data.target lesions")
        if self.patience is not None and self.data.target != "lesions":
            raise InputError("patience (early stopping) scores lesion Dice: use it with target lesions")
        return self


def _build(cls, values: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise InputError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(known))}")
    return cls(**values)


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A config file's settings with its `base:` file's beneath them (a path relative to the
    file): keys of the file replace the base's, and `data` is merged key by key, so a variant
    (another fold, a loss) states only what differs."""
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise InputError(f"{path}: its base: chain comes back to it; break the loop")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML ({exc.__class__.__name__}); fix the file") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path} must hold a mapping of settings")
    base = raw.pop("base", None)
    if base is None:
        return raw
    merged = _read_yaml(path.parent / str(base), seen + (path.resolve(),))
    data = {**(merged.get("data") or {}), **(raw.pop("data", None) or {})}
    return {**merged, **raw, **({"data": data} if data else {})}


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML experiment file; unknown keys are errors, so typos do not pass silently."""
    path = Path(path)
    raw = _read_yaml(path)
    data = _build(DataConfig, raw.pop("data", {}) or {}, f"{path} [data]")
    cfg = _build(TrainConfig, raw, str(path))
    cfg.data = data
    return cfg.check()


def config_from_dict(values: dict) -> TrainConfig:
    values = dict(values)
    data = _build(DataConfig, values.pop("data", {}) or {}, "config [data]")
    cfg = _build(TrainConfig, values, "config")
    cfg.data = data
    return cfg.check()
