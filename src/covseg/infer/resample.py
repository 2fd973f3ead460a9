"""In-plane resampling of (z, y, x) stacks with torch (multi-threaded, antialiased downsampling)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_planes(volume: np.ndarray, size: tuple[int, int], labels: bool = False) -> np.ndarray:
    """Resize every slice to `size` (h, w): bilinear for images, nearest for label maps."""
    if tuple(volume.shape[1:]) == tuple(size):
        return volume
    t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[:, None]
    if labels:
        out = F.interpolate(t, size=size, mode="nearest-exact")
        return out[:, 0].numpy().astype(volume.dtype)
    antialias = size[0] < volume.shape[1]
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=antialias)
    return out[:, 0].numpy()


def model_plane_size(shape_yx: tuple[int, int], zoom: float) -> tuple[int, int]:
    return max(16, int(round(shape_yx[0] * zoom))), max(16, int(round(shape_yx[1] * zoom)))
