"""`covseg segment --engine ray`: a cohort spread over a Ray cluster, one model per worker.

The driver (this process) does what only one process may do: it locks the output folder, skips
the scans a finished run already did, names each scan's temporary folder and writes
summary.csv. Each Ray worker is an actor that loads ONE LesionSegmenter when it starts and then
runs the local engine's unit of work (`pipeline.build_scan`) on scan after scan, writing into the
output folder on a filesystem every node shares. So both engines leave the same folders,
completion records and rows; a scan that fails, or whose worker dies, is a failed row.
"""
from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from covseg.errors import CovsegError
from covseg import pipeline
from covseg.infer.predictor import LesionSegmenter

MISSING = "the ray engine needs covseg[ray]: pip install 'covseg[ray]'"


class ScanWorker:
    """One Ray actor: a model loaded once, then scans one at a time (max_concurrency 1)."""

    def __init__(self, make_segmenter: Callable[[], LesionSegmenter] | None, lungs: str,
                 override_qa: bool) -> None:
        self.failure: tuple[str, bool] | None = None
        self.run = {"progress": False, "lungs": lungs, "override_qa": override_qa}
        try:
            self.segmenter = make_segmenter() if make_segmenter else LesionSegmenter()
            self.settings = pipeline._batch_settings(self.segmenter, lungs, override_qa)
        except Exception as exc:  # noqa: BLE001 - reported by ready(), so the driver says it in one line
            self.failure = (str(exc) if isinstance(exc, CovsegError) else
                            f"{exc.__class__.__name__}: {exc}", isinstance(exc, CovsegError))

    def ready(self) -> dict:
        """The settings this worker's model records, or why it could not load one."""
        if self.failure is not None:
            return {"error": self.failure[0], "covseg": self.failure[1]}
        return {"settings": self.settings}

    def build(self, path: str, final: str, tmp: str, force: bool, debug: bool) -> dict:
        """The local engine's unit of work, on this worker's model."""
        return pipeline.build_scan(Path(path), Path(final), Path(tmp), force, self.segmenter,
                                   self.settings, self.run, debug)


RAY_AUTH_NOTICE = "ray._private.authentication.authentication_token_setup"


def connect(address: str | None) -> bool:
    """Join the cluster at `address`, or start a local Ray on this machine's CPUs. True when
    this call started Ray, so that the caller shuts it down again (a session it found, it keeps)."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:  # Ray's default token authentication stays on; only its notice of it is kept quiet
        logging.getLogger(RAY_AUTH_NOTICE).setLevel(logging.ERROR)
        ray.init(address="local", num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False,
                 logging_level=logging.WARNING)
    return True


def _spawner(make_segmenter: Callable[[], LesionSegmenter] | None, lungs: str,
             override_qa: bool) -> Callable[[], object]:
    """A function starting one more worker: the first ones, and one in a dead one's place."""
    import ray

    actor_class = ray.remote(num_cpus=1, max_restarts=0)(ScanWorker)
    return lambda: actor_class.remote(make_segmenter, lungs, override_qa)


def _ready(actors: list) -> dict | None:
    """Wait for the workers' models; the settings they record. A model that cannot load is
    one covseg error, as in the local engine, not a row per scan."""
    import ray

    states = ray.get([a.ready.remote() for a in actors])
    broken = next((s for s in states if "error" in s), None)
    if broken is not None:
        if broken["covseg"]:
            raise CovsegError(broken["error"])
        raise RuntimeError(f"a Ray worker could not load the model: {broken['error']}")
    return states[0]["settings"] if states else None


def _worker_count(workers: int | None, todo: int) -> int:
    """As many workers as asked, else one per CPU of the cluster; never more than the scans."""
    import ray

    if not workers:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return max(1, min(workers, todo))


def _died_row(path: Path, final: Path, exc: BaseException) -> dict:
    """The failed row of a scan whose worker process died or whose task Ray could not run."""
    import ray

    if isinstance(exc, ray.exceptions.RayActorError):
        why = ("the Ray worker segmenting this scan died (out of memory, a crash or a lost node); "
               "the other scans went on")
    else:
        why = f"the Ray task failed: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    return {"scan": str(path), "output": str(final), "status": "failed", "message": why}


