"""Pixel to mm and patient coordinates, and distances, against examples worked out by hand from DICOM's formula."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainmri_desktop.core.geometry import Distance, PixelGeometry, direction_label, edge_labels, lps_text, readout
from brainmri_desktop.core.io.slices import Acquisition, Slice


def _slice(spacing=None, orientation=None, position=None, shape=(64, 48)) -> Slice:
    pixels = np.arange(shape[0] * shape[1], dtype=np.int16).reshape(shape)
    acq = Acquisition(orientation=orientation, image_position=position) if orientation or position else None
    return Slice(Path("s.dcm"), pixels, pixel_spacing=spacing, acquisition=acq)


AXIAL = _slice((0.5, 0.8), (1, 0, 0, 0, 1, 0), (-120.0, -130.0, 40.0))


def test_axial_pixel_to_patient_by_hand():
    # Column 10 moves 10 * 0.8 mm along +x (to the left); row 20 moves 20 * 0.5 mm along +y (to the back).
    point = PixelGeometry.of(AXIAL).patient_mm(10, 20)
    np.testing.assert_allclose(point, [-112.0, -120.0, 40.0])


def test_sagittal_pixel_to_patient_by_hand():
    # Rows run anterior to posterior (+y), columns run head to foot (-z): a typical sagittal slice.
    geometry = PixelGeometry.of(_slice((1.2, 0.9), (0, 1, 0, 0, 0, -1), (30.0, -100.0, 90.0)))
    np.testing.assert_allclose(geometry.patient_mm(5, 10), [30.0, -100.0 + 5 * 0.9, 90.0 - 10 * 1.2])


def test_oblique_orientation_uses_both_cosines():
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    geometry = PixelGeometry.of(_slice((2.0, 1.0), (c, s, 0, -s, c, 0), (0.0, 0.0, 0.0)))
    np.testing.assert_allclose(geometry.patient_mm(3, 4), [3 * c - 8 * s, 3 * s + 8 * c, 0.0], atol=1e-12)


def test_first_pixel_is_the_image_position():
    np.testing.assert_allclose(PixelGeometry.of(AXIAL).patient_mm(0, 0), [-120.0, -130.0, 40.0])


def test_plane_mm_uses_column_spacing_for_x_and_row_spacing_for_y():
    assert PixelGeometry.of(AXIAL).plane_mm(10, 20) == pytest.approx((8.0, 10.0))


def test_no_spacing_gives_no_mm():
    geometry = PixelGeometry.of(_slice())
    assert geometry.plane_mm(3, 4) is None and geometry.patient_mm(3, 4) is None


def test_spacing_without_orientation_gives_plane_mm_only():
    geometry = PixelGeometry.of(_slice((0.5, 0.5)))
    assert geometry.plane_mm(2, 2) == pytest.approx((1.0, 1.0))
    assert geometry.patient_mm(2, 2) is None


def test_zero_spacing_in_a_header_is_treated_as_unknown():
    assert PixelGeometry.of(_slice((0.0, 1.0))).spacing is None


def test_distance_with_anisotropic_spacing():
    # 30 columns at 0.8 mm and 40 rows at 0.5 mm: sqrt(24^2 + 20^2) mm, not the 50 px of the pixel grid.
    d = PixelGeometry.of(AXIAL).distance((0, 0), (30, 40))
    assert d.unit == "mm" and d.value == pytest.approx(np.hypot(24.0, 20.0))
    assert str(d) == f"{np.hypot(24.0, 20.0):.1f} mm"


def test_distance_without_spacing_is_in_pixels_and_says_so():
    d = PixelGeometry.of(_slice()).distance((0, 0), (3, 4))
    assert d == Distance(5.0, "px")
    assert str(d) == "5.0 px (no pixel spacing)"


def test_lps_text_names_sides():
    assert lps_text(np.array([-112.0, -120.0, 40.0])) == "R 112.0 A 120.0 S 40.0 mm"
    assert lps_text(np.array([5.0, 6.5, -7.25])) == "L 5.0 P 6.5 I 7.2 mm"


def test_readout_for_dicom_gives_value_mm_and_patient_position():
    text = readout(AXIAL, 10, 20)
    assert text.startswith(f"x 10, y 20: value {20 * 48 + 10:.1f}")
    assert "8.0, 10.0 mm" in text and "R 112.0 A 120.0 S 40.0 mm" in text


def test_readout_for_png_says_pixel_coordinates_only():
    text = readout(_slice(), 1, 2)
    assert "mm" not in text.replace("no pixel spacing", "") and "pixel coordinates only" in text


def test_direction_labels_follow_lps():
    assert direction_label((1, 0, 0)) == "L" and direction_label((-1, 0, 0)) == "R"
    assert direction_label((0, 1, 0)) == "P" and direction_label((0, 0, -1)) == "I"
    assert direction_label((0.6, -0.8, 0)) == "AL"
    # A 10 degree tilt is not named.
    assert direction_label((0, np.cos(np.radians(10)), np.sin(np.radians(10)))) == "P"


def test_edge_labels_of_an_axial_slice_shown_as_stored():
    # Radiological convention: the patient's right on the screen's left, anterior at the top.
    labels = edge_labels((1, 0, 0, 0, 1, 0), right=(1, 0), down=(0, 1))
    assert labels == {"left": "R", "right": "L", "top": "A", "bottom": "P"}


def test_edge_labels_of_a_sagittal_slice():
    labels = edge_labels((0, 1, 0, 0, 0, -1), right=(1, 0), down=(0, 1))
    assert labels == {"left": "A", "right": "P", "top": "S", "bottom": "I"}


def test_readout_of_a_dicom_file_read_by_the_loader(tmp_path):
    from brainmri_desktop.core.io import load_paths

    from .synthetic import write_dicom_series

    # The synthetic series: axial (IOP 1,0,0,0,1,0), slice i at IPP (0, 0, 5 i) mm, 1 mm pixels.
    write_dicom_series(tmp_path / "series", n=4)
    slices = load_paths([tmp_path / "series"]).slices
    third = next(s for s in slices if s.acquisition and s.acquisition.image_position[2] == 10.0)
    text = readout(third, 3, 4)
    assert "3.0, 4.0 mm" in text and "L 3.0 P 4.0 S 10.0 mm" in text
