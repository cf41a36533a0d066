"""The inputs of issue 14: zip archives, DICOMDIR, NIfTI, JPEG Extended, enhanced multi-frame DICOM, the Acquisition
of every DICOM slice, and refusals that name the file and the reason. The bars run through `brainmri predict`."""

from __future__ import annotations

import csv
import shutil
import stat
import zipfile
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.fileset import FileSet

from brainmri_desktop.cli import main as brainmri
from brainmri_desktop.core.errors import NotAnImageError, UnreadableFileError, UnsupportedError
from brainmri_desktop.core.io import archive, load_paths
from brainmri_desktop.core.io.codestream import mend_sequential_scans
from brainmri_desktop.core.io.dicom import DICOM_SUFFIXES, read_dicom
from brainmri_desktop.core.io.nifti import read_nifti
from brainmri_desktop.core.io.study import read_file

from .synthetic import head_image, write_dicom_series


def _png(seed: int = 0) -> bytes:
    ok, buf = cv2.imencode(".png", head_image(48, 40, seed=seed))
    assert ok
    return buf.tobytes()


def _zip_of_pngs(path: Path, n: int = 4, folder: str = "inner") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            zf.writestr(f"{folder}/a{i}.png", _png(i))
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- zip ---------------------------------------------------------------------------------------------------------

def test_zip_members_are_read_in_place_and_named_inside_the_archive(tmp_path):
    study = _zip_of_pngs(tmp_path / "user" / "study.zip")
    before = _tree(tmp_path / "user")
    report = load_paths([study])
    assert not report.errors
    assert [s.path for s in report.slices] == [study / "inner" / f"a{i}.png" for i in range(4)]
    assert report.slices[0].label == "a0.png" and report.slices[0].shape == (48, 40)
    assert _tree(tmp_path / "user") == before  # nothing extracted, nothing changed


def test_folder_holding_only_a_zip_opens_it(tmp_path):
    _zip_of_pngs(tmp_path / "folder" / "study.zip", n=3)
    (tmp_path / "folder" / "notes.txt").write_text("read me")
    report = load_paths([tmp_path / "folder"])
    assert len(report.slices) == 3 and not report.errors


def test_zip_beside_other_images_is_named_as_not_opened(tmp_path):
    _zip_of_pngs(tmp_path / "folder" / "copy.zip", n=3)
    (tmp_path / "folder" / "b.png").write_bytes(_png())
    report = load_paths([tmp_path / "folder"])
    assert len(report.slices) == 1
    [error] = report.errors
    assert error.path.endswith("copy.zip") and "not opened" in error.reason


def test_zip_of_dicom_and_nifti_members(tmp_path):
    paths = write_dicom_series(tmp_path / "series", n=3)
    nifti = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 2), np.int16) + 5, np.eye(4)), nifti)
    with zipfile.ZipFile(tmp_path / "mixed.zip", "w") as zf:
        for p in paths:
            zf.write(p, f"series/{p.name}")
        zf.write(nifti, "nifti/v.nii.gz")
        zf.writestr("series/DICOMDIR", b"an index: skipped, every member is read anyway")
    report = load_paths([tmp_path / "mixed.zip"])
    assert not report.errors
    by_kind = {series.info.modality: len(series.slices) for series in report.series}
    assert by_kind == {"MR": 3, "": 2}
    assert [s.position for s in report.series[0].slices] == sorted(s.position for s in report.series[0].slices)


def _set_central_flag(path: Path, bit: int) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    data[at + 8] |= bit
    path.write_bytes(bytes(data))


def test_odd_members_are_refused_by_name_and_the_rest_load(tmp_path):
    path = tmp_path / "odd.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("secret.png", _png())  # first member: its flag is set to 'encrypted' below
        zf.writestr("../escape.png", _png())
        zf.writestr("inner.zip", b"PK\x05\x06" + bytes(18))
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("good.png", _png())
        zf.writestr("__MACOSX/._good.png", b"resource fork")
        zf.writestr("nameless.png", _png())
    _set_central_flag(path, 0x1)
    data = path.read_bytes()  # a name cut to nothing in the directory, as the fuzz harness found (IndexError)
    at = data.rindex(b"nameless.png")
    path.write_bytes(data[:at] + b"\0" + data[at + 1 :])
    report = load_paths([path])
    assert [s.path.name for s in report.slices] == ["good.png"]
    reasons = {Path(e.path).name: e.reason for e in report.errors}
    assert "without a name" in reasons["odd.zip"]
    assert "encrypted" in reasons["secret.png"]
    assert "outside the archive" in reasons["escape.png"]
    assert "zip inside a zip" in reasons["inner.zip"]
    assert "link" in reasons["link.png"]
    assert len(report.errors) == 5


