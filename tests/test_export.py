"""ONNX export: the exported model runs with onnxruntime alone and matches PyTorch."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from covseg.export import export_onnx
from covseg.infer import LesionSegmenter
from covseg.models.weights import DEFAULT_INT8, load_model


@pytest.fixture(scope="module")
def real_inputs(data_dir):
    from covseg.data.ma20 import load_ma20
    from covseg.preprocess.contract import model_input
    data = load_ma20(folds=[4], limit=6)
    return np.stack([model_input(im, lu, data.intensity) for im, lu in zip(data.images, data.lungs)]), data


def test_fp32_onnx_matches_pytorch(tmp_path, real_inputs, cli):
    code, out, err = cli("export", "--format", "onnx", "-o", tmp_path / "m.onnx")
    assert code == 0, err
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = real_inputs[0][:2, None, :96, :160].copy()  # any batch, any size divisible by 16
    got = session.run(None, {"image": x})[0]
    model, _ = load_model()
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (2, 3, 96, 160)
    assert np.abs(got - want).max() < 1e-3


def test_export_never_overwrites(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_text("mine")
    from covseg.errors import OutputExistsError
    with pytest.raises(OutputExistsError):
        export_onnx(target)
    assert target.read_text() == "mine"


def test_backends_agree_on_real_slices(real_inputs):
    inputs, data = real_inputs
    reference = LesionSegmenter(backend="torch").predict(inputs, data.lungs)
    for backend in ("onnx", "onnx-int8"):
        if backend == "onnx-int8":
            assert DEFAULT_INT8.is_file(), "the int8 model must ship with the package"
        labels = LesionSegmenter(backend=backend).predict(inputs, data.lungs)
        a, b = labels == 1, reference == 1
        agreement = 2 * (a & b).sum() / max(1, a.sum() + b.sum())
        assert agreement > (0.99 if backend == "onnx" else 0.9), (backend, agreement)
