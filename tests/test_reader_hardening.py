"""Malformed inputs (issue 17): refused with exit 2 and one line, before anything big is allocated.

Every input is built here in code (nibabel, pydicom, numpy, Pillow); the property-based tests
mutate headers and bytes at random and require either a sane `Scan` or one `InputError`.
"""
from __future__ import annotations

import gzip
import math
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, UID,
                         generate_uid)

from covseg.cli import main
from covseg.errors import InputError
from covseg.io import limits, read_scan

FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
HTJ2K_LOSSLESS = UID("1.2.840.10008.1.2.4.201")


# --- helpers -------------------------------------------------------------------------------------

def _volume(shape=(24, 20, 6)) -> np.ndarray:
    return np.random.default_rng(0).integers(-1000, 400, shape).astype(np.int16)


def _nifti(path: Path, edit=None, affine=None, data: np.ndarray | None = None,
           payload: bytes | None = None) -> Path:
    """A single-file NIfTI-1 written byte by byte, so that any header field can be made wrong."""
    data = _volume() if data is None else data
    img = nib.Nifti1Image(data, np.diag([0.7, 0.8, 2.5, 1.0]) if affine is None else affine)
    header = img.header
    if edit is not None:
        edit(header)
    raw = header.binaryblock + b"\0" * 4 + (data.tobytes(order="F") if payload is None else payload)
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def _set(field: str, value, index: int | None = None):
    """A header edit: one field (or one entry of an array field) set without nibabel's checks."""
    def edit(header):
        if index is None:
            header[field] = value
        else:
            values = header[field].copy()
            values[index] = value
            header[field] = values
    return edit


def _ct_slice(path: Path, z: float = 0.0, pixels: np.ndarray | None = None, **changes) -> Path:
    """A minimal CT DICOM slice (32 x 32, int16 HU) from scratch; `changes` override attributes,
    a value of None deletes the attribute."""
    pixels = _volume((32, 32)) if pixels is None else pixels
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "CT", "anon"
    ds.StudyInstanceUID = changes.pop("StudyInstanceUID", "1.2.826.0.1.3680043.8.498.1")
    ds.SeriesInstanceUID = changes.pop("SeriesInstanceUID", "1.2.826.0.1.3680043.8.498.2")
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 2.0
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, z], [1, 0, 0, 0, 1, 0]
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.PixelData = pixels.astype(np.int16).tobytes()
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def _series(folder: Path, n: int = 3) -> Path:
    folder.mkdir()
    for i in range(n):
        _ct_slice(folder / f"s{i}.dcm", z=2.0 * i)
    return folder


def _png(path: Path, info=None) -> Path:
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (64, 1))).save(path, pnginfo=info)
    return path


def _run(capfd, *args) -> tuple[int, str]:
    """The CLI in-process with file-descriptor capture, so C libraries' prints are seen too."""
    capfd.readouterr()
    code = main([str(a) for a in args])
    out = capfd.readouterr()
    return code, out.err


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def assert_refused(capfd, path: Path, match: str, command: str = "info") -> str:
    """Exit 2, exactly one 'covseg: error:' line naming the file, nothing written anywhere."""
    root = path.parent
    before = _tree(root)
    out_dir = root / "out"
    args = [command, path] + (["-o", out_dir] if command == "segment" else [])
    code, err = _run(capfd, *args)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("covseg: error: "), err
    assert path.name in lines[0] and "Traceback" not in err
    assert re.search(match, lines[0]), lines[0]
    assert _tree(root) == before and not out_dir.exists()
    return lines[0]


def _sane(scan) -> None:
    """What every accepted scan must satisfy: finite float32 voxels and a real spacing."""
    assert scan.array.dtype == np.float32 and np.isfinite(scan.array).all()
    assert all(math.isfinite(s) and limits.MIN_SPACING_MM <= s <= limits.MAX_SPACING_MM
               for s in scan.spacing)


