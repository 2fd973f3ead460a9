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
from covseg.io.limits import check_spacing, check_volume, quiet_python, regular_file_size

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


# --- .npy and .mat -----------------------------------------------------------------------------

NPY_READERS = {(1, 0): "read_array_header_1_0", (2, 0): "read_array_header_2_0"}
MAT_NUMERIC = {"double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
               "uint64"}


def check_npy(path: Path) -> None:
    """Compare the .npy header's shape x itemsize with the bytes on disk before numpy allocates."""
    fmt = np.lib.format
    size = regular_file_size(path, 10)
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            if version not in NPY_READERS:
                raise InputError(f"{path}: .npy format version {version[0]}.{version[1]} is not "
                                 "supported; save the array with numpy.save")
            shape, _fortran, dtype = getattr(fmt, NPY_READERS[version])(fh)
            offset = fh.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({_reason(exc)}); save it again "
                         "with numpy.save") from None
    if dtype.hasobject or dtype.fields is not None:
        raise InputError(f"{path}: holds {dtype} data, not image intensities; save a numeric array")
    if 0 not in shape:  # empty arrays are refused with their own message once read
        check_volume(shape, dtype.itemsize + 8, path)
    expected = offset + math.prod(shape) * dtype.itemsize
    if size != expected:
        raise InputError(f"{path}: the header declares shape {shape} of {dtype} ({expected} bytes "
                         f"with the header) but the file holds {size}; the file is truncated or "
                         "damaged, save it again")


def mat_image_names(path: Path, key: str | None) -> list[str]:
    """Names of the .mat variables worth loading (numeric 2-D/3-D), each checked for size.

    scipy's whosmat reads only the variable headers, so a variable declaring a huge shape is
    refused before loadmat allocates it, and cells, structs and text are never loaded."""
    import scipy.io

    regular_file_size(path, 128)  # a MATLAB 5 file starts with a 128-byte header
    try:
        with quiet_python():
            listing = scipy.io.whosmat(str(path))
    except Exception as exc:  # noqa: BLE001 - scipy raises many kinds for a damaged file
        raise InputError(f"{path}: not a readable MATLAB file ({_reason(exc)}); save it with "
                         "MATLAB's save -v7") from None
    names = []
    for name, shape, cls in listing:
        if key not in (None, name) or cls not in MAT_NUMERIC:
            continue
        if len(shape) in (2, 3) and min(shape) > 1:
            check_volume(shape, 8 + 8, path)
            names.append(name)
    return names


# --- DICOM -------------------------------------------------------------------------------------

DEFER_BYTES = 256  # pydicom leaves values larger than this unread: PixelData is never loaded here
DICOM_BITS = (8, 16, 32)
PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass
class DicomSlice:
    """What covseg needs from one DICOM file's header, read without its pixel data."""

    path: Path
    rows: int
    columns: int
    frames: int
    pixel_spacing: tuple[float, float]  # (row, column) mm
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    thickness: float | None
    modality: str | None
    transfer_syntax: str
    bytes_per_pixel: int


def read_dicom_header(path: Path) -> DicomSlice:
    """Header checks before SimpleITK allocates: sizes, bits and PixelSpacing vs the PixelData."""
    import pydicom

    size = regular_file_size(path, 8)
    try:
        with quiet_python():
            ds = pydicom.dcmread(str(path), defer_size=DEFER_BYTES)
            return _dicom_slice(ds, path, size)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds for a damaged header
        raise InputError(f"{path}: not a readable DICOM file ({_reason(exc)}); export the slice "
                         "again") from None


