"""Whether a model's Grad-CAM shows what its score rests on, beyond the pointing game: a deletion test.

On each tumour slice, the cells of the map's grid (the Grad-CAM layer's own resolution) that lie inside the head are
ranked by the map; the top share of them is filled with the head's median grey (tissue without a finding, so that a
cell-scored model still counts the cell as head) and the drop of the calibrated probability is compared with filling
as many head cells drawn at random. A map that shows the evidence makes the first drop larger than the second.
"""

from __future__ import annotations

import numpy as np

from brainmri_desktop.core.cell_layers import INSIDE_SHARE
from brainmri_desktop.core.gradcam import GradCAM
from brainmri_desktop.core.inference import LoadedModel, sigmoid

from .data import Sample
from .dataset import preprocess_sample


def cell_bounds(cells: int, size: int) -> list[tuple[int, int]]:
    """Pixel rows (or columns) [start, end) of each of `cells` map cells over an input side of `size` pixels."""
    edges = np.floor(np.arange(cells + 1) * size / cells).astype(int)
    return list(zip(edges[:-1], edges[1:]))


def head_cells(image: np.ndarray, rows: list, cols: list) -> np.ndarray:
    """(h, w) bool: cells with at least INSIDE_SHARE of their pixels inside the head (not blanked), as the model's
    own HeadCells layer counts them."""
    return np.array([[(image[r0:r1, c0:c1] > 0).mean() >= INSIDE_SHARE for c0, c1 in cols] for r0, r1 in rows])


def _filled(image: np.ndarray, cells: np.ndarray, rows: list, cols: list) -> np.ndarray:
    out = image.copy()
    grey = float(np.median(image[image > 0])) if (image > 0).any() else 0.0
    for r, c in cells:
        (r0, r1), (c0, c1) = rows[r], cols[c]
        out[r0:r1, c0:c1] = np.where(image[r0:r1, c0:c1] > 0, grey, 0.0)
    return out


def deletion_test(model: LoadedModel, samples: list[Sample], share: float = 0.1, draws: int = 3,
                  seed: int = 0) -> dict:
    """Per source: {"n": slices, "share": of head cells filled, "drop_top": mean probability drop when the map's top
    cells are filled, "drop_random": the same for as many random head cells (mean of `draws`)}. Tumour slices only;
    slices whose map is empty (nothing pushes the score up) are left out and counted in "empty_maps"."""
    spec = model.manifest.preprocessing
    rng = np.random.default_rng(seed)
    kept, images = [], []
    for s in samples:
        if s.label == 1:
            try:
                images.append(preprocess_sample(s, spec).image)
                kept.append(s)
            except (OSError, ValueError):
                continue  # an unreadable file is the reading test's business, not this one's
    maps = GradCAM(model).cell_maps(np.stack(images)) if images else []
    out: dict[str, dict] = {}
    variants, owners = [], []
    for s, image, raw in zip(kept, images, maps):
        entry = out.setdefault(s.source, {"n": 0, "share": share, "empty_maps": 0})
        rows, cols = cell_bounds(raw.shape[0], image.shape[0]), cell_bounds(raw.shape[1], image.shape[1])
        inside = np.argwhere(head_cells(image, rows, cols))
        if raw.max() <= 0 or not len(inside):
            entry["empty_maps"] += 1
            continue
        k = max(1, round(share * len(inside)))
        top = inside[np.argsort(-raw[inside[:, 0], inside[:, 1]], kind="stable")[:k]]
        variants += [image, _filled(image, top, rows, cols)]
        variants += [_filled(image, inside[rng.choice(len(inside), k, replace=False)], rows, cols) for _ in range(draws)]
        owners.append(s.source)
        entry["n"] += 1
    if owners:
        p = sigmoid(model.manifest.calibrated_logit(model.logits(np.stack(variants)).astype(np.float64)))
        p = p.reshape(len(owners), 2 + draws)
        for source in out:
            rows_of = p[np.array(owners) == source]
            out[source]["drop_top"] = float(np.mean(rows_of[:, 0] - rows_of[:, 1])) if len(rows_of) else None
            out[source]["drop_random"] = (float(np.mean(rows_of[:, :1] - rows_of[:, 2:])) if len(rows_of) else None)
    return {src: {"drop_top": None, "drop_random": None, **e} for src, e in out.items()}
