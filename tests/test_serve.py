"""`covseg serve` over real HTTP on 127.0.0.1: jobs for each input kind, refusals, crash recovery, load.

Each server is `python -m covseg serve` in a child process, so these tests see exactly what a
client sees: status codes, JSON bodies, and the work folder left on disk.
"""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="covseg[serve] not installed (pip install 'covseg[serve]')")
pytest.importorskip("uvicorn", reason="covseg[serve] not installed (pip install 'covseg[serve]')")
try:  # python-multipart names its module python_multipart from 0.0.13, multipart before
    import python_multipart  # noqa: F401
except ImportError:
    pytest.importorskip("multipart", reason="covseg[serve] not installed (python-multipart)")
httpx = pytest.importorskip("httpx", reason="httpx (test extra) not installed")

from builders import write_dicom_series  # noqa: E402

import covseg  # noqa: E402
from covseg.demo import save_phantom  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT_S = 240  # model loads in spawned workers on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `python -m covseg serve` child over a work folder."""

    def __init__(self, work: Path, *options: str) -> None:
        self.work, self.options = work, options
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        self.log = open(self.work.parent / f"serve-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "covseg", "serve", "--port",
                                      str(self.port), "--work", str(self.work), *self.options],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.logged()
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not healthy in 60 s:\n{self.logged()}")

    def logged(self) -> str:
        return (self.work.parent / f"serve-{self.port}.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _wait_for(url: str, job_id: str, headers: dict | None = None, until=("done", "failed")) -> dict:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers, timeout=30).json()
        if job["status"] in until:
            return job
        time.sleep(0.05 if "running" in until else 0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {WAIT_S} s")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """The phantom as NIfTI, as a DICOM series, one file of that series, and the series zipped."""
    root = tmp_path_factory.mktemp("inputs")
    phantom = covseg.make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6))
    nifti = Path(save_phantom(phantom, root / "phantom.nii.gz"))
    series = write_dicom_series(phantom.hu, phantom.spacing, root / "series")
    archive = root / "series.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(series.iterdir()):
            zf.write(f, f"study/series/{f.name}")
    return {"nifti": nifti, "dicom-file": sorted(series.iterdir())[12], "dicom-zip": archive}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A token-protected server with one worker and a 1 MiB upload bound."""
    srv = Server(tmp_path_factory.mktemp("serve") / "work", "--workers", "1", "--token", TOKEN,
                 "--max-upload-mb", "1").start()
    yield srv
    srv.stop()


def test_health_is_open_and_the_token_is_required(server):
    health = httpx.get(f"{server.url}/v1/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = httpx.get(f"{server.url}/v1/jobs", headers=headers)
        assert r.status_code == 401 and "bearer token" in r.json()["error"], r.text
    r = httpx.post(f"{server.url}/v1/jobs", files={"file": ("x.nii.gz", b"x")})
    assert r.status_code == 401
    assert httpx.get(f"{server.url}/v1/jobs", headers=AUTH).status_code == 200
    assert httpx.get(f"{server.url}/docs").status_code == 200
    assert "/v1/jobs" in httpx.get(f"{server.url}/openapi.json").json()["paths"]


@pytest.mark.parametrize("kind", ["nifti", "dicom-file", "dicom-zip"])
def test_upload_poll_fetch(server, inputs, kind):
    path = inputs[kind]
    r = httpx.post(f"{server.url}/v1/jobs", headers=AUTH,
                   files={"file": ("../../etc/evil name" + "".join(path.suffixes), path.read_bytes())})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert job_id.isalnum() and (server.work / "uploads" / job_id).is_dir()
    assert not list(server.work.rglob("evil*"))  # the client's name is a label, never a path
    job = _wait_for(server.url, job_id, AUTH)
    assert job["status"] == "done" and job["progress"] == 1.0, job
    assert {"report.json", "report.html", "lesions.nii.gz", "lungs.nii.gz"} <= set(job["files"])
    if kind != "nifti":
        assert "lesions.seg.dcm" in job["files"]
        seg = httpx.get(f"{server.url}/v1/jobs/{job_id}/files/lesions.seg.dcm", headers=AUTH)
        assert seg.status_code == 200 and seg.content[128:132] == b"DICM"
    report = httpx.get(f"{server.url}/v1/jobs/{job_id}/files/report.json", headers=AUTH)
    assert report.status_code == 200 and "quantification" in report.json()
    mask = httpx.get(f"{server.url}/v1/jobs/{job_id}/files/lesions.nii.gz", headers=AUTH)
    assert mask.status_code == 200 and mask.content[:2] == b"\x1f\x8b"
    html = httpx.get(f"{server.url}/v1/jobs/{job_id}/files/report.html", headers=AUTH)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    for name in ("jobs.sqlite", "..%2F..%2Fjobs.sqlite", "%2E%2E", "summary.csv"):
        r = httpx.get(f"{server.url}/v1/jobs/{job_id}/files/{name}", headers=AUTH)
        assert r.status_code == 404 and "error" in r.json(), (name, r.text)
    assert httpx.get(f"{server.url}/v1/jobs/nope", headers=AUTH).json() == {"error": "no job 'nope'"}
    print(f"{kind}: job {job_id} done, files {', '.join(job['files'])}")


def _zip(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _malformed(inputs) -> dict[str, tuple[dict, str]]:
    """Request kwargs for each bad upload, and a word its error message must hold."""
    nifti = inputs["nifti"].read_bytes()
    dicom = inputs["dicom-file"].read_bytes()
    return {
        "not a scan": ({"files": {"file": ("scan.nii.gz", b"hello, this is not a CT\n" * 20)}},
                       "not a scan"),
        "truncated NIfTI": ({"files": {"file": ("scan.nii.gz", nifti[: len(nifti) // 3])}},
                            "truncated"),
        "zip with ../ member": ({"files": {"file": ("s.zip", _zip({"ok/1.dcm": dicom,
                                                                     "../../evil.dcm": dicom}))}},
                                "'..'"),
        "zip with absolute member": ({"files": {"file": ("s.zip", _zip({"/tmp/evil.dcm": dicom}))}},
                                     "absolute"),
        "zip with a symlink": ({"files": {"file": ("s.zip", _zip({"1.dcm": dicom}, "link.dcm"))}},
                               "symbolic link"),
        "zip bomb": ({"files": {"file": ("s.zip", _zip({"bomb.dcm": bytes(3 << 20)}))}},
                     "zip bomb"),
        "zip of no scan": ({"files": {"file": ("s.zip", _zip({"a.txt": b"text " * 100}))}}, "upload"),
        "oversize": ({"files": {"file": ("big.nii.gz", os.urandom(3 << 20))}}, "limit of 1 MiB"),
        # under the Content-Length pre-check: refused by the byte count while it streams
        "oversize, streamed": ({"files": {"file": ("big.nii.gz", os.urandom(3 << 19))}},
                               "limit of 1 MiB"),
        "missing field": ({"files": {"scan": ("scan.nii.gz", nifti)}}, "'file' is missing"),
        "not multipart": ({"content": nifti, "headers": {"Content-Type": "application/gzip"}},
                          "multipart/form-data"),
    }


def test_malformed_uploads_get_a_clear_4xx_and_leave_nothing(server, inputs):
    uploads = server.work / "uploads"
    before = sorted(p.name for p in uploads.iterdir())
    jobs_before = httpx.get(f"{server.url}/v1/jobs", headers=AUTH).json()["jobs"]
    for case, (kwargs, word) in _malformed(inputs).items():
        headers = {**AUTH, **kwargs.pop("headers", {})}
        r = httpx.post(f"{server.url}/v1/jobs", headers=headers, timeout=60, **kwargs)
        body = r.json()
        assert 400 <= r.status_code < 500 and set(body) == {"error"}, (case, r.status_code, r.text)
        assert word in body["error"] and "Traceback" not in body["error"], (case, body)
        assert str(server.work) not in body["error"], (case, body)  # no server paths either
        assert r.status_code == (413 if case.startswith("oversize") else 400), (case, r.status_code)
        assert sorted(p.name for p in uploads.iterdir()) == before, case
        print(f"{case}: {r.status_code} {body['error']}")
    assert httpx.get(f"{server.url}/v1/jobs", headers=AUTH).json()["jobs"] == jobs_before


def test_kill_9_mid_job_then_restart_finishes_every_job(tmp_path, inputs):
    work = tmp_path / "work"
    first = Server(work, "--workers", "1", "--max-queue", "2").start()
    scan = {"file": ("p.nii.gz", inputs["nifti"].read_bytes())}
    ids = [httpx.post(f"{first.url}/v1/jobs", files=scan).json()["id"] for _ in range(2)]
    try:
        full = httpx.post(f"{first.url}/v1/jobs", files=scan)  # the worker is still loading
        assert full.status_code == 429 and "queue is full" in full.json()["error"], full.text
        job = _wait_for(first.url, ids[0], until=("running", "done", "failed"))
        assert job["status"] == "running", f"the job ended before the kill: {job}"
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
    finally:
        first.stop()
    conn = __import__("sqlite3").connect(work / "jobs.sqlite")
    left = dict(conn.execute("SELECT id, status FROM jobs").fetchall())
    conn.close()
    assert left[ids[0]] == "running", left  # what the dead server left behind
    second = Server(work, "--workers", "1").start()
    try:
        ends = [_wait_for(second.url, i) for i in ids]
        listed = {j["id"]: j for j in httpx.get(f"{second.url}/v1/jobs").json()["jobs"]}
    finally:
        second.stop()
    assert set(listed) == set(ids)
    for end in ends:
        assert end["status"] in ("done", "failed"), end
        assert listed[end["id"]]["status"] == end["status"]
    assert ends[0]["status"] == "done" and ends[0]["attempts"] == 2, ends[0]  # re-run once
    print("after kill -9 and restart: " + ", ".join(f"{e['status']} ({e['attempts']} attempt(s))"
                                                  for e in ends))


def _worker_pids(server_pid: int) -> list[int]:
    """The spawned worker processes of a server (not multiprocessing's resource tracker)."""
    pids = []
    for child in Path(f"/proc/{server_pid}/task").glob("*/children"):
        for pid in map(int, child.read_text().split()):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"spawn_main" in cmd:
                pids.append(pid)
    return pids


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_worker_killed_mid_job_fails_that_job_and_the_server_carries_on(tmp_path, inputs):
    srv = Server(tmp_path / "work", "--workers", "1").start()
    scan = {"file": ("p.nii.gz", inputs["nifti"].read_bytes())}
    try:
        victim = httpx.post(f"{srv.url}/v1/jobs", files=scan).json()["id"]
        job = _wait_for(srv.url, victim, until=("running", "done", "failed"))
        assert job["status"] == "running", job
        for pid in _worker_pids(srv.proc.pid):
            os.kill(pid, signal.SIGKILL)
        failed = _wait_for(srv.url, victim)
        assert failed["status"] == "failed" and "worker" in failed["error"], failed
        after = httpx.post(f"{srv.url}/v1/jobs", files=scan).json()["id"]
        assert _wait_for(srv.url, after)["status"] == "done"  # a fresh pool took over
        print(f"worker killed: {failed['error']}; the next job done")
    finally:
        srv.stop()


def test_restart_lists_finished_jobs_and_fails_a_job_killed_twice(tmp_path):
    """Unit level, no HTTP: the store's recovery rules on a work folder a server left."""
    from covseg.serve.store import JobStore

    store = JobStore(tmp_path / "jobs.sqlite")
    for job_id in ("a", "b", "c"):
        store.add(job_id, "nifti", "x")
    store.start("a")
    store.finish("a", ["report.json"])
    store.start("c")  # first attempt killed
    assert store.recover() == (["c"], [])
    store.start("b")  # first attempt killed
    store.start("c")  # second attempt killed too
    assert store.recover() == (["b"], ["c"])
    again = JobStore(tmp_path / "jobs.sqlite")
    status = {j.id: j.status for j in again.list()}
    assert status == {"a": "done", "b": "queued", "c": "failed"}
    assert "2 times" in again.get("c").error


def test_bounded_load_run_every_job_once():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serve_load.py"), "--jobs", "12",
                           "--clients", "4", "--workers", "2", "--json"],
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(done.stdout.strip().splitlines()[0])
    assert figures["done"] == 12 and figures["failed"] == 0
    assert figures["every_job_finished_exactly_once"] is True
    assert figures["throughput_jobs_per_s"] > 0 and figures["latency_p95_s"] >= figures["latency_p50_s"]


def test_a_running_job_shows_its_stage_and_progress(server, inputs):
    """Polled over HTTP, a job's progress only grows and names what the worker is doing."""
    r = httpx.post(f"{server.url}/v1/jobs", headers=AUTH,
                   files={"file": ("p.nii.gz", inputs["nifti"].read_bytes())})
    job_id, seen = r.json()["id"], []
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        job = httpx.get(f"{server.url}/v1/jobs/{job_id}", headers=AUTH).json()
        seen.append((job["status"], job["progress"], job["stage"]))
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.01)
    assert seen[-1] == ("done", 1.0, "done"), seen[-1]
    progress = [p for _, p, _ in seen]
    assert progress == sorted(progress), seen
    stages = {s for status, _, s in seen if status == "running"}
    assert stages & {"read", "lungs", "lesions", "measures", "pictures", "writing"}, seen
    print("stages seen while running:", sorted(stages))


def test_a_nearly_full_work_disk_gets_503_and_nothing_is_kept(tmp_path, inputs):
    srv = Server(tmp_path / "work", "--workers", "1", "--min-free-mb", str(10 ** 12)).start()
    try:
        health = httpx.get(f"{srv.url}/v1/health").json()
        r = httpx.post(f"{srv.url}/v1/jobs",
                       files={"file": ("p.nii.gz", inputs["nifti"].read_bytes())})
        listed = httpx.get(f"{srv.url}/v1/jobs").json()["jobs"]
    finally:
        srv.stop()
    assert health["status"] == "low_disk"
    assert r.status_code == 503 and set(r.json()) == {"error"}, r.text
    assert "nearly out of space" in r.json()["error"] and "MiB free" in r.json()["error"]
    assert listed == [] and list((tmp_path / "work" / "uploads").iterdir()) == []


def test_a_work_folder_from_before_stages_opens(tmp_path):
    """The store adds the stage column to an older jobs.sqlite and keeps its jobs."""
    import sqlite3

    from covseg.serve.store import _SCHEMA, JobStore

    db = sqlite3.connect(tmp_path / "jobs.sqlite")
    db.execute(_SCHEMA.replace("    stage TEXT NOT NULL DEFAULT '',\n", ""))
    db.execute("INSERT INTO jobs (id, status, kind, input, created) "
               "VALUES ('old', 'done', 'nifti', 'x', 1)")
    db.commit()
    db.close()
    job = JobStore(tmp_path / "jobs.sqlite").get("old")
    assert job.status == "done" and job.stage == ""


def test_segment_reports_its_progress_in_order(inputs):
    from covseg.pipeline import segment

    calls = []
    segment(inputs["nifti"], pictures=True, on_progress=lambda f, s: calls.append((f, s)))
    stages = [s for _, s in calls]
    assert stages[:2] == ["read", "lungs"] and stages[-2:] == ["measures", "pictures"], calls
    assert set(stages[2:-2]) == {"lesions"} and calls[-3][0] == 0.8, calls
    assert [f for f, _ in calls] == sorted(f for f, _ in calls)
