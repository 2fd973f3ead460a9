"""Each choice is made once and recorded as made: the CLI offers the registries' own names, and
the report names the lung method, backend, precision and weights file that actually ran."""
from __future__ import annotations

import argparse

import pytest

import covseg
from covseg.cli import build_parser
from covseg.demo import save_phantom
from covseg.lungs import METHODS
from covseg.runtime import BACKENDS


def _option(command: str, flag: str) -> argparse.Action:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices[command]._actions if flag in a.option_strings)


@pytest.mark.parametrize("command", ["segment", "benchmark"])
def test_backend_choices_are_the_registry(command):
    assert tuple(_option(command, "--backend").choices) == BACKENDS


def test_lung_choices_are_the_registry():
    assert tuple(_option("segment", "--lungs").choices) == METHODS
    # a lung-masked picture's own lungs are what ma20's masks are: nothing to score there
    assert tuple(_option("evaluate", "--lungs").choices) == tuple(m for m in METHODS
                                                                 if m not in ("auto", "masked"))
    assert "auto" not in _option("evaluate", "--lungs").choices


def test_the_backends_are_checked_against_the_same_registry():
    from covseg.infer import backends

    assert backends.BACKENDS is BACKENDS


def test_the_report_records_what_ran(tmp_path):
    from covseg.infer import LesionSegmenter
    from covseg.lungs import resolve_method
    from covseg.models.weights import DEFAULT_WEIGHTS, sha256

    ct = save_phantom(covseg.make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6)),
                      tmp_path / "phantom.nii.gz")
    segmenter = LesionSegmenter(backend="torch", precision="fp32")
    report = covseg.segment(ct, segmenter=segmenter, pictures=False, lungs="auto").report
    assert report.model.weights_sha256 == sha256(DEFAULT_WEIGHTS)  # the file's own bytes
    assert report.model.file_sha256 == report.model.weights_sha256  # torch runs the .pt itself
    assert (report.model.backend, report.model.precision) == ("torch", "fp32")
    assert report.preprocessing.lungs == resolve_method("auto", "hu") == "hu"  # not "auto"


def test_the_default_backend_is_recorded_as_resolved(tmp_path):
    ct = save_phantom(covseg.make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6)),
                      tmp_path / "phantom.nii.gz")
    model = covseg.segment(ct, pictures=False).report.model
    assert model.backend in BACKENDS and model.backend != "auto"
    assert model.precision in ("fp32", "bf16", "int8")


def test_the_int8_model_is_identified_by_its_own_file(tmp_path):
    """onnx-int8 runs anamnet_ma20.int8.onnx, not the .pt: the report names both files."""
    from covseg.infer import LesionSegmenter
    from covseg.models.weights import DEFAULT_INT8, DEFAULT_WEIGHTS, sha256

    ct = save_phantom(covseg.make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6)),
                      tmp_path / "phantom.nii.gz")
    report = covseg.segment(ct, segmenter=LesionSegmenter(backend="onnx-int8"),
                            pictures=False).report
    assert report.model.file_sha256 == sha256(DEFAULT_INT8) != report.model.weights_sha256
    assert report.model.weights_sha256 == sha256(DEFAULT_WEIGHTS)
