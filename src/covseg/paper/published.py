"""The paper's published figures that covseg's tables are set beside: only those we are sure of.

Paluru et al., IEEE TNNLS 2021. A cell not listed here is shown as "not transcribed", never
guessed. The paper's figures are per slice over all slices of its test sets, lesion-free ones
included (docs/results.md); Table IV's parameter counts live in covseg.evaluate.profile.
"""
from __future__ import annotations

# (table, network, class) -> Dice, per slice, as the paper reports it
DICE: dict[tuple[str, str, str], float] = {
    ("VII", "anamnet", "abnormal"): 0.755,  # Exp 1, MedSeg
    ("VIII", "anamnet", "abnormal"): 0.798,  # Exp 2, ma20 folds 1-3 -> fold 4
    ("VIII", "anamnet", "normal"): 0.941,  # as docs/results.md transcribed it
    ("IX", "anamnet", "abnormal"): 0.664,  # Exp 3, cross-dataset
}

# what each table of the paper claims, in words (the figures behind them: not transcribed)
CLAIMS = {
    "VII": "Anam-Net matches or beats the larger networks on MedSeg (Exp 1)",
    "VIII": "Anam-Net matches or beats networks 2-13x its size on ma20 (Exp 2)",
    "VIII-rotation": "Anam-Net matches or beats networks 2-13x its size on ma20 (Exp 2)",
    "IX": "Anam-Net matches or beats the larger networks across data sets (Exp 3)",
    "X": "the AD blocks and the label weighting each raise Anam-Net's abnormal Dice",
    "XI": "Anam-Net is as stable as U-Net when its weights are perturbed",
}


def paper_dice(table: str, network: str, cls: str) -> float | None:
    return DICE.get((table, network, cls))
