"""Severity grade from % lung involvement (the CT-0..CT-4 scale of MosMedData and the thesis)."""
from __future__ import annotations

GRADES = (
    ("CT-0", "no involvement"),
    ("CT-1", "mild: under 25 % of the lungs"),
    ("CT-2", "moderate: 25-50 %"),
    ("CT-3", "severe: 50-75 %"),
    ("CT-4", "critical: over 75 %"),
)


def severity_grade(involvement_percent: float) -> str:
    """CT-0 for none, CT-1 < 25 %, CT-2 25-50 %, CT-3 50-75 %, CT-4 > 75 %."""
    if involvement_percent <= 0.0:
        return "CT-0"
    for upper, grade in ((25.0, "CT-1"), (50.0, "CT-2"), (75.0, "CT-3")):
        if involvement_percent < upper:
            return grade
    return "CT-4"


def grade_description(grade: str) -> str:
    return dict(GRADES)[grade]
