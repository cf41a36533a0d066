"""The study report: a per-slice CSV and a PDF of the flagged slices with their Grad-CAM overlays.

Patient identity goes into an export only when the reader asks for it. Both files are written atomically.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .inference import SliceResult
from .io.slices import Slice
from .manifest import Manifest, OperatingPoint
from .review import Mark
from .session import Decision, Session
from .wording import DISCLAIMER

PDF_MAX_SLICES = 24  # flagged slices shown with their maps; the CSV lists every slice
CSV_COLUMNS = ["slice", "file", "frame", "probability", "threshold", "flagged", "second_look", "tta_std",
               "augmentations", "review", "note"]


@dataclass
class StudyReport:
    """A snapshot of a session for export: what the model said, what was decided and what the reader marked."""

    slices: list[Slice]
    results: dict[int, SliceResult]
    decisions: dict[int, Decision]
    manifest: Manifest
    point: OperatingPoint  # the threshold in use
    marks: dict[int, Mark]
    device: str = ""
    include_identity: bool = False

    @classmethod
    def of(cls, session: Session, device: str = "", include_identity: bool = False) -> "StudyReport":
        return cls(list(session.slices), dict(session.results), session.decisions(), session.manifest, session.point,
                   dict(session.marks), device, include_identity)

    @property
    def flagged(self) -> list[int]:
        return [i for i, d in sorted(self.decisions.items()) if d.flagged]


def write_csv(report: StudyReport, path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for i, s in enumerate(report.slices):
        r, d = report.results.get(i), report.decisions.get(i)
        mark = report.marks.get(i)
        writer.writerow({
            "slice": i + 1, "file": s.path.name, "frame": s.frame,
            "probability": f"{r.probability:.4f}" if r else "", "threshold": f"{report.point.threshold:.4f}" if r else "",
            "flagged": int(d.flagged) if d else "", "second_look": int(d.second_look) if d else "",
            "tta_std": f"{r.tta_std:.4f}" if r else "", "augmentations": r.augmentations if r else "",
            "review": mark.verdict if mark else "", "note": mark.note if mark else "",
        })
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def write_pdf(report: StudyReport, path: Path, cam_for: Callable[[int], np.ndarray | None],
              max_slices: int = PDF_MAX_SLICES) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    m = report.manifest
    buffer = io.BytesIO()
    with PdfPages(buffer) as pdf:
        fig = Figure(figsize=(8.27, 11.69))
        probs = [r.probability for r in report.results.values()]
        lines = [
            "BrainMRI triage report",
            "",
            f"Date: {datetime.now():%Y-%m-%d %H:%M}",
            f"Model: {m.name} (id {m.id}, version {m.version})",
            f"Threshold: {report.point.threshold:.3f} ({report.point.method_in_words}, chosen on {report.point.data})",
            f"Slices flagged: {len(report.flagged)} of {len(report.slices)}"
            + (f"; highest probability {max(probs):.3f}" if probs else ""),
            f"Computed on: {report.device}",
        ]
        if report.include_identity and report.slices:
            p = report.slices[0].patient
            lines += [f"Patient: {p.name}  ID: {p.patient_id}  Accession: {p.accession}"]
        fig.text(0.08, 0.92, "\n".join(lines), va="top", fontsize=11, family="sans-serif")
        fig.text(0.08, 0.08, DISCLAIMER, fontsize=9, wrap=True, color="darkred")
        pdf.savefig(fig)
        flagged = report.flagged[:max_slices]
        for start in range(0, len(flagged), 3):
            fig = Figure(figsize=(8.27, 11.69))
            for row, i in enumerate(flagged[start : start + 3]):
                s, r, d = report.slices[i], report.results[i], report.decisions[i]
                image = s.display_image()
                ax = fig.add_subplot(3, 2, 2 * row + 1)
                ax.imshow(image, cmap="gray")
                ax.set_title(f"slice {i + 1}: {s.label}", fontsize=8)
                ax.axis("off")
                ax = fig.add_subplot(3, 2, 2 * row + 2)
                ax.imshow(image, cmap="gray")
                cam = cam_for(i)
                if cam is not None:
                    ax.imshow(cam, cmap="jet", alpha=0.4, vmin=0, vmax=1)
                mark = report.marks.get(i)
                ax.set_title(f"p = {r.probability:.3f} (threshold {report.point.threshold:.3f})"
                             + (" - second look" if d.second_look else "")
                             + (f" - reader: {mark.verdict}" if mark else ""), fontsize=8)
                ax.axis("off")
            fig.text(0.08, 0.03, DISCLAIMER, fontsize=7, color="darkred")
            pdf.savefig(fig)
    atomic_write_bytes(path, buffer.getvalue())
