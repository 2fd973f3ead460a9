"""From model input slices to label maps with the shipped (or a given) model.

Names are imported on first use, so that readers and the CLI do not pay for torch until a model
runs.
"""
from __future__ import annotations

import importlib

_API = {"LesionSegmenter": "covseg.infer.predictor", "Network": "covseg.infer.backends",
        "PostProcess": "covseg.infer.postprocess"}

__all__ = list(_API)


def __getattr__(name: str):
    """Import the module that holds `name` when it is first asked for."""
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'covseg.infer' has no attribute '{name}'")
