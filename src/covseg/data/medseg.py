"""medseg100: the MedSeg slices (Inf-Net's 50 train / 48 test split) with GGO/consolidation labels.

The pictures are stored rotated a quarter turn (anterior on the left); they are turned back to
the usual axial view, and halved in size to ma20's scale (they are ~300-px crops of 512-px
slices). No lung masks are provided: lungs come from covseg's picture lung extractor, joined
with the labelled lesions, so the labels are Anam-Net's 0 / 1 abnormal / 2 normal lung.
Test slices are masked by the extractor alone unless `oracle_test_lungs` asks for the join.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from covseg.data.ma20 import SliceSet, labels_from_masks
from covseg.data.root import require_dataset
from covseg.intensity import Intensity
from covseg.lungs import extract_lungs_display
from covseg.lungs.threshold import close_and_fill, largest_components, split_left_right

SCALE = 0.5
LUNG_FRAME = 256  # lung-model pictures: longer side, padded square at the bottom-right as LungModel pads
HELD_OUT_EVERY = 5  # every 5th training picture (10 of 50) is kept out of the lung model's training


def _load_pair(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = Image.open(image_path).convert("L")
    size = (max(16, round(img.width * SCALE)), max(16, round(img.height * SCALE)))
    image = np.rot90(np.asarray(img.resize(size, Image.BILINEAR)), k=-1)
    mask = np.rot90(np.asarray(Image.open(mask_path).resize(size, Image.NEAREST)), k=-1)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def load_medseg100(split: str = "test", data_root: str | Path | None = None,
                   truth_in_lungs: bool | None = None) -> SliceSet:
    """Slices of one split ('train' or 'test'), padded to a common size with background.

    The lung mask (what the model's input is multiplied by, and where it may call anything)
    comes from the picture lung extractor, which misses dense lesions against the pleura.
    `truth_in_lungs` joins the reference lesions to it: right for training, an oracle for
    testing; by default only the training split gets it. The labels always count every
    reference lesion, so a lesion outside the extracted lungs is a miss.
    """
    if truth_in_lungs is None:
        truth_in_lungs = split == "train"
    root = require_dataset("medseg100", data_root) / split
    names = sorted((root / "images").glob("*.jpg"), key=lambda p: int(p.stem))
    pairs = [_load_pair(p, root / "masks" / f"{p.stem}.png") for p in names]
    h = max(im.shape[0] for im, _ in pairs)
    w = max(im.shape[1] for im, _ in pairs)
    images = np.zeros((len(pairs), h, w), np.uint8)
    lungs = np.zeros((len(pairs), h, w), bool)
    labels = np.zeros((len(pairs), h, w), np.uint8)
    for i, (image, mask) in enumerate(pairs):
        ih, iw = image.shape
        lesion = mask > 0
        extracted = extract_lungs_display(image[None].astype(np.float32))[0] > 0
        images[i, :ih, :iw] = image
        lungs[i, :ih, :iw] = extracted | lesion if truth_in_lungs else extracted
        labels[i, :ih, :iw] = labels_from_masks(extracted | lesion, lesion)
    return SliceSet(images, lungs, labels, [f"medseg100/{split}/{p.stem}" for p in names],
                    Intensity.DISPLAY)


def pseudo_lungs(image: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """MedSeg gives no lung masks, so the lung model is taught lungs made of what is known: the
    picture extractor's dark lungs without its small parts (trachea, bowel gas), joined with the
    labelled lesions (inside the lungs by definition, and what the extractor misses at the
    pleura), each lung closed and filled. Model-free, so a rerun gives the same labels."""
    dark = largest_components(extract_lungs_display(image[None].astype(np.float32))[0] > 0)
    sides = split_left_right((dark | lesion)[None])[0]
    everywhere = np.ones((1, *image.shape), bool)
    out = np.zeros(image.shape, bool)
    for label in np.unique(sides[sides > 0]):
        out |= close_and_fill((sides == label)[None], everywhere, 3)[0]
    return out


def lung_model_split(split: str) -> list[int]:
    """Which of the 50 training pictures (sorted by number) a lung-model split holds:
    'train' all but every HELD_OUT_EVERY-th, 'held_out' those (for choosing, never the test)."""
    every = list(range(50))
    if split == "train":
        return [i for i in every if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
    if split == "held_out":
        return [i for i in every if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    raise ValueError(f"unknown lung-model split '{split}'")


def load_medseg100_pictures(split: str = "train", target: str = "lungs",
                            data_root: str | Path | None = None) -> SliceSet:
    """medseg100 training pictures (`lung_model_split`) as a user's upright picture reaches a
    model, in LUNG_FRAME-square canvases; lungs are `pseudo_lungs`, labels 0 / 1 abnormal /
    2 normal lung.

    target "lungs": as LungModel sees a picture, enhanced at its own size, its longer side
    scaled to LUNG_FRAME, at the canvas' top-left. target "lesions": as the pipeline frames a
    picture for the lesion model, zoomed so its lungs span what ma20's do
    (covseg.infer.framing.from_lungs), then enhanced as the pipeline would (`picture_clahe`); a
    framed picture larger than the canvas keeps its centre.
    """
    from covseg.infer.framing import from_lungs
    from covseg.preprocess.contract import enhance, picture_clahe

    root = require_dataset("medseg100", data_root) / "train"
    names = sorted((root / "images").glob("*.jpg"), key=lambda p: int(p.stem))
    chosen = [names[i] for i in lung_model_split(split)]
    images = np.zeros((len(chosen), LUNG_FRAME, LUNG_FRAME), np.uint8)
    lungs = np.zeros(images.shape, bool)
    labels = np.zeros(images.shape, np.uint8)
    for i, path in enumerate(chosen):
        picture = np.rot90(np.asarray(Image.open(path).convert("L")), k=-1)
        lesion = np.rot90(np.asarray(Image.open(root / "masks" / f"{path.stem}.png")), k=-1) > 0
        lung = pseudo_lungs(picture, lesion)
        h, w = picture.shape
        zoom = LUNG_FRAME / max(h, w) if target == "lungs" else from_lungs(lung[None]).zoom
        size = (max(16, round(w * zoom)), max(16, round(h * zoom)))
        framed_lung, framed_lesion = (_fit(m, size) for m in (lung, lesion & lung))
        if target == "lungs":
            enhanced = np.asarray(Image.fromarray(_as_uint8(enhance(picture, Intensity.DISPLAY)))
                                  .resize(size, Image.BILINEAR))
        else:  # the pipeline's contrast step, decided as it decides it
            framed = np.asarray(Image.fromarray(np.ascontiguousarray(picture)).resize(size, Image.BILINEAR))
            enhanced = _as_uint8(enhance(framed, Intensity.DISPLAY, picture_clahe(framed, framed_lung)))
        y0, x0 = (max(0, (n - LUNG_FRAME) // 2) for n in enhanced.shape)
        view = (slice(y0, y0 + LUNG_FRAME), slice(x0, x0 + LUNG_FRAME))
        fh, fw = enhanced[view].shape
        images[i, :fh, :fw] = enhanced[view]
        lungs[i, :fh, :fw] = framed_lung[view]
        labels[i, :fh, :fw] = labels_from_masks(framed_lung[view], framed_lesion[view])
    return SliceSet(images, lungs, labels, [f"medseg100/train/{p.stem}" for p in chosen],
                    Intensity.ENHANCED)


def _fit(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A boolean mask resized (nearest) to `size` (width, height)."""
    return np.asarray(Image.fromarray(mask.astype(np.uint8)).resize(size, Image.NEAREST)) > 0


def _as_uint8(image01: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image01, 0.0, 1.0) * 255).astype(np.uint8)