# --- NIfTI ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_well_formed_nifti_still_reads(tmp_path, suffix):
    scan = read_scan(_nifti(tmp_path / f"ok{suffix}"))
    assert scan.array.shape == (6, 20, 24)
    assert scan.spacing == pytest.approx((2.5, 0.8, 0.7))


NIFTI_HEADERS = {
    "dim[0] 9": (_set("dim", 9, 0), r"dim\[0\].*9"),
    "dim[0] 0": (_set("dim", 0, 0), r"dim\[0\].*0"),
    "dim[0] -3": (_set("dim", -3, 0), r"dim\[0\]"),
    "negative axis": (_set("dim", -4, 2), r"axes of size"),
    "pixdim NaN": (_set("pixdim", np.nan, 1), r"pixdim.*nan.*not a positive"),
    "pixdim 0": (_set("pixdim", 0.0, 2), r"pixdim.*not a positive"),
    "pixdim negative": (_set("pixdim", -2.5, 3), r"pixdim.*not a positive"),
    "pixdim inf": (_set("pixdim", np.inf, 1), r"pixdim.*not a positive"),
    "pixdim 80 mm in-plane": (_set("pixdim", 80.0, 1), r"pixdim.*outside"),
    "pixdim 1e30": (_set("pixdim", 1e30, 3), r"pixdim.*outside"),
    "datatype binary": (_set("datatype", 1), r"'binary', not as real numbers"),
    "datatype complex": (_set("datatype", 32), r"complex64"),
    "datatype RGB": (_set("datatype", 128), r"RGB"),
    "datatype float128": (_set("datatype", 1536), r"float128"),
    "datatype unknown": (_set("datatype", 7), r"code 7"),
    "4-D time series": (lambda h: (_set("dim", 4, 0)(h), _set("dim", 5, 4)(h)), r"4-D data"),
    "bad magic": (_set("magic", b"xyz"), r"magic"),
    "hdr/img pair": (_set("magic", b"ni1"), r"\.hdr/\.img"),
    "vox_offset NaN": (_set("vox_offset", np.nan), r"vox_offset"),
    "declared 30000 slices": (_set("dim", 30000, 3), r"declares \d+ bytes|gzip trailer"),
    "declared TiB": (lambda h: [_set("dim", 30000, i)(h) for i in (1, 2, 3)], r"voxels.*more than"),
}


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("kind", sorted(NIFTI_HEADERS))
def test_bad_nifti_header_is_refused(kind, suffix, tmp_path, capfd):
    edit, match = NIFTI_HEADERS[kind]
    assert_refused(capfd, _nifti(tmp_path / f"bad{suffix}", edit), match)


def _sform(matrix) -> callable:
    def edit(header):
        header["sform_code"], header["qform_code"] = 1, 0
        for row, name in zip(np.asarray(matrix, float), ("srow_x", "srow_y", "srow_z")):
            header[name] = row
    return edit


@pytest.mark.parametrize("kind,matrix,match", [
    ("singular", [[0.7, 0.7, 0, 0], [0, 0, 0, 0], [0, 0, 2.5, 0]], "singular"),
    ("zero column", [[0.7, 0, 0, 0], [0, 0, 0, 0], [0, 0, 2.5, 0]], "not a positive"),
    ("NaN", [[np.nan, 0, 0, 0], [0, 0.8, 0, 0], [0, 0, 2.5, 0]], "NaN or infinite"),
    ("inf offset", [[0.7, 0, 0, np.inf], [0, 0.8, 0, 0], [0, 0, 2.5, 0]], "NaN or infinite"),
    ("100 mm voxels", [[100, 0, 0, 0], [0, 0.8, 0, 0], [0, 0, 2.5, 0]], "outside"),
])
def test_bad_sform_is_refused(kind, matrix, match, tmp_path, capfd):
    assert_refused(capfd, _nifti(tmp_path / "bad.nii.gz", _sform(matrix)), f"sform.*{match}|{match}")


