"""Exploratory data report: class balance per source, image sizes, intensity statistics and a sample grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from brainmri_desktop.core.errors import BrainMRIError
from brainmri_desktop.core.intensity import robust_range
from brainmri_desktop.core.io.study import read_file

from .config import TrainConfig
from .data import summary
from .plots import _save, image_grid
from .train import load_samples


def eda(cfg: TrainConfig, out: Path, per_source_sample: int = 200, seed: int = 0) -> dict:
    import matplotlib.pyplot as plt

    out = Path(out)
    samples = load_samples(cfg)
    rng = np.random.default_rng(seed)
    stats: dict[str, dict] = {}
    grid, titles, unreadable = [], [], []
    for source in sorted({s.source for s in samples}):
        members = [s for s in samples if s.source == source]
        pick = rng.choice(len(members), min(per_source_sample, len(members)), replace=False)
        shapes, means, stds = [], [], []
        for k, i in enumerate(pick):
            try:
                sl = read_file(members[i].path)[0]
            except BrainMRIError as exc:
                unreadable.append([str(exc.path), exc.reason])
                continue
            v = sl.values()
            shapes.append(sl.shape)
            means.append(float(v.mean()))
            stds.append(float(v.std()))
            if k < 4:
                lo, hi = robust_range(v)
                grid.append(np.clip((v - lo) / max(hi - lo, 1e-6), 0, 1))
                titles.append(f"{source} / {'tumour' if members[i].label else 'no tumour'}")
        shapes = np.array(shapes) if shapes else np.zeros((0, 2))
        stats[source] = {"sampled": len(shapes), "height": _describe(shapes[:, 0]), "width": _describe(shapes[:, 1]),
                         "mean_intensity": _describe(means), "std_intensity": _describe(stds),
                         "distinct_sizes": int(len({tuple(s) for s in shapes.tolist()}))}
    report = {"summary": summary(samples), "per_source": stats, "unreadable": unreadable}
    out.mkdir(parents=True, exist_ok=True)
    (out / "eda.json").write_text(json.dumps(report, indent=2))
    image_grid(grid, titles, out / "samples.png", columns=4)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sources = list(report["summary"]["by_source"])
    tum = [report["summary"]["by_source"][s]["tumour"] for s in sources]
    no = [report["summary"]["by_source"][s]["no_tumour"] for s in sources]
    ax.bar(sources, tum, label="tumour")
    ax.bar(sources, no, bottom=tum, label="no tumour")
    ax.legend()
    ax.set_title("class balance per source")
    _save(fig, out / "class_balance.png")
    return report


def _describe(values) -> dict:
    v = np.asarray(values, dtype=float)
    if not len(v):
        return {}
    return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}
