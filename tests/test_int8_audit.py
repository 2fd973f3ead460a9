"""The int8 audit: int8 margins are checked against fp32 on a few slices of every batch, and a
batch whose check fails runs in fp32, so every backend reports the same lesion volume."""
import numpy as np
import pytest
import torch

import covseg
from covseg.demo import save_phantom
from covseg.demo.phantom import make_phantom
from covseg.infer.predictor import AUDIT_SLICES, LesionSegmenter, PrecisionAudit
from covseg.labels import ABNORMAL
from covseg.models import build_model


def _pair(tmp_path, abnormal_bias: float):
    """A segmenter posing as int8 whose "int8" logits are its fp32 reference's, with the
    abnormal logit shifted by `abnormal_bias` (a quantization error, on purpose)."""
    torch.manual_seed(0)
    torch.save(build_model("anamnet", num_classes=3).eval().state_dict(), tmp_path / "w.pt")
    make = lambda: LesionSegmenter(tmp_path / "w.pt", model="anamnet", backend="torch",  # noqa: E731
                                   precision="fp32")
    seg, reference = make(), make()
    exact = seg.networks[0].engine
    shift = np.zeros((1, 3, 1, 1), np.float32)
    shift[0, ABNORMAL] = abnormal_bias
    seg.networks[0].engine = lambda x: exact(x) + shift
    seg.precision, seg._fp32 = "int8", reference
    return seg, reference


def _inputs():
    images = np.random.default_rng(0).random((8, 48, 64)).astype(np.float32)
    lungs = np.zeros(images.shape, bool)
    lungs[:, 6:42, 4:60] = True
    return images, lungs


def test_agreeing_int8_is_only_audited(tmp_path):
    seg, reference = _pair(tmp_path, 0.0)
    images, lungs = _inputs()
    audit = PrecisionAudit()
    out = seg.margins(images, lungs, audit=audit)
    assert audit.audited_slices == AUDIT_SLICES and audit.fp32_slices == 0
    np.testing.assert_allclose(out, reference.margins(images, lungs), atol=1e-5)


def test_disagreeing_int8_is_replaced_by_fp32(tmp_path):
    seg, reference = _pair(tmp_path, -1.0)
    images, lungs = _inputs()
    ref = reference.margins(images, lungs)
    assert (ref > 0).sum() > 1000  # the random network calls enough for the check to bite
    audit = PrecisionAudit()
    out = seg.margins(images, lungs, audit=audit)
    assert audit.audited_slices == AUDIT_SLICES and audit.fp32_slices == len(images) - AUDIT_SLICES
    np.testing.assert_allclose(out, ref, atol=1e-5)
    labels = seg.predict(images, lungs)  # predict goes through the same audit
    np.testing.assert_array_equal(labels, reference.predict(images, lungs))


def test_fp32_backends_are_not_audited(tmp_path):
    _, reference = _pair(tmp_path, 0.0)
    audit = PrecisionAudit()
    reference.margins(*_inputs(), audit=audit)
    assert audit == PrecisionAudit()


def _lesion_ml(src, backend: str, precision: str = "auto") -> tuple[float, object]:
    r = covseg.segment(src, segmenter=LesionSegmenter(backend=backend, precision=precision),
                       pictures=False)
    return r.quantification.lesion_ml, r.report.model


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory):
    return save_phantom(make_phantom(), tmp_path_factory.mktemp("phantom") / "phantom.nii.gz")


def test_backends_agree_on_the_phantom(phantom_file):
    int8, model = _lesion_ml(phantom_file, "onnx-int8")
    fp32, _ = _lesion_ml(phantom_file, "onnx")
    assert model.precision == "int8" and model.audited_slices > 0
    assert abs(int8 / fp32 - 1) < 0.03


def test_backends_agree_on_real_ct(real_ct):
    """real_ct is where int8 alone called 11 % less than fp32: its audit fails, it runs fp32."""
    src = real_ct / "example_ct.nii.gz"
    int8, model = _lesion_ml(src, "onnx-int8")
    fp32, _ = _lesion_ml(src, "onnx")
    torch32, _ = _lesion_ml(src, "torch", "fp32")
    assert model.fp32_slices > 0
    assert abs(int8 / fp32 - 1) < 0.03 and abs(torch32 / fp32 - 1) < 0.03


def test_the_reference_needs_no_writable_cache(monkeypatch):
    """Where the user's cache cannot be written, the audit's fp32 reference is PyTorch's."""
    import covseg.infer.onnx_file as onnx_file

    def unwritable() -> None:
        raise PermissionError("read-only cache")

    monkeypatch.setattr(onnx_file, "onnx_cache_dir", unwritable)
    reference = LesionSegmenter(backend="onnx-int8")._reference()
    assert (reference.backend, reference.precision) == ("torch", "fp32")
