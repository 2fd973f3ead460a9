"""Red-team of covseg's command line: malformed, hostile and edge-case inputs (issue 17, item 8).

Run from the repository root:

    python benchmarks/redteam.py [--only PATTERN] [--json OUT] [--timeout S] [--mem-gib G]

Every kind builds its input in a temporary folder (from ../shared/data and in code), runs
`python -m covseg segment INPUT -o OUT` (or `covseg info`) as a subprocess under a timeout and an
address-space cap, and is classified:

- REFUSED: exit 2, exactly one stderr line starting "covseg: error:", no traceback or library
  noise, nothing created or changed in OUT;
- ACCEPTED: exit 0, no library noise, report.json parses, grade CT-0..CT-4, finite volumes, masks on
  the input's grid, and the kind's own expectation met (e.g. volumes within 1 % of the original);
- FAILED: anything else, including a refusal where an acceptance was expected and vice versa.

The script exits 0 only when no kind failed.
"""
from __future__ import annotations

import argparse
import datetime
import fnmatch
import functools
import gzip
import hashlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("COVSEG_SHARED_DATA", ROOT.parent / "shared" / "data"))
REAL_CT = DATA / "real_ct" / "example_ct.nii.gz"
DICOM_SLICES = DATA / "real_ct" / "dicom_slices"
MA20_SLICE = DATA / "ma20" / "ct" / "0100.png"
MEDSEG_SLICE = DATA / "medseg100" / "test" / "images" / "18.jpg"
ANAMNET = DATA / "anamnet_samples"
WEIGHTS = ROOT / "src" / "covseg" / "weights" / "anamnet_ma20.pt"
GRADES = {f"CT-{k}" for k in range(5)}
# a tqdm bar, "name: 40%|####  | 4/10 [00:01<...]", which may share a line with a message
PROGRESS = re.compile(r"[^|]*\|[^|]*\|\s*\d+/\d+ \[[^\]]*\]")

Check = Callable[["Runner", dict, Path], "str | None"]


@dataclass
class Case:
    """What one kind runs: input paths, extra CLI arguments, the output folder and the command."""

    inputs: list[str]
    args: list[str] = field(default_factory=list)
    out: Path | None = None
    command: str = "segment"
    grid: Path | None = None  # a NIfTI whose grid the masks must share
    after: Callable[[], None] | None = None  # undoes what the builder set up (a mount)


@dataclass
class Kind:
    """One red-team kind: how to build it and what must happen."""

    name: str
    family: str
    expect: str  # "refuse", "accept" or "either"
    reason: str
    build: Callable[[Path], Case]
    check: Check | None = None


@dataclass
class Result:
    """The outcome of one kind."""

    kind: str
    family: str
    expected: str
    outcome: str
    seconds: float
    stderr_first: str
    detail: str
    reason: str


KINDS: list[Kind] = []


def kind(family: str, expect: str, reason: str, check: Check | None = None):
    """Register the decorated builder as a red-team kind named after the function."""
    def register(build: Callable[[Path], Case]) -> Callable[[Path], Case]:
        KINDS.append(Kind(build.__name__, family, expect, reason, build, check))
        return build
    return register


# ----------------------------------------------------------------------------------------------
# shared data, loaded once


@functools.cache
def real_ct() -> tuple[np.ndarray, np.ndarray]:
    """real_ct/example_ct.nii.gz as (int16 HU array in its stored order, affine)."""
    import nibabel as nib

    img = nib.load(REAL_CT)
    return np.asarray(img.dataobj).astype(np.int16), img.affine.copy()


@functools.cache
def ma20_slice() -> np.ndarray:
    """One ma20 slice (uint8, 256 x 256)."""
    from PIL import Image

    return np.asarray(Image.open(MA20_SLICE).convert("L"))


@functools.cache
def real_ct_lps() -> tuple[np.ndarray, tuple[float, float, float]]:
    """real_ct in covseg's (z, y, x) LPS order with its spacing, as covseg reads it."""
    from covseg.io import read_scan

    scan = read_scan(REAL_CT)
    return np.asarray(scan.array), tuple(float(s) for s in scan.spacing)


# ----------------------------------------------------------------------------------------------
# writers


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray, **header) -> Path:
    """Write a NIfTI-1 image, setting raw header fields given as keywords."""
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    for key, value in header.items():
        img.header[key] = value
    img.header.set_sform(affine, code=1)
    img.header.set_qform(affine, code=1)
    nib.save(img, path)
    return path


def patch_nifti(path: Path, src: Path, **fields) -> Path:
    """Copy a NIfTI, then overwrite raw header fields without nibabel's consistency fixes."""
    import nibabel as nib

    raw = gzip.decompress(src.read_bytes()) if src.name.endswith(".gz") else src.read_bytes()
    hdr = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(raw[:348]), check=False)
    for key, value in fields.items():
        hdr[key] = value
    body = hdr.binaryblock + raw[348:]
    path.write_bytes(gzip.compress(body, 1) if path.name.endswith(".gz") else body)
    return path


def ct_variant(w: Path, data: np.ndarray, affine: np.ndarray | None = None, name: str = "ct.nii.gz",
               **header) -> Case:
    """A Case for a NIfTI written from `data` (affine defaults to real_ct's)."""
    path = save_nifti(w / name, data, real_ct()[1] if affine is None else affine, **header)
    return Case([str(path)], grid=path)


