"""report.json against the JSON Schema shipped in the package, and read back as a typed Report.

Real reports, not hand-made ones: a CT phantom built in code, a picture (the paper's slice 292)
and real_ct, so a field added to the writer but not to the schema (or the reverse) fails here.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import covseg
from covseg.demo import save_phantom
from covseg.report.model import SCHEMA_VERSION, Report, json_schema

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extra")


def _check(report_json: Path) -> dict:
    """Valid against the schema, and from_dict then to_dict gives the same JSON back."""
    data = json.loads(report_json.read_text())
    jsonschema.validate(data, json_schema(), cls=jsonschema.Draft202012Validator)
    assert data["schema_version"] == SCHEMA_VERSION
    assert Report.from_dict(data).to_dict() == data
    return data


def test_the_schema_is_a_valid_schema():
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_phantom_report_matches_the_schema(tmp_path):
    ct = save_phantom(covseg.make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6)),
                      tmp_path / "phantom.nii.gz")
    result = covseg.segment(ct, tmp_path / "out")
    data = _check(tmp_path / "out" / "report.json")
    assert data == result.report.to_dict()
    assert data["density"]["bands"] and data["density_gate"] is not None
    assert data["files"]["json"] == "report.json"


def test_picture_report_matches_the_schema(data_dir, tmp_path):
    covseg.segment(data_dir / "anamnet_samples" / "slice_292.jpeg", tmp_path)
    data = _check(tmp_path / "report.json")
    assert "note" in data["density"] and data["density_gate"] is None
    assert Report.from_dict(data).density is None


def test_real_ct_report_matches_the_schema(real_ct, tmp_path):
    covseg.segment(real_ct / "example_ct.nii.gz", tmp_path)
    data = _check(tmp_path / "report.json")
    assert data["preprocessing"]["lungs"] == "hu"


def test_a_report_without_schema_version_is_refused():
    with pytest.raises(ValueError, match="schema_version"):
        Report.from_dict({"covseg_version": "0.0"})


def test_the_schema_catches_a_wrong_grade(tmp_path):
    ct = save_phantom(covseg.make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6)),
                      tmp_path / "phantom.nii.gz")
    data = covseg.segment(ct, pictures=False).report.to_dict()
    data["quantification"]["severity"]["grade"] = "CT-5"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, json_schema(), cls=jsonschema.Draft202012Validator)
