#!/bin/bash
# The lesion model's shipping checks (docs/results.md) for a candidate in folder $1, which holds
# anamnet_ma20.pt, .json and .int8.onnx (`covseg ship` and `covseg export --int8`): the files are
# put in place of the shipped ones, each figure is measured as a user gets it, and the shipped
# files are restored. Usage: benchmarks/ship_check.sh CANDIDATE_DIR > check.log
set -u
C=$(realpath "$1")
cd "$(dirname "$0")/.."
W=src/covseg/weights; B=$(mktemp -d)
cp "$W"/anamnet_ma20.* "$B"/
trap 'cp "$B"/anamnet_ma20.* "$W"/ && rm -r "$B" && echo restored' EXIT
cp "$C"/anamnet_ma20.* "$W"/
echo "== fold 4, covseg evaluate (default int8), rule >= 0.7205"; covseg evaluate --csv "$C/f4.csv" --force | tail -5
echo "== fold 4, PyTorch fp32 (int8 within 0.01)"; covseg evaluate --weights "$W/anamnet_ma20.pt" --precision fp32 | tail -5
echo "== fold-4 PNGs end to end, rule > 0.6689 (the shipped lesion model with the shipped lungs of 2026-12-07)"; python benchmarks/end_to_end.py ma20 --variant as-is --json "$C/png.json" | tail -4
echo "== MedSeg test upright end to end, rule > 0.5606 (the same)"; python benchmarks/end_to_end.py medseg --variant upright --json "$C/medseg.json" | tail -4
echo "== slice 292, rule CT-0"; python benchmarks/lesion_free.py | tail -6
echo "== phantom, rule within 5 % of 169.2 mL"; covseg demo -o "$C/demo" --force > /dev/null
python -c "import glob, json; q=json.load(open(glob.glob('$C/demo/**/report.json', recursive=True)[0]))['quantification']; print('lesion mL', q['lesion_ml'], q['severity']['grade'])"
echo "== backends agree within 3 %"; python benchmarks/backends.py
