"""Which model to use when the reader names none, and the measured figures that policy reads from a manifest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .errors import ModelPackageError
from .manifest import Manifest
from .packages import ModelEntry


def validation_auc(manifest: Manifest) -> float:
    auc = (manifest.metrics.get("validation") or {}).get("auc")
    value = auc.get("value") if isinstance(auc, dict) else auc
    return float(value) if isinstance(value, (int, float)) else 0.0


def pointing_scores(metrics: dict) -> dict[str, dict]:
    """The Grad-CAM pointing game the trainer measured, by source: {source: {"n": slices, "pointing_game": share}},
    only the sources with a figure."""
    return {source: v for source, v in sorted((metrics.get("gradcam") or {}).items())
            if isinstance(v, dict) and isinstance(v.get("pointing_game"), (int, float))}


# The share of outlined validation slices on which a map's peak must lie inside the tumour, on every source scored,
# for the map to be shown as one of where (issue 27's bar; a random point of a 7x7 grid scores 6-8 % here).
POINTING_BAR = 0.6


def gradcam_points_at_tumours(manifest: Manifest, share: float = POINTING_BAR) -> bool:
    """Whether the trainer measured this model's Grad-CAM peak inside the tumour on at least `share` of the outlined
    validation slices of every source it scored (the pointing game in the model card)."""
    scores = [v["pointing_game"] for v in pointing_scores(manifest.metrics).values()]
    return bool(scores) and min(scores) >= share


def gradcam_caveat(manifest: Manifest) -> str | None:
    """The warning that goes with this model's Grad-CAM map wherever it is shown (the window, the PDF, the captures
    and the structured report sent to a PACS), or None when the trainer measured the map pointing at tumours."""
    if not pointing_scores(manifest.metrics):
        return ("Grad-CAM not measured against tumour outlines: read the map as what drove the score, "
                "not as a location")
    if gradcam_points_at_tumours(manifest):
        return None
    short = ", ".join(f"{v['pointing_game']:.0%} ({k})" for k, v in pointing_scores(manifest.metrics).items()
                      if v["pointing_game"] < POINTING_BAR)
    return (f"For this model the Grad-CAM map does not show where a tumour is reliably: its peak lay inside the "
            f"tumour on only {short} of outlined validation slices (bar {POINTING_BAR:.0%}); read it as what drove "
            "the score")


def gradcam_measured(manifest: Manifest) -> str:
    """What the trainer measured of the map, in words ("" when it measured nothing)."""
    cams = pointing_scores(manifest.metrics)
    if not cams:
        return ""
    shares = ", ".join(f"{v['pointing_game']:.0%} of {v.get('n', '?')} ({k})" for k, v in cams.items())
    return f"Grad-CAM: its peak lay inside the tumour on {shares} outlined validation slices"


def display_name(entry: ModelEntry) -> str:
    """How a model is named wherever a reader picks or sees it: a bundled one by its name; any other says it is a
    user model and what its trainer measured, so a weak one cannot pass for a bundled one of the same name."""
    if entry.source == "bundled":
        return f"{entry.manifest.name} [bundled]"
    auc = validation_auc(entry.manifest)
    measured = f"validation AUC {auc:.2f}" if auc else "no validation AUC recorded"
    return f"{entry.manifest.name} [user model, {measured}]"


def find_model(entries: Sequence[ModelEntry], model_id: str | None) -> ModelEntry:
    """The entry with this id, or the default: a bundled model whose Grad-CAM was measured to point at tumours (the
    window shows that map beside every slice, and a map that points elsewhere misleads the reader), then the best
    validation AUC its trainer measured (a model's architecture says nothing about how well it was trained), then any
    usable model."""
    usable = [e for e in entries if e.ok]
    if model_id:
        for e in usable:
            if e.manifest.id == model_id:
                return e
        raise ModelPackageError(Path(model_id), "no usable model with this id (see `brainmri models`)")
    if not usable:
        raise ModelPackageError(None, "no usable model package was found")
    usable.sort(key=lambda e: (e.source != "bundled", not gradcam_points_at_tumours(e.manifest),
                               -validation_auc(e.manifest), e.manifest.id))
    return usable[0]
