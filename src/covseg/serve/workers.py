"""Worker processes: N spawned processes, each loading the lesion model once, fed by a dispatcher.

The web process never imports torch; it hands job ids to a ProcessPoolExecutor ('spawn', so no
forked copies of the server's threads) and the workers write each job's state to the SQLite
store themselves, so `running` means a worker has the job in hand. A worker whose server
died (kill -9) notices its parent is gone and exits, so no orphan keeps writing.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import threading
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from covseg.serve.store import JobStore

log = logging.getLogger("covseg.serve")

RESULT_FILES = ("report.json", "report.html", "lesions.nii.gz", "lungs.nii.gz", "lesions.seg.dcm",
                "montage.png", "involvement.png", "overlay.png", "overlay_2.png", "overlay_3.png")

_segmenter = None  # the worker's one LesionSegmenter, loaded by _init_worker


def _init_worker(threads: int) -> None:
    """Load the model once per worker process, and leave when the server process is gone."""
    global _segmenter
    parent = os.getppid()

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(0)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    import torch

    torch.set_num_threads(threads)
    from covseg.infer import LesionSegmenter

    _segmenter = LesionSegmenter()


def run_job(db_path: str, job_id: str, input_path: str, out_dir: str) -> str:
    """Segment one job's scan into its folder (in a worker); the store records the outcome."""
    from covseg.errors import CovsegError
    from covseg.pipeline import segment

    store = JobStore(db_path)
    if not store.start(job_id):
        return "skipped"
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)  # a retried job starts from an empty folder
    try:
        segment(input_path, out, force=True, segmenter=_segmenter,
                on_progress=lambda fraction, stage: store.progress(job_id, fraction, stage))
    except CovsegError as exc:
        store.fail(job_id, str(exc).replace(str(Path(input_path).parent) + "/", "").splitlines()[0])
        return "failed"
    except Exception as exc:  # noqa: BLE001 - one bad scan must not take the worker down
        traceback.print_exc()
        store.fail(job_id, f"internal error: {exc.__class__.__name__}: {exc}".splitlines()[0])
        return "failed"
    store.finish(job_id, [n for n in RESULT_FILES if (out / n).is_file()])
    return "done"


class Dispatcher:
    """Feeds queued jobs from the store to the pool, at most one waiting per worker."""

    def __init__(self, store: JobStore, jobs_dir: Path, workers: int) -> None:
        self.store, self.jobs_dir, self.workers = store, jobs_dir, workers
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._inflight: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self._thread = threading.Thread(target=self._loop, name="covseg-dispatcher", daemon=True)

    def _new_pool(self) -> ProcessPoolExecutor:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(threads,))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the jobs in hand; queued ones stay queued in the store for the next start."""
        self.stopping.set()
        self.wake.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self._submit_ready()
            self.wake.wait(timeout=1.0)
            self.wake.clear()

    def _submit_ready(self) -> None:
        with self._lock:
            free = 2 * self.workers - len(self._inflight)
            if free <= 0:
                return
            for job in self.store.list("queued"):
                if free <= 0 or self.stopping.is_set():
                    break
                if job.id in self._inflight:
                    continue
                out = self.jobs_dir / job.id
                try:
                    future = self._pool.submit(run_job, str(self.store.path), job.id, job.input,
                                               str(out))
                except (BrokenProcessPool, RuntimeError):  # a worker died: start a fresh pool
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._new_pool()
                    return
                self._inflight[job.id] = future
                future.add_done_callback(lambda f, jid=job.id: self._done(jid, f))
                free -= 1

    def _done(self, job_id: str, future: Future) -> None:
        with self._lock:
            self._inflight.pop(job_id, None)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:  # the worker died under the job (out of memory?) or could not run it
            log.error("job %s: %s: %s", job_id, exc.__class__.__name__, exc)
            job = self.store.get(job_id)
            # a broken pool fails the jobs it was running; the ones it never began run again
            ended = ("running",) if isinstance(exc, BrokenProcessPool) else ("queued", "running")
            if job and job.status in ended:
                why = ("its worker process died (killed, or out of memory?)"
                       if isinstance(exc, BrokenProcessPool) else exc.__class__.__name__)
                self.store.fail(job_id, f"the worker could not finish the job: {why}")
        self.wake.set()