def test_bad_qform_quaternion_is_refused(tmp_path, capfd):
    def edit(header):
        header["qform_code"], header["sform_code"] = 1, 0
        header["quatern_b"], header["quatern_c"], header["quatern_d"] = 3.0, 3.0, 3.0
    assert_refused(capfd, _nifti(tmp_path / "q.nii", edit), "qform")


def test_nifti2_declaring_a_huge_volume_is_refused(tmp_path, capfd):
    header = nib.Nifti2Header()
    header.set_data_dtype(np.int16)
    header["dim"] = [3, 2**20, 2**20, 2**20, 1, 1, 1, 1]
    header["pixdim"] = [1, 1, 1, 1, 1, 1, 1, 1]
    header["vox_offset"] = 544
    path = tmp_path / "huge.nii"
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 4096)
    assert_refused(capfd, path, r"1\.15e\+18 voxels.*more than")


def test_nifti2_well_formed_reads(tmp_path):
    nib.save(nib.Nifti2Image(_volume(), np.diag([0.7, 0.8, 2.5, 1.0])), tmp_path / "two.nii")
    assert read_scan(tmp_path / "two.nii").array.shape == (6, 20, 24)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("change", ["short", "long"])
def test_data_size_must_match_the_header(change, suffix, tmp_path, capfd):
    raw = _volume().tobytes(order="F")
    payload = raw[:-100] if change == "short" else raw + b"\0" * 4096
    path = _nifti(tmp_path / f"size{suffix}", payload=payload)
    assert_refused(capfd, path, r"declares \d+ bytes|gzip trailer")


def test_declared_volume_beyond_free_memory_is_refused(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 4096)
    assert_refused(capfd, _nifti(tmp_path / "ok.nii.gz"), r"needs about .* of memory")