def test_zip_bomb_member_is_refused_before_decompressing(tmp_path, monkeypatch):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.dcm", bytes(8 << 20))
        zf.writestr("ok.png", _png())
    calls = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda self, m, *a, **k: calls.append(m) or real_open(self, m, *a, **k))
    report = load_paths([path])
    [error] = report.errors
    assert error.path.endswith("bomb.zip/zeros.dcm") and "zip bomb" in error.reason
    assert len(report.slices) == 1 and all(getattr(m, "filename", m) != "zeros.dcm" for m in calls)


@pytest.mark.parametrize("limit,value,reason", [("MAX_MEMBERS", 3, "members (limit 3)"),
                                                ("MAX_TOTAL_BYTES", 1000, "would decompress to")])
def test_archive_over_the_limits_is_refused_whole(tmp_path, monkeypatch, limit, value, reason):
    monkeypatch.setattr(archive, limit, value)
    path = _zip_of_pngs(tmp_path / "big.zip", n=4)
    report = load_paths([path])
    assert not report.slices
    [error] = report.errors
    assert error.path == str(path) and reason in error.reason


def test_member_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 100)
    report = load_paths([_zip_of_pngs(tmp_path / "s.zip", n=2)])
    assert not report.slices and len(report.errors) == 2
    assert all("too large once decompressed" in e.reason for e in report.errors)


@pytest.mark.parametrize("content,reason", [(b"PK\x03\x04 damaged", "not a valid zip archive"),
                                            (b"", "not a valid zip archive")])
def test_damaged_zip_is_refused_with_the_reason(tmp_path, content, reason):
    path = tmp_path / "bad.zip"
    path.write_bytes(content)
    [error] = load_paths([path]).errors
    assert error.path == str(path) and reason in error.reason


@pytest.mark.parametrize("method,at,damage", [
    (zipfile.ZIP_STORED, 40, b"\xff" * 8),  # the CRC check catches it
    (zipfile.ZIP_DEFLATED, 0, b"\x07"),  # a reserved deflate block type: zlib.error (the fuzz harness found one)
])
def test_damaged_member_data_is_refused_by_name(tmp_path, method, at, damage):
    path = tmp_path / "crc.zip"
    with zipfile.ZipFile(path, "w", method) as zf:
        zf.writestr("a.png", _png())
    data = bytearray(path.read_bytes())
    start = len(b"PK\x03\x04") + 26 + len("a.png") + at
    data[start : start + len(damage)] = damage
    path.write_bytes(bytes(data))
    [error] = load_paths([path]).errors
    assert error.path.endswith("crc.zip/a.png") and "damaged zip member" in error.reason


def test_empty_zip_says_so(tmp_path):
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "nothing here")
    [error] = load_paths([path]).errors
    assert isinstance(error, NotAnImageError) and "holds no image" in error.reason


# --- refusals ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,content,what", [
    ("x.gz", b"\x1f\x8b\x08" + bytes(20), "gzip-compressed data that is not a NIfTI volume"),
    ("x.bin", b"%PDF-1.4 ...", "a PDF document"),
    ("x.gif", b"GIF89a" + bytes(20), "a GIF image"),
    ("x.zip", b"PK\x03\x04" + bytes(20), "a zip archive, read only when opened as a study"),
    ("x.weird", b"hello", "not an image, DICOM or NIfTI file (suffix '.weird')"),
])
def test_unknown_files_say_what_they_are_and_what_is_read(tmp_path, name, content, what):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError) as info:
        read_file(path)
    message = str(info.value)
    assert message.startswith(str(path)) and what in message and "NIfTI (.nii, .nii.gz)" in message
    assert "\n" not in message


