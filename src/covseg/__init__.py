"""covseg: find and measure COVID-19 lung damage in chest CT.

The Python API mirrors the command line: `covseg.read_scan`, `covseg.describe`,
`covseg.segment`, `covseg.build_model`, `covseg.train`, `covseg.evaluate_model`,
`covseg.tune_postprocess`, `covseg.run_demo`.
Names are imported on first use, so `import covseg` stays quick.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "read_scan": "covseg.io",
    "write_mask": "covseg.io",
    "describe": "covseg.io",
    "Scan": "covseg.io",
    "build_model": "covseg.models",
    "available_models": "covseg.models",
    "load_config": "covseg.train",
    "train": "covseg.train",
    "evaluate_model": "covseg.evaluate",
    "tune_postprocess": "covseg.evaluate.tune",
    "run_demo": "covseg.demo",
    "segment": "covseg.pipeline",
    "compare": "covseg.compare",
    "make_phantom": "covseg.demo",
    "LesionSegmenter": "covseg.infer",
    "PostProcess": "covseg.infer",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'covseg' has no attribute '{name}'")
