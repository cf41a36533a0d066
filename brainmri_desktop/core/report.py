"""The study report: a per-slice CSV and a PDF of the slices to look at with their Grad-CAM overlays and the reader's
marks.

The PDF pictures every flagged slice, and every unflagged one with a second look or a reader's mark (a reader who
agreed with an unflagged slice must find it there), up to `PDF_MAX_SLICES` (three to a page); past that it keeps the
marked ones, then the most probable, and says on its first page how many it left out and why. Every page carries the
disclaimer, and the caveat on the model's Grad-CAM map when it has one (core.model_choice.gradcam_caveat). Each mark
appears with its reader and time, beside its slice and in a list of every mark (flagged or not). Patient identity goes into an export only when
the reader asks for it. Both files are written atomically.
"""

from __future__ import annotations

import csv
import io
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .inference import SliceResult
from .io.slices import Slice
from .manifest import Manifest, OperatingPoint
from .model_choice import gradcam_caveat
from .review import Mark
from .session import SLICE_VIEW, Decision, Session
from .wording import DISCLAIMER

# Flagged slices shown with their maps: 100 pages. A study flagging more is a study to read in the viewer; the CSV
# lists every slice.
PDF_MAX_SLICES = 300
PER_PAGE = 3
MARKS_PER_PAGE = 40
CSV_COLUMNS = ["slice", "file", "frame", "model_id", "model_version", "probability", "threshold", "flagged",
               "second_look", "tta_std", "augmentations", "review", "note", "reader", "marked_at", "out_of_scope",
               "warning", "disclaimer"]  # on every row: a table opened alone, or cut, still says what it is
A4 = (8.27, 11.69)


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
    include_out_of_scope: bool = False  # the reader's choice: out-of-scope slices flagged by their probability too

    @classmethod
    def of(cls, session: Session, device: str = "", include_identity: bool = False) -> "StudyReport":
        return cls(list(session.slices), dict(session.results), session.decisions(), session.manifest, session.point,
                   dict(session.marks), device, include_identity, session.include_out_of_scope)

    @property
    def flagged(self) -> list[int]:
        return [i for i, d in sorted(self.decisions.items()) if d.flagged]

    @property
    def out_of_scope(self) -> list[int]:
        """Slices outside what the model was trained on (core.scope)."""
        return [i for i, d in sorted(self.decisions.items()) if d.out_of_scope]

    def scope_line(self) -> str:
        n = len(self.out_of_scope)
        if not n:
            return "Outside what the model was trained on: none"
        how = "flagged by their probability, as the reader asked" if self.include_out_of_scope else "not flagged"
        return (f"Outside what the model was trained on: {n} slice{'s' if n != 1 else ''} ({how}; the CSV gives "
                "each one's reason)")

    @property
    def for_review(self) -> list[int]:
        """Slices with a result that are flagged, need a second look, or carry the reader's mark."""
        return [i for i, d in sorted(self.decisions.items()) if d.flagged or d.second_look or i in self.marks]

    def pdf_slices(self, max_slices: int = PDF_MAX_SLICES) -> list[int]:
        """The slices the PDF pictures, in slice order: every `for_review` slice, or `max_slices` of them (the
        marked first, then the most probable)."""
        wanted = self.for_review
        if len(wanted) <= max_slices:
            return wanted
        return sorted(sorted(wanted, key=lambda i: (i not in self.marks, -self.results[i].probability))[:max_slices])


