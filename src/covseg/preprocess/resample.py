"""In-plane resampling of (z, y, x) stacks with torch (multi-threaded, antialiased downsampling)."""
from __future__ import annotations

import numpy as np

SLAB = 32  # slices resampled at a time


def resize_planes(volume: np.ndarray, size: tuple[int, int], labels: bool = False) -> np.ndarray:
    """Resize every slice to `size` (h, w): bilinear for images, nearest for label maps."""
    if tuple(volume.shape[1:]) == tuple(size):
        return volume
    if labels:  # nearest neighbour by index lookup, one axis at a time (3x faster than 2-D)
        rows = _nearest_index(volume.shape[1], size[0])
        cols = _nearest_index(volume.shape[2], size[1])
        return np.take(np.take(volume, rows, axis=1), cols, axis=2)
    import torch  # here, not at the top: reading and refusing scans must not wait for torch
    import torch.nn.functional as F

    out = np.empty((volume.shape[0], *size), dtype=np.float32)
    antialias = size[0] < volume.shape[1]
    for z in range(0, volume.shape[0], SLAB):  # slab by slab: no float copy of the whole volume
        block = np.ascontiguousarray(volume[z:z + SLAB], dtype=np.float32)
        if not block.flags.writeable:  # a read-only source (e.g. a decoded TIFF): torch wants to own it
            block = block.copy()
        t = torch.from_numpy(block)[:, None]
        out[z:z + SLAB] = F.interpolate(t, size=size, mode="bilinear", align_corners=False,
                                        antialias=antialias)[:, 0].numpy()
    return out


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel for nearest-neighbour resampling (pixel centres)."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def model_plane_size(shape_yx: tuple[int, int], zoom: float) -> tuple[int, int]:
    return max(16, int(round(shape_yx[0] * zoom))), max(16, int(round(shape_yx[1] * zoom)))
