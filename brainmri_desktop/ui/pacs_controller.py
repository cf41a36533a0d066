"""The window's PACS actions: File > Open from PACS (the dialog, ui.pacs_dialog, loaded when first asked for) and Send
results to PACS, which stores a structured report of the series shown (optionally with burnt-in Grad-CAM captures of
its flagged slices) back into the study it was retrieved from, in a superqt worker.

The PACS libraries (pynetdicom, highdicom, dicomweb-client: 0.7 s to import) load on first use, not with the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from superqt.utils import thread_worker

from ..core.session import Session
from ..pacs.findings import TriageFindings, session_findings

if TYPE_CHECKING:
    from ..pacs.client import Server
    from .pacs_dialog import PacsDialog


@dataclass(frozen=True)
class PacsOrigin:
    """Where the open study came from: the series folders retrieved into the cache, the server and the study."""

    folders: frozenset[Path]
    client: Server
    study_uid: str

    def holds(self, session: Session) -> bool:
        return bool(session.slices) and all(s.path.parent in self.folders for s in session.slices)


@thread_worker
def _send(client: Server, findings: TriageFindings, where: str, session: Session | None = None, gradcam=None) -> str:
    """Stores the report (with the flagged slices' captures when `session` is given); the line to show."""
    from ..pacs.send import flagged_overlays, send_results, sent_message

    overlays = flagged_overlays(session, gradcam, findings) if session is not None else {}
    return sent_message(findings, send_results(client, findings, overlays), where)


class PacsController(QObject):
    """The window's PACS actions: opens the dialog, remembers where the open study came from, and sends its results
    back (a structured report, optionally with burnt-in Grad-CAM captures of the flagged slices) in a worker."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.dialog: PacsDialog | None = None
        self.origin: PacsOrigin | None = None
        self.send_action: QAction | None = None
        self.include_overlays = False
        self.send_worker = None
        t = window.triage
        for signal in (t.started, t.runFinished, t.loaded):
            signal.connect(self.update_actions)

    def open_dialog(self) -> PacsDialog:
        if self.dialog is None:
            from .pacs_dialog import PacsDialog

            self.dialog = PacsDialog(self.window.settings, self.window)
            self.dialog.retrieved.connect(self._retrieved)
            self.window.bar.hide_identity.toggled.connect(self.dialog.set_hide_identity)
        self.dialog.set_hide_identity(self.window.bar.hide_identity.isChecked())
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def _retrieved(self, folders: list[Path], client: Server, study_uid: str) -> None:
        self.origin = PacsOrigin(frozenset(folders), client, study_uid)
        self.window.open_paths(folders)

    def watch(self, send_action: QAction) -> None:
        self.send_action = send_action
        self.update_actions()

    def set_overlays(self, include: bool) -> None:
        self.include_overlays = bool(include)

    def can_send(self) -> bool:
        s = self.window.session
        return (self.origin is not None and s is not None and bool(s.results) and self.origin.holds(s)
                and self.window.triage.running is not s and self.send_worker is None)

    def update_actions(self, *_) -> None:
        if self.send_action is not None:
            self.send_action.setEnabled(self.can_send())

    def send_results(self) -> None:
        status = self.window.status
        if not self.can_send():
            status.setText("Open a study from a PACS and let the model finish before sending its results")
            return
        s, t = self.window.session, self.window.triage
        findings = session_findings(s)
        where = self.origin.client.settings.public_url
        if self.include_overlays:
            worker = _send(self.origin.client, findings, where, s, t.gradcam_for(s), _ignore_errors=True)
        else:
            worker = _send(self.origin.client, findings, where, _ignore_errors=True)
        worker.returned.connect(lambda text: status.setText(f"Sent to the PACS: {text}"))
        worker.errored.connect(lambda exc: status.setText(f"Results not sent to the PACS: {exc}"))
        worker.finished.connect(self._sent)
        self.send_worker = worker
        self.update_actions()
        status.setText("Sending the results to the PACS...")
        worker.start()

    def _sent(self) -> None:
        self.send_worker = None
        self.update_actions()
