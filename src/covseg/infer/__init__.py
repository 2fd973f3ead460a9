"""From model input slices to label maps with the shipped (or a given) model."""
from covseg.infer.predictor import LesionSegmenter, load_model

__all__ = ["LesionSegmenter", "load_model"]
