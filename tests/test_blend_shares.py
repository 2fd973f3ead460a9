"""benchmarks/blend_shares.py: a start and its fine-tuned run blended share by share, each a run
folder that `covseg ship` takes (docs/results.md chose the MedSeg fine-tuning's share so)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from covseg.models import build_model

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "blend_shares.py"


def _run(folder: Path, seed: int, config: dict) -> dict:
    folder.mkdir()
    torch.manual_seed(seed)
    state = {k: v + torch.randn_like(v) if v.is_floating_point() else v + seed + 1  # BatchNorm's
             for k, v in build_model("anamnet").state_dict().items()}  # statistics too
    torch.save(state, folder / "model.pt")
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 5, "elapsed_s": 1.0}) + "\n")
    return state


def test_each_share_is_that_much_of_the_fine_tuned_weights_and_ships(tmp_path, cli):
    start = _run(tmp_path / "start", 0, {"name": "start"})
    tuned = _run(tmp_path / "tuned", 1, {"name": "tuned", "model": "anamnet", "model_args": {},
                                         "data": {"target": "lesions"}})
    done = subprocess.run([sys.executable, SCRIPT, tmp_path / "start", tmp_path / "tuned", "-o",
                           tmp_path / "out", "--shares", "0.25", "0.5"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    blended = torch.load(tmp_path / "out" / "s25" / "model.pt", weights_only=True)
    for k, v in tuned.items():
        if v.is_floating_point():
            torch.testing.assert_close(blended[k], 0.75 * start[k] + 0.25 * v)
        else:
            assert torch.equal(blended[k], v)  # counters from the fine-tuned run
    assert all(not torch.equal(start[k], v) for k, v in tuned.items())  # every tensor differs
    code, _, err = cli("ship", tmp_path / "out" / "s50", "-o", tmp_path / "w.pt", "--trained-on", "x")
    assert code == 0, err
    assert json.loads((tmp_path / "w.json").read_text())["config"]["blend_share"] == 0.5
