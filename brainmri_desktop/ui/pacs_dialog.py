"""File > Open from PACS: the dialog that searches a server and retrieves a study into the cache.

The server list lives in the settings as URL, authentication kind, user name and timeout; a password or token is typed
once per run of the application (kept in memory only) or read from BRAINMRI_PACS_PASSWORD / BRAINMRI_PACS_TOKEN, and
never reaches the settings, a log or a message. Searching and retrieving run in superqt workers; a retrieve cancelled
halfway leaves nothing half-written in the cache (pacs.cache). ui.pacs_controller opens the retrieved series through
the window's own open path, as folders.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout)
from superqt.utils import thread_worker

from ..core.errors import BrainMRIError, CancelledError
from ..pacs.cache import StudyCache
from ..pacs.client import PacsClient, Server
from ..pacs.dimse import DimseClient, DimseSettings, is_dimse_url
from ..pacs.query import StudyQuery, StudySummary, find_studies
from ..pacs.retrieve import retrieve_study
from ..pacs.settings import DEFAULT_TIMEOUT_S, ENV_PASSWORD, ENV_TOKEN, ServerSettings

SERVERS_KEY = "pacs/servers"
AUTH_KINDS = {"none": "No authentication", "basic": "User and password", "bearer": "Bearer token"}
COLUMNS = ("Date", "Modalities", "Series", "Images", "Description", "Patient ID", "Patient name", "Accession")
IDENTITY_COLUMNS = (5, 6, 7)


@dataclass(frozen=True)
class SavedServer:
    """One entry of the server list: everything but the secret."""

    url: str
    auth: str = "none"
    username: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S

    def client(self, typed_secret: str = "") -> Server:
        """A client for this server; the secret is the one typed, else the environment's. Raises ValueError."""
        if is_dimse_url(self.url):
            return DimseClient(DimseSettings.from_url(self.url, timeout_s=self.timeout_s))
        if self.auth == "bearer":
            return PacsClient(ServerSettings(self.url, token=typed_secret or os.environ.get(ENV_TOKEN, ""),
                                             timeout_s=self.timeout_s))
        if self.auth == "basic":
            return PacsClient(ServerSettings(self.url, self.username, typed_secret or os.environ.get(ENV_PASSWORD, ""),
                                             timeout_s=self.timeout_s))
        return PacsClient(ServerSettings(self.url, timeout_s=self.timeout_s))


def saved_servers(settings: QSettings) -> list[SavedServer]:
    try:
        entries = json.loads(settings.value(SERVERS_KEY, "[]") or "[]")
        return [SavedServer(str(e["url"]), str(e.get("auth", "none")), str(e.get("username", "")),
                            float(e.get("timeout_s", DEFAULT_TIMEOUT_S))) for e in entries]
    except (TypeError, ValueError, KeyError, AttributeError):
        return []  # a damaged list: the reader types the server again


def remember_server(settings: QSettings, server: SavedServer) -> None:
    """Puts the server first in the list (URLs with credentials in them are stored without those)."""
    if not is_dimse_url(server.url):
        server = SavedServer(ServerSettings(server.url).public_url, server.auth, server.username, server.timeout_s)
    kept = [server] + [s for s in saved_servers(settings) if s.url != server.url]
    settings.setValue(SERVERS_KEY, json.dumps([asdict(s) for s in kept]))


@thread_worker
def _search(client: Server, query: StudyQuery) -> list[StudySummary]:
    return find_studies(client, query)


@thread_worker
def _retrieve(client: Server, study_uid: str, progress, cancelled: threading.Event) -> list[Path]:
    return retrieve_study(client, StudyCache(), study_uid, progress=progress, cancel=cancelled.is_set).paths


