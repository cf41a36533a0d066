from __future__ import annotations

import shutil

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from brainmri_desktop.core.errors import BrainMRIError, NotAnImageError, UnreadableFileError
from brainmri_desktop.core.io import load_paths
from brainmri_desktop.core.io.dicom import read_dicom
from brainmri_desktop.core.io.images import read_image

from .synthetic import head_image, write_dicom_series


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".bmp"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_image_formats_load_as_grey(tmp_path, suffix, channels):
    img = head_image(40, 56)
    if channels > 1:
        img = np.repeat(img[..., None], channels, axis=-1)
    if suffix in (".jpg", ".bmp") and channels == 4:
        img = img[..., :3]
    path = tmp_path / f"x{suffix}"
    assert cv2.imwrite(str(path), img)
    s = read_image(path)
    assert s.shape == (40, 56)
    assert s.pixels.ndim == 2
    assert abs(float(s.values().mean()) - float(head_image(40, 56).mean())) < 3


def test_16_bit_png_keeps_its_depth(tmp_path):
    img = head_image(32, 32, dtype=np.uint16, scale=200)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    s = read_image(tmp_path / "a.png")
    assert s.pixels.dtype == np.uint16 and int(s.pixels.max()) == int(img.max())


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "damaged or truncated PNG"),
                                            (b"GIF89a" + bytes(20), "not a readable image")])
def test_bad_image_files_name_file_and_reason(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError) as info:
        read_image(path)
    assert str(path) in str(info.value) and reason in info.value.reason


@pytest.mark.parametrize("name,frames", [
    ("CT_small.dcm", 1), ("MR_small.dcm", 1), ("MR_small_jpeg_ls_lossless.dcm", 1), ("MR_small_RLE.dcm", 1),
    ("JPEG2000.dcm", 1), ("SC_rgb_jpeg_dcmtk.dcm", 1), ("SC_ybr_full_uncompressed.dcm", 1), ("emri_small.dcm", 10),
    ("MR_small_bigendian.dcm", 1),
])
def test_pydicom_files_load(name, frames):
    slices = read_dicom(get_testdata_file(name))
    assert len(slices) == frames
    assert all(s.pixels.ndim == 2 and np.isfinite(s.values()).all() for s in slices)
    assert [s.frame for s in slices] == list(range(frames))


def test_compressed_decodes_like_uncompressed():
    plain = read_dicom(get_testdata_file("MR_small.dcm"))[0].values()
    for name in ("MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm"):
        np.testing.assert_array_equal(read_dicom(get_testdata_file(name))[0].values(), plain)


def test_ct_rescale_and_window_applied():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    s = read_dicom(get_testdata_file("CT_small.dcm"))[0]
    raw = ds.pixel_array.astype(float)
    np.testing.assert_allclose(s.values(), raw * float(ds.RescaleSlope) + float(ds.RescaleIntercept))


def test_non_image_dicom_is_refused_by_type():
    with pytest.raises(NotAnImageError) as info:
        read_dicom(get_testdata_file("rtplan.dcm"))
    assert "rtplan.dcm" in str(info.value)


def test_truncated_dicom_is_refused(tmp_path):
    src = get_testdata_file("CT_small.dcm")
    data = open(src, "rb").read()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(BrainMRIError) as info:
        read_dicom(tmp_path / "cut.dcm")
    assert "cut.dcm" in str(info.value)


def test_monochrome1_is_inverted(tmp_path):
    paths = write_dicom_series(tmp_path / "m2", n=1, shuffle=False)
    ds = pydicom.dcmread(paths[0])
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    normal = read_dicom(paths[0])[0].values()
    inverted = read_dicom(tmp_path / "m1.dcm")[0].values()
    np.testing.assert_allclose(inverted, normal.max() + normal.min() - normal)


def test_series_grouped_and_ordered_by_position(tmp_path):
    write_dicom_series(tmp_path / "study" / "a", n=5, description="A")
    write_dicom_series(tmp_path / "study" / "b", n=3, description="B")
    report = load_paths([tmp_path / "study"])
    assert not report.errors
    assert sorted(len(s.slices) for s in report.series) == [3, 5]
    a = next(s for s in report.series if s.info.description == "A")
    positions = [s.position for s in a.slices]
    assert positions == sorted(positions) and [s.instance for s in a.slices] == [1, 2, 3, 4, 5]


def test_mixed_folder_loads_good_and_lists_bad(tmp_path):
    folder = tmp_path / "mixed"
    write_dicom_series(folder, n=3)
    cv2.imwrite(str(folder / "slice.png"), head_image())
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "broken.png").write_bytes(b"not a png at all")
    shutil.copy(get_testdata_file("rtplan.dcm"), folder / "plan.dcm")
    (folder / "notes.txt").write_text("ignored")
    before = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    report = load_paths([folder])
    assert len(report.slices) == 4
    bad = {e.path.split("/")[-1]: e.reason for e in report.errors}
    assert set(bad) == {"empty.dcm", "broken.png", "plan.dcm"}
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == before  # nothing written to the user's folder


def test_symlink_loop_and_outside_links_are_not_followed(tmp_path):
    folder = tmp_path / "study"
    write_dicom_series(folder, n=2)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    outside = tmp_path / "outside.png"
    cv2.imwrite(str(outside), head_image())
    (folder / "link.png").symlink_to(outside)
    report = load_paths([folder])
    assert len(report.slices) == 2
    assert any("outside the chosen folder" in e.reason for e in report.errors)


def test_patient_identity_is_kept_apart_and_hidden_in_repr(tmp_path):
    paths = write_dicom_series(tmp_path, n=1, patient=("Secret^Name", "ID-123456"))
    s = read_dicom(paths[0])[0]
    assert s.patient.name == "Secret^Name"
    assert "Secret" not in repr(s) and "ID-123456" not in repr(s)