def test_the_trainer_uses_the_cores_dicom_suffixes():
    import trainer.data

    assert trainer.data.DICOM_SUFFIXES is DICOM_SUFFIXES


# --- DICOMDIR ----------------------------------------------------------------------------------------------------

def _pydicom_dicomdir_images() -> list[Path]:
    records = FileSet(pydicom.dcmread(get_testdata_file("DICOMDIR")))
    return [Path(i.path) for i in records if i.node.record_type == "IMAGE"]


def test_dicomdir_opened_directly_reads_every_image_it_references():
    expected = _pydicom_dicomdir_images()
    report = load_paths([get_testdata_file("DICOMDIR")])
    assert not report.errors
    assert sorted(s.path for s in report.slices) == sorted(expected)
    assert len(report.slices) == len(expected) == 31
    assert {s.series.study_uid for s in report.slices} and all(s.series.number is not None for s in report.slices)


def _copy_dicomdir_medium(target: Path) -> Path:
    source = Path(get_testdata_file("DICOMDIR")).parent
    target.mkdir()
    shutil.copy(source / "DICOMDIR", target / "DICOMDIR")
    for folder in ("77654033", "98892001", "98892003"):
        shutil.copytree(source / folder, target / folder)
    return target


def test_folder_with_a_dicomdir_reads_each_image_once(tmp_path):
    medium = _copy_dicomdir_medium(tmp_path / "cd")
    report = load_paths([medium])
    assert len(report.slices) == 31 and not report.errors
    assert len({s.path.resolve() for s in report.slices}) == 31


def test_dicomdir_with_a_missing_file_names_it_and_reads_the_rest(tmp_path):
    medium = _copy_dicomdir_medium(tmp_path / "cd")
    (medium / "77654033" / "CR1" / "6154").unlink()
    report = load_paths([medium / "DICOMDIR"])
    assert len(report.slices) == 30
    [error] = report.errors
    assert error.path.endswith("CR1/6154") and "listed in DICOMDIR but missing" in error.reason


def test_dicomdir_under_another_name_is_recognised_by_its_sop_class():
    report = load_paths([get_testdata_file("DICOMDIR-reordered")])
    assert len(report.slices) == 31


def test_empty_dicomdir_says_it_lists_no_image():
    [error] = load_paths([get_testdata_file("DICOMDIR-empty.dcm")]).errors
    assert isinstance(error, NotAnImageError) and error.reason == "DICOMDIR lists no image"


# --- NIfTI -------------------------------------------------------------------------------------------------------

def _volume(shape=(40, 48, 12)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 1000, shape).astype(np.int16)


def test_nifti_volume_gives_one_axial_slice_per_index_with_spacing_and_geometry(tmp_path):
    path = tmp_path / "t1.nii.gz"
    affine = np.diag([0.9, 1.1, 3.0, 1.0])
    affine[:3, 3] = (-20, -30, -40)
    nib.save(nib.Nifti1Image(_volume(), affine), path)
    slices = read_nifti(path)
    assert [s.frame for s in slices] == list(range(12))
    assert all(s.shape == (48, 40) and s.pixels.dtype == np.int16 for s in slices)
    assert slices[0].pixel_spacing == pytest.approx((1.1, 0.9))
    np.testing.assert_allclose([s.position for s in slices], -40 + 3.0 * np.arange(12))
    first = slices[0].acquisition
    assert first.orientation == pytest.approx((1, 0, 0, 0, 1, 0)) and first.slice_thickness == pytest.approx(3.0)
    # first pixel: the patient's right-most, anterior-most voxel, in LPS
    assert first.image_position == pytest.approx((-(-20 + 0.9 * 39), -(-30 + 1.1 * 47), -40))


def test_nifti_is_laid_out_radiologically_whatever_its_stored_orientation(tmp_path):
    ras = np.zeros((20, 24, 3), np.int16)
    ras[19, 23, 1] = 1000  # right, anterior: the image's top-left in radiological layout
    nib.save(nib.Nifti1Image(ras, np.eye(4)), tmp_path / "ras.nii")
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps_affine[:3, 3] = (19, 23, 0)  # the same voxels in space, stored in LPS order
    nib.save(nib.Nifti1Image(ras[::-1, ::-1], lps_affine), tmp_path / "lps.nii")
    a, b = read_nifti(tmp_path / "ras.nii"), read_nifti(tmp_path / "lps.nii")
    assert np.unravel_index(np.argmax(a[1].pixels), a[1].shape) == (0, 0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.pixels, y.pixels)
        assert x.position == pytest.approx(y.position)


