"""From model input slices to label maps with the shipped (or a given) model."""
from covseg.infer.postprocess import PostProcess
from covseg.infer.predictor import LesionSegmenter, load_model

__all__ = ["LesionSegmenter", "PostProcess", "load_model"]