def png_chunk(tag: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def raw_png(width: int, height: int, idat: bytes, extra: bytes = b"") -> bytes:
    """An 8-bit grey PNG from an already compressed IDAT payload."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def zeros_deflate(nbytes: int, chunk: int = 64 << 20) -> bytes:
    """zlib stream of `nbytes` zero bytes, compressed piece by piece."""
    comp = zlib.compressobj(9)
    block = bytes(min(chunk, nbytes))
    parts, left = [], nbytes
    while left > 0:
        parts.append(comp.compress(block[:min(chunk, left)]))
        left -= min(chunk, left)
    parts.append(comp.flush())
    return b"".join(parts)


def save_picture(path: Path, array: np.ndarray, **kw) -> Case:
    """Write a picture with PIL and return its Case."""
    from PIL import Image

    Image.fromarray(array).save(path, **kw)
    return Case([str(path)])


def dicom_from_real(path: Path, **tags) -> Path:
    """real_ct/dicom_slices/0.dcm with tags changed (None deletes a tag)."""
    import pydicom

    ds = pydicom.dcmread(DICOM_SLICES / "0.dcm")
    for key, value in tags.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path)
    return path


def write_series(folder: Path, volume: np.ndarray, spacing: tuple[float, float, float],
                 zs: list[float] | None = None, **kw) -> Path:
    """A (z, y, x) LPS HU volume as a DICOM series (covseg.demo.dicom), in one study and frame."""
    from covseg.demo.dicom import write_dicom_series

    return write_dicom_series(volume, spacing, folder, positions=zs, study_uid="1.2.3.4",
                              frame_uid="1.2.3.5", patient_id="REDTEAM", **kw)


def series_case(w: Path, **kw) -> Case:
    """A DICOM series of real_ct (3 mm) in w/series, with write_series's keywords."""
    volume, spacing = real_ct_lps()
    return Case([str(write_series(w / "series", volume, spacing, **kw))])


def copy_weights(w: Path, name: str = "w.pt", sidecar: bool = True) -> Path:
    """A copy of the shipped Anam-Net weights (and its sidecar json) in the kind's folder."""
    dst = w / name
    shutil.copyfile(WEIGHTS, dst)
    if sidecar:
        shutil.copyfile(WEIGHTS.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


# ----------------------------------------------------------------------------------------------
# expectation checks on accepted runs


def quant(report: dict) -> dict:
    """The report's quantification block."""
    return report.get("quantification", {})


def same_volumes(ref: str, tol: float = 0.01, lesions: bool = True) -> Check:
    """Lung (and lesion) volumes within `tol` (relative) of kind `ref`'s accepted run."""
    def check(runner: Runner, report: dict, out: Path) -> str | None:
        base = runner.report_of(ref)
        if base is None:
            return f"reference kind {ref} gave no report"
        keys = ["lung_ml", "lesion_ml"] if lesions else ["lung_ml"]
        for key in keys:
            a, b = quant(report).get(key), quant(base).get(key)
            if a is None or b is None or abs(a - b) > tol * max(abs(b), 1e-9):
                return f"{key} {a} vs {b} in {ref} (more than {tol:.0%} apart)"
        return None
    return check


# ----------------------------------------------------------------------------------------------
# NIfTI kinds


@kind("nifti", "accept", "the real CT itself: the baseline every variant is compared with")
def nifti_original(w: Path) -> Case:
    return Case([str(REAL_CT)], grid=REAL_CT)


@kind("nifti", "accept", "uncompressed .nii of the same scan: same volumes",
      same_volumes("nifti_original"))
def nifti_uncompressed(w: Path) -> Case:
    data, aff = real_ct()
    return ct_variant(w, data, aff, "ct.nii")


@kind("nifti", "refuse", "dim[0]=9 is outside 1..7: the header is broken")
def nifti_dim0_out_of_range(w: Path) -> Case:
    return Case([str(patch_nifti(w / "x.nii.gz", REAL_CT, dim=[9, 122, 101, 112, 1, 1, 1, 1]))])


@kind("nifti", "refuse", "a zero dimension holds no voxels")
def nifti_dim_zero(w: Path) -> Case:
    return Case([str(patch_nifti(w / "x.nii.gz", REAL_CT, dim=[3, 122, 0, 112, 1, 1, 1, 1]))])


@kind("nifti", "refuse", "header dims larger than the data stored")
def nifti_dims_exceed_data(w: Path) -> Case:
    return Case([str(patch_nifti(w / "x.nii.gz", REAL_CT, dim=[3, 122, 101, 400, 1, 1, 1, 1]))])


@kind("nifti", "refuse", "the .nii.gz is cut in half")
def nifti_truncated(w: Path) -> Case:
    raw = REAL_CT.read_bytes()
    (w / "x.nii.gz").write_bytes(raw[: len(raw) // 2])
    return Case([str(w / "x.nii.gz")])


@kind("nifti", "refuse", "bytes flipped in the middle of the gzip stream: CRC must catch it")
def nifti_corrupt_mid_gzip(w: Path) -> Case:
    raw = bytearray(REAL_CT.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 64] = bytes(b ^ 0x5A for b in raw[mid:mid + 64])
    (w / "x.nii.gz").write_bytes(bytes(raw))
    return Case([str(w / "x.nii.gz")])


@kind("nifti", "refuse", "a 40 MiB gzip that inflates to 8 GiB (2048 x 2048 x 1024 int16)")
def nifti_gzip_bomb(w: Path) -> Case:
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((2048, 2048, 1024))
    hdr.set_data_dtype(np.int16)
    hdr["vox_offset"] = 352
    hdr["pixdim"] = [1, 1, 1, 1, 1, 1, 1, 1]
    member = gzip.compress(bytes(64 << 20), 9)
    with open(w / "bomb.nii.gz", "wb") as fh:
        fh.write(gzip.compress(hdr.binaryblock + b"\0" * 4 + bytes(64 << 20), 9))
        for _ in range(127):
            fh.write(member)
    return Case([str(w / "bomb.nii.gz")])


def _huge_header(w: Path, version: int, side: int) -> Case:
    """A NIfTI header declaring `side`^3 int16 voxels, followed by 1 KiB of data."""
    import nibabel as nib

    hdr = nib.Nifti2Header() if version == 2 else nib.Nifti1Header()
    hdr.set_data_shape((side, side, side))
    hdr.set_data_dtype(np.int16)
    hdr["vox_offset"] = 544 if version == 2 else 352
    (w / "huge.nii").write_bytes(hdr.binaryblock + b"\0" * 4 + bytes(1024))
    return Case([str(w / "huge.nii")])


@kind("nifti", "refuse", "NIfTI-2 header declaring 10^6 voxels a side in a 1 KiB file")
def nifti2_huge(w: Path) -> Case:
    return _huge_header(w, 2, 10**6)


@kind("nifti", "refuse", "NIfTI-1 header declaring 30000^3 voxels in a 1 KiB file")
def nifti1_huge_dims(w: Path) -> Case:
    return _huge_header(w, 1, 30000)


@kind("nifti", "either", "4-D (4 time points): refuse, or measure one volume sanely")
def nifti_4d(w: Path) -> Case:
    data, aff = real_ct()
    return ct_variant(w, np.stack([data] * 4, axis=-1), aff)


@kind("nifti", "accept", "4-D with one time point is the same 3-D scan",
      same_volumes("nifti_original"))
def nifti_4d_singleton(w: Path) -> Case:
    data, aff = real_ct()
    return ct_variant(w, data[..., None], aff)


@kind("nifti", "either", "one axial slice as a 2-D NIfTI: refuse or measure it")
def nifti_2d(w: Path) -> Case:
    data, aff = real_ct()
    return ct_variant(w, data[:, :, 25], aff)


@kind("nifti", "refuse", "constant -1000 HU: no body, no lungs")
def nifti_constant(w: Path) -> Case:
    data, aff = real_ct()
    return ct_variant(w, np.full_like(data, -1000), aff)


@kind("nifti", "refuse", "every voxel NaN")
def nifti_all_nan(w: Path) -> Case:
    data, aff = real_ct()
    return ct_variant(w, np.full(data.shape, np.nan, np.float32), aff)


@kind("nifti", "either", "1 % NaN voxels: refuse, or measure with finite numbers")
def nifti_some_nan(w: Path) -> Case:
    data, aff = real_ct()
    f = data.astype(np.float32)
    f.reshape(-1)[np.random.default_rng(0).choice(f.size, f.size // 100, replace=False)] = np.nan
    return ct_variant(w, f, aff)


@kind("nifti", "refuse", "int8 cannot hold HU: values wrapped, not a CT any more")
def nifti_int8(w: Path) -> Case:
    data, aff = real_ct()
    return ct_variant(w, data.astype(np.int8), aff)


@kind("nifti", "accept", "uint16 with scl_inter -1024: the same HU", same_volumes("nifti_original"))
def nifti_uint16_inter(w: Path) -> Case:
    data, aff = real_ct()
    raw = (data.astype(np.int32) + 1024).clip(0, 65535).astype(np.uint16)
    path = w / "ct.nii.gz"
    import nibabel as nib

    img = nib.Nifti1Image(raw, aff)
    img.header.set_slope_inter(1.0, -1024.0)
    nib.save(img, path)
    return Case([str(path)], grid=path)


@kind("nifti", "accept", "float64 copy: the same HU", same_volumes("nifti_original"))
def nifti_float64(w: Path) -> Case:
    data, aff = real_ct()
    return ct_variant(w, data.astype(np.float64), aff)


@kind("nifti", "accept", "stored 2*HU with scl_slope 0.5: the same HU", same_volumes("nifti_original"))
def nifti_scl_slope(w: Path) -> Case:
    import nibabel as nib

    data, aff = real_ct()
    img = nib.Nifti1Image((data.astype(np.int32) * 2).clip(-32768, 32767).astype(np.int16), aff)
    img.header.set_slope_inter(0.5, 0.0)
    nib.save(img, w / "ct.nii.gz")
    return Case([str(w / "ct.nii.gz")], grid=w / "ct.nii.gz")


@kind("nifti", "either", "scl_slope NaN (the standard says: ignore scaling): refuse or same HU",
      same_volumes("nifti_original"))
def nifti_scl_nan(w: Path) -> Case:
    src = save_nifti(w / "src.nii", *real_ct())
    return Case([str(patch_nifti(w / "x.nii.gz", src, scl_slope=np.nan, scl_inter=np.nan))])


@kind("nifti", "refuse", "pixdim 0: the voxel size is unknown, volumes in mL would be invented")
def nifti_pixdim_zero(w: Path) -> Case:
    data, aff = real_ct()
    src = save_nifti(w / "src.nii", data, aff)
    return Case([str(patch_nifti(w / "x.nii.gz", src, pixdim=[1, 0, 0, 0, 1, 1, 1, 1],
                                 sform_code=0, qform_code=0))])


@kind("nifti", "refuse", "pixdim NaN")
def nifti_pixdim_nan(w: Path) -> Case:
    src = save_nifti(w / "src.nii", *real_ct())
    return Case([str(patch_nifti(w / "x.nii.gz", src, pixdim=[1, np.nan, np.nan, np.nan, 1, 1, 1, 1],
                                 sform_code=0, qform_code=0))])


@kind("nifti", "refuse", "pixdim 1e6 mm: a 300 km body, and a huge resampling")
def nifti_pixdim_huge(w: Path) -> Case:
    data, aff = real_ct()
    return ct_variant(w, data, np.diag([1e6, 1e6, 1e6, 1.0]))


@kind("nifti", "either", "negative pixdim in a qform-only header: refuse or read |pixdim|",
      same_volumes("nifti_original"))
def nifti_pixdim_negative(w: Path) -> Case:
    src = save_nifti(w / "src.nii", *real_ct())
    return Case([str(patch_nifti(w / "x.nii.gz", src, pixdim=[1, -3, -3, -3, 1, 1, 1, 1],
                                 sform_code=0))])


@kind("nifti", "refuse", "singular sform and qform (a zero column)")
def nifti_singular_affine(w: Path) -> Case:
    src = save_nifti(w / "src.nii", *real_ct())
    return Case([str(patch_nifti(w / "x.nii.gz", src, srow_y=[0, 0, 0, 11.3], srow_x=[0, 0, 0, 0],
                                 qform_code=0))])


def rotation_z(deg: float) -> np.ndarray:
    """4x4 world rotation about the z axis."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)


@kind("nifti", "either", "the same voxels with a 15 degree oblique affine: refuse as non-axial or "
      "give the same volumes", same_volumes("nifti_original"))
def nifti_oblique(w: Path) -> Case:
    data, aff = real_ct()
    return ct_variant(w, data, rotation_z(15) @ aff)


def flipped(axis: int) -> tuple[np.ndarray, np.ndarray]:
    """real_ct stored mirrored along a voxel axis, with the affine that keeps the anatomy."""
    data, aff = real_ct()
    flip = np.eye(4)
    flip[axis, axis], flip[axis, 3] = -1, data.shape[axis] - 1
    return np.flip(data, axis).copy(), aff @ flip


@kind("nifti", "accept", "stored mirrored left-right (affine compensates): same volumes",
      same_volumes("nifti_original"))
def nifti_mirrored_lr(w: Path) -> Case:
    return ct_variant(w, *flipped(0))


@kind("nifti", "accept", "stored mirrored front-back: same volumes", same_volumes("nifti_original"))
def nifti_mirrored_ap(w: Path) -> Case:
    return ct_variant(w, *flipped(1))


@kind("nifti", "accept", "stored head-first instead of feet-first: same volumes",
      same_volumes("nifti_original"))
def nifti_flipped_si(w: Path) -> Case:
    return ct_variant(w, *flipped(2))


def permuted(order: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """real_ct with voxel axes permuted and the affine columns permuted to match."""
    data, aff = real_ct()
    new = aff.copy()
    new[:, :3] = aff[:, list(order)]
    return np.ascontiguousarray(np.transpose(data, order)), new


@kind("nifti", "accept", "voxel axes stored y, x, z: same volumes", same_volumes("nifti_original"))
def nifti_permuted_yxz(w: Path) -> Case:
    return ct_variant(w, *permuted((1, 0, 2)))


@kind("nifti", "accept", "slice axis stored first (z, x, y): same volumes",
      same_volumes("nifti_original"))
def nifti_permuted_zxy(w: Path) -> Case:
    return ct_variant(w, *permuted((2, 0, 1)))


@kind("nifti", "either", "garbage bytes after the voxel data of a .nii: refuse or ignore them",
      same_volumes("nifti_original"))
def nifti_extra_bytes(w: Path) -> Case:
    path = save_nifti(w / "ct.nii", *real_ct())
    with open(path, "ab") as fh:
        fh.write(os.urandom(4096))
    return Case([str(path)], grid=path)


@kind("nifti", "refuse", "datatype 1 (binary, 1 bit a voxel)")
def nifti_datatype_binary(w: Path) -> Case:
    return Case([str(patch_nifti(w / "x.nii.gz", REAL_CT, datatype=1, bitpix=1))])


@kind("nifti", "refuse", "complex64 voxels are not a CT")
def nifti_complex(w: Path) -> Case:
    data, aff = real_ct()
    return ct_variant(w, data.astype(np.complex64), aff)


@kind("nifti", "refuse", "RGB24 voxels are not a CT")
def nifti_rgb24(w: Path) -> Case:
    return Case([str(patch_nifti(w / "x.nii.gz", REAL_CT, datatype=128, bitpix=24))])


@kind("nifti", "refuse", "vox_offset beyond the end of the file")
def nifti_vox_offset_beyond(w: Path) -> Case:
    return Case([str(patch_nifti(w / "x.nii.gz", REAL_CT, vox_offset=10**8))])


@kind("nifti", "refuse", "bad magic: not a NIfTI header")
def nifti_bad_magic(w: Path) -> Case:
    return Case([str(patch_nifti(w / "x.nii.gz", REAL_CT, magic=b"XXXX"))])


@kind("nifti", "refuse", "a .hdr whose .img is missing")
def nifti_hdr_without_img(w: Path) -> Case:
    import nibabel as nib

    data, aff = real_ct()
    nib.save(nib.Nifti1Pair(data, aff), w / "pair.hdr")
    (w / "pair.img").unlink()
    return Case([str(w / "pair.hdr")])


@kind("nifti", "refuse", "4 x 4 x 4 voxels: too small to hold a chest")
def nifti_tiny(w: Path) -> Case:
    return ct_variant(w, np.full((4, 4, 4), -500, np.int16), np.diag([3.0, 3.0, 3.0, 1.0]))


@kind("nifti", "refuse", "real_ct's lower 90 slices (covseg's own lungs lie in slices 100-111): no "
      "lungs to measure, a grade would be a wrong statement")
def nifti_no_lungs(w: Path) -> Case:
    data, aff = real_ct()
    return ct_variant(w, data[:, :, :90].copy(), aff)


@kind("nifti", "refuse", "real_ct remapped to MR-like intensities: not HU, not CT")
def nifti_mr_like(w: Path) -> Case:
    data, aff = real_ct()
    mr = np.interp(data, [-1024, -100, 0, 100, 3071], [0, 900, 600, 400, 100]).astype(np.int16)
    return ct_variant(w, mr, aff)


@kind("nifti", "either", "HU + 1024 stored without intercept: refuse as not HU, or same volumes",
      same_volumes("nifti_original"))
def nifti_hu_offset(w: Path) -> Case:
    data, aff = real_ct()
    return ct_variant(w, (data.astype(np.int32) + 1024).astype(np.int16), aff)


@kind("info", "accept", "covseg info describes the real CT")
def info_nifti(w: Path) -> Case:
    return Case([str(REAL_CT)], ["--json"], command="info")


@kind("info", "refuse", "covseg info on the gzip bomb must refuse without inflating it")
def info_gzip_bomb(w: Path) -> Case:
    case = nifti_gzip_bomb(w)
    return Case(case.inputs, command="info")


@kind("info", "refuse", "covseg info on the NIfTI-2 huge header")
def info_nifti2_huge(w: Path) -> Case:
    return Case(nifti2_huge(w).inputs, command="info")


# ----------------------------------------------------------------------------------------------
# DICOM kinds


@kind("dicom", "either", "the real single CT slice (it has no Modality tag): refuse or measure")
def dicom_real_single(w: Path) -> Case:
    return Case([str(DICOM_SLICES / "0.dcm")])


@kind("dicom", "refuse", "single slice with Modality MR")
def dicom_mr(w: Path) -> Case:
    return Case([str(dicom_from_real(w / "x.dcm", Modality="MR"))])


@kind("dicom", "refuse", "single slice with Modality CR (radiograph)")
def dicom_cr(w: Path) -> Case:
    return Case([str(dicom_from_real(w / "x.dcm", Modality="CR"))])


@kind("dicom", "refuse", "single slice with Modality US")
def dicom_us(w: Path) -> Case:
    return Case([str(dicom_from_real(w / "x.dcm", Modality="US"))])


@kind("dicom", "either", "no PixelSpacing: refuse, or report voxels instead of mL")
def dicom_no_pixel_spacing(w: Path) -> Case:
    return Case([str(dicom_from_real(w / "x.dcm", Modality="CT", PixelSpacing=None))])


@kind("dicom", "refuse", "PixelSpacing 0 \\ 0")
def dicom_spacing_zero(w: Path) -> Case:
    return Case([str(dicom_from_real(w / "x.dcm", Modality="CT", PixelSpacing=[0, 0]))])


@kind("dicom", "refuse", "Rows and Columns 65535 with 512 x 512 pixel data")
def dicom_rows_65535(w: Path) -> Case:
    return Case([str(dicom_from_real(w / "x.dcm", Modality="CT", Rows=65535, Columns=65535))])


@kind("dicom", "refuse", "BitsAllocated 8 for 16-bit pixel data")
def dicom_bits_mismatch(w: Path) -> Case:
    return Case([str(dicom_from_real(w / "x.dcm", Modality="CT", BitsAllocated=8, BitsStored=8,
                                     HighBit=7))])


@kind("dicom", "refuse", "BitsAllocated 32 for 16-bit pixel data (too little data)")
def dicom_bits_32(w: Path) -> Case:
    return Case([str(dicom_from_real(w / "x.dcm", Modality="CT", BitsAllocated=32, BitsStored=32,
                                     HighBit=31))])


@kind("dicom", "refuse", "no PixelData")
def dicom_no_pixel_data(w: Path) -> Case:
    return Case([str(dicom_from_real(w / "x.dcm", Modality="CT", PixelData=None))])


@kind("dicom", "refuse", "the DICOM file cut in half")
def dicom_truncated(w: Path) -> Case:
    raw = (DICOM_SLICES / "0.dcm").read_bytes()
    (w / "x.dcm").write_bytes(raw[: len(raw) // 2])
    return Case([str(w / "x.dcm")])


@kind("dicom", "refuse", "JPEG 2000 transfer syntax whose fragments are not a codestream")
def dicom_jpeg2000_garbage(w: Path) -> Case:
    import pydicom
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(DICOM_SLICES / "0.dcm")
    ds.Modality = "CT"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000Lossless
    ds.PixelData = encapsulate([os.urandom(2000)])
    ds["PixelData"].VR = "OB"
    ds.save_as(w / "x.dcm")
    return Case([str(w / "x.dcm")])


@kind("dicom", "refuse", "a text file named .dcm")
def dicom_text_named_dcm(w: Path) -> Case:
    (w / "x.dcm").write_text("this is not a DICOM file\n" * 40)
    return Case([str(w / "x.dcm")])


@kind("dicom", "refuse", "an empty folder")
def dicom_empty_folder(w: Path) -> Case:
    (w / "empty").mkdir()
    return Case([str(w / "empty")])


@kind("dicom", "refuse", "a folder of text files named .dcm")
def dicom_text_folder(w: Path) -> Case:
    (w / "texts").mkdir()
    for k in range(3):
        (w / "texts" / f"{k}.dcm").write_text(f"not DICOM {k}\n")
    return Case([str(w / "texts")])


@kind("dicom", "either", "the two real slices in one folder: refuse or measure sanely")
def dicom_real_pair(w: Path) -> Case:
    shutil.copytree(DICOM_SLICES, w / "pair")
    return Case([str(w / "pair")])


@kind("series", "accept", "real_ct written as a DICOM series: same volumes as the NIfTI",
      same_volumes("nifti_original"))
def series_ok(w: Path) -> Case:
    return series_case(w)


@kind("series", "refuse", "one slice of the series truncated: a slice would be lost")
def series_truncated_slice(w: Path) -> Case:
    case = series_case(w)
    victim = Path(case.inputs[0]) / "0020.dcm"
    victim.write_bytes(victim.read_bytes()[:3000])
    return case


@kind("series", "either", "one slice duplicated under another name: refuse or same volumes",
      same_volumes("series_ok"))
def series_duplicate_slice(w: Path) -> Case:
    case = series_case(w)
    folder = Path(case.inputs[0])
    shutil.copyfile(folder / "0020.dcm", folder / "0020_copy.dcm")
    return case


@kind("series", "refuse", "five slices missing in the middle: a gapped series")
def series_gap(w: Path) -> Case:
    case = series_case(w)
    for k in range(40, 45):
        (Path(case.inputs[0]) / f"{k:04d}.dcm").unlink()
    return case


@kind("series", "refuse", "gantry tilt 15 degrees")
def series_gantry_tilt(w: Path) -> Case:
    return series_case(w, GantryDetectorTilt=15)


@kind("series", "refuse", "ImageType LOCALIZER")
def series_localizer(w: Path) -> Case:
    return series_case(w, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])


@kind("series", "refuse", "coronal orientation: not an axial series")
def series_coronal(w: Path) -> Case:
    return series_case(w, orientation=(1, 0, 0, 0, 0, -1))


@kind("series", "refuse", "Modality MR series")
def series_mr(w: Path) -> Case:
    return series_case(w, modality="MR")


@kind("series", "refuse", "PixelSpacing 0 on every slice")
def series_spacing_zero(w: Path) -> Case:
    return series_case(w, PixelSpacing=[0, 0])


@kind("series", "either", "two series in one folder: refuse or pick one and measure sanely")
def series_mixed(w: Path) -> Case:
    volume, spacing = real_ct_lps()
    folder = write_series(w / "series", volume, spacing)
    write_series(folder, volume[:30, ::2, ::2], (3.0, 6.0, 6.0), series_uid="1.2.3.999", start=500)
    return Case([str(folder)])


@kind("series", "refuse", "one slice of another size inside one series")
def series_mixed_sizes(w: Path) -> Case:
    volume, spacing = real_ct_lps()
    folder = write_series(w / "series", volume, spacing)
    import pydicom

    ds = pydicom.dcmread(folder / "0030.dcm")
    ds.Rows, ds.Columns = 50, 50
    ds.PixelData = np.zeros((50, 50), np.int16).tobytes()
    ds.save_as(folder / "0030.dcm")
    return Case([str(folder)])


@kind("series", "either", "a folder with a single slice of the series")
def series_single_slice(w: Path) -> Case:
    volume, spacing = real_ct_lps()
    return Case([str(write_series(w / "series", volume[25:26], spacing))])


# ----------------------------------------------------------------------------------------------
# picture kinds


@kind("picture", "accept", "a real ma20 slice (the training framing)")
def png_ma20(w: Path) -> Case:
    return Case([str(MA20_SLICE)])


@kind("picture", "accept", "a real medseg100 JPEG slice")
def jpg_medseg(w: Path) -> Case:
    return Case([str(MEDSEG_SLICE)])


@kind("picture", "accept", "an Anam-Net paper JPEG slice")
def jpeg_anamnet(w: Path) -> Case:
    return Case([str(ANAMNET / "slice_676.jpeg")])


@kind("picture", "accept", "the ma20 slice as BMP: same lungs", same_volumes("png_ma20", 0.01, False))
def bmp_ma20(w: Path) -> Case:
    return save_picture(w / "x.bmp", ma20_slice())


@kind("picture", "accept", "the ma20 slice as TIFF: same lungs", same_volumes("png_ma20", 0.01, False))
def tiff_ma20(w: Path) -> Case:
    return save_picture(w / "x.tif", ma20_slice())


@kind("picture", "either", "16-bit grey PNG (x 257): refuse or same lungs",
      same_volumes("png_ma20", 0.05, False))
def png_16bit(w: Path) -> Case:
    return save_picture(w / "x.png", ma20_slice().astype(np.uint16) * 257)


@kind("picture", "accept", "RGB PNG of the grey slice: same lungs", same_volumes("png_ma20", 0.01, False))
def png_rgb(w: Path) -> Case:
    return save_picture(w / "x.png", np.stack([ma20_slice()] * 3, -1))


@kind("picture", "either", "RGBA PNG: refuse or same lungs", same_volumes("png_ma20", 0.01, False))
def png_rgba(w: Path) -> Case:
    s = ma20_slice()
    return save_picture(w / "x.png", np.stack([s, s, s, np.full_like(s, 255)], -1))


@kind("picture", "either", "palette PNG: refuse or lungs within 5 %", same_volumes("png_ma20", 0.05, False))
def png_palette(w: Path) -> Case:
    from PIL import Image

    Image.fromarray(ma20_slice()).convert("P").save(w / "x.png")
    return Case([str(w / "x.png")])


@kind("picture", "refuse", "8 x 8 pixels: too small for a chest slice")
def png_tiny(w: Path) -> Case:
    return save_picture(w / "x.png", np.full((8, 8), 100, np.uint8))


@kind("picture", "refuse", "1 x 1 pixel")
def png_1x1(w: Path) -> Case:
    return save_picture(w / "x.png", np.zeros((1, 1), np.uint8))


@kind("picture", "refuse", "IHDR says 100000 x 100000 with a tiny IDAT")
def png_huge_header(w: Path) -> Case:
    (w / "x.png").write_bytes(raw_png(100000, 100000, zlib.compress(bytes(1000))))
    return Case([str(w / "x.png")])


@kind("picture", "refuse", "decompression bomb in PIL's warning zone: 12000 x 12000 of zeros")
def png_bomb_warn_zone(w: Path) -> Case:
    (w / "x.png").write_bytes(raw_png(12000, 12000, zeros_deflate(12001 * 12000)))
    return Case([str(w / "x.png")])


@kind("picture", "refuse", "decompression bomb beyond PIL's limit: 40000 x 40000 header")
def png_bomb_error_zone(w: Path) -> Case:
    (w / "x.png").write_bytes(raw_png(40000, 40000, zeros_deflate(40001 * 100)))
    return Case([str(w / "x.png")])


@kind("picture", "either", "zTXt chunk inflating to 64 MiB: refuse, or ignore it and measure",
      same_volumes("png_ma20", 0.01, False))
def png_ztxt_bomb(w: Path) -> Case:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(ma20_slice()).save(buf, format="PNG")
    raw = buf.getvalue()
    ztxt = png_chunk(b"zTXt", b"Comment\0\0" + zeros_deflate(64 << 20))
    (w / "x.png").write_bytes(raw[:33] + ztxt + raw[33:])
    return Case([str(w / "x.png")])


@kind("picture", "refuse", "PNG cut in half")
def png_truncated(w: Path) -> Case:
    raw = MA20_SLICE.read_bytes()
    (w / "x.png").write_bytes(raw[: len(raw) // 2])
    return Case([str(w / "x.png")])


@kind("picture", "refuse", "zero-byte .png")
def png_zero_byte(w: Path) -> Case:
    (w / "x.png").write_bytes(b"")
    return Case([str(w / "x.png")])


@kind("picture", "either", "a JPEG named .png: refuse or read it by content")
def png_wrong_extension(w: Path) -> Case:
    shutil.copyfile(MEDSEG_SLICE, w / "x.png")
    return Case([str(w / "x.png")])


@kind("picture", "refuse", "a text file named .png")
def png_text(w: Path) -> Case:
    (w / "x.png").write_text("hello\n")
    return Case([str(w / "x.png")])


@kind("picture", "either", "float32 TIFF of the slice: refuse or lungs within 5 %",
      same_volumes("png_ma20", 0.05, False))
def tiff_float32(w: Path) -> Case:
    return save_picture(w / "x.tif", ma20_slice().astype(np.float32))


@kind("picture", "accept", "the slice turned 90 degrees: lungs within 5 % (pictures are 2-D "
      "network outputs, interpolation differs)", same_volumes("png_ma20", 0.05, False))
def png_turned(w: Path) -> Case:
    return save_picture(w / "x.png", np.rot90(ma20_slice()).copy())


@kind("picture", "accept", "the slice mirrored left-right: lungs within 5 %",
      same_volumes("png_ma20", 0.05, False))
def png_mirrored(w: Path) -> Case:
    return save_picture(w / "x.png", ma20_slice()[:, ::-1].copy())


@kind("picture", "accept", "the slice cropped by 20 px a side: sane numbers")
def png_cropped(w: Path) -> Case:
    return save_picture(w / "x.png", ma20_slice()[20:-20, 20:-20].copy())


@kind("picture", "accept", "the slice re-windowed (gamma 0.6): sane numbers")
def png_rewindowed(w: Path) -> Case:
    s = ma20_slice().astype(float) / 255
    return save_picture(w / "x.png", (255 * s ** 0.6).astype(np.uint8))


@kind("picture", "refuse", "a constant grey picture: no lungs")
def png_constant(w: Path) -> Case:
    return save_picture(w / "x.png", np.full((256, 256), 128, np.uint8))


@kind("info", "refuse", "covseg info on the 100000 x 100000 PNG header")
def info_png_huge(w: Path) -> Case:
    return Case(png_huge_header(w).inputs, command="info")


# ----------------------------------------------------------------------------------------------
# .mat and .npy kinds


@kind("mat", "accept", "the paper's sampledata.mat with --key im4")
def mat_sample_key(w: Path) -> Case:
    return Case([str(ANAMNET / "sampledata.mat")], ["--key", "im4"])


@kind("mat", "either", "four arrays and no --key: refuse asking for --key, or pick one")
def mat_several_no_key(w: Path) -> Case:
    return Case([str(ANAMNET / "sampledata.mat")])


@kind("mat", "refuse", "--key names an array that is not there")
def mat_wrong_key(w: Path) -> Case:
    return Case([str(ANAMNET / "sampledata.mat")], ["--key", "nothere"])


@kind("mat", "refuse", "a .mat that holds only a string")
def mat_no_array(w: Path) -> Case:
    import scipy.io

    scipy.io.savemat(w / "x.mat", {"note": "no image here"})
    return Case([str(w / "x.mat")])


@kind("mat", "either", "a struct holding the image: refuse or find it", None)
def mat_struct(w: Path) -> Case:
    import scipy.io

    scipy.io.savemat(w / "x.mat", {"s": {"img": ma20_slice(), "name": "x"}})
    return Case([str(w / "x.mat")])


@kind("mat", "refuse", "x.mat is a symlink to /dev/zero: endless zeros")
def mat_dev_zero(w: Path) -> Case:
    (w / "x.mat").symlink_to("/dev/zero")
    return Case([str(w / "x.mat")])


@kind("mat", "refuse", "a MATLAB v7.3 (HDF5) header with no HDF5 behind it")
def mat_v73_header(w: Path) -> Case:
    head = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema"
    (w / "x.mat").write_bytes(head.ljust(116) + bytes(8) + b"\x00\x02IM" + os.urandom(1000))
    return Case([str(w / "x.mat")])


@kind("mat", "refuse", "a zero-byte .mat")
def mat_empty(w: Path) -> Case:
    (w / "x.mat").write_bytes(b"")
    return Case([str(w / "x.mat")])


@kind("npy", "either", "real_ct HU as a bare (z, y, x) .npy: no spacing, so voxels not mL")
def npy_volume(w: Path) -> Case:
    np.save(w / "x.npy", real_ct_lps()[0])
    return Case([str(w / "x.npy")])


@kind("npy", "refuse", ".npy header declaring shape (100000, 100000, 100000) with no data")
def npy_huge_header(w: Path) -> Case:
    header = "{'descr': '<i2', 'fortran_order': False, 'shape': (100000, 100000, 100000), }"
    header = header.ljust(118) + "\n"
    (w / "x.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    return Case([str(w / "x.npy")])


@kind("npy", "refuse", "object dtype (needs pickle)")
def npy_object(w: Path) -> Case:
    np.save(w / "x.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return Case([str(w / "x.npy")])


@kind("npy", "refuse", "a pickled list saved with np.save")
def npy_pickled(w: Path) -> Case:
    np.save(w / "x.npy", np.array([[1, 2], "x"], dtype=object), allow_pickle=True)
    return Case([str(w / "x.npy")])


@kind("npy", "refuse", "4-D array (2 x 10 x 64 x 64)")
def npy_4d(w: Path) -> Case:
    np.save(w / "x.npy", np.zeros((2, 10, 64, 64), np.int16))
    return Case([str(w / "x.npy")])


@kind("npy", "refuse", "complex array")
def npy_complex(w: Path) -> Case:
    np.save(w / "x.npy", real_ct_lps()[0][:20].astype(np.complex64))
    return Case([str(w / "x.npy")])


@kind("npy", "refuse", "header shape larger than the data stored")
def npy_mismatched_size(w: Path) -> Case:
    np.save(w / "x.npy", np.zeros((20, 256, 256), np.int16))
    raw = (w / "x.npy").read_bytes()
    (w / "x.npy").write_bytes(raw.replace(b"(20, 256, 256)", b"(90, 256, 256)", 1))
    return Case([str(w / "x.npy")])


@kind("npy", "either", "a 2-D uint8 slice as .npy")
def npy_slice(w: Path) -> Case:
    np.save(w / "x.npy", ma20_slice())
    return Case([str(w / "x.npy")])


@kind("npy", "refuse", "a bool array: a mask, not an image")
def npy_bool(w: Path) -> Case:
    np.save(w / "x.npy", real_ct_lps()[0] > -400)
    return Case([str(w / "x.npy")])


# ----------------------------------------------------------------------------------------------
# path kinds


@kind("path", "refuse", "the input does not exist")
def path_missing(w: Path) -> Case:
    return Case([str(w / "nothere.nii.gz")])


@kind("path", "refuse", "a directory named x.nii.gz")
def path_dir_named_nifti(w: Path) -> Case:
    (w / "x.nii.gz").mkdir()
    return Case([str(w / "x.nii.gz")])


@kind("path", "refuse", "a FIFO named x.nii.gz: reading it would block forever")
def path_fifo(w: Path) -> Case:
    os.mkfifo(w / "x.nii.gz")
    return Case([str(w / "x.nii.gz")])


@kind("path", "refuse", "a symlink loop")
def path_symlink_loop(w: Path) -> Case:
    (w / "a.nii.gz").symlink_to(w / "b.nii.gz")
    (w / "b.nii.gz").symlink_to(w / "a.nii.gz")
    return Case([str(w / "a.nii.gz")])


@kind("path", "either", "no read permission (chmod 000); as root the file is readable, so accepted")
def path_no_permission(w: Path) -> Case:
    shutil.copyfile(MA20_SLICE, w / "x.png")
    os.chmod(w / "x.png", 0)
    return Case([str(w / "x.png")])


@kind("path", "refuse", "an unknown extension (.xyz)")
def path_unknown_extension(w: Path) -> Case:
    shutil.copyfile(MA20_SLICE, w / "x.xyz")
    return Case([str(w / "x.xyz")])


@kind("path", "refuse", "an empty path string")
def path_empty_string(w: Path) -> Case:
    return Case([""])


@kind("info", "refuse", "covseg info on a missing file")
def info_missing(w: Path) -> Case:
    return Case([str(w / "nothere.nii.gz")], command="info")


@kind("info", "refuse", "covseg info on a FIFO")
def info_fifo(w: Path) -> Case:
    return Case(path_fifo(w).inputs, command="info")


# ----------------------------------------------------------------------------------------------
# output kinds


@kind("output", "refuse", "-o names an existing file: it must be left untouched")
def out_is_file(w: Path) -> Case:
    (w / "taken.txt").write_text("precious\n")
    return Case([str(MA20_SLICE)], out=w / "taken.txt")


@kind("output", "refuse", "-o under a regular file cannot be created (unwritable folder, faked)")
def out_uncreatable(w: Path) -> Case:
    (w / "afile").write_text("x\n")
    return Case([str(MA20_SLICE)], out=w / "afile" / "sub")


@kind("output", "refuse", "earlier results in -o without --force")
def out_existing_results(w: Path) -> Case:
    out = w / "out"
    out.mkdir()
    (out / "report.json").write_text('{"earlier": true}\n')
    (out / "lungs.png").write_bytes(MA20_SLICE.read_bytes())
    return Case([str(MA20_SLICE)], out=out)


@kind("output", "accept", "earlier results in -o with --force are replaced")
def out_existing_force(w: Path) -> Case:
    case = out_existing_results(w)
    case.args.append("--force")
    return case


@kind("output", "either", "-o already holds an unrelated user file: refuse or keep it")
def out_unrelated_file(w: Path) -> Case:
    out = w / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    return Case([str(MA20_SLICE)], out=out)


def _can_mount() -> bool:
    """Whether this machine lets us mount a small tmpfs (root with the right capability)."""
    with tempfile.TemporaryDirectory() as probe:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe],
                              capture_output=True)
        if done.returncode == 0:
            subprocess.run(["umount", probe], check=False)
        return done.returncode == 0


def full_disk(w: Path, inputs: list[str]) -> Case:
    """-o on a real 2 MiB file system with 64 KiB left: there is no room for the results."""
    disk = w / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    (disk / "filler").write_bytes(bytes(2 * 2**20 - 64 * 2**10))
    return Case(inputs, out=disk / "out",
                after=lambda: subprocess.run(["umount", "-l", str(disk)], check=False))


if _can_mount():  # a full disk is real only where a file system can be made for it
    @kind("output", "refuse", "-o on a full disk (NIfTI source): refused before any compute")
    def out_full_disk_nifti(w: Path) -> Case:
        return full_disk(w, [str(REAL_CT)])

    @kind("output", "refuse", "-o on a full disk (DICOM series source, DICOM-SEG too)")
    def out_full_disk_dicom(w: Path) -> Case:
        return full_disk(w, series_case(w).inputs)


# ----------------------------------------------------------------------------------------------
# weights kinds


@kind("weights", "accept", "a faithful copy of the shipped weights with its sidecar",
      same_volumes("png_ma20", 0.01, False))
def weights_copy(w: Path) -> Case:
    return Case([str(MA20_SLICE)], ["--weights", str(copy_weights(w))])


@kind("weights", "refuse", "4 KiB of noise in the middle of the .pt")
def weights_tampered(w: Path) -> Case:
    dst = copy_weights(w)
    raw = bytearray(dst.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 4096] = np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes()
    dst.write_bytes(bytes(raw))
    return Case([str(MA20_SLICE)], ["--weights", str(dst)])


def torch_save(path: Path, obj: object) -> Path:
    """torch.save an object and put the shipped sidecar beside it."""
    import torch

    torch.save(obj, path)
    shutil.copyfile(WEIGHTS.with_suffix(".json"), path.with_suffix(".json"))
    return path


@kind("weights", "refuse", "a bare tensor saved with torch.save")
def weights_bare_tensor(w: Path) -> Case:
    import torch

    return Case([str(MA20_SLICE)], ["--weights", str(torch_save(w / "t.pt", torch.zeros(3, 3)))])


@kind("weights", "refuse", "a list saved with torch.save")
def weights_list(w: Path) -> Case:
    return Case([str(MA20_SLICE)], ["--weights", str(torch_save(w / "l.pt", [1, 2, 3]))])


@kind("weights", "refuse", "the sidecar json is not JSON")
def weights_bad_sidecar(w: Path) -> Case:
    dst = copy_weights(w)
    dst.with_suffix(".json").write_text("{not json")
    return Case([str(MA20_SLICE)], ["--weights", str(dst)])


@kind("weights", "refuse", "the sidecar names an unknown architecture")
def weights_sidecar_unknown_model(w: Path) -> Case:
    dst = copy_weights(w)
    meta = json.loads(dst.with_suffix(".json").read_text())
    for key in ("model", "architecture", "name"):
        if key in meta:
            meta[key] = "no_such_net"
    dst.with_suffix(".json").write_text(json.dumps(meta))
    return Case([str(MA20_SLICE)], ["--weights", str(dst)])


@kind("weights", "either", "sidecar sha256 '../escape': must not be used as a file name",
      lambda r, rep, out: "wrote outside" if (out.parent / "escape").exists() else None)
def weights_sidecar_traversal(w: Path) -> Case:
    dst = copy_weights(w)
    meta = json.loads(dst.with_suffix(".json").read_text())
    meta["sha256"] = "../escape"
    dst.with_suffix(".json").write_text(json.dumps(meta))
    return Case([str(MA20_SLICE)], ["--weights", str(dst)])


@kind("weights", "refuse", "--weights names a missing file")
def weights_missing(w: Path) -> Case:
    return Case([str(MA20_SLICE)], ["--weights", str(w / "nothere.pt")])


@kind("weights", "refuse", "--weights is an empty file")
def weights_empty(w: Path) -> Case:
    (w / "e.pt").write_bytes(b"")
    shutil.copyfile(WEIGHTS.with_suffix(".json"), w / "e.json")
    return Case([str(MA20_SLICE)], ["--weights", str(w / "e.pt")])


@kind("weights", "either", "the shipped weights without a sidecar or --model: refuse, or (the "
      "default architecture is the right one) the same lungs", same_volumes("png_ma20", 0.01, False))
def weights_no_sidecar(w: Path) -> Case:
    return Case([str(MA20_SLICE)], ["--weights", str(copy_weights(w, sidecar=False))])


@kind("weights", "refuse", "the lung model's weights given as the lesion model")
def weights_wrong_model(w: Path) -> Case:
    src = WEIGHTS.with_name("lungs_ma20_medseg.pt")
    shutil.copyfile(src, w / "lungs.pt")
    shutil.copyfile(src.with_suffix(".json"), w / "lungs.json")
    return Case([str(MA20_SLICE)], ["--weights", str(w / "lungs.pt")])


# ----------------------------------------------------------------------------------------------
# running and classifying


def memory_cap(limit: int) -> Callable[[], None]:
    """preexec_fn that caps the child's address space at `limit` bytes."""
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def meaningful_lines(stderr: str) -> list[str]:
    """stderr lines without progress bars and blank lines."""
    lines = []
    for line in stderr.replace("\r", "\n").splitlines():
        text = PROGRESS.sub("", line).strip()
        if text:
            lines.append(text)
    return lines


def snapshot(path: Path) -> dict[str, str]:
    """What lies at `path`: file names to size and content hash (empty if nothing)."""
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    if not path.is_dir():
        return {}
    return {str(p.relative_to(path)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                       if p.is_file() else "dir")
            for p in sorted(path.rglob("*"))}


def mask_shape(out: Path, name: str) -> tuple[int, ...]:
    """Shape of an output mask (NIfTI or picture)."""
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        return tuple(nib.load(out / name).shape)
    from PIL import Image

    with Image.open(out / name) as img:
        return (img.height, img.width)


def grid_problem(report: dict, out: Path, case: Case) -> str | None:
    """Why the masks are not on the input's grid (None when they are)."""
    files = report.get("files", {})
    for key in ("lungs", "labels"):
        if key not in files or not (out / files[key]).is_file():
            return f"mask '{key}' missing from outputs"
        shape = mask_shape(out, files[key])
        if int(np.prod(shape)) != int(np.prod(report["input"]["shape_zyx"])):
            return f"mask {files[key]} {shape} vs input {report['input']['shape_zyx']}"
        if case.grid is not None and files[key].endswith(".nii.gz"):
            import nibabel as nib

            src, got = nib.load(case.grid), nib.load(out / files[key])
            want = tuple(d for d in src.shape if d > 1)
            if tuple(d for d in got.shape if d > 1) != want:
                return f"mask {got.shape} vs input grid {src.shape}"
            if not np.allclose(src.affine, got.affine, atol=1e-3):
                return "mask affine differs from the input's"
    return None


def report_problem(report: dict) -> str | None:
    """Why an accepted report is not sane (None when it is)."""
    q = quant(report)
    grade = q.get("severity", {}).get("grade")
    if grade not in GRADES:
        return f"grade {grade!r} not in CT-0..CT-4"
    values = [q.get("lung_ml"), q.get("lesion_ml"), q.get("involvement_percent")]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in values):
        return f"volumes not finite and >= 0: {values}"
    if values[1] > values[0] + 1e-6 or values[2] > 100:
        return f"lesions exceed lungs: {values}"
    return None


class Runner:
    """Builds and runs kinds in a temporary folder and keeps their reports."""

    def __init__(self, work: Path, timeout: float, mem: int) -> None:
        self.work, self.timeout, self.mem = work, timeout, mem
        self.reports: dict[str, dict | None] = {}
        self.by_name = {k.name: k for k in KINDS}

    def report_of(self, name: str) -> dict | None:
        """The accepted report of kind `name`, running it first if needed."""
        if name not in self.reports:
            self.run(self.by_name[name])
        return self.reports.get(name)

    def command(self, case: Case, out: Path) -> list[str]:
        """The covseg command line for a case."""
        base = [sys.executable, "-m", "covseg", case.command, *case.inputs]
        return base + case.args if case.command == "info" else base + ["-o", str(out), *case.args]

    def execute(self, argv: list[str]) -> tuple[int | None, str, str]:
        """Run argv with the timeout and memory cap; rc None on timeout."""
        env = dict(os.environ)
        env.pop("PYTHONWARNINGS", None)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="replace", cwd=self.work, env=env, start_new_session=True,
                                preexec_fn=memory_cap(self.mem))
        try:
            stdout, stderr = proc.communicate(timeout=self.timeout)
            return proc.returncode, stdout, stderr
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            return None, stdout, stderr

    def run(self, k: Kind) -> Result:
        """Build, run and classify one kind."""
        w = self.work / k.name
        shutil.rmtree(w, ignore_errors=True)
        w.mkdir(parents=True)
        t0 = time.perf_counter()
        try:
            case = k.build(w)
        except Exception as exc:  # a builder bug must show, not stop the run
            return self.result(k, "FAILED", t0, "", f"builder failed: {exc!r}")
        out = case.out or w / "out"
        before = snapshot(out)
        rc, stdout, stderr = self.execute(self.command(case, out))
        lines = meaningful_lines(stderr)
        outcome, detail = self.classify(k, case, out, before, rc, stdout, lines)
        if case.after:
            case.after()
        self.reports.setdefault(k.name, None)
        return self.result(k, outcome, t0, lines[0] if lines else "", detail)

    def result(self, k: Kind, outcome: str, t0: float, first: str, detail: str) -> Result:
        """A Result for kind k."""
        return Result(k.name, k.family, k.expect, outcome, round(time.perf_counter() - t0, 1),
                      first[:160], detail[:300], k.reason)

    def classify(self, k: Kind, case: Case, out: Path, before: dict, rc: int | None, stdout: str,
                 lines: list[str]) -> tuple[str, str]:
        """REFUSED, ACCEPTED or FAILED with a one-line detail."""
        if rc is None:
            return "FAILED", f"timeout after {self.timeout:.0f} s"
        if any("Traceback" in line for line in lines):
            return "FAILED", f"exit {rc} with a traceback: {lines[-1]}"
        if rc == 2:
            if len(lines) != 1 or not lines[0].startswith("covseg: error:"):
                return "FAILED", f"exit 2 but stderr has {len(lines)} lines: {' | '.join(lines)}"
            if snapshot(out) != before:
                return "FAILED", "refused but the output folder changed"
            if k.expect == "accept":
                return "FAILED", "refused where an acceptance was expected"
            return "REFUSED", ""
        if rc != 0:
            kind_of = "memory cap hit" if "MemoryError" in " ".join(lines) or rc < 0 else "exit"
            return "FAILED", f"{kind_of} {rc}: {' | '.join(lines)[:200]}"
        noise = [line for line in lines if not line.startswith(("covseg:", "warning:"))]
        if noise:
            return "FAILED", f"exit 0 with library noise on stderr: {noise[0]}"
        if k.expect == "refuse":
            return "FAILED", f"exit 0 where a refusal was expected: {stdout.splitlines()[:1]}"
        problem = self.accepted_problem(k, case, out, stdout)
        return ("FAILED", problem) if problem else ("ACCEPTED", self.summary(k.name))

    def accepted_problem(self, k: Kind, case: Case, out: Path, stdout: str) -> str | None:
        """Why an exit-0 run is not a sane acceptance (None when it is)."""
        if case.command == "info":
            try:
                json.loads(stdout)
            except ValueError:
                return "covseg info --json did not print JSON"
            self.reports[k.name] = None
            return None
        try:
            report = json.loads((out / "report.json").read_text())
        except (OSError, ValueError) as exc:
            return f"report.json unreadable: {exc}"
        problem = report_problem(report) or grid_problem(report, out, case)
        if problem is None:
            self.reports[k.name] = report
            if k.check is not None:
                problem = k.check(self, report, out)
        return problem

    def summary(self, name: str) -> str:
        """Lung and lesion numbers of an accepted kind, for the table."""
        report = self.reports.get(name)
        if not report:
            return ""
        q = quant(report)
        return f"lungs {q['lung_ml']}, lesions {q['lesion_ml']}, {q['severity']['grade']}"


def select(patterns: list[str] | None) -> list[Kind]:
    """Kinds whose name or family matches any glob pattern (all when none)."""
    if not patterns:
        return list(KINDS)
    return [k for k in KINDS if any(fnmatch.fnmatch(k.name, p) or fnmatch.fnmatch(k.family, p)
                                    or p in k.name for p in patterns)]


def cpu_name() -> str:
    """The CPU's model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_table(results: list[Result]) -> None:
    """Print the per-kind table and the totals."""
    print(f"{'kind':32} {'family':8} {'expected':8} {'outcome':8} {'s':>6}  first stderr line / detail")
    for r in results:
        note = r.detail if r.outcome == "FAILED" else (r.stderr_first or r.detail)
        print(f"{r.kind:32} {r.family:8} {r.expected:8} {r.outcome:8} {r.seconds:6.1f}  {note[:110]}")
    t = totals(results)
    print(f"\nkinds tried {t['tried']}: refused {t['refused']}, accepted {t['accepted']}, "
          f"failed {t['failed']}")


def totals(results: list[Result]) -> dict[str, int]:
    """Counts by outcome."""
    return {"tried": len(results), "refused": sum(r.outcome == "REFUSED" for r in results),
            "accepted": sum(r.outcome == "ACCEPTED" for r in results),
            "failed": sum(r.outcome == "FAILED" for r in results)}


def main(argv: list[str] | None = None) -> int:
    """Run the red-team; exit 0 only when no kind failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", metavar="PATTERN",
                        help="kinds or families to run (glob or substring)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a kind (default 120)")
    parser.add_argument("--mem-gib", type=float, default=6.0, help="address-space cap (default 6)")
    parser.add_argument("--list", action="store_true", help="list the kinds and exit")
    args = parser.parse_args(argv)
    kinds = select(args.only)
    if args.list:
        for k in kinds:
            print(f"{k.name:32} {k.family:8} {k.expect:7} {k.reason}")
        return 0
    if not kinds:
        parser.error("no kind matches --only")
    started = datetime.datetime.now(datetime.timezone.utc)
    weights_before = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    with tempfile.TemporaryDirectory(prefix="covseg-redteam-") as tmp:
        runner = Runner(Path(tmp), args.timeout, int(args.mem_gib * (1 << 30)))
        results = []
        for k in kinds:
            results.append(runner.run(k))
            print(f"  {k.name}: {results[-1].outcome} ({results[-1].seconds} s)", file=sys.stderr,
                  flush=True)
    print_table(results)
    weights_changed = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() != weights_before
    if weights_changed:
        print("note: the shipped weights changed during the run; comparisons across kinds may "
              "mix two models, rerun them", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({
            "command": "python benchmarks/redteam.py " + " ".join(argv or sys.argv[1:]),
            "date_utc": started.isoformat(timespec="seconds"), "cpu": cpu_name(),
            "cores": os.cpu_count(), "timeout_s": args.timeout, "mem_cap_gib": args.mem_gib,
            "weights_changed_during_run": weights_changed,
            "totals": totals(results), "kinds": [r.__dict__ for r in results]}, indent=1) + "\n")
    return 0 if totals(results)["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