def test_gzip_corrupted_in_the_middle_is_refused(tmp_path, capfd):
    # incompressible voxels: a flipped byte in the middle lands in stored data, which only the
    # CRC-32 at the stream's end can catch
    noise = np.random.default_rng(1).integers(-1000, 1000, (64, 64, 16)).astype(np.int16)
    good = _nifti(tmp_path / "good.nii.gz", data=noise).read_bytes()
    bad = bytearray(gzip.compress(gzip.decompress(good), compresslevel=0))
    bad[len(bad) // 2] ^= 0x01
    (tmp_path / "mid.nii.gz").write_bytes(bytes(bad))
    (tmp_path / "good.nii.gz").unlink()
    assert_refused(capfd, tmp_path / "mid.nii.gz", r"compressed data are damaged.*CRC")


def _bomb(path: Path, extra: int, forge_trailer: bool) -> Path:
    """A valid header and volume followed by `extra` zero bytes inside the same gzip stream."""
    data = _volume()
    img = nib.Nifti1Image(data, np.diag([0.7, 0.8, 2.5, 1.0]))
    body = img.header.binaryblock + b"\0" * 4 + data.tobytes(order="F")
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [packer.compress(body)]
    block = b"\0" * (1 << 22)
    for _ in range(extra // len(block)):
        out.append(packer.compress(block))
    out.append(packer.flush())
    stream = b"".join(out)
    if forge_trailer:  # the trailer claims the declared size: only a bounded inflation catches it
        stream = stream[:-4] + len(body).to_bytes(4, "little")
    path.write_bytes(stream)
    return path


@pytest.mark.parametrize("forge", [False, True])
def test_gzip_bomb_is_refused_without_inflating_it(tmp_path, capfd, forge):
    path = _bomb(tmp_path / "bomb.nii.gz", 1 << 30, forge)  # 1 GiB of zeros in ~1 MB
    assert path.stat().st_size < 2 << 20
    line = assert_refused(capfd, path, r"gzip bomb|gzip trailer")
    assert ("gzip bomb" in line) == forge


def test_nifti_refusal_from_segment_writes_nothing(tmp_path, capfd):
    assert_refused(capfd, _nifti(tmp_path / "bad.nii.gz", _set("pixdim", 0.0, 1)), "pixdim",
                   command="segment")


# --- pictures ------------------------------------------------------------------------------------

def test_decompression_bomb_picture_is_refused(tmp_path, capfd):
    path = tmp_path / "bomb.png"
    Image.new("1", (12_000, 12_000)).save(path)  # 144 M pixels in a few kB
    assert path.stat().st_size < 100_000
    assert_refused(capfd, path, r"144,000,000 pixels, more than covseg reads")


def test_picture_far_beyond_the_bound_is_refused(tmp_path, capfd):
    path = tmp_path / "bomb.png"
    Image.new("1", (25_000, 25_000)).save(path)  # past Pillow's own error threshold too
    assert_refused(capfd, path, r"decompression bomb")


def test_pillow_settings_are_restored(tmp_path):
    before = (Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK)
    read_scan(_png(tmp_path / "ok.png"))
    assert (Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK) == before


@pytest.mark.parametrize("chunk", ["zTXt", "iTXt"])
def test_png_text_bomb_is_refused(chunk, tmp_path, capfd):
    info = PngImagePlugin.PngInfo()
    if chunk == "zTXt":
        info.add_text("comment", "A" * (16 << 20), zip=True)
    else:
        info.add_itxt("comment", "A" * (16 << 20), zip=True)
    path = _png(tmp_path / "text.png", info)
    assert path.stat().st_size < 100_000
    assert_refused(capfd, path, r"text bomb")


def test_many_text_chunks_beyond_the_total_are_refused(tmp_path, capfd):
    info = PngImagePlugin.PngInfo()
    for i in range(12):
        info.add_text(f"k{i}", "B" * (900 << 10), zip=True)
    assert_refused(capfd, _png(tmp_path / "texts.png", info), r"text bomb")


def test_truncated_png_is_not_padded(tmp_path, capfd):
    data = _png(tmp_path / "full.png").read_bytes()
    (tmp_path / "full.png").unlink()
    (tmp_path / "cut.png").write_bytes(data[: len(data) - 40])
    assert_refused(capfd, tmp_path / "cut.png", r"not a readable picture")


# --- .mat, .npy and non-regular files ------------------------------------------------------------

@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
@pytest.mark.parametrize("name", ["zero.mat", "zero.npy", "zero.nii.gz", "zero.png", "zero.dcm"])
def test_device_files_are_refused(name, tmp_path, capfd):
    (tmp_path / name).symlink_to("/dev/zero")
    assert_refused(capfd, tmp_path / name, r"not a regular file")


def test_dev_zero_itself_is_refused(capfd):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    code, err = _run(capfd, "info", "/dev/zero")
    assert code == 2 and err.count("\n") == 1 and "not a regular file" in err


def test_fifo_is_refused(tmp_path, capfd):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(tmp_path / "pipe.mat")
    assert_refused(capfd, tmp_path / "pipe.mat", r"not a regular file")


def test_empty_file_is_refused(tmp_path, capfd):
    (tmp_path / "empty.mat").write_bytes(b"")
    assert_refused(capfd, tmp_path / "empty.mat", r"only 0 bytes")


def test_mat_declaring_a_huge_array_is_refused(tmp_path, capfd, monkeypatch):
    scipy.io.savemat(tmp_path / "v.mat", {"ct": _volume().astype(np.float64)})
    monkeypatch.setattr(limits, "available_memory", lambda: 4096)
    assert_refused(capfd, tmp_path / "v.mat", r"needs about .* of memory")


def test_mat_loads_only_the_image_variables(tmp_path):
    scipy.io.savemat(tmp_path / "v.mat", {"ct": _volume((2, 32, 32)).astype(np.float32),
                                          "note": "x", "cells": np.array([[1, 2]], dtype=object)})
    assert read_scan(tmp_path / "v.mat").array.shape == (2, 32, 32)


def _npy_with_header(path: Path, shape, dtype="<f4", payload: int = 0) -> Path:
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": dtype, "fortran_order": False,
                                                  "shape": tuple(shape)})
        fh.write(b"\0" * payload)
    return path


