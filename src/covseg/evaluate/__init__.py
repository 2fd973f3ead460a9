"""Scoring models on held-out slices in the paper's layout."""
from covseg.metrics import Evaluation, confusion, dice, scores
from covseg.evaluate.run import evaluate_model

__all__ = ["Evaluation", "confusion", "dice", "evaluate_model", "scores"]