def _dispatch(jobs: dict[int, tuple[Path, Path, Path]], actors: list, spawn: Callable[[], object],
              force: bool, debug: bool, bar: tqdm) -> dict[int, dict]:
    """Run the jobs (index -> scan, final and temporary folder) on the actors, one at a time
    each; a worker that dies costs its scan only: its half-built folder goes, a fresh worker
    takes its place."""
    import ray

    queue, idle, pending, rows = list(jobs.items()), list(actors), {}, {}
    while queue or pending:
        while queue and idle:
            index, (path, final, tmp) = queue.pop(0)
            actor = idle.pop()
            ref = actor.build.remote(str(path.resolve()), str(final.resolve()), str(tmp.resolve()),
                                     force, debug)
            pending[ref] = (index, actor)
        [ref], _ = ray.wait(list(pending), num_returns=1)
        index, actor = pending.pop(ref)
        try:
            rows[index] = ray.get(ref)
            idle.append(actor)
        except ray.exceptions.RayError as exc:
            path, final, tmp = jobs[index]
            shutil.rmtree(tmp, ignore_errors=True)
            rows[index] = _died_row(path, final, exc)
            if isinstance(exc, ray.exceptions.RayActorError):
                ray.kill(actor)
                actor = spawn()
            idle.append(actor)
        bar.update(1)
    return rows


def segment_many_ray(scans: list[str | Path], output: str | Path, force: bool = False,
                     segmenter: Callable[[], LesionSegmenter] | None = None,
                     progress: bool = True, lungs: str = "auto", override_qa: bool = False,
                     debug: bool = False, address: str | None = None,
                     workers: int | None = None) -> list[dict]:
    """`pipeline.segment_many` with each scan a task on a Ray worker: the same folders,
    completion records, summary.csv and rows, one progress bar for the cohort.

    `segmenter`: a function making the model (it runs on every worker, so it must pickle);
    `address`: an existing cluster ("HEAD:6379"), else a local Ray on this machine's CPUs;
    `workers`: actors, each with one model (default: one per CPU of the cluster). The output
    folder must be on a filesystem all nodes share, and every node needs covseg installed.
    """
    import ray

    with pipeline.batch_folder(scans, output, force) as (out, names):
        started = connect(address)
        try:
            rows = _run_cohort([Path(s) for s in scans], out, names, force, segmenter, progress,
                               lungs, override_qa, debug, workers)
        finally:
            if started:
                ray.shutdown()
        pipeline.write_summary(out, rows)
    return rows


def _run_cohort(scans: list[Path], out: Path, names: list[str], force: bool,
                segmenter: Callable[[], LesionSegmenter] | None, progress: bool, lungs: str,
                override_qa: bool, debug: bool, workers: int | None) -> list[dict]:
    """Skip what is done, send the rest to the workers; the rows in the scans' order."""
    from covseg.io import outputs

    spawn = _spawner(segmenter, lungs, override_qa)
    actors = [spawn()]  # one model first: its settings decide what a finished run already did
    settings = _ready(actors)
    bar = tqdm(total=len(scans), desc="cohort", unit="scan", disable=not progress,
               dynamic_ncols=True)
    rows: dict[int, dict] = {}
    jobs: dict[int, tuple[Path, Path, Path]] = {}
    for index, (path, name) in enumerate(zip(scans, names)):
        done = pipeline.skipped_row(path, out / name, force, settings)
        if done is not None:
            rows[index] = done
            bar.update(1)
        else:
            jobs[index] = (path, out / name, outputs.tmp_dir(out, name))
    more = [spawn() for _ in range(_worker_count(workers, len(jobs)) - 1)] if jobs else []
    _ready(more)
    rows.update(_dispatch(jobs, actors + more, spawn, force, debug, bar))
    bar.close()
    return [_as_given(rows[i], path, out / names[i]) for i, path in enumerate(scans)]


def _as_given(row: dict, path: Path, final: Path) -> dict:
    """A worker's row with the paths as the user gave them (workers get absolute ones), so the
    rows read as the local engine's do."""
    message = row.get("message")
    if message:
        row["message"] = message.replace(str(path.resolve()), str(path))
    return {**row, "scan": str(path), "output": str(final)}