def test_nifti_scaling_is_applied(tmp_path):
    image = nib.Nifti1Image(np.full((16, 16, 2), 10, np.int16), np.eye(4))
    image.header.set_slope_inter(2.0, 5.0)
    nib.save(image, tmp_path / "s.nii")
    assert float(read_nifti(tmp_path / "s.nii")[0].values().max()) == 25.0


def test_4d_nifti_is_refused_with_its_shape_and_a_single_volume_is_read(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 4, 3), np.int16), np.eye(4)), tmp_path / "dwi.nii.gz")
    with pytest.raises(UnsupportedError, match=r"dwi.nii.gz: 4-D NIfTI 16x16x4x3: only 3-D volumes are read"):
        read_nifti(tmp_path / "dwi.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 4, 1), np.int16), np.eye(4)), tmp_path / "one.nii.gz")
    assert len(read_nifti(tmp_path / "one.nii.gz")) == 4


@pytest.mark.parametrize("content,reason", [(b"", "not a readable NIfTI file"),
                                            (b"\x1f\x8b" + bytes(10), "not a readable NIfTI file"),
                                            (b"x" * 400, "not a readable NIfTI file")])
def test_damaged_nifti_is_refused(tmp_path, content, reason):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError) as info:
        read_file(path)
    assert info.value.path == str(path) and reason in info.value.reason