def test_npy_declaring_a_huge_shape_is_refused(tmp_path, capfd):
    path = _npy_with_header(tmp_path / "huge.npy", (100_000, 100_000, 100_000), payload=1024)
    assert_refused(capfd, path, r"voxels.*more than")


def test_npy_shape_not_matching_the_file_is_refused(tmp_path, capfd):
    path = _npy_with_header(tmp_path / "short.npy", (4, 64, 64), payload=100)
    assert_refused(capfd, path, r"declares shape \(4, 64, 64\).*file holds")


def test_npy_with_object_dtype_is_refused(tmp_path, capfd):
    np.save(tmp_path / "o.npy", np.array([[1, "a"]] * 20, dtype=object), allow_pickle=True)
    assert_refused(capfd, tmp_path / "o.npy", r"object")


# --- DICOM ---------------------------------------------------------------------------------------

def test_synthetic_series_reads(tmp_path):
    scan = read_scan(_series(tmp_path / "ok"))
    assert scan.array.shape == (3, 32, 32)
    assert scan.spacing == pytest.approx((2.0, 0.7, 0.7))


def test_lone_slice_takes_its_thickness_not_1mm(tmp_path):
    scan = read_scan(_ct_slice(tmp_path / "one.dcm", SliceThickness=5.0))
    assert scan.spacing == pytest.approx((5.0, 0.7, 0.7))


DICOM_HEADERS = {
    "65535 x 65535 with little data": ({"Rows": 65535, "Columns": 65535}, r"more than any CT"),
    "4096 rows with little data": ({"Rows": 4096}, r"PixelData holds 2048 bytes"),
    "BitsAllocated 32 on 16-bit data": ({"BitsAllocated": 32, "BitsStored": 32, "HighBit": 31},
                                        r"BitsAllocated .*32 bits\) need 4096"),
    "BitsAllocated 8 on 16-bit data": ({"BitsAllocated": 8, "BitsStored": 8, "HighBit": 7},
                                       r"PixelData holds 2048 bytes .* need 1024"),
    "BitsAllocated 12": ({"BitsAllocated": 12}, r"BitsAllocated is 12"),
    "PixelSpacing 0": ({"PixelSpacing": [0, 0]}, r"PixelSpacing 0 x 0 mm is not a positive"),
    "PixelSpacing negative": ({"PixelSpacing": [-0.7, 0.7]}, r"PixelSpacing .* not a positive"),
    "PixelSpacing huge": ({"PixelSpacing": [500, 500]}, r"PixelSpacing .*outside"),
    "PixelSpacing missing": ({"PixelSpacing": None}, r"no PixelSpacing"),
    "PixelSpacing one value": ({"PixelSpacing": [0.7]}, r"not two numbers"),
    "SliceThickness missing": ({"SliceThickness": None}, r"without a valid SliceThickness"),
    "SliceThickness 0": ({"SliceThickness": 0}, r"without a valid SliceThickness"),
    "SliceThickness 400": ({"SliceThickness": 400}, r"SliceThickness .*outside"),
    "no pixel data": ({"PixelData": None}, r"no pixel data"),
}


