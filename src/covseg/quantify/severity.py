"""Severity grade from % lung involvement (the CT-0..CT-4 scale of MosMedData and the thesis).

CT-0 means no disease, so involvement within the false-positive level of lesion-free lung is
CT-0, not CT-1. The level, measured with the shipped models: the healthy phantom
(`make_phantom(with_lesions=False)`, seeds 0-2) 0.00 / 0.01 / 0.00 %; the Anam-Net paper's
lesion-free slice 292 (its Table VI: Dice 1.00), as the JPEG and as `sampledata.mat` im3,
0.12 % with the lung model of the time. The cut was set at twice the largest, 0.25 %; with the
lung model trained on MedSeg's pictures too, slice 292 gets 0.00 % (JPEG) and 0.17 % (im3 as a
PNG), still under it (`python benchmarks/lesion_free.py`). Each grade records the rule that
decided it.
"""
from __future__ import annotations

GRADES = (
    ("CT-0", "no involvement"),
    ("CT-1", "mild: under 25 % of the lungs"),
    ("CT-2", "moderate: 25-50 %"),
    ("CT-3", "severe: 50-75 %"),
    ("CT-4", "critical: over 75 %"),
)
FALSE_POSITIVE_PERCENT = 0.25


def severity_grade(involvement_percent: float) -> str:
    """CT-0 up to the false-positive level, CT-1 < 25 %, CT-2 25-50 %, CT-3 50-75 %, CT-4 > 75 %."""
    return severity(involvement_percent)["grade"]


def severity(involvement_percent: float) -> dict:
    """The grade, what it means and the rule that decided it (kept in report.json)."""
    if involvement_percent <= FALSE_POSITIVE_PERCENT:
        rule = ("no lesion found" if involvement_percent <= 0 else
                f"{involvement_percent:.3f} % is within the false-positive level of lesion-free "
                f"lung (<= {FALSE_POSITIVE_PERCENT} %): graded as no involvement")
        return {"grade": "CT-0", "meaning": grade_description("CT-0"), "rule": rule}
    for upper, grade in ((25.0, "CT-1"), (50.0, "CT-2"), (75.0, "CT-3")):
        if involvement_percent < upper:
            return {"grade": grade, "meaning": grade_description(grade),
                    "rule": f"involvement {involvement_percent:.2f} % < {upper:g} %"}
    return {"grade": "CT-4", "meaning": grade_description("CT-4"),
            "rule": f"involvement {involvement_percent:.2f} % >= 75 %"}


def grade_description(grade: str) -> str:
    return dict(GRADES)[grade]
