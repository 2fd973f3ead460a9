"""The job store: one SQLite file in the work folder, so jobs outlive the server process.

The server and its worker processes all write here (WAL mode, short transactions), so a job's
state is on disk the moment it changes: a restarted server lists finished jobs and knows which
ones it was killed in the middle of.
"""
from __future__ import annotations

import json
import sqlite3
import time
import uuid
from contextlib import contextmanager
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATUSES = ("queued", "running", "done", "failed")
MAX_ATTEMPTS = 2  # a job the server died in the middle of runs once more, then fails

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    kind TEXT NOT NULL,
    input TEXT NOT NULL,
    filename TEXT NOT NULL DEFAULT '',
    progress REAL NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    files TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    started REAL,
    finished REAL
)
"""


@dataclass
class Job:
    """One row of the store, as the API shows it (plus where its input lies)."""

    id: str
    status: str
    kind: str
    input: str
    filename: str = ""
    progress: float = 0.0
    stage: str = ""  # what a running job is doing (read, lungs, lesions, ...; done)
    attempts: int = 0
    error: str | None = None
    files: list[str] = field(default_factory=list)
    created: float = 0.0
    started: float | None = None
    finished: float | None = None

    def public(self) -> dict:
        """The JSON a client sees: no server paths."""
        out = asdict(self)
        out.pop("input")
        if out["error"] is None:
            out.pop("error")
        return out


def new_job_id() -> str:
    """A server-chosen id that is also safe as a folder name."""
    return uuid.uuid4().hex


class JobStore:
    """Jobs in `work/jobs.sqlite`; every method opens its own connection (safe across processes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:  # WAL: readers never wait for the worker that is writing a job's state
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            if "stage" not in columns:  # a work folder from before stages were kept
                db.execute("ALTER TABLE jobs ADD COLUMN stage TEXT NOT NULL DEFAULT ''")
        finally:
            db.close()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    @staticmethod
    def _job(row: sqlite3.Row) -> Job:
        data = dict(row)
        data["files"] = json.loads(data["files"])
        return Job(**data)

    def add(self, job_id: str, kind: str, input_path: str, filename: str = "") -> Job:
        with self._db() as db:
            db.execute("INSERT INTO jobs (id, status, kind, input, filename, created) "
                       "VALUES (?, 'queued', ?, ?, ?, ?)",
                       (job_id, kind, input_path, filename, time.time()))
        return self.get(job_id)  # type: ignore[return-value]

    def get(self, job_id: str) -> Job | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._job(row) if row else None

    def list(self, status: str | None = None) -> list[Job]:
        with self._db() as db:
            if status:
                rows = db.execute("SELECT * FROM jobs WHERE status = ? ORDER BY created", (status,))
            else:
                rows = db.execute("SELECT * FROM jobs ORDER BY created")
            return [self._job(r) for r in rows.fetchall()]

    def count(self, status: str) -> int:
        with self._db() as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (status,)).fetchone()[0]

    def start(self, job_id: str) -> bool:
        """Mark a queued job running (one more attempt); False if it is not queued any more."""
        with self._db() as db:
            cur = db.execute("UPDATE jobs SET status = 'running', attempts = attempts + 1, "
                             "progress = 0.05, stage = 'starting', started = ?, error = NULL "
                             "WHERE id = ? AND status = 'queued'", (time.time(), job_id))
            return cur.rowcount == 1

    def progress(self, job_id: str, fraction: float, stage: str) -> None:
        with self._db() as db:
            db.execute("UPDATE jobs SET progress = ?, stage = ? WHERE id = ? AND status = 'running'",
                       (round(fraction, 3), stage, job_id))

    def finish(self, job_id: str, files: list[str]) -> None:
        with self._db() as db:
            db.execute("UPDATE jobs SET status = 'done', progress = 1, stage = 'done', files = ?, "
                       "finished = ?, "
                       "error = NULL WHERE id = ?", (json.dumps(files), time.time(), job_id))

    def fail(self, job_id: str, error: str) -> None:
        with self._db() as db:
            db.execute("UPDATE jobs SET status = 'failed', error = ?, finished = ? WHERE id = ?",
                       (error, time.time(), job_id))

    def recover(self) -> tuple[list[str], list[str]]:
        """After a crash: jobs left `running` run once more, or fail if they already had a retry.

        Returns (requeued ids, failed ids). Nothing stays `running` with no process behind it.
        """
        requeued, failed = [], []
        with self._db() as db:
            rows = db.execute("SELECT id, attempts FROM jobs WHERE status = 'running'").fetchall()
            for row in rows:
                if row["attempts"] >= MAX_ATTEMPTS:
                    db.execute("UPDATE jobs SET status = 'failed', finished = ?, error = ? "
                               "WHERE id = ?", (time.time(), "the server stopped during this job "
                                                f"{row['attempts']} times; not retried again",
                                                row["id"]))
                    failed.append(row["id"])
                else:
                    db.execute("UPDATE jobs SET status = 'queued', progress = 0, stage = '' WHERE id = ?",
                               (row["id"],))
                    requeued.append(row["id"])
        return requeued, failed
