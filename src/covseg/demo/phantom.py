"""A synthetic chest CT in Hounsfield units, built in code, with lesions of known volume.

It ships with covseg so that `covseg demo` runs offline on any machine, and its ground truth
(lung and lesion masks) gives the tests known numbers. It is a caricature, not anatomy: a body
ellipse with a fat layer, ribs, a heart, two lungs with vessels, a trachea splitting into the main
bronchi, and peripheral ground-glass and consolidation regions in the lower posterior lungs, as
COVID-19 pneumonia typically shows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HU_AIR, HU_LUNG, HU_FAT, HU_SOFT, HU_BONE = -1000.0, -850.0, -100.0, 40.0, 700.0
HU_GGO, HU_CONSOLIDATION = -450.0, 20.0


@dataclass
class Phantom:
    hu: np.ndarray  # (z, y, x) float32
    spacing: tuple[float, float, float]  # (z, y, x) mm
    lungs: np.ndarray  # (z, y, x) uint8: 0 none, 1 right lung, 2 left lung
    lesions: np.ndarray  # (z, y, x) bool, inside the lungs

    @property
    def lesion_volume_ml(self) -> float:
        return float(self.lesions.sum()) * float(np.prod(self.spacing)) / 1000.0

    @property
    def lung_volume_ml(self) -> float:
        return float((self.lungs > 0).sum()) * float(np.prod(self.spacing)) / 1000.0

    @property
    def involvement_percent(self) -> float:
        return 100.0 * float(self.lesions.sum()) / float((self.lungs > 0).sum())


def _ellipsoid(z, y, x, centre, radii) -> np.ndarray:
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + \
        ((x - centre[2]) / radii[2]) ** 2 <= 1.0


def _tube(axes, start, end, radius) -> np.ndarray:
    """Voxels within `radius` mm of the segment start-end; `axes` are the z, y, x mm coordinates.

    Only the segment's bounding box is computed, which keeps the phantom quick to build.
    """
    a, b = np.asarray(start, float), np.asarray(end, float)
    box = []
    for c, lo, hi in zip(axes, np.minimum(a, b) - radius, np.maximum(a, b) + radius):
        inside = np.nonzero((c >= lo) & (c <= hi))[0]
        box.append(slice(inside[0], inside[-1] + 1) if inside.size else slice(0, 0))
    out = np.zeros(tuple(len(c) for c in axes), dtype=bool)
    gz, gy, gx = np.meshgrid(*(c[s] for c, s in zip(axes, box)), indexing="ij")
    p = np.stack([gz, gy, gx], axis=-1)
    t = np.clip(((p - a) @ (b - a)) / float((b - a) @ (b - a)), 0.0, 1.0)
    out[tuple(box)] = ((p - (a + t[..., None] * (b - a))) ** 2).sum(-1) <= radius ** 2
    return out


def make_phantom(shape: tuple[int, int, int] = (64, 256, 256),
                 spacing: tuple[float, float, float] = (2.5, 1.4, 1.4), seed: int = 0,
                 with_lesions: bool = True) -> Phantom:
    """Build the phantom; x runs from the patient's right (left of image) to left, y anterior->posterior.

    `with_lesions=False` gives the same chest with healthy lungs: the lesion-free lung the
    false-positive level is measured on.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    axes = [(np.arange(n) - n / 2 + 0.5) * d for n, d in zip(shape, spacing)]
    z, y, x = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    half_z = nz * spacing[0] / 2

    hu = np.full(shape, HU_AIR, dtype=np.float32)
    body = np.broadcast_to((y / 110.0) ** 2 + (x / 160.0) ** 2 <= 1.0, shape)
    inner = np.broadcast_to((y / 100.0) ** 2 + (x / 150.0) ** 2 <= 1.0, shape)
    hu[body] = HU_FAT
    hu[inner] = HU_SOFT
    ribs = body & ~((y / 92.0) ** 2 + (x / 142.0) ** 2 <= 1.0) & (np.cos(z * 2 * np.pi / 25.0) > 0.55)
    hu[ribs] = HU_BONE
    spine = _ellipsoid(z, y, x, (0, 75, 0), (1e6, 14, 14))
    hu[spine] = HU_BONE

    lung_z = half_z * 0.95
    right = _ellipsoid(z, y, x, (-0.05 * half_z, 5, -62), (lung_z, 72, 52))
    left = _ellipsoid(z, y, x, (-0.05 * half_z, 5, 62), (lung_z, 72, 50))
    heart = _ellipsoid(z, y, x, (-0.45 * half_z, -15, 25), (0.45 * half_z, 45, 45))
    right &= ~heart
    left &= ~heart
    lungs = np.zeros(shape, dtype=np.uint8)
    lungs[right] = 1
    lungs[left] = 2
    hu[heart] = HU_SOFT + 10
    hu[lungs > 0] = HU_LUNG

    vessels = np.zeros(shape, dtype=bool)
    for side in (-1, 1):
        hilum = (0.0, 0.0, side * 30.0)
        for _ in range(10):
            end = (rng.uniform(-0.8, 0.8) * lung_z, rng.uniform(-55, 60), side * rng.uniform(50, 100))
            vessels |= _tube(axes, hilum, end, rng.uniform(1.2, 2.6))
    vessels &= lungs > 0
    hu[vessels] = HU_SOFT

    lesions = np.zeros(shape, dtype=bool)
    for side, label in ((-1, 1), (1, 2)):
        for _ in range(3):
            centre = (rng.uniform(-0.7, 0.1) * lung_z, rng.uniform(25, 60), side * rng.uniform(70, 95))
            radii = (rng.uniform(18, 32), rng.uniform(15, 26), rng.uniform(12, 20))
            lesions |= _ellipsoid(z, y, x, centre, radii) & (lungs == label)
    consolidation = np.zeros(shape, dtype=bool)
    for side, label in ((-1, 1), (1, 2)):
        centre = (-0.5 * lung_z, 55, side * 88)
        consolidation |= _ellipsoid(z, y, x, centre, (10, 10, 8)) & (lungs == label)
    lesions |= consolidation
    if with_lesions:
        hu[lesions & ~consolidation] = HU_GGO
        hu[consolidation] = HU_CONSOLIDATION
    else:
        lesions[:] = False

    airway = _tube(axes, (half_z, -25, 0), (0.25 * half_z, -20, 0), 8.0)
    for side in (-1, 1):
        airway |= _tube(axes, (0.25 * half_z, -20, 0), (0.05 * half_z, -5, side * 45), 5.5)
    hu[airway & ~(lungs > 0)] = HU_AIR
    hu += rng.normal(0.0, 20.0, shape).astype(np.float32)
    return Phantom(hu.astype(np.float32), spacing, lungs, lesions)