def write_csv(report: StudyReport, path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for i, s in enumerate(report.slices):
        r, d = report.results.get(i), report.decisions.get(i)
        mark = report.marks.get(i)
        writer.writerow({
            "slice": i + 1, "file": s.path.name, "frame": s.frame, "model_id": report.manifest.id,
            "model_version": report.manifest.version,
            "probability": f"{r.probability:.4f}" if r else "", "threshold": f"{report.point.threshold:.4f}" if r else "",
            "flagged": int(d.flagged) if d else "", "second_look": int(d.second_look) if d else "",
            "tta_std": f"{r.tta_std:.4f}" if r else "", "augmentations": r.augmentations if r else "",
            "review": mark.verdict if mark else "", "note": mark.note if mark else "",
            "reader": mark.reader if mark else "", "marked_at": mark.time if mark else "",
            "out_of_scope": (d.out_of_scope or "") if d else "", "warning": (d.warning or "") if d else "",
            "disclaimer": DISCLAIMER,
        })
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def mark_line(mark: Mark) -> str:
    verdict = f"reader: {mark.verdict}" if mark.verdict else "reader's note"
    return f"{verdict} ({mark.byline})"


def write_pdf_with_maps(report: StudyReport, path: Path, session: Session, gradcam=None,
                        max_slices: int = PDF_MAX_SLICES) -> Iterator[dict[tuple[int, str], np.ndarray]]:
    """The PDF as the window and `brainmri predict --report` write it: the maps of the slices it pictures that the
    session has not cached are computed with `gradcam` (None: only the cached ones are drawn) and yielded, a chunk at
    a time, for the caller to keep; then the file is written."""
    slices = report.pdf_slices(max_slices)
    maps = {k: session.cams[k] for i in slices if (k := (i, SLICE_VIEW)) in session.cams}
    if gradcam is not None:
        for part in session.cam_chunks(gradcam, session.missing_cams(slices), SLICE_VIEW):
            maps.update(part)
            yield part
    write_pdf(report, path, lambda i: maps.get((i, SLICE_VIEW)), max_slices)


def write_pdf(report: StudyReport, path: Path, cam_for: Callable[[int], np.ndarray | None],
              max_slices: int = PDF_MAX_SLICES) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_pdf import PdfPages

    shown = report.pdf_slices(max_slices)
    buffer = io.BytesIO()
    with PdfPages(buffer) as pdf:
        pdf.savefig(_summary_page(report, shown, max_slices))
        for start in range(0, len(shown), PER_PAGE):
            pdf.savefig(_slice_page(report, shown[start : start + PER_PAGE], cam_for))
        marks = sorted(report.marks.items())
        for start in range(0, len(marks), MARKS_PER_PAGE):
            pdf.savefig(_marks_page(marks[start : start + MARKS_PER_PAGE], start == 0))
    atomic_write_bytes(path, buffer.getvalue())


def _summary_page(report: StudyReport, shown: list[int], max_slices: int):
    from matplotlib.figure import Figure

    m, flagged = report.manifest, report.flagged
    fig = Figure(figsize=A4)
    probs = [r.probability for r in report.results.values()]
    lines = [
        "BrainMRI triage report",
        "",
        f"Date: {datetime.now():%Y-%m-%d %H:%M}",
        f"Model: {m.name} (id {m.id}, version {m.version})",
        f"Threshold: {report.point.threshold:.3f} ({report.point.method_in_words}, chosen on {report.point.data})",
        f"Slices flagged: {len(flagged)} of {len(report.slices)}"
        + (f"; highest probability {max(probs):.3f}" if probs else ""),
        report.scope_line(),
        f"Computed on: {report.device}",
    ]
    wanted = report.for_review
    others = len([i for i in shown if i not in flagged])
    lines += [f"Pictured with their maps: {len(shown)} slices"
              + (f" ({others} not flagged, with a second look or a reader's mark)" if others else "")]
    if len(shown) < len(wanted):
        lines += [f"{len(wanted) - len(shown)} left out (the marked and the most probable are kept)",
                  f"to keep this report to {max_slices // PER_PAGE} pages of slices. "
                  "The CSV export lists every slice."]
    if caveat := gradcam_caveat(m):
        lines += ["", *textwrap.wrap(caveat + ".", 90)]
    verdicts = [mk.verdict or "note only" for mk in report.marks.values()]
    if verdicts:
        counts = ", ".join(f"{v} {verdicts.count(v)}" for v in ("agree", "disagree", "note only") if v in verdicts)
        lines += ["", f"Reader marks: {len(verdicts)} ({counts}); each with its reader and time on the last pages"]
    if report.include_identity and report.slices:
        p = report.slices[0].patient
        lines += [f"Patient: {p.name}  ID: {p.patient_id}  Accession: {p.accession}"]
    fig.text(0.08, 0.92, "\n".join(lines), va="top", fontsize=11, family="sans-serif", parse_math=False)
    fig.text(0.08, 0.08, DISCLAIMER, fontsize=9, wrap=True, color="darkred")
    return fig


def _slice_page(report: StudyReport, indices: list[int], cam_for: Callable[[int], np.ndarray | None]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=A4)
    for row, i in enumerate(indices):
        s, r, d = report.slices[i], report.results[i], report.decisions[i]
        image = s.display_image()
        ax = fig.add_subplot(PER_PAGE, 2, 2 * row + 1)
        ax.imshow(image, cmap="gray")
        ax.set_title(f"slice {i + 1}: {s.label}", fontsize=8, parse_math=False)  # a file name may hold a $
        ax.axis("off")
        mark = report.marks.get(i)
        if mark is not None:
            lines = textwrap.wrap(mark_line(mark), 110)
            lines += textwrap.wrap(f"note: {textwrap.shorten(mark.note, 200)}", 110) if mark.note else []
            ax.text(0, -0.04, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=7, parse_math=False)
        ax = fig.add_subplot(PER_PAGE, 2, 2 * row + 2)
        ax.imshow(image, cmap="gray")
        cam = cam_for(i)
        if cam is not None:
            ax.imshow(cam, cmap="jet", alpha=0.4, vmin=0, vmax=1)
        ax.set_title(f"p = {r.probability:.3f} (threshold {report.point.threshold:.3f})"
                     + ("" if d.flagged else " - not flagged")
                     + (" - second look" if d.second_look else "")
                     + (" - outside the model's scope" if d.out_of_scope else "")
                     + (f"\n{d.warning}" if d.warning else ""), fontsize=8)
        ax.axis("off")
    caveat = gradcam_caveat(report.manifest)
    fig.text(0.08, 0.03, DISCLAIMER + (f"\n{caveat}." if caveat else ""), fontsize=7, color="darkred")
    return fig


def _marks_page(marks: list[tuple[int, Mark]], first: bool):
    from matplotlib.figure import Figure

    fig = Figure(figsize=A4)
    lines = ["Reader marks" + ("" if first else " (continued)"), ""]
    for i, mark in marks:
        note = f": {textwrap.shorten(mark.note, 60)}" if mark.note else ""
        lines.append(f"slice {i + 1}  {mark.verdict or 'note only'} ({mark.byline}){note}")
    fig.text(0.06, 0.95, "\n".join(lines), va="top", fontsize=8, family="sans-serif", parse_math=False)
    fig.text(0.08, 0.03, DISCLAIMER, fontsize=7, color="darkred")
    return fig
