"""Weights are named by their own bytes, loaded without running code, refused when damaged."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch

from covseg.errors import InputError
from covseg.models.weights import DEFAULT_WEIGHTS, WEIGHTS_DIR, load_model, sha256


def _copy_shipped(tmp_path: Path, name: str = "anamnet_ma20", sidecar: bool = True) -> Path:
    """The shipped weights (and, optionally, their metadata) in a folder a test may spoil."""
    dest = tmp_path / f"{name}.pt"
    shutil.copy(WEIGHTS_DIR / f"{name}.pt", dest)
    if sidecar:
        shutil.copy(WEIGHTS_DIR / f"{name}.json", tmp_path / f"{name}.json")
    return dest


def _add_noise(path: Path, size: int = 4096) -> None:
    """Overwrite `size` bytes in the middle of a file with random bytes."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + size] = os.urandom(size)
    path.write_bytes(bytes(data))


def test_weights_are_named_by_their_own_hash(tmp_path):
    path = _copy_shipped(tmp_path)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    del meta["sha256"]
    meta_path.write_text(json.dumps(meta))
    _, loaded = load_model(path)
    assert loaded["sha256"] == sha256(path) == sha256(DEFAULT_WEIGHTS)


def test_a_sidecar_hash_that_differs_is_refused(tmp_path):
    path = _copy_shipped(tmp_path)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="does not match its metadata"):
        load_model(path)


@pytest.mark.parametrize("sidecar", [True, False])
def test_noise_in_the_middle_is_refused(tmp_path, sidecar):
    path = _copy_shipped(tmp_path, sidecar=sidecar)
    _add_noise(path)
    with pytest.raises(InputError) as err:
        load_model(path, model=None if sidecar else "anamnet")
    assert "\n" not in str(err.value)
    print(err.value)


@pytest.mark.parametrize("content", [torch.zeros(3), [torch.zeros(2), torch.ones(2)], {"a": 1},
                                     {}, 7])
def test_anything_but_a_state_dict_is_refused(tmp_path, content):
    path = tmp_path / "bad.pt"
    torch.save(content, path)
    with pytest.raises(InputError, match="not a state dict"):
        load_model(path, model="anamnet")


class _Payload:
    """An arbitrary object: weights_only loading must not unpickle it."""


def test_pickled_objects_are_not_unpickled(tmp_path):
    path = tmp_path / "object.pt"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(InputError, match="not a readable PyTorch weights file"):
        load_model(path, model="anamnet")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"model_args": 3}', "\xff\xfe"])
def test_a_bad_sidecar_is_one_line(tmp_path, text):
    path = _copy_shipped(tmp_path, sidecar=False)
    path.with_suffix(".json").write_text(text, encoding="latin-1")
    with pytest.raises(InputError, match="metadata") as err:
        load_model(path)
    assert "\n" not in str(err.value)


def test_architecture_mismatch_is_refused(tmp_path):
    path = _copy_shipped(tmp_path, "lungs_ma20_medseg", sidecar=False)
    with pytest.raises(InputError, match="do not fit the 'anamnet' model"):
        load_model(path, model="anamnet")


def test_cli_refuses_tampered_weights_in_one_line(tmp_path, cli):
    from covseg import make_phantom
    from covseg.demo import save_phantom

    scan = save_phantom(make_phantom(shape=(8, 64, 64), spacing=(6.0, 5.0, 5.0)), tmp_path / "s.nii.gz")
    path = _copy_shipped(tmp_path)
    _add_noise(path)
    code, out, err = cli("segment", scan, "-o", tmp_path / "out", "--weights", path)
    assert code == 2, err
    assert err.count("\n") == 1 and "weights" in err
    assert not (tmp_path / "out").exists()


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """A private cache root for the ONNX exports of one test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_onnx_cache_is_private_and_in_the_user_cache(cache_home):
    from covseg.infer import onnx_file as cache

    folder = cache.onnx_cache_dir()
    assert folder.is_relative_to(cache_home)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_cached_onnx_is_verified_before_use(cache_home, monkeypatch):
    from covseg.infer import onnx_file as cache

    made = []

    def fake_export(model, path: Path) -> None:
        made.append(path)
        path.write_bytes(b"an exported model")

    monkeypatch.setattr(cache, "export_fp32", fake_export)
    digest = sha256(DEFAULT_WEIGHTS)
    first = cache.cached_onnx(None, digest)
    assert first.name == f"{digest}.onnx" and len(made) == 1
    assert cache.cached_onnx(None, digest) == first and len(made) == 1  # reused
    first.write_bytes(b"planted")
    assert cache.cached_onnx(None, digest).read_bytes() == b"an exported model"
    assert len(made) == 2  # the planted file was not trusted
    with pytest.raises(ValueError):
        cache.cached_onnx(None, "../../etc/passwd")


@pytest.mark.slow
def test_onnx_backend_uses_the_user_cache(cache_home):
    from covseg.infer.backends import Network

    net = Network(backend="onnx")
    exports = list((cache_home / "covseg" / "onnx").glob("*.onnx"))
    assert [p.name for p in exports] == [f"{net.meta['sha256']}.onnx"]


def test_a_lung_model_given_as_lesion_weights_is_refused_in_one_line(cli, tmp_path):
    from covseg.lungs.learned import DEFAULT_LUNG_WEIGHTS

    import covseg
    from covseg.demo import save_phantom

    save_phantom(covseg.make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6)), tmp_path / "ct.nii.gz")
    code, _, err = cli("segment", tmp_path / "ct.nii.gz", "-o", tmp_path / "o", "--weights",
                       DEFAULT_LUNG_WEIGHTS)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "lung model" in err
    assert not (tmp_path / "o").exists()
    from covseg.errors import InputError
    with pytest.raises(InputError, match="2 classes, not the 3"):
        covseg.LesionSegmenter(DEFAULT_LUNG_WEIGHTS)