def test_truncated_nifti_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(_volume(), np.eye(4)), tmp_path / "v.nii")
    data = (tmp_path / "v.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFileError, match="cut.nii"):
        read_file(tmp_path / "cut.nii")


def test_nifti_in_a_zip_reads_like_the_file(tmp_path):
    nib.save(nib.Nifti1Image(_volume(), np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "v.nii.gz")
    with zipfile.ZipFile(tmp_path / "v.zip", "w") as zf:
        zf.write(tmp_path / "v.nii.gz", "v.nii.gz")
    direct, zipped = read_nifti(tmp_path / "v.nii.gz"), load_paths([tmp_path / "v.zip"]).slices
    assert len(zipped) == 12 and zipped[3].path == tmp_path / "v.zip" / "v.nii.gz"
    for a, b in zip(direct, zipped):
        np.testing.assert_array_equal(a.pixels, b.pixels)
        assert a.acquisition == b.acquisition


# --- JPEG Extended -----------------------------------------------------------------------------------------------

def test_jpeg_extended_with_a_nonconformant_scan_decodes_like_its_fixed_copy():
    """pydicom's JPEG-lossy.dcm writes Se 0 in its sequential scan; JPGExtended.dcm is the same file with Se 63."""
    lossy, fixed = read_dicom(get_testdata_file("JPEG-lossy.dcm")), read_dicom(get_testdata_file("JPGExtended.dcm"))
    assert len(lossy) == 1 and lossy[0].shape == (1024, 256)
    np.testing.assert_array_equal(lossy[0].pixels, fixed[0].pixels)
    assert lossy[0].pixels[420, 140] == 244 and lossy[0].pixels[230, 120] == 95  # GDCM's values in pydicom's tests


def _first_frame(name: str) -> bytes:
    ds = pydicom.dcmread(get_testdata_file(name))
    return next(generate_frames(ds.PixelData, number_of_frames=1))


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm"])
def test_conformant_frames_are_not_mended(name):
    frame = _first_frame(name)
    assert mend_sequential_scans(frame) == frame


def test_mending_touches_only_the_spectral_selection():
    broken, fixed = _first_frame("JPEG-lossy.dcm"), _first_frame("JPGExtended.dcm")
    assert broken != fixed and mend_sequential_scans(broken) == fixed


def test_undecodable_jpeg_error_is_one_line_naming_the_file(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("JPGExtended.dcm"))
    frame = _first_frame("JPGExtended.dcm")
    precision = frame.index(b"\xff\xc1") + 4
    ds.PixelData = encapsulate([frame[:precision] + b"\x07" + frame[precision + 1 :]])  # 7-bit: no such process
    ds.save_as(tmp_path / "broken.dcm")
    with pytest.raises(UnreadableFileError) as info:
        read_dicom(tmp_path / "broken.dcm")
    message = str(info.value)
    assert message.startswith(str(tmp_path / "broken.dcm")) and "libjpeg" in message and "\n" not in message


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_jpeg_frame_cut_before_its_scan_is_refused_not_shown_flat(tmp_path, name):
    """libjpeg and CharLS return a flat image for such a frame; a blank slice must not reach triage."""
    ds = pydicom.dcmread(get_testdata_file(name))
    frame = _first_frame(name)
    ds.PixelData = encapsulate([frame[: frame.index(b"\xff\xda")] + b"\xff\xd9"])
    ds.save_as(tmp_path / "cut.dcm")
    with pytest.raises(UnreadableFileError, match="cut.dcm: frame 1 is truncated"):
        read_dicom(tmp_path / "cut.dcm")


# --- enhanced multi-frame and the Acquisition ---------------------------------------------------------------------

def test_enhanced_ct_geometry_window_and_rescale_come_from_the_functional_groups():
    ds = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm"))
    slices = read_dicom(get_testdata_file("eCT_Supplemental.dcm"))
    for s, groups in zip(slices, ds.PerFrameFunctionalGroupsSequence):
        where = [float(v) for v in groups.PlanePositionSequence[0].ImagePositionPatient]
        assert s.acquisition.image_position == pytest.approx(where)
        assert s.position == pytest.approx(-where[2])  # orientation (-1,0,0, 0,1,0): the normal is -z
        assert s.acquisition.orientation == pytest.approx((-1, 0, 0, 0, 1, 0))
        assert s.acquisition.image_type == ("DERIVED", "PRIMARY", "PERFUSION", "RCBF")  # FrameType
        assert s.window == (49.0, 102.0) and s.pixel_spacing == pytest.approx((0.388672, 0.388672))
        assert s.acquisition.slice_thickness == 10.0
    np.testing.assert_allclose(slices[0].values(), ds.pixel_array[0].astype(np.float32) - 1024)


def _enhanced_mr(tmp_path: Path, b_values=None) -> tuple[Path, list[float]]:
    import highdicom as hd
    from pydicom.uid import generate_uid

    paths = write_dicom_series(tmp_path / "legacy", n=5, size=32)
    legacy = [pydicom.dcmread(p) for p in paths]
    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
        legacy, series_instance_uid=generate_uid(), series_number=7, sop_instance_uid=generate_uid(), instance_number=1)
    positions = [float(g.PlanePositionSequence[0].ImagePositionPatient[2])
                 for g in enhanced.PerFrameFunctionalGroupsSequence]
    for groups, b in zip(enhanced.PerFrameFunctionalGroupsSequence, b_values or []):
        diffusion = pydicom.Dataset()
        diffusion.DiffusionBValue = b
        groups.MRDiffusionSequence = [diffusion]
        frame_type = pydicom.Dataset()
        frame_type.FrameType = ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]
        groups.MRImageFrameTypeSequence = [frame_type]
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path)
    return path, positions


def test_enhanced_mr_positions_are_read_per_frame_not_made_up(tmp_path):
    path, positions = _enhanced_mr(tmp_path)
    slices = read_dicom(path)
    assert [s.position for s in slices] == pytest.approx(positions)
    assert sorted(positions) != list(range(5))  # made-up positions (position + frame number) would differ
    report = load_paths([path])
    assert [s.position for s in report.slices] == sorted(positions)
    assert report.series[0].info.number == 7


def test_enhanced_mr_b_value_and_frame_type_per_frame(tmp_path):
    path, _ = _enhanced_mr(tmp_path, b_values=[0, 1000, 1000, 2000, 0])
    slices = read_dicom(path)
    assert [s.acquisition.b_value for s in slices] == [0, 1000, 1000, 2000, 0]
    assert all(s.acquisition.image_type == ("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE") for s in slices)