@pytest.mark.parametrize("kind", sorted(DICOM_HEADERS))
def test_bad_dicom_file_is_refused(kind, tmp_path, capfd):
    changes, match = DICOM_HEADERS[kind]
    assert_refused(capfd, _ct_slice(tmp_path / "bad.dcm", **changes), match)


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, HTJ2K_LOSSLESS], ids=["j2k", "htj2k"])
def test_undecodable_compressed_dicom_is_one_line(syntax, tmp_path, capfd):
    path = _ct_slice(tmp_path / "c.dcm")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"not a codestream" * 20])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    line = assert_refused(capfd, path, r"could not be decoded.*uncompressed")
    assert syntax.name in line  # OpenJPEG's own 'Stream too short' lines were held back


def test_truncated_dicom_pixel_data_is_refused(tmp_path, capfd):
    data = _ct_slice(tmp_path / "a.dcm").read_bytes()
    (tmp_path / "a.dcm").write_bytes(data[:-300])
    assert_refused(capfd, tmp_path / "a.dcm", r"truncated")


@pytest.mark.parametrize("cut", ["pixel data", "header"])
def test_series_with_one_truncated_slice_is_refused(cut, tmp_path, capfd):
    folder = _series(tmp_path / "ser", 4)
    data = (folder / "s2.dcm").read_bytes()
    (folder / "s2.dcm").write_bytes(data[:-500] if cut == "pixel data" else data[:300])
    line = assert_refused(capfd, folder, r"truncated")
    assert "s2.dcm" in line


def test_series_slice_with_zero_spacing_is_refused(tmp_path, capfd):
    folder = _series(tmp_path / "ser", 3)
    _ct_slice(folder / "s1.dcm", z=2.0, PixelSpacing=[0, 0])
    assert "s1.dcm" in assert_refused(capfd, folder, r"PixelSpacing 0 x 0")


def test_series_with_repeated_positions_is_refused(tmp_path, capfd):
    folder = _series(tmp_path / "ser", 3)
    _ct_slice(folder / "s1.dcm", z=0.0)
    assert_refused(capfd, folder, r"same position")


def test_series_without_positions_is_refused(tmp_path, capfd):
    folder = _series(tmp_path / "ser", 3)
    _ct_slice(folder / "s1.dcm", z=2.0, ImagePositionPatient=None)
    assert_refused(capfd, folder, r"ImagePositionPatient")


@pytest.mark.parametrize("content", ["empty", "text files"])
def test_folder_without_dicom_prints_only_covseg_line(content, tmp_path, capfd):
    folder = tmp_path / "d"
    folder.mkdir()
    if content == "text files":
        for i in range(3):
            (folder / f"note{i}.txt").write_text("not an image\n" * 10)
    line = assert_refused(capfd, folder, r"no DICOM series")
    assert "WARNING" not in line


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_library_warnings_do_not_reach_the_terminal(tmp_path):
    """In a real process (pytest would swallow Python warnings): pydicom's warning about an
    over-long DS value and GDCM's 'No Series were found' must not be printed."""
    path = _ct_slice(tmp_path / "w.dcm")
    ds = pydicom.dcmread(path)
    ds["SliceThickness"].value = "2.000000000000000000"
    ds.save_as(path)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("not an image")
    for target, code in ((path, 0), (notes, 2)):
        proc = subprocess.run([sys.executable, "-m", "covseg", "info", str(target)],
                              capture_output=True, text=True)
        assert proc.returncode == code, proc.stderr
        assert proc.stderr.count("\n") == (code == 2), proc.stderr
        assert "WARNING" not in proc.stderr and "Warning:" not in proc.stderr, proc.stderr


# --- spacing is never replaced by 1 mm -----------------------------------------------------------

@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf"), 1e-9, 1e9])
def test_check_spacing_refuses(value):
    with pytest.raises(InputError, match="spacing"):
        limits.check_spacing([1.0, value, 1.0], Path("x.nii"))


@settings(database=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=3))
def test_check_spacing_accepts_exactly_sane_values(values):
    sane = all(math.isfinite(v) and limits.MIN_SPACING_MM <= v <= limits.MAX_SPACING_MM
               for v in values)
    try:
        limits.check_spacing(values, Path("x.nii"))
        assert sane
    except InputError as exc:
        assert not sane and "\n" not in str(exc)


