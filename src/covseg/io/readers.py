"""`read_scan(path)`: NIfTI, DICOM series folder, single DICOM, PNG/JPG, .mat or .npy -> `Scan`.

Each reader turns its format's failures into one `InputError` line; nothing here parses a file
format by hand (nibabel, SimpleITK/GDCM, pydicom, Pillow, scipy and numpy do).
"""
from __future__ import annotations

import contextlib
import re
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from covseg.errors import InputError
from covseg.intensity import Intensity
from covseg.io.limits import (MAX_PICTURE_PIXELS, check_spacing, check_volume, quiet_native_stderr,
                              regular_file_size)
from covseg.io.prechecks import (DicomSlice, check_nifti, check_npy, mat_image_names,
                                 read_dicom_header, slice_gap)
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


def read_mask(path: str | Path) -> Scan:
    """A label volume (NIfTI) or label picture, read as `read_scan` reads images (same canonical
    order and geometry), except that a constant mask, a case without lesions, is allowed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such mask file; check the path")
    regular_file_size(path)
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return _validated(_read_nifti(path, mask=True))
    if name.endswith(PICTURE_SUFFIXES):
        return _validated(_read_picture(path, mask=True))
    raise InputError(f"{path}: masks are read from NIfTI (.nii/.nii.gz) or pictures (PNG, ...); "
                     "convert the mask to NIfTI")


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


def _as_volume(a: np.ndarray, source: Path, mask: bool = False) -> np.ndarray:
    """Any 2-D/3-D numeric array -> (z, y, x) float32, refusing what cannot be a CT image
    (`mask`: a label volume, which may be constant: a case without lesions)."""
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
    if lo == hi and not mask:
        raise InputError(f"{source}: the image is constant ({lo:g} everywhere); give a real scan")
    return a


# --- NIfTI ---------------------------------------------------------------------------------------

def _read_nifti(path: Path, mask: bool = False) -> Scan:
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
    array = _as_volume(np.transpose(lps, (2, 1, 0)), path, mask)
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


@contextlib.contextmanager
def _itk_quiet() -> Iterator[list[str]]:
    """ITK's warnings off and GDCM/OpenJPEG's prints held back: only covseg's line is shown."""
    import SimpleITK as sitk

    was = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        with quiet_native_stderr() as said:
            yield said
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(was)


def _itk_reason(exc: Exception, said: list[str]) -> str:
    """The informative part of an ITK error ('ITK ERROR: Class(0x..): what'), else the C output."""
    for line in str(exc).splitlines():
        if "ITK ERROR" in line:
            return line.rsplit("): ", 1)[-1].strip()[:160]
    return said[0][:160] if said else _reason(exc)


def _itk_read(read, source: Path, slices: list[DicomSlice]):
    """Run a SimpleITK read quietly; a failure names the transfer syntax, which is usually why."""
    with _itk_quiet() as said:
        try:
            image = read()
        except RuntimeError as exc:
            error = exc
        else:
            error = None
    if error is not None:
        raise InputError(f"{source}: the DICOM pixel data ({slices[0].transfer_syntax}) could not be "
                         f"decoded ({_itk_reason(error, said)}); convert the files to uncompressed "
                         "DICOM (e.g. gdcmconv --raw) and try again") from None
    size = image.GetSize()
    if (size[0], size[1]) != (slices[0].columns, slices[0].rows):
        raise InputError(f"{source}: SimpleITK read {size[0]} x {size[1]} pixels where the header "
                         f"declares {slices[0].columns} x {slices[0].rows}; export the scan again")
    return image


def _itk_scan(image, path: Path, fmt: str, modality: str | None) -> Scan:
    import SimpleITK as sitk

    with _itk_quiet():
        orientation = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
            image.GetDirection())
        oriented = sitk.DICOMOrient(image, "LPS")
        array = sitk.GetArrayFromImage(oriented)
    array = _as_volume(array, path)
    sx, sy, sz = oriented.GetSpacing()
    intensity = Intensity.HU if modality in (None, "CT") and _guess_intensity(array) is Intensity.HU \
        else Intensity.DISPLAY
    geometry = Geometry("itk", itk_reference=oriented, source_orientation=orientation)
    return Scan(array, (float(sz), float(sy), float(sx)), intensity, geometry, path, fmt,
                modality=modality)


def _read_dicom_file(path: Path) -> Scan:
    """One file: its header is checked first; a lone slice takes its thickness as z spacing."""
    import SimpleITK as sitk

    info = read_dicom_header(path)
    check_volume((info.frames, info.rows, info.columns), 2 * max(info.bytes_per_pixel, 4) + 8, path)
    image = _itk_read(lambda: sitk.ReadImage(str(path)), path, [info])
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    if info.frames == 1:
        image = _lone_slice_thickness(image, info, path)
    return _itk_scan(image, path, "dicom", info.modality)


def _lone_slice_thickness(image, info: DicomSlice, source: Path):
    """ITK gives a lone slice 1 mm of depth whatever the file says: use its SliceThickness."""
    if info.thickness is None:
        raise InputError(f"{source}: a single slice without a valid SliceThickness, so a voxel's "
                         "volume is unknown; give the whole series folder or set SliceThickness")
    check_spacing([info.thickness], source, "SliceThickness")
    image.SetSpacing(image.GetSpacing()[:2] + (info.thickness,))
    return image


