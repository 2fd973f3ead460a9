"""`read_scan(path)`: NIfTI, DICOM series folder, single DICOM, PNG/JPG, .mat or .npy -> `Scan`.

Each reader turns its format's failures into one `InputError` line; nothing here parses a file
format by hand (nibabel, SimpleITK/GDCM, pydicom, Pillow, scipy and numpy do).
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from covseg.errors import InputError
from covseg.infer.preprocess import Intensity
from covseg.io.limits import check_spacing, quiet_native_stderr, regular_file_size
from covseg.io.prechecks import check_nifti
from covseg.io.scan import Geometry, Scan

NIFTI_SUFFIXES = (".nii", ".nii.gz")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LPS = ("L", "P", "S")


def read_scan(path: str | Path, key: str | None = None) -> Scan:
    """Read any supported scan into covseg's (z, y, x) form; `key` picks an array in a .mat file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    name = path.name.lower()
    if not path.is_dir():
        regular_file_size(path)  # /dev/zero, a FIFO or an empty file: refuse before any reader
    if path.is_dir():
        scan = _read_dicom_series(path)
    elif name.endswith(NIFTI_SUFFIXES):
        scan = _read_nifti(path)
    elif name.endswith(PICTURE_SUFFIXES):
        scan = _read_picture(path)
    elif name.endswith(".mat"):
        scan = _read_mat(path, key)
    elif name.endswith(".npy"):
        scan = _read_npy(path)
    elif name.endswith(".dcm") or _has_dicom_magic(path):
        scan = _read_dicom_file(path)
    else:
        raise InputError(f"{path}: unsupported file type; give a NIfTI (.nii/.nii.gz), a DICOM file "
                         "or folder, a PNG/JPG slice, a .mat or a .npy array")
    return _validated(scan)


# --- checks shared by every format -------------------------------------------------------------

def _validated(scan: Scan) -> Scan:
    """Refuse a bad spacing (never assume 1 mm); replace stray NaN/inf voxels (whole-NaN images
    were refused in `_as_volume`)."""
    if scan.spacing_known:
        check_spacing(scan.spacing, scan.source)
    a = scan.array
    if np.isfinite(a.min()) and np.isfinite(a.max()):  # NaN and inf show in the extremes: no mask
        return scan
    finite = np.isfinite(a)
    fill = float(a.min(where=finite, initial=np.inf))
    scan.array = np.where(finite, a, fill).astype(np.float32)
    scan.notes.append(f"{int((~finite).sum())} NaN/infinite voxels replaced by {fill:g}")
    return scan


def _guess_intensity(a: np.ndarray) -> Intensity:
    """HU when the values reach air (about -1000) and go above water; else display values."""
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    return Intensity.HU if lo <= -500 and hi >= 0 else Intensity.DISPLAY


