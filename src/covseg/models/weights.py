"""Weights files: finding, hashing, loading and describing them.

A weights file is named by the hash of its own bytes, always: a sidecar's `sha256` field is only
checked against it (a mismatch means the file was damaged or swapped), never trusted instead.
Files are read with `weights_only=True`, so a weights file cannot run code, and must hold a
state dict. (The ONNX exports made from weights have their own cache: covseg.infer.onnx_file.)
"""
from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

from covseg.errors import InputError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "anamnet_ma20.pt"
DEFAULT_INT8 = WEIGHTS_DIR / "anamnet_ma20.int8.onnx"
HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (weights can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_weights(weights: str | Path | None) -> Path:
    """The weights file to use (default: the shipped Anam-Net); refuses a missing one."""
    path = Path(weights) if weights else DEFAULT_WEIGHTS
    if not path.is_file():
        raise InputError(f"weights file not found: {path}; check the path or omit --weights for "
                         "the shipped model")
    return path


def read_meta(path: Path) -> dict:
    """The sidecar metadata (same name, .json) of a weights file, or {} where there is none."""
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        return {}
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{meta_path}: the weights' metadata is not readable JSON "
                         f"({exc.__class__.__name__}); fix or remove it") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("model_args", {}), dict):
        raise InputError(f"{meta_path}: the weights' metadata must be a JSON object (with "
                         "model_args an object); fix or remove it")
    return meta


def identify(path: Path) -> dict:
    """Metadata with `sha256` set to the file's own hash; refuses a file its metadata disowns."""
    meta = read_meta(path)
    digest = sha256(path)
    if "sha256" in meta and meta["sha256"] != digest:
        raise InputError(f"weights file {path} does not match its metadata (tampered or "
                         "damaged); restore the file or remove the sha256 from its .json")
    return {**meta, "sha256": digest}


def check_archive(path: Path) -> None:
    """Refuse a damaged .pt archive: torch.load does not check the zip's CRCs, so flipped bytes
    inside a tensor would load silently as wrong weights."""
    if not zipfile.is_zipfile(path):
        return  # legacy pickles: torch.load judges them
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        bad = f"({exc.__class__.__name__})"
    if bad is not None:
        raise InputError(f"{path}: the weights file is damaged (bad record {bad}); restore it "
                         "from the original")


def read_state(path: Path) -> dict:
    """The state dict in a weights file (plain, or a training checkpoint's "model")."""
    import torch

    check_archive(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise InputError(f"{path}: not a readable PyTorch weights file "
                         f"({exc.__class__.__name__}); give a file saved by covseg train or "
                         "torch.save(model.state_dict())") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not (isinstance(state, dict) and state and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise InputError(f"{path}: holds a {type(state).__name__}, not a state dict of named "
                         "tensors; save weights with torch.save(model.state_dict())")
    return state


def load_model(weights: str | Path | None = None, model: str | None = None):
    """(network in eval mode, metadata) from a weights file (default: the shipped Anam-Net).

    The metadata beside the weights names the architecture; a bare weights file needs `model`.
    """
    from covseg.models import build_model

    path = find_weights(weights)
    meta = identify(path)
    state = read_state(path)
    name = model or meta.get("model", "anamnet")
    net = build_model(name, **meta.get("model_args", {}))
    try:
        net.load_state_dict(state)
    except RuntimeError:
        raise InputError(f"{path}: these weights do not fit the '{name}' model; pass the right "
                         "model name") from None
    return net.eval(), meta


def describe_weights(meta: dict) -> dict:
    """What a report says about the weights that produced it."""
    return {"name": meta.get("name", "custom"), "sha256": meta.get("sha256"),
            "trained_on": meta.get("trained_on")}
