"""Header checks that run before a library reads (and allocates for) a file's data.

nibabel, numpy, scipy and SimpleITK trust a file's header: a NIfTI declaring 2^40 voxels, a
.npy whose shape does not fit its bytes or a gzip stream that inflates without end would
allocate or spin before any error. Each function here reads only the header (with the format's
library), compares it with the bytes really on disk and raises one `InputError` line if they
disagree. Nothing is parsed by hand beyond the fixed-offset size fields the formats define.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covseg.errors import InputError
from covseg.io.limits import check_spacing, check_volume, regular_file_size

# --- NIfTI -------------------------------------------------------------------------------------

NIFTI_NUMERIC = {2: "uint8", 4: "int16", 8: "int32", 16: "float32", 64: "float64", 256: "int8",
                 512: "uint16", 768: "uint32", 1024: "int64", 1280: "uint64"}
NIFTI_HEADER_SIZES = (348, 540)  # NIfTI-1, NIfTI-2
MAX_VOX_OFFSET = 1 << 24  # header extensions past 16 MiB are not a CT's
GZIP_MARGIN = 1 << 16  # inflated bytes tolerated beyond the declared size before calling it a bomb
CHUNK = 1 << 20


@dataclass
class NiftiLayout:
    """What a validated NIfTI header declares: the spatial shape and where the voxels lie."""

    shape: tuple[int, ...]  # spatial axes only (2 or 3); trailing axes of size 1 dropped
    data_offset: int
    data_bytes: int


def check_nifti(path: Path) -> NiftiLayout:
    """Validate a .nii/.nii.gz header and its size on disk (and the gzip CRC) before nibabel reads."""
    gz = path.name.lower().endswith(".gz")
    size = regular_file_size(path, 18 if gz else 348)
    header = _nifti_header(_nifti_head(path, gz), path)
    shape = _nifti_shape(header, path)
    dtype = _nifti_dtype(header, path)
    check_spacing([float(p) for p in header["pixdim"][1:1 + len(shape)]], path, "pixdim (voxel size)")
    _check_affines(header, path)
    slope, inter = (float(v) for v in (header["scl_slope"], header["scl_inter"]))
    scaled = (math.isfinite(slope) and slope not in (0.0, 1.0)) or (math.isfinite(inter) and inter != 0)
    voxels = check_volume(shape, dtype.itemsize + (8 if scaled else 0) + 8, path)
    layout = NiftiLayout(shape, _data_offset(header, path), voxels * dtype.itemsize)
    expected = layout.data_offset + layout.data_bytes
    if gz:
        _check_gzip_stream(path, expected)
    elif size != expected:
        raise InputError(f"{path}: the header declares {expected} bytes ({_shape_text(shape)} voxels "
                         f"of {dtype}) but the file holds {size}; the file is truncated or damaged, "
                         "copy or export it again")
    return layout


def _shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(str(d) for d in shape)


def _nifti_head(path: Path, gz: bool) -> bytes:
    """The first 540 bytes (enough for either header version), inflating no more than that."""
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            return fh.read(max(NIFTI_HEADER_SIZES))
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: not a readable {'gzip-compressed ' if gz else ''}NIfTI file "
                         f"({_reason(exc)}); check that the file is complete and really NIfTI") from None


def _nifti_header(head: bytes, path: Path):
    """A nibabel header from the bytes, unchecked: covseg checks it field by field below."""
    import nibabel as nib

    for order in "<>":
        n = struct.unpack(order + "i", head[:4])[0] if len(head) >= 4 else 0
        if n in NIFTI_HEADER_SIZES and len(head) >= n:
            klass = nib.Nifti1Header if n == 348 else nib.Nifti2Header
            header = klass(head[:n], endianness=order, check=False)
            break
    else:
        raise InputError(f"{path}: not a NIfTI file (no NIfTI-1 or NIfTI-2 header at its start); "
                         "check that the file is complete and really NIfTI")
    magic = bytes(header["magic"]).rstrip(b"\0")
    if magic in (b"ni1", b"ni2"):
        raise InputError(f"{path}: the header belongs to a .hdr/.img pair (its voxels are in a "
                         "separate .img file); convert the pair to a single .nii file")
    if magic not in (b"n+1", b"n+2"):
        raise InputError(f"{path}: not a NIfTI file (magic {magic!r} instead of n+1/n+2); check "
                         "that the file is complete and really NIfTI")
    return header


def _nifti_shape(header, path: Path) -> tuple[int, ...]:
    """The spatial shape; refuses dim[0] outside 1-7, empty axes and real 4-D (time) data."""
    dim = [int(d) for d in header["dim"]]
    if not 1 <= dim[0] <= 7:
        raise InputError(f"{path}: the header's dim[0] (number of axes) is {dim[0]}, not 1-7; the "
                         "header is damaged, export the scan again")
    dims = dim[1:1 + dim[0]]
    if any(d < 1 for d in dims):
        raise InputError(f"{path}: the header declares axes of size {dims}; a size below 1 means "
                         "the header is damaged, export the scan again")
    if len(dims) < 2 or any(d != 1 for d in dims[3:]):
        raise InputError(f"{path}: NIfTI holds {len(dims)}-D data of shape {tuple(dims)}; "
                         "give one 2-D slice or 3-D CT volume")
    return tuple(dims[:3])


def _nifti_dtype(header, path: Path) -> np.dtype:
    """Only real numbers are CT intensities: refuse binary, complex, RGB and unknown codes."""
    from nibabel.nifti1 import data_type_codes

    code = int(header["datatype"])
    if code not in NIFTI_NUMERIC:
        label = data_type_codes.label[code] if code in data_type_codes.code else f"code {code}"
        raise InputError(f"{path}: the voxels are stored as '{label}', not as real numbers; save "
                         "the CT as int16 or float32")
    return np.dtype(NIFTI_NUMERIC[code]).newbyteorder(header.endianness)


def _check_affines(header, path: Path) -> None:
    """Every affine the file declares (and the one nibabel will use) must be finite and invertible."""
    affines = []
    for name, code_field, get in (("qform", "qform_code", header.get_qform),
                                  ("sform", "sform_code", header.get_sform)):
        if int(header[code_field]) > 0:
            try:
                affines.append((name, get()))
            except Exception as exc:  # noqa: BLE001 - nibabel raises several kinds for bad quaternions
                raise InputError(f"{path}: the header's {name} cannot be turned into an affine "
                                 f"({_reason(exc)}); fix or rewrite the orientation") from None
    if not affines:
        affines.append(("pixdim", header.get_base_affine()))
    for name, affine in affines:
        _check_affine(np.asarray(affine, dtype=float), name, path)


def _check_affine(affine: np.ndarray, name: str, path: Path) -> None:
    if not np.isfinite(affine).all():
        raise InputError(f"{path}: the header's {name} affine has NaN or infinite entries; fix or "
                         "rewrite the scan's orientation")
    m = affine[:3, :3]
    norms = np.sqrt((m ** 2).sum(axis=0))
    check_spacing(norms, path, f"voxel size in the {name} affine")
    if abs(np.linalg.det(m)) <= 1e-6 * float(np.prod(norms)):
        raise InputError(f"{path}: the header's {name} affine is singular (two voxel axes point the "
                         "same way); fix or rewrite the scan's orientation")


def _data_offset(header, path: Path) -> int:
    """vox_offset as nibabel will use it (raised to the header end when too small)."""
    offset = float(header["vox_offset"])
    if not math.isfinite(offset) or offset != int(offset) or offset > MAX_VOX_OFFSET:
        raise InputError(f"{path}: the header's vox_offset ({offset:g}) is not a sane byte offset; "
                         "the header is damaged, export the scan again")
    return max(int(offset), int(header["sizeof_hdr"]) + 4)


def _check_gzip_stream(path: Path, expected: int) -> None:
    """Trailer size, full-stream CRC and a bound on inflation, all before nibabel trusts the data."""
    with open(path, "rb") as fh:
        fh.seek(-4, 2)
        isize = int.from_bytes(fh.read(4), "little")
    if isize != expected % 2**32:
        raise InputError(f"{path}: the gzip trailer says the data inflate to {isize} bytes (mod 2^32) "
                         f"but the header declares {expected}; the file is truncated or damaged, "
                         "copy or export it again")
    inflated, bound = 0, expected + GZIP_MARGIN
    try:
        with gzip.open(path, "rb") as fh:  # gzip checks the CRC-32 and length at the stream's end
            while chunk := fh.read(CHUNK):
                inflated += len(chunk)
                if inflated > bound:
                    raise InputError(f"{path}: the compressed data inflate beyond the {expected} "
                                     "bytes the header declares (a gzip bomb or a damaged file); "
                                     "export the scan again")
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: the compressed data are damaged ({_reason(exc)}); copy or "
                         "export the file again") from None
    if inflated != expected:
        raise InputError(f"{path}: the data inflate to {inflated} bytes but the header declares "
                         f"{expected}; the file is damaged, export it again")


def _reason(exc: BaseException) -> str:
    """The first line of an exception's text, short enough for a one-line message."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:160]
