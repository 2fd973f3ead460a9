"""The HTTP API (FastAPI): upload a scan, follow its job, fetch its results.

Every error is JSON `{"error": "..."}` with a 4xx/5xx status, never a traceback; uploads are
bounded while they stream, checked before they are queued, and stored under server-chosen names.
"""
from __future__ import annotations

import hmac
import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from covseg import __version__
from covseg.io.outputs import free_bytes
from covseg.serve.store import STATUSES, JobStore, new_job_id
from covseg.serve.uploads import UploadError, discard, prepare_scan, receive_file
from covseg.serve.workers import RESULT_FILES, Dispatcher

log = logging.getLogger("covseg.serve")


class ApiError(Exception):
    """An answer other than success: status and one line for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(work_dir: str | Path, workers: int = 1, max_upload_mb: float = 512,
               max_queue: int = 32, token: str | None = None,
               max_unzipped_mb: float | None = None, start_workers: bool = True,
               min_free_mb: float | None = None) -> FastAPI:
    """The covseg service over `work_dir` (jobs.sqlite, uploads/, jobs/); `workers` processes.

    `max_unzipped_mb` bounds what a zip may unpack to (default 4x the upload bound);
    `start_workers=False` serves the API without running jobs (for tests of the API alone);
    uploads get 503 while the work folder has less than `min_free_mb` free (default twice the
    upload bound plus 64 MiB), so a job never starts on a disk it would fill.
    """
    work = Path(work_dir).resolve()
    uploads, jobs_dir = work / "uploads", work / "jobs"
    uploads.mkdir(parents=True, exist_ok=True)
    jobs_dir.mkdir(parents=True, exist_ok=True)
    for stale in uploads.glob(".incoming-*"):  # staging left by a killed server
        discard(stale)
    store = JobStore(work / "jobs.sqlite")
    limit = int(max_upload_mb * 2 ** 20)
    max_unzipped = int((max_unzipped_mb or 4 * max_upload_mb) * 2 ** 20)
    min_free = int((min_free_mb if min_free_mb is not None else 2 * max_upload_mb + 64) * 2 ** 20)
    state: dict = {"dispatcher": None}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        requeued, failed = store.recover()
        if requeued or failed:
            log.warning("recovered after a stop: %d job(s) queued again, %d failed",
                        len(requeued), len(failed))
        if start_workers:
            state["dispatcher"] = Dispatcher(store, jobs_dir, workers)
            state["dispatcher"].start()
        yield
        if state["dispatcher"]:
            await run_in_threadpool(state["dispatcher"].stop)

    app = FastAPI(title="covseg", version=__version__, lifespan=lifespan,
                  description="COVID-19 lung lesion segmentation and measurement of chest CT, "
                              "as jobs: upload a scan, poll the job, fetch its files.")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.message, headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(400, f"invalid request: {where}: {first.get('msg', 'malformed')}")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return _error(500, f"internal error: {exc.__class__.__name__}")

    def authorize(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                                  token.encode()):
            raise ApiError(401, "a valid bearer token is required (Authorization: Bearer ...)")

    def job_or_404(job_id: str):
        job = store.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r}")
        return job

    @app.get("/v1/health")
    def health() -> dict:
        """Liveness and queue depth (open without a token, for load balancers)."""
        low = free_bytes(work) < min_free
        return {"status": "low_disk" if low else "ok", "version": __version__,
                "workers": workers, **{s: store.count(s) for s in STATUSES}}

    @app.post("/v1/jobs", status_code=202, dependencies=[Depends(authorize)])
    async def submit(request: Request) -> JSONResponse:
        """Upload a scan as multipart field `file`: NIfTI, one DICOM file, or a zip of a series."""
        free = free_bytes(work)
        if free < min_free:  # an upload and its results could fill the disk mid-job
            raise ApiError(503, f"the server's work folder is nearly out of space "
                                f"({free / 2**20:.0f} MiB free, {min_free / 2**20:.0f} MiB "
                                "kept for uploads and results); retry later or tell its operator")
        if store.count("queued") >= max_queue:
            raise ApiError(429, f"the queue is full ({max_queue} jobs waiting); retry later")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + (1 << 20):
            raise ApiError(413, f"the upload is larger than the server's limit of "
                                f"{max_upload_mb:g} MiB")
        job_id = new_job_id()
        staging = uploads / f".incoming-{job_id}"
        staging.mkdir()
        try:
            got = await receive_file(request.headers.get("content-type", ""), request.stream(),
                                     staging / "upload.bin", limit)
            kind, scan = await run_in_threadpool(prepare_scan, got.path, staging, max_unzipped)
            final = uploads / job_id
            staging.rename(final)
        except UploadError as exc:
            discard(staging)
            raise ApiError(exc.status, exc.message) from None
        except BaseException:
            discard(staging)
            raise
        store.add(job_id, kind, str(final / scan.name), got.filename)
        if state["dispatcher"]:
            state["dispatcher"].wake.set()
        return JSONResponse({"id": job_id, "status": "queued"}, status_code=202,
                            headers={"Location": f"/v1/jobs/{job_id}"})

    @app.get("/v1/jobs", dependencies=[Depends(authorize)])
    def list_jobs(status: str | None = None) -> dict:
        """All jobs, oldest first; `?status=done` filters."""
        if status is not None and status not in STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(STATUSES)}")
        return {"jobs": [j.public() for j in store.list(status)]}

    @app.get("/v1/jobs/{job_id}", dependencies=[Depends(authorize)])
    def get_job(job_id: str) -> dict:
        """A job's status (queued, running, done, failed), progress 0..1, error and files."""
        return job_or_404(job_id).public()

    @app.get("/v1/jobs/{job_id}/files/{name}", dependencies=[Depends(authorize)])
    def get_file(job_id: str, name: str) -> FileResponse:
        """One result of a finished job, by name from a fixed list (no paths)."""
        job = job_or_404(job_id)
        if name not in RESULT_FILES:
            raise ApiError(404, f"no file {name!r}; results are named {', '.join(RESULT_FILES)}")
        if job.status != "done":
            raise ApiError(409, f"job {job_id} is {job.status}, not done")
        if name not in job.files:
            raise ApiError(404, f"job {job_id} has no {name}; it has {', '.join(job.files)}")
        return FileResponse(jobs_dir / job.id / name, filename=name)

    return app