def _as_volume(a: np.ndarray, source: Path) -> np.ndarray:
    """Any 2-D/3-D numeric array -> (z, y, x) float32, refusing what cannot be a CT image."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise InputError(f"{source}: holds {a.dtype} data, not image intensities")
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise InputError(f"{source}: expected a 2-D slice or 3-D volume, got a {a.ndim}-D array "
                         f"of shape {a.shape}")
    if a.size == 0:
        raise InputError(f"{source}: the image is empty (shape {a.shape}); give a non-empty scan")
    if min(a.shape[1:]) < 16:
        raise InputError(f"{source}: slices of {a.shape[1]}x{a.shape[2]} pixels are too small "
                         "for a CT slice; give slices of at least 16x16")
    if np.issubdtype(a.dtype, np.floating):
        a = np.ascontiguousarray(a, dtype=np.float32)
        finite = np.isfinite(a)
        if not finite.any():
            raise InputError(f"{source}: every voxel is NaN or infinite; the file holds no image")
        # `where=` instead of a[finite]: no second copy of a large volume
        lo = float(a.min(where=finite, initial=np.inf))
        hi = float(a.max(where=finite, initial=-np.inf))
    else:  # integers are always finite: range first, then one float32 copy
        lo, hi = float(a.min()), float(a.max())
        a = np.ascontiguousarray(a, dtype=np.float32)  # (z, y, x) in C order: slices are contiguous
    if lo == hi:
        raise InputError(f"{source}: the image is constant ({lo:g} everywhere); give a real scan")
    return a


# --- NIfTI ---------------------------------------------------------------------------------------

def _read_nifti(path: Path) -> Scan:
    """Header, sizes and (for .nii.gz) the whole gzip stream are checked before nibabel reads."""
    import nibabel as nib
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform, apply_orientation
    from nibabel.spatialimages import HeaderDataError

    layout = check_nifti(path)
    try:
        with quiet_native_stderr():
            img = nib.load(str(path))
            data = np.asanyarray(img.dataobj)
    except (nib.filebasedimages.ImageFileError, HeaderDataError, EOFError, zlib.error, OSError,
            ValueError) as exc:
        raise InputError(f"{path}: not a readable NIfTI file ({_reason(exc)}); check that the file "
                         "is complete and really NIfTI") from None
    data = data.reshape(layout.shape if len(layout.shape) == 3 else layout.shape + (1,))
    src = io_orientation(img.affine)
    dst = axcodes2ornt(LPS)
    lps = apply_orientation(data, ornt_transform(src, dst))
    zooms = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
    spacing_lps = np.empty(3)
    for in_axis, (out_axis, _flip) in enumerate(ornt_transform(src, dst)):
        spacing_lps[int(out_axis)] = zooms[in_axis]
    array = _as_volume(np.transpose(lps, (2, 1, 0)), path)
    geometry = Geometry("nifti", affine=img.affine, header=img.header,
                        to_source=ornt_transform(dst, src))
    return Scan(array, tuple(float(s) for s in spacing_lps[::-1]), _guess_intensity(array),
                geometry, path, "nifti")


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return text[:160]


# --- DICOM ---------------------------------------------------------------------------------------

def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _dicom_modality(path: Path) -> str | None:
    import pydicom
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True).get("Modality")
    except Exception:  # noqa: BLE001 - the modality is informative only
        return None


def _itk_scan(image, path: Path, fmt: str, modality: str | None) -> Scan:
    import SimpleITK as sitk

    orientation = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    oriented = sitk.DICOMOrient(image, "LPS")
    array = _as_volume(sitk.GetArrayFromImage(oriented), path)
    sx, sy, sz = oriented.GetSpacing()
    intensity = Intensity.HU if modality in (None, "CT") and _guess_intensity(array) is Intensity.HU \
        else Intensity.DISPLAY
    geometry = Geometry("itk", itk_reference=oriented, source_orientation=orientation)
    return Scan(array, (float(sz), float(sy), float(sx)), intensity, geometry, path, fmt,
                modality=modality)


def _read_dicom_file(path: Path) -> Scan:
    import SimpleITK as sitk
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise InputError(f"{path}: not a readable DICOM image (damaged, truncated or without "
                         "pixel data); export the slice again") from None
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    return _itk_scan(image, path, "dicom", _dicom_modality(path))


def _read_dicom_series(folder: Path) -> Scan:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{folder}: no DICOM series in this folder; point at the folder that "
                         "holds the .dcm files of one CT series")
    files = {uid: reader.GetGDCMSeriesFileNames(str(folder), uid) for uid in series}
    ct = {uid: f for uid, f in files.items() if _dicom_modality(Path(f[0])) in (None, "CT")}
    if len(ct) != 1:
        listing = ", ".join(f"{uid} ({len(f)} files)" for uid, f in files.items())
        raise InputError(f"{folder}: holds {len(ct) or len(files)} image series ({listing}); "
                         "put one CT series in its own folder")
    uid, names = next(iter(ct.items()))
    sizes = {_dicom_size(Path(n)) for n in names}
    if len(sizes) > 1:
        raise InputError(f"{folder}: series {uid} mixes slice sizes {sorted(sizes)}; "
                         "give a folder with one consistent series")
    reader.SetFileNames(names)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"{folder}: the DICOM series could not be read ({_reason(exc)}); "
                         "check for damaged files") from None
    return _itk_scan(image, folder, "dicom-series", _dicom_modality(Path(names[0])))


def _dicom_size(path: Path) -> tuple[int, int]:
    import pydicom
    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    return int(ds.get("Rows", 0)), int(ds.get("Columns", 0))


# --- pictures and arrays -------------------------------------------------------------------------

def _plane_scan(array: np.ndarray, path: Path, fmt: str) -> Scan:
    array = _as_volume(array, path)
    return Scan(array, (1.0, 1.0, 1.0), _guess_intensity(array), Geometry("plane"), path, fmt,
                spacing_known=False)


def _read_picture(path: Path) -> Scan:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im.load()
            pic = np.asarray(im.convert("L") if im.mode not in ("L", "I", "I;16", "F") else im)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"{path}: not a readable picture ({_reason(exc)}); give a PNG or JPG "
                         "of one CT slice") from None
    return _plane_scan(pic, path, "picture")


def _read_mat(path: Path, key: str | None) -> Scan:
    import scipy.io
    try:
        content = scipy.io.loadmat(str(path))
    except (ValueError, OSError, TypeError, NotImplementedError) as exc:
        raise InputError(f"{path}: not a readable MATLAB file ({_reason(exc)}); save it with "
                         "MATLAB's save -v7") from None
    images = {k: v for k, v in content.items() if not k.startswith("__") and isinstance(v, np.ndarray)
              and v.ndim in (2, 3) and np.issubdtype(v.dtype, np.number) and min(v.shape) > 1}
    if key is not None:
        if key not in images:
            raise InputError(f"{path}: no image named '{key}'; images in it: "
                             f"{', '.join(sorted(images)) or 'none'}")
        return _plane_scan(images[key], path, "mat")
    if not images:
        raise InputError(f"{path}: the .mat file holds no 2-D or 3-D image array")
    if len(images) > 1:
        raise InputError(f"{path}: holds several images ({', '.join(sorted(images))}); "
                         "choose one with --key")
    return _plane_scan(next(iter(images.values())), path, "mat")


def _read_npy(path: Path) -> Scan:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({_reason(exc)})") from None
    return _plane_scan(array, path, "npy")