def test_classic_multiframe_positions_after_the_first_frame_stay_unknown():
    slices = read_dicom(get_testdata_file("emri_small.dcm"))  # its functional groups were stripped
    assert len(slices) == 10 and all(s.position is None for s in slices)
    assert all(s.acquisition.image_position is None for s in slices[1:])


def test_classic_mr_acquisition_and_series(tmp_path):
    extra = {"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"], "ScanningSequence": ["SE", "IR"],
             "SequenceVariant": "SK", "SequenceName": "*tir2d1", "MRAcquisitionType": "2D", "SliceThickness": 5,
             "DiffusionBValue": 0, "SeriesNumber": 12}
    write_dicom_series(tmp_path / "s", n=2, extra=extra)
    report = load_paths([tmp_path / "s"])
    s = report.slices[1]
    a = s.acquisition
    assert a.orientation == (1, 0, 0, 0, 1, 0) and a.image_position == (0, 0, 5)
    assert a.image_type == ("ORIGINAL", "PRIMARY", "M", "ND") and a.scanning_sequence == ("SE", "IR")
    assert a.sequence_variant == ("SK",) and a.sequence_name == "*tir2d1" and a.mr_acquisition_type == "2D"
    assert a.sop_class_uid == "1.2.840.10008.5.1.4.1.1.4" and a.slice_thickness == 5 and a.b_value == 0
    assert s.series.number == 12 and s.series.study_uid and s.series.study_uid != s.series.uid
    assert "SYNTHETIC" not in repr(a) and "Synthetic" not in repr(a)  # nothing identifying in the acquisition


@pytest.mark.parametrize("group,offset,creator,vr,value,expected", [
    (0x0019, 0x0C, "SIEMENS MR HEADER", "IS", "1000", 1000.0),
    (0x0043, 0x39, "GEMS_PARM_01", "IS", [1000001500, 8, 0, 0], 1500.0),
    (0x2001, 0x03, "Philips Imaging DD 001", "FL", 800.0, 800.0),
])
def test_private_b_values_of_the_three_makers(tmp_path, group, offset, creator, vr, value, expected):
    [path] = write_dicom_series(tmp_path / "s", n=1)
    ds = pydicom.dcmread(path)
    ds.private_block(group, creator, create=True).add_new(offset, vr, value)
    ds.save_as(path)
    assert read_dicom(path)[0].acquisition.b_value == expected


# --- the bars, through the command line -----------------------------------------------------------------------------

def _predict(model_dir: Path, out: Path, *inputs: Path) -> list[dict]:
    code = brainmri(["predict", "--models-dir", str(model_dir), "--model", "tiny-cnn", "--tta", "1",
                     "--out", str(out), *map(str, inputs)])
    assert code == 0
    return list(csv.DictReader(open(out)))


def test_bar_predict_reads_a_zip_of_four_png_slices(model_dir, tmp_path):
    study = _zip_of_pngs(tmp_path / "study.zip", n=4)
    rows = _predict(model_dir, tmp_path / "out.csv", study)
    assert len(rows) == 4 and not any(r["error"] for r in rows)
    assert [r["path"] for r in rows] == [str(study / "inner" / f"a{i}.png") for i in range(4)]


def test_bar_predict_reads_pydicoms_dicomdir(model_dir, tmp_path):
    rows = _predict(model_dir, tmp_path / "out.csv", Path(get_testdata_file("DICOMDIR")))
    assert len(rows) == len(_pydicom_dicomdir_images()) == 31 and not any(r["error"] for r in rows)
    assert {r["path"] for r in rows} == {str(p) for p in _pydicom_dicomdir_images()}


def test_bar_predict_reads_a_twelve_slice_nifti_volume(model_dir, tmp_path):
    path = tmp_path / "brain.nii.gz"
    nib.save(nib.Nifti1Image(_volume(), np.diag([1.0, 1.0, 2.5, 1.0])), path)
    rows = _predict(model_dir, tmp_path / "out.csv", path)
    assert len(rows) == 12 and not any(r["error"] for r in rows)
    assert [int(r["frame"]) for r in rows] == list(range(12)) and {r["path"] for r in rows} == {str(path)}
