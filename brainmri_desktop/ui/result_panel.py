"""The right dock: what the model said about the current slice, how it was decided, the reader's mark and note.

The note is saved as typed: a short pause in typing, leaving the field, or moving to another slice or series saves it
to the slice it was typed for (the panel remembers which), so no note is lost by moving on.
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import QSettings, QTimer, Signal
from PySide6.QtWidgets import (QHBoxLayout, QInputDialog, QLabel, QLineEdit, QPushButton, QTextBrowser, QVBoxLayout,
                               QWidget)

from ..core.manifest import Manifest
from ..core.model_choice import gradcam_caveat, gradcam_measured
from ..core.review import Mark, system_reader
from ..core.session import Session
from ..core.wording import DISCLAIMER


NOTE_PAUSE_MS = 800  # a pause in typing this long saves the note
READER_KEY = "reader_name"


def reader_name(settings: QSettings) -> str | None:
    """The reader name set once in the window's settings; None: marks take the system user name."""
    return str(settings.value(READER_KEY, "") or "").strip() or None


def ask_reader_name(parent: QWidget, settings: QSettings) -> None:
    system = system_reader() or "none known"
    name, ok = QInputDialog.getText(parent, "Reader name", "Name recorded with your review marks\n"
                                    f"(left empty: the system user name, {system}):", text=reader_name(settings) or "")
    if ok:
        settings.setValue(READER_KEY, name.strip())


class ResultPanel(QWidget):
    marked = Signal(str)  # agree | disagree
    cleared = Signal()
    noteEdited = Signal(object, int, str)  # the session and the slice the note was typed for, the note

    def __init__(self, parent=None):
        super().__init__(parent)
        self.text = QTextBrowser()
        self.text.setObjectName("results")
        self.agree = QPushButton("Agree (A)")
        self.disagree = QPushButton("Disagree (D)")
        self.agree.clicked.connect(lambda: self.marked.emit("agree"))
        self.disagree.clicked.connect(lambda: self.marked.emit("disagree"))
        self.clear = QPushButton("Clear (C)")
        self.clear.setToolTip("Take back this slice's mark and note")
        self.clear.clicked.connect(self.cleared.emit)
        self.note = QLineEdit()
        self.note.setPlaceholderText("note for this slice (saved as you type)")
        self._note_for: tuple[Session, int] | None = None
        self._note_timer = QTimer(self, singleShot=True, interval=NOTE_PAUSE_MS, timeout=self.commit_note)
        self.note.textEdited.connect(lambda _text: self._note_timer.start())
        self.note.editingFinished.connect(self.commit_note)
        lay = QVBoxLayout(self)
        lay.addWidget(self.text)
        buttons = QHBoxLayout()
        buttons.addWidget(self.agree)
        buttons.addWidget(self.disagree)
        buttons.addWidget(self.clear)
        lay.addLayout(buttons)
        lay.addWidget(self.note)
        disclaimer = QLabel(DISCLAIMER)
        disclaimer.setWordWrap(True)
        disclaimer.setStyleSheet("color: #e0a060;")
        lay.addWidget(disclaimer)

    def show_note(self, session: Session, index: int) -> None:
        """Shows this slice's note, after saving a note still pending for the slice shown before."""
        self.commit_note()
        mark = session.marks.get(index)
        self.note.setText(mark.note if mark else "")
        self._note_for = (session, index)

    def commit_note(self) -> None:
        """Saves the note typed so far, if it was typed since the last save."""
        self._note_timer.stop()
        if self.note.isModified():
            self.note.setModified(False)
            if self._note_for is not None:
                self.noteEdited.emit(*self._note_for, self.note.text())

    def show_slice(self, session: Session, index: int, identity: bool, device: str, run_seconds: float) -> None:
        self.text.setHtml(result_html(session, index, identity, device, run_seconds))


def result_html(session: Session, i: int, identity: bool, device: str, run_seconds: float) -> str:
    s = session.slices[i]
    rows = [f"<h3>Slice {i + 1} of {len(session.slices)}</h3><p>{s.label}</p>"]
    if identity and s.patient.name:
        rows.append(f"<p>Patient: {s.patient.name} ({s.patient.patient_id})</p>")
    r, d, m = session.results.get(i), session.decision(i), session.manifest
    if i in session.errors:
        rows.append(f"<p>This slice could not be prepared for the model: {session.errors[i]}</p>")
        return "".join(rows)
    if r is None or d is None or m is None:
        rows.append("<p><i>waiting for the model...</i></p>")
        return "".join(rows)
    point = session.point
    if d.out_of_scope and not session.include_out_of_scope:
        decision = "<b style='color:#909090'>outside the model's scope</b>: not flagged whatever its probability"
    elif d.second_look:
        decision = "<b style='color:#e0c040'>needs a second look</b> (augmentations disagree)"
    elif d.flagged:
        decision = "<b style='color:#ff6050'>flagged</b>"
    else:
        decision = "<b style='color:#60d080'>not flagged</b>"
    if d.warning:
        decision += f"<br><b style='color:#e0c040'>{escape(d.warning)}</b> (flagged all the same: an unusual look is no reason to hide a confident finding)"
    if d.out_of_scope:
        included = " (included by its probability at the reader's request)" if session.include_out_of_scope else ""
        decision += f"<br>Outside what the model was trained on: <i>{escape(d.out_of_scope)}</i>{included}"
    perf = ""
    if point.sensitivity is not None and point.specificity is not None:
        perf = f"; at this point the trainer measured sensitivity {point.sensitivity:.2f}, specificity {point.specificity:.2f}"
    mark = session.marks.get(i)
    rows += [
        f"<p>Tumour probability: <b>{r.probability:.3f}</b> "
        f"(range {r.p_low:.3f}-{r.p_high:.3f} over {r.augmentations} view{'s' if r.augmentations > 1 else ''})</p>",
        f"<p>Threshold: {point.threshold:.3f} ({point.method_in_words}, chosen on {point.data}{perf})</p>",
        f"<p>Decision: {decision}</p>",
        f"<p>Model: {m.name} (id {m.id}, version {m.version}); {device}; last run {run_seconds:.1f} s</p>",
        f"<p>{gradcam_note(m)}</p>",
        f"<p>{mark_html(mark, m.id)}</p>",
    ]
    return "".join(rows)


def mark_html(mark: Mark | None, model_id: str = "") -> str:
    """The reader's mark; one made on another model's result says so, since it judged that result, not this one."""
    if mark is None:
        return "Reader: not reviewed"
    byline = escape(mark.byline)
    other = (f" - <b style='color:#e0c040'>made on the result of model {escape(mark.model)}</b>, not the one shown"
             if mark.model and model_id and mark.model != model_id else "")
    if not mark.verdict:
        return f"Reader: not reviewed; note {byline}{other}"
    return f"Reader: <b>{mark.verdict}</b> ({byline}){other}"


def gradcam_note(manifest: Manifest) -> str:
    """What the trainer measured about this model's Grad-CAM, and the caveat every export carries with the map."""
    measured, caveat = escape(gradcam_measured(manifest)), gradcam_caveat(manifest)
    if caveat is None:
        return measured + "."
    warning = f"<b style='color:#e0c040'>{escape(caveat)}</b>."
    return f"{measured} - {warning}" if measured else warning