def _dicom_candidates(folder: Path) -> list[Path]:
    """Files in the folder that claim to be DICOM (suffix or magic); DICOMDIR indexes excluded."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.upper() != "DICOMDIR"
                  and (p.suffix.lower() == ".dcm" or _has_dicom_magic(p)))


def _series_files(folder: Path) -> dict[str, tuple[str, ...]]:
    """GDCM's series in the folder; every DICOM-looking file must belong to one (never dropped)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    with _itk_quiet():
        series = reader.GetGDCMSeriesIDs(str(folder))
        files = {uid: tuple(reader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in series}
    listed = {Path(n).resolve() for names in files.values() for n in names}
    for candidate in _dicom_candidates(folder):
        if candidate.resolve() not in listed:
            read_dicom_header(candidate)  # refuses a damaged or truncated file, naming it
            raise InputError(f"{candidate}: a DICOM image that belongs to no series in {folder} "
                             "(no SeriesInstanceUID?); remove it or export the series again")
    if not files:
        raise InputError(f"{folder}: no DICOM series in this folder; point at the folder that "
                         "holds the .dcm files of one CT series")
    return files


def _read_dicom_series(folder: Path) -> Scan:
    """A folder of one CT series; every slice's header is checked before SimpleITK reads any."""
    import SimpleITK as sitk

    files = _series_files(folder)
    headers = {uid: [read_dicom_header(Path(n)) for n in names] for uid, names in files.items()}
    ct = {uid: h for uid, h in headers.items() if h[0].modality in (None, "CT")}
    if len(headers) == 1:
        ct = headers  # one series of any modality: read it, and let the input QA judge it
    if len(ct) != 1:
        listing = ", ".join(f"{uid} ({len(f)} files)" for uid, f in files.items())
        raise InputError(f"{folder}: holds {len(ct) or len(files)} image series ({listing}); "
                         "put one CT series in its own folder")
    uid, slices = next(iter(ct.items()))
    sizes = {(s.rows, s.columns) for s in slices}
    if len(sizes) > 1:
        raise InputError(f"{folder}: series {uid} mixes slice sizes {sorted(sizes)}; "
                         "give a folder with one consistent series")
    if len(slices) > 1:
        slice_gap(slices, folder)
    check_volume((sum(s.frames for s in slices), slices[0].rows, slices[0].columns),
                 2 * max(slices[0].bytes_per_pixel, 4) + 8, folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(files[uid]))
    image = _itk_read(reader.Execute, folder, slices)
    if len(slices) == 1 and slices[0].frames == 1:
        image = _lone_slice_thickness(image, slices[0], folder)
    return _itk_scan(image, folder, "dicom-series", slices[0].modality)


# --- pictures and arrays -------------------------------------------------------------------------

def _plane_scan(array: np.ndarray, path: Path, fmt: str, mask: bool = False) -> Scan:
    array = _as_volume(array, path, mask)
    return Scan(array, (1.0, 1.0, 1.0), _guess_intensity(array), Geometry("plane"), path, fmt,
                spacing_known=False)


@contextlib.contextmanager
def _picture_limits() -> Iterator[None]:
    """Pillow with covseg's bounds: oversized images and PNG text bombs raise, truncation too."""
    from PIL import Image, ImageFile, PngImagePlugin

    saved = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES,
             PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY)
    Image.MAX_IMAGE_PIXELS = MAX_PICTURE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY = 1 << 20, 8 << 20
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES,
         PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY) = saved


def _read_picture(path: Path, mask: bool = False) -> Scan:
    """A picture under Pillow's bomb limits; every Pillow failure becomes one line."""
    from PIL import Image, UnidentifiedImageError
    try:
        with _picture_limits(), Image.open(path) as im:
            im.load()
            pic = np.asarray(im.convert("L") if im.mode not in ("L", "I", "I;16", "F") else im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise InputError(f"{path}: the picture has {size}, more than covseg reads "
                         f"({MAX_PICTURE_PIXELS:,}): a decompression bomb or not a CT slice; give "
                         "one CT slice of normal size") from None
    except ValueError as exc:
        if "text" not in str(exc).lower():
            raise InputError(f"{path}: not a readable picture ({_reason(exc)}); give a PNG or JPG "
                             "of one CT slice") from None
        raise InputError(f"{path}: a PNG text chunk inflates beyond Pillow's limit (a text bomb: "
                         f"{_reason(exc)}); save the slice again without metadata") from None
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as exc:
        raise InputError(f"{path}: not a readable picture ({_reason(exc)}); give a PNG or JPG "
                         "of one CT slice") from None
    return _plane_scan(pic, path, "picture", mask)


def _read_mat(path: Path, key: str | None) -> Scan:
    """Only numeric 2-D/3-D variables are loaded, after whosmat has vouched for their sizes."""
    import scipy.io

    names = mat_image_names(path, key)
    try:
        with quiet_native_stderr():
            content = scipy.io.loadmat(str(path), variable_names=names) if names else {}
    except Exception as exc:  # noqa: BLE001 - scipy raises many kinds for a damaged file
        raise InputError(f"{path}: not a readable MATLAB file ({_reason(exc)}); save it with "
                         "MATLAB's save -v7") from None
    images = {k: v for k, v in content.items() if not k.startswith("__") and isinstance(v, np.ndarray)
              and v.ndim in (2, 3) and np.issubdtype(v.dtype, np.number) and min(v.shape) > 1}
    if key is not None:
        if key not in images:
            others = ", ".join(sorted(n for n in mat_image_names(path, None))) or "none"
            raise InputError(f"{path}: no image named '{key}'; images in it: {others}")
        return _plane_scan(images[key], path, "mat")
    if not images:
        raise InputError(f"{path}: the .mat file holds no 2-D or 3-D image array")
    if len(images) > 1:
        raise InputError(f"{path}: holds several images ({', '.join(sorted(images))}); "
                         "choose one with --key")
    return _plane_scan(next(iter(images.values())), path, "mat")


def _read_npy(path: Path) -> Scan:
    """np.load only after the header's shape has been matched against the file size."""
    check_npy(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({_reason(exc)})") from None
    return _plane_scan(array, path, "npy")
