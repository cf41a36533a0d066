"""Tumour outlines from VGG Image Annotator JSON: every region of every shape becomes part of the tumour mask."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from trainer.data import DataError, load_source, tumour_mask

from .conftest import requires_data


def _via(entries: dict) -> str:
    return json.dumps({f"{name}{i}": {"filename": name, "size": 1, "regions": regions, "file_attributes": {}}
                       for i, (name, regions) in enumerate(entries.items())})


def _shape(**attrs) -> dict:
    return {"shape_attributes": attrs, "region_attributes": {}}


@pytest.fixture
def via_root(tmp_path):
    """A Br35H-like root: yes/ with five 64x64 slices and a VIA file outlining four of them in different shapes."""
    (tmp_path / "yes").mkdir()
    for name in ("poly.png", "ellipse.png", "circle.png", "two.png", "none.png"):
        cv2.imwrite(str(tmp_path / "yes" / name), np.full((64, 48), 90, np.uint8))
    (tmp_path / "outlines").mkdir()
    (tmp_path / "outlines" / "annotations.json").write_text(_via({
        "poly.png": [_shape(name="polygon", all_points_x=[10, 30, 30, 10], all_points_y=[10, 10, 20, 20])],
        # a long thin ellipse turned by 90 degrees: it must stand upright
        "ellipse.png": [_shape(name="ellipse", cx=24.0, cy=32.0, rx=15.0, ry=3.0, theta=math.pi / 2)],
        "circle.png": [_shape(name="circle", cx=20, cy=40, r=5)],
        "two.png": [_shape(name="polygon", all_points_x=[2, 8, 8, 2], all_points_y=[2, 2, 8, 8]),
                    _shape(name="circle", cx=40, cy=50, r=4),
                    _shape(name="point", cx=1, cy=1),  # VIA shapes that enclose nothing are left out
                    _shape(name="polygon", all_points_x=[1, 2], all_points_y=[1, 2])],
    }))
    return tmp_path


def _masks(root) -> dict[str, np.ndarray | None]:
    return {s.path.name: tumour_mask(s, (64, 48)) for s in load_source(root)}


def test_every_shape_is_read_and_drawn(via_root):
    masks = _masks(via_root)
    assert masks["none.png"] is None  # no outline: the region stays unknown
    poly = masks["poly.png"]
    assert poly[15, 20] and not poly[5, 20] and not poly[15, 35]
    ellipse = masks["ellipse.png"]
    # theta turns rx onto the y axis: 15 px up and down from the centre, 3 px to the sides
    assert ellipse[32 - 13, 24] and ellipse[32 + 13, 24] and not ellipse[32, 24 + 6] and not ellipse[32, 24 - 6]
    ys, xs = np.nonzero(masks["circle.png"])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (35, 45, 15, 25)


def test_several_regions_add_up(via_root):
    two = _masks(via_root)["two.png"]
    assert two[5, 5] and two[50, 40] and not two[30, 20]
    (sample,) = [s for s in load_source(via_root) if s.path.name == "two.png"]
    assert [r[0] for r in sample.outline] == ["polygon", "circle"]
    assert sum(s.outline is not None for s in load_source(via_root)) == 4


def test_regions_of_one_image_in_two_files_add_up(via_root):
    (via_root / "outlines" / "more.json").write_text(_via({"poly.png": [_shape(name="circle", cx=40, cy=50, r=3)]}))
    poly = _masks(via_root)["poly.png"]
    assert poly[15, 20] and poly[50, 40]


def test_a_broken_via_file_names_itself(via_root):
    (via_root / "outlines" / "broken.json").write_text("{not json")
    with pytest.raises(DataError, match="broken.json"):
        load_source(via_root)


@requires_data("br35h", "outlines")
def test_br35h_reads_every_outlined_slice():
    from .conftest import DATA

    entries = {}
    for f in (DATA / "br35h" / "outlines").glob("*.json"):
        entries.update({e["filename"]: e for e in json.loads(f.read_text()).values()})
    samples = load_source(DATA / "br35h")
    outlined = {s.path.name: s for s in samples if s.outline is not None}
    on_disk = {s.path.name for s in samples}
    assert set(outlined) == {name for name in entries if name in on_disk}
    # entries without a polygon (ellipses and circles only) are read too
    assert any(all(r[0] != "polygon" for r in s.outline) for s in outlined.values())
    assert all(len(s.outline) == len(entries[n]["regions"]) for n, s in outlined.items())
