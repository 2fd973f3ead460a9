"""Deployment: the shipped model as ONNX, fp32 or int8."""
from covseg.export.onnx import export_onnx

__all__ = ["export_onnx"]
