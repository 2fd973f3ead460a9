"""Uploads: stream a multipart body to disk with a size bound, unpack zips safely, check the scan.

Everything an upload writes goes to a staging folder under `work/uploads/` with a server-chosen
name; only a scan that covseg.read_scan accepts is moved to its job's folder, anything refused
is removed again, so a bad upload leaves nothing behind. The client's file name is kept as a
label only, never used as a path.
"""
from __future__ import annotations

import shutil
import stat
import zipfile
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

try:  # python-multipart >= 0.0.13 names its module python_multipart
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # pragma: no cover - older python-multipart
    from multipart.multipart import MultipartParser, parse_options_header

CHUNK = 1 << 16
MAX_MEMBERS = 5000  # a CT series has hundreds to a few thousand slices
MAX_RATIO = 200  # DICOM deflates 2-10x; hundreds-fold is a bomb, not a scan
DRAIN_LIMIT = 64 << 20  # bytes read past the bound so the client hears the 413 before we hang up


class UploadError(Exception):
    """An upload refused with an HTTP status and a one-line message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Received:
    """The `file` part as saved: where, how big, and the name the client gave it (a label)."""

    path: Path
    size: int
    filename: str


class _FilePart:
    """python-multipart callbacks that write the first part named `file` to `target`."""

    def __init__(self, target: Path, limit: int) -> None:
        self.target, self.limit = target, limit
        self.size = 0
        self.filename = ""
        self.found = False
        self._field, self._value = b"", b""
        self._headers: dict[bytes, bytes] = {}
        self._out = None

    def callbacks(self) -> dict:
        return {"on_part_begin": self._begin, "on_header_field": self._hfield,
                "on_header_value": self._hvalue, "on_header_end": self._hend,
                "on_headers_finished": self._headers_done, "on_part_data": self._data,
                "on_part_end": self._end}

    def _begin(self) -> None:
        self._headers = {}

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _hend(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == b"file" and not self.found:
            self.found = True
            self.filename = options.get(b"filename", b"").decode("utf-8", "replace")[:200]
            self._out = open(self.target, "wb")  # noqa: SIM115 - closed in _end / close()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._out is None:
            return
        self.size += end - start
        if self.size > self.limit:
            raise UploadError(413, f"the upload is larger than the server's limit of "
                                   f"{self.limit / 2 ** 20:g} MiB")
        self._out.write(data[start:end])

    def _end(self) -> None:
        self.close()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


async def receive_file(content_type: str, body: AsyncIterator[bytes], target: Path,
                       limit: int) -> Received:
    """Stream a multipart/form-data body; save its `file` part to `target`, at most `limit` bytes."""
    ctype, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise UploadError(400, "send the scan as multipart/form-data with a field named 'file'")
    part = _FilePart(target, limit)
    parser = MultipartParser(boundary, part.callbacks())
    total = 0
    try:
        async for chunk in body:
            total += len(chunk)
            if total > limit + (1 << 20):
                raise UploadError(413, f"the upload is larger than the server's limit of "
                                       f"{limit / 2 ** 20:g} MiB")
            parser.write(chunk)
        parser.finalize()
    except UploadError as exc:
        part.close()
        if exc.status == 413:
            await _drain(body)
        raise
    except Exception as exc:  # malformed multipart: python-multipart's own errors
        part.close()
        raise UploadError(400, f"the multipart body cannot be parsed ({exc.__class__.__name__})") from None
    part.close()
    if not part.found:
        raise UploadError(400, "the multipart field 'file' is missing: send the scan as 'file'")
    if part.size == 0:
        raise UploadError(400, "the uploaded file is empty")
    return Received(target, part.size, part.filename)


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read (and drop) a bounded rest of the body, so the client can read our 413 answer."""
    seen = 0
    try:
        async for chunk in body:
            seen += len(chunk)
            if seen > DRAIN_LIMIT:
                return
    except Exception:  # noqa: BLE001 - the client went away: nothing left to tell it
        return


def sniff(path: Path) -> str:
    """What the bytes are (never what the name says): 'zip', 'nifti-gz', 'nifti' or 'dicom'."""
    with open(path, "rb") as f:
        head = f.read(132)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "nifti-gz"
    if len(head) >= 4 and (int.from_bytes(head[:4], "little") in (348, 540)
                           or int.from_bytes(head[:4], "big") in (348, 540)):
        return "nifti"
    if head[128:132] == b"DICM":
        return "dicom"
    raise UploadError(400, "the upload is not a scan covseg reads: send a NIfTI (.nii, .nii.gz), "
                           "one DICOM file, or a zip of one DICOM series")


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member may not be unpacked, or None."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"member {name!r} has an absolute path"
    if ".." in parts:
        return f"member {name!r} climbs out of the archive with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"member {name!r} is a symbolic link"
    if info.flag_bits & 0x1:
        return f"member {name!r} is encrypted"
    return None