def _dicom_slice(ds, path: Path, size: int) -> DicomSlice:
    """Validate the parsed header of one file (values are decoded lazily, hence inside the try)."""
    from pydicom.uid import ImplicitVRLittleEndian, UID

    if PIXEL_DATA not in ds:
        raise InputError(f"{path}: the DICOM file holds no pixel data (it is truncated, or a "
                         "report or DICOMDIR rather than an image); give complete CT image files")
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    frames = int(ds.get("NumberOfFrames") or 1)
    samples, bits = int(ds.get("SamplesPerPixel") or 1), int(ds.get("BitsAllocated") or 0)
    if min(rows, columns, frames, samples) < 1:
        raise InputError(f"{path}: the header declares {rows} rows, {columns} columns and {frames} "
                         "frames; the header is damaged, export the slice again")
    if bits not in DICOM_BITS:
        raise InputError(f"{path}: BitsAllocated is {bits}, not 8, 16 or 32 as CT pixels are; the "
                         "header is damaged, export the slice again")
    check_volume((frames, rows, columns * samples), bits // 8 + 8 + 8, path)
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", ImplicitVRLittleEndian)))
    _check_pixel_length(ds, path, size, syntax, rows * columns * frames * samples * bits // 8)
    depth = _positive(ds.get("SliceThickness")) or _positive(ds.get("SpacingBetweenSlices"))
    return DicomSlice(path, rows, columns, frames, _pixel_spacing(ds, path),
                      _floats(ds.get("ImagePositionPatient"), 3),
                      _floats(ds.get("ImageOrientationPatient"), 6), depth, ds.get("Modality"),
                      syntax.name, bits // 8)


def _check_pixel_length(ds, path: Path, size: int, syntax, expected: int) -> None:
    """Native pixel data must hold exactly Rows x Columns x frames x BitsAllocated/8 bytes."""
    try:
        elem = ds.get_item(PIXEL_DATA, keep_deferred=True)
    except TypeError:  # pydicom 2: no keep_deferred, the raw element is returned as it is
        elem = ds.get_item(PIXEL_DATA)
    length = getattr(elem, "length", None)
    if length is None:
        length = len(elem.value or b"")
    start = getattr(elem, "value_tell", None)
    if length != UNDEFINED_LENGTH and start is not None and start + length > size:
        raise InputError(f"{path}: the file ends {start + length - size} bytes before its pixel "
                         "data does (the file is truncated); copy or export it again")
    if syntax.is_encapsulated:
        return  # compressed frames: their decoded size is only known once SimpleITK decodes them
    if length not in (expected, expected + expected % 2):
        raise InputError(f"{path}: PixelData holds {length} bytes but Rows x Columns x frames x "
                         f"BitsAllocated ({int(ds.Rows)} x {int(ds.Columns)} x "
                         f"{int(ds.get('NumberOfFrames') or 1)} x {int(ds.BitsAllocated)} bits) need "
                         f"{expected}; the file is truncated or its header is damaged, export it again")


def _pixel_spacing(ds, path: Path) -> tuple[float, float]:
    """PixelSpacing, also from an enhanced CT's shared functional groups; never a 1 mm default."""
    value = ds.get("PixelSpacing")
    if value is None:
        try:
            value = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        except (AttributeError, IndexError, KeyError):
            raise InputError(f"{path}: the DICOM file has no PixelSpacing, so its pixel size is "
                             "unknown; export the slice with its spacing") from None
    spacing = _floats(value, 2)
    if spacing is None:
        raise InputError(f"{path}: PixelSpacing '{value}' is not two numbers; the header is damaged, "
                         "export the slice again")
    check_spacing(spacing, path, "PixelSpacing")
    return spacing


def _floats(value, n: int) -> tuple[float, ...] | None:
    """n finite numbers from a DICOM multi-value, or None when absent or malformed."""
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == n and all(math.isfinite(v) for v in numbers) else None


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def slice_gap(slices: list[DicomSlice], folder: Path) -> float:
    """The series' slice spacing from the slice positions; refuses missing or repeated positions."""
    lacking = [s.path.name for s in slices if s.position is None or s.orientation is None]
    if lacking:
        raise InputError(f"{folder}: {lacking[0]} has no valid ImagePositionPatient / "
                         "ImageOrientationPatient, so the slices cannot be ordered or spaced; "
                         "export the series again")
    normal = np.cross(np.array(slices[0].orientation[:3]), np.array(slices[0].orientation[3:]))
    along = sorted((float(np.dot(normal, s.position)), s.path.name) for s in slices)
    gaps = [b[0] - a[0] for a, b in zip(along, along[1:])]
    smallest = min(range(len(gaps)), key=gaps.__getitem__)
    if gaps[smallest] < 1e-3:
        raise InputError(f"{folder}: {along[smallest][1]} and {along[smallest + 1][1]} lie at the "
                         "same position (a duplicated slice or two series mixed); keep one series "
                         "with one file per position")
    gap = float(np.mean(gaps))
    check_spacing([gap], folder, "slice spacing")
    return gap
