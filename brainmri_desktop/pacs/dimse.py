"""DIMSE with pynetdicom (C-FIND, C-GET, C-STORE) for servers without DICOMweb.

`DimseClient` answers like `PacsClient`: searches give DICOM JSON datasets, `iter_series` yields instances as they
arrive, `store` sends results; so `query`, `retrieve` and `send` work unchanged on either. The server is written
`dicom://CALLED_AE@host:port`; this application calls as BRAINMRI unless told otherwise, and the server must know
that AE title (C-GET sends the instances back on the same association, so no port is opened here).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import pydicom
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind as FIND_MODEL,
    StudyRootQueryRetrieveInformationModelGet as GET_MODEL,
)

from ..core.errors import PacsError
from .settings import DEFAULT_TIMEOUT_S

logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its debug log prints whole identifiers (patient IDs)

T = TypeVar("T")
SCHEME = "dicom"
# What C-GET asks the server to send back (the SCP role on this side): image classes the loader reads, and reports.
GET_STORAGE_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Colour Secondary Capture
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
)
_PENDING = (0xFF00, 0xFF01)


@dataclass(frozen=True)
class DimseSettings:
    host: str
    port: int
    called_aet: str = "ANY-SCP"
    calling_aet: str = "BRAINMRI"
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_url(cls, url: str, calling_aet: str = "BRAINMRI", timeout_s: float = DEFAULT_TIMEOUT_S) -> "DimseSettings":
        parts = urlsplit(url.strip())
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme != SCHEME or not parts.hostname or not port:
            raise ValueError(f"not a DIMSE address (dicom://AE_TITLE@host:port): {url[:100]}")
        return cls(parts.hostname, port, unquote(parts.username or "") or "ANY-SCP", calling_aet, timeout_s)

    @property
    def public_url(self) -> str:
        return f"{SCHEME}://{self.called_aet}@{self.host}:{self.port}"


def is_dimse_url(url: str) -> bool:
    return url.strip().lower().startswith(f"{SCHEME}://")


class DimseClient:
    """One DIMSE peer; every method opens its own association and raises PacsError only."""

    def __init__(self, settings: DimseSettings):
        self.settings = settings

    def __repr__(self) -> str:
        return f"DimseClient({self.settings.public_url})"

    def error(self, reason: str) -> PacsError:
        return PacsError(self.settings.public_url, reason)

    def _no_answer(self, doing: str, started: float) -> PacsError:
        """pynetdicom gives an empty status both for a timeout and for a request the peer dropped (Orthanc does
        that for an AE title it does not know): the time taken tells them apart."""
        if time.monotonic() - started >= 0.9 * self.settings.timeout_s:
            return self.error(f"no answer within {self.settings.timeout_s:g} s while {doing}")
        return self.error(f"dropped the request while {doing} (does it know the calling AE title "
                          f"{self.settings.calling_aet}?)")

    def call(self, doing: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise self.error(f"answered something unusable while {doing} ({type(exc).__name__})") from None

    @contextmanager
    def _association(self, doing: str, contexts: Sequence[str], roles: Sequence[str] = (), handlers=None):
        ae = AE(ae_title=self.settings.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = self.settings.timeout_s
        for uid in contexts:
            ae.add_requested_context(uid)
        assoc = ae.associate(self.settings.host, self.settings.port, ae_title=self.settings.called_aet,
                             ext_neg=[build_role(uid, scp_role=True) for uid in roles] or None,
                             evt_handlers=handlers)
        if not assoc.is_established:
            if assoc.is_rejected:
                raise self.error(f"refused the association while {doing} (does it know the AE title "
                                 f"{self.settings.calling_aet}, and is its own {self.settings.called_aet}?)")
            raise self.error(f"cannot be reached while {doing} (is the server running, are host and port right?)")
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _find(self, doing: str, identifier: pydicom.Dataset, limit: int | None = None) -> list[dict]:
        found = []
        started = time.monotonic()
        with self._association(doing, [FIND_MODEL]) as assoc:
            for status, answer in assoc.send_c_find(identifier, FIND_MODEL):
                code = getattr(status, "Status", None)
                if code is None:
                    raise self._no_answer(doing, started)
                if code in _PENDING and answer is not None:
                    found.append(self.call(doing, answer.to_json_dict))
                elif code != 0x0000:
                    raise self.error(f"answered failure status 0x{code:04X} while {doing}")
        return found[:limit] if limit else found

    def search_studies(self, filters: dict, fields: Sequence[str] = (), limit: int | None = None) -> list[dict]:
        return self._find("searching for studies", _identifier("STUDY", fields, filters), limit)

    def search_series(self, study_uid: str, fields: Sequence[str] = ()) -> list[dict]:
        return self._find("listing the study's series",
                          _identifier("SERIES", fields, {"StudyInstanceUID": study_uid}))

    def iter_series(self, study_uid: str, series_uid: str) -> Iterator[pydicom.Dataset]:
        """C-GET: the server sends the instances back on the association; they are handed on as they arrive, and
        closing the iterator aborts the association."""
        doing = "retrieving a series"
        arrived: queue.Queue = queue.Queue()

        def on_store(event) -> int:
            ds = event.dataset
            ds.file_meta = event.file_meta
            arrived.put(ds)
            return 0x0000

        identifier = _identifier("SERIES", (), {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid})
        outcome: dict = {}
        started = time.monotonic()
        with self._association(doing, [GET_MODEL, *GET_STORAGE_CLASSES], GET_STORAGE_CLASSES,
                               [(evt.EVT_C_STORE, on_store)]) as assoc:
            def run() -> None:
                try:
                    for status, _ in assoc.send_c_get(identifier, GET_MODEL):
                        outcome["status"] = getattr(status, "Status", None)
                        outcome["failed"] = int(getattr(status, "NumberOfFailedSuboperations", 0) or 0)
                finally:
                    arrived.put(None)

            worker = threading.Thread(target=run, name="c-get", daemon=True)
            worker.start()
            finished = False
            try:
                while (ds := arrived.get()) is not None:
                    yield ds
                finished = True
            finally:
                if not finished:  # stopped early (cancel, a failed write): nothing more is wanted
                    assoc.abort()
                    # pynetdicom's C-GET loop notices the abort only at its next timeout; the daemon thread can
                    # finish on its own, as nothing it still receives is read
                    worker.join(1.0)
        status = outcome.get("status")
        if status is None:
            raise self._no_answer(doing, started)
        if status != 0x0000 or outcome.get("failed"):
            raise self.error(f"answered status 0x{status:04X} ({outcome.get('failed', 0)} instances not sent) "
                             f"while {doing}")

    def store(self, datasets: Sequence[pydicom.Dataset], study_uid: str) -> None:
        doing = "storing results"
        classes = sorted({str(ds.SOPClassUID) for ds in datasets})
        with self._association(doing, classes) as assoc:
            for ds in datasets:
                started = time.monotonic()
                status = assoc.send_c_store(ds)
                code = getattr(status, "Status", None)
                if code is None:
                    raise self._no_answer(doing, started)
                if code != 0x0000:
                    raise self.error(f"refused an instance (status 0x{code:04X}) while {doing}")


def _identifier(level: str, fields: Sequence[str], filters: dict) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in fields:
        setattr(ds, keyword, "")
    for keyword, value in filters.items():
        setattr(ds, keyword, value)
    return ds
