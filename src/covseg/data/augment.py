"""Training-time augmentation: what users' inputs vary in, applied before the lung masking.

Order, per sample: (0) consolidation painted against the lung's wall, for the lung model (a
picture's lungs otherwise leave dense disease at the pleura and the spine out); (1) intensity as a
user's source would give it (a re-windowed, gamma-changed
picture, given covseg's contrast step), and a picture stored at another size, which the
framing brings back to the model's scale (resampled down or up and back: its blur); (2)
geometry: zoom, small rotations, quarter turns, flips (MONAI's `Affine`, image bilinear, labels
nearest); (3) a lung-centred crop (what makes CPU training affordable); (4) the lung masking of
the paper, so the masked border follows the transformed lungs; (5) gamma/contrast/noise jitter.
All randomness comes from the step's numpy generator, so a resumed run draws the same samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from covseg.intensity import Intensity
from covseg.preprocess.contract import enhance, picture_clahe


RESAMPLE = (0.6, 1.6)  # stored sizes of a picture against the model's scale (issue 16, item 1)
DENSE_RADIUS = (0.03, 0.10)  # painted consolidation: radius as a share of the slice's width


@dataclass
class Augment:
    crop: int | None = 128
    flips: bool = True
    zoom: tuple[float, float] | None = None  # content zoom range, drawn log-uniformly
    rotate_deg: float = 0.0  # small rotations, uniform in +-rotate_deg
    quarter_turns: bool = False
    reenhance: float = 0.0  # probability of the user-picture intensity path
    resample: float = 0.0  # probability of a picture stored at another size (RESAMPLE) and framed back
    dense_wall: float = 0.0  # probability of 1-3 consolidations painted against the lung's wall
    mask_lungs: bool = True  # multiply the image by the (transformed) lungs, as the paper does
    jitter: bool = True
    gamma: tuple[float, float] = (0.7, 1.5)
    contrast: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.08
    noise: float = 0.02

    def __call__(self, image: np.ndarray, lungs: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator, soft: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One (H, W) enhanced image in [0, 1] with its lungs and labels -> (input, labels, soft).

        `soft`, a (C, H, W) map of a teacher's logits (distillation), follows the geometry and
        the crop; it draws nothing from `rng`, so a run with and without it sees the same samples.
        """
        if self.dense_wall and rng.random() < self.dense_wall:
            for _ in range(int(rng.integers(1, 4))):
                image, label = dense_at_wall(image, lungs, label, rng)
        if self.reenhance and rng.random() < self.reenhance:
            image = as_user_picture(image, lungs, rng)
        if self.resample and rng.random() < self.resample:
            image = resampled(image, math.exp(rng.uniform(*np.log(RESAMPLE))))
        image, lungs, label, soft = self.geometry(image, lungs, label, rng, soft)
        if self.crop:
            image, lungs, label, soft = lung_crop((image, lungs, label, soft), label, self.crop, rng)
        if self.mask_lungs:
            image = image * lungs
        inside = (label > 0) | (image > 0)  # lung-masked inputs keep their zero background
        if self.jitter and inside.any():
            image = jitter_intensity(image, inside, self, rng)
        if soft is not None:
            soft = np.ascontiguousarray(soft, dtype=np.float32)
        return (np.ascontiguousarray(image, dtype=np.float32),
                np.ascontiguousarray(label, dtype=np.uint8), soft)

    def geometry(self, image: np.ndarray, lungs: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator, soft: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Turns, flips, zoom and rotation, the same for every array (the planes are the last
        two axes, so a (C, H, W) `soft` map moves with the (H, W) ones)."""
        arrays = [image, lungs, label, soft]
        turns = int(rng.integers(4)) if self.quarter_turns else 0
        if turns:
            arrays = [_each(a, lambda b: np.rot90(b, turns, axes=(-2, -1))) for a in arrays]
        if self.flips:
            if rng.random() < 0.5:
                arrays = [_each(a, lambda b: b[..., ::-1]) for a in arrays]
            if rng.random() < 0.5:
                arrays = [_each(a, lambda b: b[..., ::-1, :]) for a in arrays]
        zoom = math.exp(rng.uniform(*np.log(self.zoom))) if self.zoom else 1.0
        angle = math.radians(rng.uniform(-self.rotate_deg, self.rotate_deg)) if self.rotate_deg else 0.0
        if zoom != 1.0 or angle:
            arrays = _affine(*arrays, zoom, angle)
        return tuple(arrays)


def _each(a: np.ndarray | None, f) -> np.ndarray | None:
    return None if a is None else f(a)


def _affine(image: np.ndarray, lungs: np.ndarray, label: np.ndarray, soft: np.ndarray | None,
            zoom: float, angle: float) -> list:
    """Zoom the content by `zoom` and rotate by `angle` about the centre; the frame size stays."""
    from monai.transforms import Affine

    def warp(a: np.ndarray, mode: str) -> np.ndarray:
        """(C, H, W) -> (C, H, W)."""
        t = Affine(rotate_params=angle, scale_params=(1 / zoom, 1 / zoom), padding_mode="zeros",
                   mode=mode, image_only=True)  # MONAI scales the sampling grid: 1/zoom
        return np.asarray(t(np.ascontiguousarray(a, dtype=np.float32)))

    return [warp(image[None], "bilinear")[0], warp(lungs[None], "nearest")[0] > 0.5,
            np.rint(warp(label[None], "nearest")[0]).astype(np.uint8),
            _each(soft, lambda b: warp(b, "bilinear"))]


def dense_at_wall(image: np.ndarray, lungs: np.ndarray, label: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A consolidation against the lung's wall, painted in and labelled abnormal: an ellipse
    centred within half its radius of the lungs' edge, cut to the lungs, given the grey level of
    the tissue beside it (brighter than the lung's median, within twice the radius) with that
    tissue's spread as texture. Anywhere on the edge: costal, mediastinal, by the spine. It looks
    like the wall it touches, so only the lung's shape says it is lung. Tried for the picture lung
    model (issue 15, item 1): it kept no more of fold 3's real disease, so no shipped model uses
    it (docs/results.md, "Consolidation painted at the wall")."""
    h, w = image.shape
    lungs = lungs.astype(bool)  # the training set holds them as 0 / 1 bytes
    r = rng.uniform(*DENSE_RADIUS) * w
    dist = cv2.distanceTransform(lungs.astype(np.uint8), cv2.DIST_L2, 3)
    ys, xs = np.nonzero((dist > 0) & (dist <= max(1.0, 0.5 * r)))
    if not ys.size:
        return image, label
    i = rng.integers(ys.size)
    cy, cx = int(ys[i]), int(xs[i])
    blob = np.zeros((h, w), np.uint8)
    axes = (max(1, round(r)), max(1, round(r * rng.uniform(0.5, 1.0))))
    cv2.ellipse(blob, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    near = np.zeros((h, w), np.uint8)
    cv2.circle(near, (cx, cy), max(2, round(2 * r)), 1, -1)
    tissue = image[near.astype(bool) & ~lungs & (image > np.median(image[lungs]))]
    if tissue.size < 10:
        return image, label
    blob = blob.astype(bool) & lungs
    alpha = cv2.GaussianBlur(blob.astype(np.float32), (0, 0), 1.0) * lungs * rng.uniform(0.8, 1.0)
    texture = cv2.GaussianBlur(rng.normal(0.0, 1.0, (h, w)).astype(np.float32), (0, 0), 1.0)
    paint = np.median(tissue) + texture * min(float(tissue.std()), 0.1)
    image = np.clip(image * (1 - alpha) + paint * alpha, 0.0, 1.0).astype(np.float32)
    label = np.where(blob, 1, label).astype(label.dtype)
    return image, label


def as_user_picture(image: np.ndarray, lungs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The slice as a user's 8-bit picture of it would reach the model: another window and gamma,
    then covseg's own contrast step (min-max, and CLAHE a second time where `picture_clahe`
    would run it)."""
    lo, hi = np.quantile(image, [rng.uniform(0.0, 0.05), rng.uniform(0.95, 1.0)])
    windowed = np.clip((image - lo) / max(hi - lo, 1e-6), 0.0, 1.0) ** rng.uniform(0.6, 1.6)
    return enhance(windowed * 255.0, Intensity.DISPLAY, picture_clahe(windowed, lungs))


def resampled(image: np.ndarray, factor: float) -> np.ndarray:
    """The slice as a picture stored `factor` times its size reaches the model after the framing
    zooms it back: resized (area-averaged down, bilinear up) and back to its own grid."""
    h, w = image.shape
    size = (max(8, round(w * factor)), max(8, round(h * factor)))
    there = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    back = cv2.INTER_LINEAR if factor < 1 else cv2.INTER_AREA
    small = cv2.resize(np.ascontiguousarray(image, dtype=np.float32), size, interpolation=there)
    return np.clip(cv2.resize(small, (w, h), interpolation=back), 0.0, 1.0)


def lung_crop(arrays: tuple[np.ndarray | None, ...], label: np.ndarray, size: int,
              rng: np.random.Generator) -> tuple[np.ndarray | None, ...]:
    """A size x size window of every array (planes on the last two axes; None stays None) whose
    centre lies inside the labels' bounding box."""
    h, w = label.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        arrays = tuple(_each(a, lambda b: np.pad(b, [(0, 0)] * (b.ndim - 2) + [(0, ph), (0, pw)]))
                       for a in arrays)
        label = np.pad(label, ((0, ph), (0, pw)))
        h, w = label.shape
    ys, xs = np.nonzero(label)
    if ys.size:
        cy = rng.integers(ys.min(), ys.max() + 1)
        cx = rng.integers(xs.min(), xs.max() + 1)
    else:
        cy, cx = h // 2, w // 2
    y0 = int(np.clip(cy - size // 2, 0, h - size))
    x0 = int(np.clip(cx - size // 2, 0, w - size))
    return tuple(_each(a, lambda b: b[..., y0:y0 + size, x0:x0 + size]) for a in arrays)


def jitter_intensity(image: np.ndarray, inside: np.ndarray, aug: Augment,
                     rng: np.random.Generator) -> np.ndarray:
    """Random gamma, contrast, brightness and noise inside `inside`; outside stays zero."""
    out = np.clip(image, 0.0, 1.0) ** rng.uniform(*aug.gamma)
    out = (out - 0.5) * rng.uniform(*aug.contrast) + 0.5 + rng.uniform(-aug.brightness, aug.brightness)
    out = out + rng.normal(0.0, aug.noise, out.shape)
    return np.where(inside, np.clip(out, 0.0, 1.0), 0.0).astype(np.float32)
