"""benchmarks/match_calls.py's margin: where the tuned model calls as many pixels as its start."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from match_calls import matching_margin  # noqa: E402


def test_the_margin_undoes_a_shift_of_the_logits():
    start = np.random.default_rng(0).normal(size=(4, 32, 32)).astype(np.float32)
    start[:, :2] = -np.inf  # outside the lungs: never called
    assert matching_margin(start, start - 1.25) == -1.25  # a tuned model that calls less
    assert matching_margin(start, start + 0.5) == 0.5
    assert matching_margin(start, start) == 0.0
    with pytest.raises(ValueError, match="no margin"):
        matching_margin(start, start - 50.0)  # beyond any margin searched
