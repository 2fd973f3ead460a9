"""`covseg paper` on a lent GPU machine (the `device` tool), in one prepared procedure.

The CPU here trains a Table VIII network in 0.2-2 h; the paper's tables need about 30 runs. On
a GPU machine they train side by side (`covseg paper --jobs`). Only the checkout travels, 64 MiB a
call, so the data go in parts while the machine is warm (it is given back 30 s after a call):

    python benchmarks/paper_gpu.py pack             # here: .gpu/part1..N (+ .whl, see below)
    device run, carry [".gpu/part1"]:  python3 benchmarks/paper_gpu.py device
    ... one call per part, back to back; the last one runs the tables:
    device run, carry [".gpu/partN"]:  python3 benchmarks/paper_gpu.py device --run --seconds 500
    python benchmarks/paper_gpu.py unpack FILES_AT/records.tar.gz   # here: the records, into runs/paper

The machine's Python has PyTorch (with CUDA) but not every package covseg needs; their wheels are
fetched here beforehand into .whl (README of the device tool: `pip download --python-version 3.12
... -d .whl monai nibabel pydicom platformdirs`) and packed with the data. What comes back is
the run records (logs, scores, model.json naming the GPU), never weights: a run that does not
finish inside the call is lost, the rest are kept by the run cache as any other run.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("COVSEG_DATA_ROOT", ROOT.parent / "shared" / "data"))
STAGE = ROOT / ".gpu"  # ignored (.git/info/exclude): never committed
PART_MIB = 35  # the checkout (about 25 MiB) + one part stays under the 64 MiB a call
NEEDED = ["ma20", "medseg100"]  # what the paper's tables read
RECORDS = (".json", ".jsonl", ".txt")  # what a run keeps in git (covseg.paper.cache)


def pack(part_mib: float = PART_MIB) -> list[Path]:
    """The data the tables read and the wheels in .whl, in tar parts of at most `part_mib`."""
    files = [(p, p.relative_to(DATA).as_posix()) for name in NEEDED
             for p in sorted((DATA / name).rglob("*")) if p.is_file()]
    files += [(p, f"whl/{p.name}") for p in sorted((ROOT / ".whl").glob("*.whl"))]
    parts: list[list[tuple[Path, str]]] = [[]]
    size = 0
    for path, name in files:
        n = path.stat().st_size + 1536  # a tar header and the padding of its last block
        if parts[-1] and size + n > part_mib * 2 ** 20:
            parts.append([])
            size = 0
        parts[-1].append((path, name))
        size += n
    out = []
    for i, members in enumerate(parts, 1):
        folder = STAGE / f"part{i}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"part{i}.tar"
        with tarfile.open(target, "w") as tar:
            for path, name in members:
                tar.add(path, arcname=name)
        out.append(target)
        print(f"{target.relative_to(ROOT)}: {len(members)} files, "
              f"{target.stat().st_size / 2 ** 20:.1f} MiB")
    return out


def stage() -> Path:
    """Unpack every part carried so far into .gpu/data (parts already unpacked are skipped)."""
    data = STAGE / "data"
    data.mkdir(parents=True, exist_ok=True)
    for part in sorted(STAGE.glob("part*/part*.tar")):
        done = data / f".{part.name}.done"
        if not done.exists():
            with tarfile.open(part) as tar:
                tar.extractall(data, filter="data")
            done.touch()
            part.unlink()  # the next call's tree must not carry it back
    return data


def environment(data: Path) -> dict[str, str]:
    """covseg from this checkout's src, the carried wheels beside the machine's own packages."""
    site = STAGE / "site"
    wheels = sorted((data / "whl").glob("*.whl"))
    if wheels and not site.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-compile", "--target", str(site), *map(str, wheels)], check=True)
    path = [str(ROOT / "src"), str(site), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p),
            "COVSEG_DATA_ROOT": str(data), "PYTHONUNBUFFERED": "1"}


def device(run: bool, seconds: int, jobs: int, runs: Path, extra: list[str]) -> int:
    """On the GPU machine: stage the parts; with `run`, fill the tables for at most `seconds`
    and leave the records (and the page) in $OUT."""
    data = stage()
    env = environment(data)
    check = subprocess.run([sys.executable, "-c", "import torch, covseg.paper.reproduce; "
                            "from covseg.runtime import machine_description as m; print(m())"],
                           env=env, capture_output=True, text=True)
    print(check.stdout.strip() or check.stderr.strip()[-2000:], flush=True)
    if check.returncode or not run:
        return check.returncode
    out = Path(os.environ.get("OUT", STAGE / "out"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(out / "paper.log", "w") as log:
        try:
            command = [sys.executable, "-m", "covseg", "paper", "--jobs", str(jobs),
                       "--runs", str(runs), "--doc", str(out / "paper.md"), *extra]
            code = subprocess.run(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=seconds).returncode
        except subprocess.TimeoutExpired:
            code = 124  # the finished runs' records are complete; unfinished ones are dropped
    with tarfile.open(out / "records.tar.gz", "w:gz") as tar:
        for path in sorted(runs.rglob("*")):
            if path.is_file() and path.suffix in RECORDS:
                tar.add(path, arcname=path.relative_to(runs).as_posix())
    print(f"covseg paper exit {code} after {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


def unpack(records: Path, runs: Path = ROOT / "runs" / "paper") -> None:
    """The device's records into the run cache: a run finished there is taken (and a local
    unfinished attempt at it replaced); runs already finished here are left as they are."""
    with tarfile.open(records) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        finished = {Path(m.name).parts[0] for m in members if Path(m.name).name == "model.json"}
        taken = {run for run in finished if not (runs / run / "model.json").exists()}
        for m in members:
            if Path(m.name).parts[0] in taken:
                target = runs / m.name
                if target.exists():
                    target.unlink()
                tar.extract(m, runs, filter="data")
    for run in sorted(taken):
        (runs / run / "last.pt").unlink(missing_ok=True)  # a local checkpoint of the same run
        print(f"{runs / run}: taken from the GPU machine")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("pack")
    d = sub.add_parser("device")
    d.add_argument("--run", action="store_true", help="fill the tables (else only stage)")
    d.add_argument("--runs", type=Path, default=ROOT / "runs" / "paper", help="the run cache")
    d.add_argument("--seconds", type=int, default=500)
    d.add_argument("--jobs", type=int, default=8)
    d.add_argument("paper_args", nargs="*", help="passed to covseg paper (after --)")
    u = sub.add_parser("unpack")
    u.add_argument("records", type=Path)
    u.add_argument("--runs", type=Path, default=ROOT / "runs" / "paper")
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        pack()
        return 0
    if args.cmd == "unpack":
        unpack(args.records, args.runs)
        return 0
    return device(args.run, args.seconds, args.jobs, args.runs.resolve(), args.paper_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
