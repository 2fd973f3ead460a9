"""A bounded load run of `covseg serve`: throughput, latency percentiles, every job exactly once.

Starts `python -m covseg serve` on a free 127.0.0.1 port over a fresh work folder (or uses
--url), uploads the small phantom from several client threads, polls each job to its end and
checks through GET /v1/jobs that every job finished once (done, one attempt, no duplicates).

    python benchmarks/serve_load.py [--jobs 16] [--clients 4] [--workers 2] [--json]
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 [--token T]

Latency is upload to `done` as the polling client sees it (0.1 s polls); throughput counts the
measured jobs between the first upload and the last finish, after `--warmup` jobs (default: one
per worker) have loaded the workers' models.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_server(workers: int, work: Path):
    """`python -m covseg serve` in a child process; yields its base URL, stops it afterwards."""
    port = free_port()
    log = open(work.parent / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "covseg", "serve", "--port", str(port),
                             "--work", str(work), "--workers", str(workers), "--max-queue", "1000"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before it was healthy")
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not healthy after {timeout:g} s")


def phantom_bytes() -> bytes:
    """The small phantom (24 x 96 x 96) as .nii.gz bytes: about a second of work per job."""
    import covseg
    from covseg.demo import save_phantom

    with tempfile.TemporaryDirectory() as tmp:
        path = save_phantom(covseg.make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6)),
                            Path(tmp) / "phantom.nii.gz")
        return Path(path).read_bytes()


def one_job(client: httpx.Client, scan: bytes, timeout: float) -> dict:
    """Upload, poll to the end; the job's id, final status and seconds from upload to the end."""
    start = time.monotonic()
    while True:
        r = client.post("/v1/jobs", files={"file": ("phantom.nii.gz", scan)})
        if r.status_code != 429:
            break
        time.sleep(0.5)  # queue full: back off as a client should
    if r.status_code != 202:
        raise RuntimeError(f"upload answered {r.status_code}: {r.text}")
    job_id = r.json()["id"]
    while time.monotonic() - start < timeout:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return {"id": job_id, "status": job["status"], "start": start, "end": time.monotonic()}
        time.sleep(0.1)
    raise RuntimeError(f"job {job_id} not finished after {timeout:g} s")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: no interpolation between the few samples a short run has."""
    ranked = sorted(values)
    return ranked[max(0, min(len(ranked) - 1, math.ceil(q / 100 * len(ranked)) - 1))]


def load(url: str, jobs: int, clients: int, warmup: int, token: str | None = None,
         timeout: float = 300) -> dict:
    """Run the load against a healthy server; returns the figures and the exactly-once check."""
    scan = phantom_bytes()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers=headers, timeout=60)
        return local.client

    with ThreadPoolExecutor(clients) as pool:
        warm = list(pool.map(lambda _: one_job(client(), scan, timeout), range(warmup)))
        t0 = time.monotonic()
        runs = list(pool.map(lambda _: one_job(client(), scan, timeout), range(jobs)))
        wall = max(r["end"] for r in runs) - t0
    listed = httpx.get(f"{url}/v1/jobs", headers=headers, timeout=60).json()["jobs"]
    ours = {r["id"] for r in warm + runs}
    seen = [j for j in listed if j["id"] in ours]
    once = (len(seen) == len(ours) == warmup + jobs
            and all(j["status"] == "done" and j["attempts"] == 1 for j in seen))
    latencies = [r["end"] - r["start"] for r in runs]
    return {"jobs": jobs, "clients": clients, "warmup_jobs": warmup,
            "done": sum(r["status"] == "done" for r in runs),
            "failed": sum(r["status"] != "done" for r in runs),
            "wall_s": round(wall, 2), "throughput_jobs_per_s": round(jobs / wall, 3),
            "latency_p50_s": round(percentile(latencies, 50), 2),
            "latency_p95_s": round(percentile(latencies, 95), 2),
            "latency_max_s": round(max(latencies), 2),
            "every_job_finished_exactly_once": once}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=16, help="measured jobs")
    p.add_argument("--clients", type=int, default=4, help="client threads")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the local server")
    p.add_argument("--warmup", type=int, help="unmeasured jobs first (default: --workers)")
    p.add_argument("--url", help="an already running server instead of a local one")
    p.add_argument("--token", default=os.environ.get("COVSEG_TOKEN"))
    p.add_argument("--json", action="store_true", help="end with the figures as one JSON line")
    args = p.parse_args(argv)
    warmup = args.workers if args.warmup is None else args.warmup
    if args.url:
        figures = load(args.url, args.jobs, args.clients, warmup, args.token)
    else:
        with tempfile.TemporaryDirectory() as tmp, local_server(args.workers, Path(tmp) / "work") as url:
            figures = load(url, args.jobs, args.clients, warmup)
        figures["workers"] = args.workers
    print(f"{figures['jobs']} jobs, {figures['clients']} clients, {figures.get('workers', '?')} "
          f"workers: {figures['throughput_jobs_per_s']:.2f} jobs/s over {figures['wall_s']:.1f} s; "
          f"latency p50 {figures['latency_p50_s']:.2f} s, p95 {figures['latency_p95_s']:.2f} s, "
          f"max {figures['latency_max_s']:.2f} s; {figures['done']} done, {figures['failed']} failed; "
          f"every job finished exactly once: {figures['every_job_finished_exactly_once']}")
    if args.json:
        print(json.dumps(figures))
    return 0 if figures["every_job_finished_exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
