"""Table XI: a trained network scored with its learnable parameters perturbed by eta.

The perturbation, exactly: every element of every learnable parameter (conv and transposed-conv
weights and biases, BatchNorm scales and shifts; not BatchNorm's running statistics) becomes
theta * (1 + eta * u), u drawn uniformly in [0, 1) for each element, independently per draw
(draw d uses torch seed d). u is one-sided so that the sign of eta means something: eta < 0
shrinks every parameter by up to |eta|, eta > 0 grows it; with noise symmetric about zero, eta
and -eta would be the same experiment. eta = 0 is the trained network itself (one draw).
"""
from __future__ import annotations

import torch

from covseg.evaluate import evaluate_model
from covseg.infer import LesionSegmenter
from covseg.train.config import DataConfig


def perturb_(model: torch.nn.Module, original: dict[str, torch.Tensor], eta: float, seed: int) -> None:
    """Set `model`'s parameters to `original` * (1 + eta * u), in place. u is drawn on the CPU
    whatever device the model is on, so a draw is the same numbers on every machine."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            base = original[name]
            u = torch.rand(base.shape, generator=gen, dtype=base.dtype).to(base.device)
            param.copy_(base * (1 + eta * u))


def perturbed_scores(segmenter: LesionSegmenter, test: DataConfig, etas: list[float], draws: int,
                     limit: int | None) -> list[dict]:
    """For each eta, the per-slice and pooled figures of every draw (the network is restored)."""
    model = segmenter.networks[0].engine.model  # a torch backend: its module is perturbed
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = []
    try:
        for eta in etas:
            runs = []
            for draw in range(1 if eta == 0 else draws):
                perturb_(model, original, eta, draw)
                ev = evaluate_model(data=test, limit=limit, segmenter=segmenter)
                runs.append({"per_slice": ev.mean_per_slice(), "pooled": ev.pooled()})
            out.append({"eta": eta, "draws": runs})
    finally:
        perturb_(model, original, 0.0, 0)
    return out
