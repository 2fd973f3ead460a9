"""`covseg serve`: run the app under uvicorn, with covseg's own one-line refusals for bad options."""
from __future__ import annotations

from pathlib import Path

from covseg.errors import InputError


def serve(host: str = "127.0.0.1", port: int = 8000, work: str | Path = "covseg-work",
          workers: int = 1, max_upload_mb: float = 512, max_queue: int = 32,
          token: str | None = None, min_free_mb: float | None = None) -> None:
    """Serve until interrupted; queued jobs stay in the work folder's store for the next start."""
    if workers < 1 or max_queue < 1 or max_upload_mb <= 0 or (min_free_mb or 0) < 0:
        raise InputError("--workers and --max-queue must be at least 1, --max-upload-mb above 0, "
                         "--min-free-mb not below 0")
    try:
        import uvicorn

        from covseg.serve.app import create_app
    except ImportError as exc:
        raise InputError(f"covseg serve needs the serve extra ({exc.name} is missing): "
                         "pip install 'covseg[serve]'") from None
    app = create_app(work, workers=workers, max_upload_mb=max_upload_mb, max_queue=max_queue,
                     token=token, min_free_mb=min_free_mb)
    print(f"covseg serve: http://{host}:{port}/docs  (work folder {Path(work).resolve()}, "
          f"{workers} worker(s))", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)
