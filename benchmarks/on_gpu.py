"""`covseg paper` and `covseg train` on a lent GPU machine (the `device` tool), prepared.

The CPU here trains a Table VIII network in 0.2-2 h; the paper's tables need about 30 runs, and a
lesion or lung recipe several hours. On a GPU machine runs train side by side (`covseg paper
--jobs`, or one process per config). Only the checkout travels, 64 MiB a call, so the data go
in parts while the machine is warm (it is given back 30 s after a call):

    python benchmarks/on_gpu.py pack             # here: .gpu/part1..N (+ .whl, see below)
    device run, carry [".gpu/part1"]:  python3 benchmarks/on_gpu.py device
    ... one call per part, back to back; the last one does the work, for at most --seconds:
    device run, carry [".gpu/partN"]:  python3 benchmarks/on_gpu.py device --run --seconds 500
                                  or:  python3 benchmarks/on_gpu.py device --train CONFIG ...
    python benchmarks/on_gpu.py unpack FILES_AT     # here: records into runs/paper, runs into runs/

The machine's Python has PyTorch (with CUDA) but not every package covseg needs; their wheels are
fetched here beforehand into .whl (README of the device tool: `pip download --python-version 3.12
... -d .whl monai nibabel pydicom platformdirs`) and packed with the data. What comes back is
the paper's run records (logs, scores, model.json naming the GPU), never its weights, and each
finished `--train` run whole (weights split in parts under the 16 MiB a returned file may
have, machine.txt naming where it trained). A run that does not finish inside the call is
continued by the next call while the machine is warm, else lost.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("COVSEG_DATA_ROOT", ROOT.parent / "shared" / "data"))
STAGE = ROOT / ".gpu"  # ignored (.git/info/exclude): never committed
PART_MIB = 35  # the checkout (about 25 MiB) + one part stays under the 64 MiB a call
NEEDED = ["ma20", "medseg100"]  # what the paper's tables read
RECORDS = (".json", ".jsonl", ".txt")  # what a run keeps in git (covseg.paper.cache)
RETURN_MIB = 15  # a file back from the machine is at most 16 MiB


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


def device(run: bool, train_configs: list[Path], seconds: int, jobs: int, runs: Path,
           extra: list[str]) -> int:
    """On the GPU machine: stage the parts; with `run`, fill the tables, with `train_configs`
    train those runs, for at most `seconds`, and leave what comes back in $OUT."""
    data = stage()
    env = environment(data)
    check = subprocess.run([sys.executable, "-c", "import torch, covseg.paper.reproduce; "
                            "from covseg.runtime import machine_description as m; print(m())"],
                           env=env, capture_output=True, text=True)
    print(check.stdout.strip() or check.stderr.strip()[-2000:], flush=True)
    if check.returncode or not (run or train_configs):
        return check.returncode
    out = Path(os.environ.get("OUT", STAGE / "out"))
    out.mkdir(parents=True, exist_ok=True)
    if run:
        _paper(env, out, seconds, jobs, runs, extra)
    else:
        _train(env, out, seconds, train_configs, check.stdout.strip())
    return 0


def _paper(env: dict, out: Path, seconds: int, jobs: int, runs: Path, extra: list[str]) -> None:
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


def _train(env: dict, out: Path, seconds: int, configs: list[Path], machine: str) -> None:
    """Each config in its own `covseg train` process, side by side (resumed where an earlier
    call stopped it); the finished runs back whole, as one tar in parts (train.tar.000, ...)."""
    deadline = time.monotonic() + seconds
    procs, logs = {}, []
    for cfg in configs:
        folder = STAGE / "runs" / cfg.stem
        folder.mkdir(parents=True, exist_ok=True)
        resume = ["--resume"] if (folder / "last.pt").exists() else []
        log = open(folder / "train.log", "a")
        logs.append(log)
        procs[folder] = subprocess.Popen(
            [sys.executable, "-m", "covseg", "train", str(cfg), "--output", str(folder), *resume],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    finished = []
    for folder, proc in procs.items():
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.terminate()  # its checkpoint stays for the next call
            code = proc.wait()
        print(f"{folder.name}: exit {code}", flush=True)
        logs.pop(0).close()
        if code == 0:
            (folder / "machine.txt").write_text(machine + "\n")
            finished.append(folder)
    if not finished:
        return
    whole = STAGE / "train.tar"
    with tarfile.open(whole, "w") as tar:
        for folder in finished:
            for path in sorted(folder.iterdir()):
                if path.name != "last.pt":
                    tar.add(path, arcname=f"{folder.name}/{path.name}")
    with open(whole, "rb") as f:
        for i, chunk in enumerate(iter(lambda: f.read(RETURN_MIB * 2 ** 20), b"")):
            (out / f"train.tar.{i:03d}").write_bytes(chunk)
    whole.unlink()


def unpack(files: Path, runs: Path = ROOT / "runs" / "paper", trained: Path = ROOT / "runs") -> None:
    """What came back (the folder `files`) into place: the paper's records into its run cache,
    the `--train` runs into `trained`/NAME (a name already there gets a -gpu suffix: nothing
    here is overwritten)."""
    if (files / "records.tar.gz").is_file():
        _unpack_records(files / "records.tar.gz", runs)
    parts = sorted(files.glob("train.tar.*"))
    if parts:
        whole = Path(tempfile.mkdtemp()) / "train.tar"
        with open(whole, "wb") as f:
            for part in parts:
                f.write(part.read_bytes())
        with tarfile.open(whole) as tar:
            members = tar.getmembers()
            for name in sorted({Path(m.name).parts[0] for m in members}):
                target = trained / name
                while target.exists():
                    target = target.with_name(target.name + "-gpu")
                target.mkdir(parents=True)
                for m in members:
                    if Path(m.name).parts[0] == name and m.isfile():
                        m.name = Path(m.name).name
                        tar.extract(m, target, filter="data")
                print(f"{target}: trained on the GPU machine")


def _unpack_records(records: Path, runs: Path) -> None:
    """The paper's records into the run cache: a run finished there is taken (and a local
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
    work = d.add_mutually_exclusive_group()
    work.add_argument("--run", action="store_true", help="fill the tables (else only stage)")
    work.add_argument("--train", nargs="+", type=Path, default=[], metavar="CONFIG",
                      help="train these configs side by side instead")
    d.add_argument("--runs", type=Path, default=ROOT / "runs" / "paper", help="the run cache")
    d.add_argument("--seconds", type=int, default=500)
    d.add_argument("--jobs", type=int, default=8)
    d.add_argument("paper_args", nargs="*", help="passed to covseg paper (after --)")
    u = sub.add_parser("unpack")
    u.add_argument("files", type=Path, help="the folder the returned files lie in")
    u.add_argument("--runs", type=Path, default=ROOT / "runs" / "paper")
    u.add_argument("--trained", type=Path, default=ROOT / "runs")
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        pack()
        return 0
    if args.cmd == "unpack":
        unpack(args.files, args.runs, args.trained)
        return 0
    return device(args.run, args.train, args.seconds, args.jobs, args.runs.resolve(), args.paper_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