def unpack_zip(archive: Path, folder: Path, max_total: int) -> int:
    """Unpack a zip of one DICOM series into `folder` as numbered files; returns the file count.

    Refuses absolute paths, '..' members, links, encrypted members, more than MAX_MEMBERS files,
    more than `max_total` bytes unpacked, and compression ratios above MAX_RATIO (zip bombs),
    all from the directory before a byte is inflated, and counts the bytes while inflating too.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadError(400, f"the zip cannot be read: {exc}") from None
    with zf:
        infos = zf.infolist()
        for info in infos:
            problem = _member_problem(info)
            if problem:
                raise UploadError(400, f"zip refused: {problem}")
        files = [i for i in infos if not i.is_dir() and not _is_clutter(i.filename)]
        if not files:
            raise UploadError(400, "the zip holds no files: zip the folder of one DICOM series")
        if len(files) > MAX_MEMBERS:
            raise UploadError(400, f"zip refused: {len(files)} members, more than {MAX_MEMBERS}")
        declared = sum(i.file_size for i in files)
        if declared > max_total:
            raise UploadError(400, f"zip refused: it unpacks to {declared / 2 ** 20:.0f} MiB, more "
                                   f"than the limit of {max_total / 2 ** 20:g} MiB")
        for i in files:
            if i.file_size > (1 << 20) and i.file_size > MAX_RATIO * max(i.compress_size, 1):
                raise UploadError(400, f"zip refused: member {i.filename!r} inflates "
                                       f"{i.file_size // max(i.compress_size, 1)}-fold (a zip bomb?)")
        folder.mkdir(parents=True)
        written = 0
        for k, info in enumerate(files):
            try:
                with zf.open(info) as src, open(folder / f"{k:05d}.dcm", "wb") as dst:
                    while block := src.read(CHUNK):
                        written += len(block)
                        if written > max_total:
                            raise UploadError(400, "zip refused: it unpacks to more than declared")
                        dst.write(block)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise UploadError(400, f"the zip is damaged: {exc}") from None
    return len(files)


SCAN_NAMES = {"nifti-gz": "scan.nii.gz", "nifti": "scan.nii", "dicom": "scan.dcm"}


def prepare_scan(raw: Path, staging: Path, max_unzipped: int) -> tuple[str, Path]:
    """Turn the saved upload into a scan covseg reads (in `staging`); returns (kind, its path).

    The scan is read once with covseg.read_scan, so what is queued is known to be readable; its
    one-line InputError is the client's answer otherwise (server paths taken out).
    """
    kind = sniff(raw)
    if kind == "zip":
        scan_path = staging / "series"
        unpack_zip(raw, scan_path, max_unzipped)
        raw.unlink()
    else:
        scan_path = staging / SCAN_NAMES[kind]
        raw.rename(scan_path)
    from covseg.errors import CovsegError
    from covseg.io import read_scan

    try:
        read_scan(scan_path)
    except CovsegError as exc:
        raise UploadError(400, _without_paths(str(exc), staging)) from None
    except Exception as exc:  # noqa: BLE001 - a reader's own error: still the upload's fault
        raise UploadError(400, f"the scan cannot be read ({exc.__class__.__name__}: "
                               f"{_without_paths(str(exc), staging)})") from None
    return ("dicom-series" if kind == "zip" else kind), scan_path


def _without_paths(message: str, staging: Path) -> str:
    """A reader's message with the server's folders replaced by 'the upload'."""
    for prefix in (f"{staging}/", str(staging)):
        message = message.replace(prefix, "")
    for name in ("series", *SCAN_NAMES.values()):
        message = message.replace(name, "the upload") if message.startswith(name) else message
    return message.splitlines()[0] if message else "the scan cannot be read"


def _is_clutter(name: str) -> bool:
    """Files archivers add beside a series (macOS resource forks, .DS_Store)."""
    return name.startswith("__MACOSX/") or PurePosixPath(name).name.startswith(".")


def discard(path: Path) -> None:
    """Remove a staging file or folder, whatever state it is in."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