# --- property-based: random headers and bytes give a sane Scan or one InputError -----------------

def _accept_or_refuse(path: Path) -> None:
    try:
        scan = read_scan(path)
    except InputError as exc:
        assert "\n" not in str(exc) and path.name in str(exc)
        return
    _sane(scan)


SIZES = st.integers(-3, 40)
ZOOMS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -1.0, 0.7]))


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")  # from writing
@FUZZ
@given(dim0=st.integers(-2, 9), dims=st.lists(SIZES, min_size=7, max_size=7),
       pixdim=st.lists(ZOOMS, min_size=3, max_size=3),
       datatype=st.sampled_from([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1536, 2304, 3, 99]),
       sform_code=st.sampled_from([0, 1, 2]), srow=st.lists(ZOOMS, min_size=12, max_size=12),
       gz=st.booleans())
def test_random_nifti_headers(tmp_path, dim0, dims, pixdim, datatype, sform_code, srow, gz):
    def edit(header):
        header["dim"] = [dim0] + dims
        header["pixdim"] = [1.0] + pixdim + [1.0] * 4
        header["datatype"] = datatype
        header["sform_code"] = sform_code
        for i, name in enumerate(("srow_x", "srow_y", "srow_z")):
            header[name] = srow[4 * i:4 * i + 4]
    _accept_or_refuse(_nifti(tmp_path / ("r.nii.gz" if gz else "r.nii"), edit))


@pytest.fixture(scope="module")
def small_nifti_gz(tmp_path_factory) -> bytes:
    return _nifti(tmp_path_factory.mktemp("n") / "s.nii.gz").read_bytes()


@FUZZ
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_random_damage_to_nifti_gz(tmp_path, small_nifti_gz, flips, cut):
    data = bytearray(small_nifti_gz)
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    if cut is not None:
        data = data[: int(cut * len(data))]
    path = tmp_path / "d.nii.gz"
    path.write_bytes(bytes(data))
    _accept_or_refuse(path)


@FUZZ
@given(shape=st.lists(st.integers(0, 2**40), min_size=0, max_size=4),
       dtype=st.sampled_from(["<f4", "<i2", ">u2", "<f8", "|u1", "<c8", "|b1"]),
       payload=st.integers(0, 70_000))
def test_random_npy_headers(tmp_path, shape, dtype, payload):
    _accept_or_refuse(_npy_with_header(tmp_path / "r.npy", shape, dtype, payload))


@pytest.fixture(scope="module")
def small_png(tmp_path_factory) -> bytes:
    return _png(tmp_path_factory.mktemp("p") / "s.png").read_bytes()


@FUZZ
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      min_size=1, max_size=4))
def test_random_damage_to_png(tmp_path, small_png, flips):
    data = bytearray(small_png)
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    path = tmp_path / "d.png"
    path.write_bytes(bytes(data))
    _accept_or_refuse(path)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")  # from writing
@FUZZ
@given(rows=st.sampled_from([1, 16, 32, 33, 4096, 65535]),
       columns=st.sampled_from([1, 16, 32, 65535]),
       bits=st.sampled_from([1, 8, 12, 16, 32, 64]),
       spacing=st.lists(ZOOMS, min_size=2, max_size=2),
       thickness=st.one_of(st.none(), ZOOMS))
def test_random_dicom_headers(tmp_path, rows, columns, bits, spacing, thickness):
    path = _ct_slice(tmp_path / "r.dcm", Rows=rows, Columns=columns, BitsAllocated=bits,
                     BitsStored=min(bits, 16), HighBit=min(bits, 16) - 1,
                     PixelSpacing=[f"{v:.6g}"[:16] for v in spacing],
                     SliceThickness=None if thickness is None else f"{thickness:.6g}"[:16])
    _accept_or_refuse(path)
