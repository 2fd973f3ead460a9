"""covseg as an HTTP service (optional extra `covseg[serve]`: FastAPI, uvicorn, python-multipart).

`create_app(work_dir, workers=...)` builds the app; `covseg serve` runs it with uvicorn.
"""
from __future__ import annotations

from covseg.serve.app import create_app

__all__ = ["create_app"]