class PacsDialog(QDialog):
    """Server, search form, result list, and retrieve with progress and Cancel. `retrieved` carries the series
    folders in the cache, the client and the study UID."""

    retrieved = Signal(list, object, str)
    retrieveProgress = Signal(int, int)  # emitted from the worker thread

    def __init__(self, settings: QSettings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Open from PACS")
        self.settings = settings
        self._secrets: dict[str, str] = {}  # URL -> password or token, for this run of the application only
        self.studies: list[StudySummary] = []
        self.worker = None
        self._cancelled = threading.Event()
        self._build()
        self._fill_servers()
        self.set_hide_identity(True)

    def _build(self) -> None:
        self.server = QComboBox(editable=True, objectName="pacsServer")
        self.server.lineEdit().setPlaceholderText("http://host:8042/dicom-web or dicom://AE_TITLE@host:port")
        self.auth = QComboBox(objectName="pacsAuth")
        for kind, label in AUTH_KINDS.items():
            self.auth.addItem(label, kind)
        self.user = QLineEdit(objectName="pacsUser")
        self.secret = QLineEdit(objectName="pacsSecret", echoMode=QLineEdit.Password)
        self.secret.setPlaceholderText(f"not stored; empty: {ENV_PASSWORD} or {ENV_TOKEN}")
        self.patient, self.date, self.modality, self.accession = (QLineEdit() for _ in range(4))
        self.date.setPlaceholderText("YYYYMMDD or YYYYMMDD-YYYYMMDD")
        self.modality.setPlaceholderText("MR")
        form = QFormLayout()
        for label, widget in (("Server", self.server), ("Authentication", self.auth), ("User", self.user),
                              ("Password or token", self.secret), ("Patient ID", self.patient),
                              ("Study date", self.date), ("Modality", self.modality), ("Accession", self.accession)):
            form.addRow(label, widget)
        self.search_button = QPushButton("Search", objectName="pacsSearch", default=True)
        self.table = QTableWidget(0, len(COLUMNS), objectName="pacsStudies")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.retrieve_button = QPushButton("Retrieve and open", objectName="pacsRetrieve", enabled=False)
        self.cancel_button = QPushButton("Cancel", objectName="pacsCancel", enabled=False)
        self.progress = QProgressBar(objectName="pacsProgress", visible=False)
        self.message = QLabel(objectName="pacsMessage", wordWrap=True)
        buttons = QHBoxLayout()
        for widget in (self.search_button, self.progress, self.retrieve_button, self.cancel_button):
            buttons.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.table)
        layout.addWidget(self.message)
        self.resize(900, 560)
        self.server.currentIndexChanged.connect(self._server_chosen)
        self.search_button.clicked.connect(self.search)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.doubleClicked.connect(self.retrieve)
        self.retrieve_button.clicked.connect(self.retrieve)
        self.cancel_button.clicked.connect(self.cancel)
        self.retrieveProgress.connect(self._progress)

    # ---------------------------------------------------------------- servers
    def _fill_servers(self) -> None:
        self.server.blockSignals(True)
        self.server.clear()
        for saved in saved_servers(self.settings):
            self.server.addItem(saved.url, saved)
        self.server.blockSignals(False)
        self._server_chosen()

    def _server_chosen(self, *_) -> None:
        saved = self.server.currentData()
        if isinstance(saved, SavedServer):
            self.auth.setCurrentIndex(max(0, self.auth.findData(saved.auth)))
            self.user.setText(saved.username)
            self.secret.setText(self._secrets.get(saved.url, ""))

    def chosen_server(self) -> SavedServer:
        saved = self.server.currentData()
        timeout = saved.timeout_s if isinstance(saved, SavedServer) else DEFAULT_TIMEOUT_S
        return SavedServer(self.server.currentText().strip(), self.auth.currentData(), self.user.text().strip(), timeout)

    def _client(self) -> Server | None:
        server = self.chosen_server()
        try:
            client = server.client(self.secret.text())
        except ValueError as exc:
            self.show_message(str(exc))
            return None
        if self.secret.text():
            self._secrets[server.url] = self.secret.text()
        return client

    # ----------------------------------------------------------------- search
    def search(self) -> None:
        if self.worker is not None:
            return
        try:
            query = StudyQuery(self.patient.text().strip(), self.date.text().strip(), self.modality.text().strip(),
                               self.accession.text().strip())
        except ValueError as exc:
            self.show_message(str(exc))
            return
        client = self._client()
        if client is None:
            return
        server = self.chosen_server()
        self.show_message("Searching...")
        self._start(_search(client, query, _ignore_errors=True),
                    lambda studies: self._found(studies, server))

    def _found(self, studies: list[StudySummary], server: SavedServer) -> None:
        remember_server(self.settings, server)
        self.studies = studies
        self.table.setRowCount(len(studies))
        for row, s in enumerate(studies):
            count = lambda n: "?" if n is None else str(n)  # noqa: E731
            cells = (s.date, ",".join(s.modalities), count(s.series_count), count(s.instance_count), s.description,
                     s.patient_id, s.patient_name, s.accession)
            for column, value in enumerate(cells):
                self.table.setItem(row, column, QTableWidgetItem(value))
        self.show_message(f"{len(studies)} studies" if studies else "No studies match")
        if studies:
            self.table.selectRow(0)

    def set_hide_identity(self, hide: bool) -> None:
        for column in IDENTITY_COLUMNS:
            self.table.setColumnHidden(column, hide)

    # --------------------------------------------------------------- retrieve
    def selected_study(self) -> StudySummary | None:
        rows = self.table.selectionModel().selectedRows()
        return self.studies[rows[0].row()] if rows else None

    def retrieve(self, *_) -> None:
        study = self.selected_study()
        if self.worker is not None or study is None:
            return
        client = self._client()
        if client is None:
            return
        self._cancelled = threading.Event()
        self.progress.setRange(0, max(study.instance_count or 0, 1))
        self.progress.setValue(0)
        self.progress.show()
        self.show_message("Retrieving...")
        worker = _retrieve(client, study.uid, self.retrieveProgress.emit, self._cancelled, _ignore_errors=True)
        self._start(worker, lambda paths: self._retrieved(paths, client, study.uid))
        self.cancel_button.setEnabled(True)

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _retrieved(self, paths: list[Path], client: Server, study_uid: str) -> None:
        self.show_message(f"Retrieved {len(paths)} instances")
        self.accept()
        self.retrieved.emit(sorted({p.parent for p in paths}), client, study_uid)

    def cancel(self) -> None:
        self._cancelled.set()

    def reject(self) -> None:
        self.cancel()
        super().reject()

    # ---------------------------------------------------------------- workers
    def _start(self, worker, done) -> None:
        self.worker = worker
        worker.returned.connect(done)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self._update_buttons()
        worker.start()

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, CancelledError):
            self.show_message("Retrieve cancelled; nothing half-written was kept")
        elif isinstance(exc, BrainMRIError):
            self.show_message(str(exc))
        else:
            self.show_message(f"The server's answer could not be used ({type(exc).__name__})")

    def _finished(self) -> None:
        self.worker = None
        self.progress.hide()
        self.cancel_button.setEnabled(False)
        self._update_buttons()

    def _update_buttons(self) -> None:
        idle = self.worker is None
        self.search_button.setEnabled(idle)
        self.retrieve_button.setEnabled(idle and self.selected_study() is not None)

    def show_message(self, text: str) -> None:
        self.message.setText(text)
