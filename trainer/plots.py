"""PNG figures of a run or an evaluation: training curves, ROC, reliability diagram, confusion matrix, image grids."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from brainmri_desktop.core.flag_rule import at_or_over  # noqa: E402


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def training_curves(history: list[dict], path: Path) -> None:
    if not history:
        return
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for key in ("loss", "val_loss"):
        axes[0].plot(epochs, [h.get(key, np.nan) for h in history], label=key)
    # A run with the lesion head logs the classifier's AUC as prob_auc / val_prob_auc.
    for key in ("auc", "val_auc", "prob_auc", "val_prob_auc"):
        if any(key in h for h in history):
            axes[1].plot(epochs, [h.get(key, np.nan) for h in history], label=key)
    for ax, title in zip(axes, ("loss", "ROC-AUC")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
    _save(fig, path)


def roc(probs, labels, path: Path, title: str = "ROC") -> None:
    if len(set(np.asarray(labels).tolist())) < 2:
        return
    fpr, tpr, _ = roc_curve(labels, probs)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title)
    _save(fig, path)


def reliability(probs, labels, path: Path, bins: int = 10) -> None:
    p, y = np.asarray(probs), np.asarray(labels)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    conf = [p[which == b].mean() if (which == b).any() else np.nan for b in range(bins)]
    freq = [y[which == b].mean() if (which == b).any() else np.nan for b in range(bins)]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.plot(conf, freq, "o-")
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title="Reliability")
    _save(fig, path)


def confusion(probs, labels, threshold: float, path: Path) -> None:
    p, y = at_or_over(probs, threshold), np.asarray(labels) == 1
    m = np.array([[np.sum(~p & ~y), np.sum(p & ~y)], [np.sum(~p & y), np.sum(p & y)]])
    fig, ax = plt.subplots(figsize=(3.5, 3.5))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["no tumour", "tumour"], yticklabels=["no tumour", "tumour"],
           xlabel="predicted", ylabel="true", title=f"threshold {threshold:.3f}")
    _save(fig, path)


def image_grid(images: list[np.ndarray], titles: list[str], path: Path, overlays: list[np.ndarray] | None = None,
               columns: int = 6) -> None:
    if not images:
        return
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (ax, image, title) in enumerate(zip(axes.ravel(), images, titles)):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        if overlays is not None:
            ax.imshow(overlays[k], cmap="jet", alpha=0.4, vmin=0, vmax=1)
        ax.set_title(title, fontsize=7)
    _save(fig, path)


def write_run_plots(run_dir: Path, history, probs, labels, threshold: float) -> None:
    plots = Path(run_dir) / "plots"
    training_curves(history, plots / "training_curves.png")
    roc(probs, labels, plots / "roc_validation.png", "ROC (validation)")
    reliability(probs, labels, plots / "reliability_validation.png")
    confusion(probs, labels, threshold, plots / "confusion_validation.png")
