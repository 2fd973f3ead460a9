"""Turning label maps into the numbers a radiologist reads: volumes, involvement, grade."""
from covseg.quantify.severity import severity_grade
from covseg.quantify.volumes import quantify

__all__ = ["quantify", "severity_grade"]
