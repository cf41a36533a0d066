"""Talking DICOMweb to a server through `dicomweb-client`: QIDO-RS searches, WADO-RS retrieval, STOW-RS storage.

Every failure of the server or the network becomes one PacsError that says what went wrong in words (down, too slow,
refused the credentials, answered something that is not DICOMweb); nothing here writes to disk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, TypeVar

import pydicom
import requests
import urllib3
from dicomweb_client import DICOMwebClient

from ..core.errors import PacsError
from .settings import ServerSettings

# dicomweb-client and urllib3 log the URLs they request at debug level, and a search URL carries its terms, such as
# a patient's ID: those loggers stay above debug whatever the application's level.
for _name in ("dicomweb_client", "urllib3.connectionpool"):
    logging.getLogger(_name).setLevel(logging.INFO)

T = TypeVar("T")
AS_STORED = (("application/dicom", "*"),)  # the instances as the server holds them, without transcoding
_HTTP_REASONS = {
    401: "refused the credentials (HTTP 401): check the user name and password or token",
    403: "refused access (HTTP 403): the account may not read or store these studies",
    404: "has no such resource (HTTP 404): check the URL's DICOMweb root and the UID",
}


def _http_reason(exc: requests.HTTPError) -> str:
    status = exc.response.status_code if exc.response is not None else None
    if status in _HTTP_REASONS:
        return _HTTP_REASONS[status]
    return f"answered HTTP {status}" + (" (a server error)" if status and status >= 500 else "")


class Server(Protocol):
    """What query, retrieve and send need of a server: PacsClient (DICOMweb) and dimse.DimseClient provide it."""

    def error(self, reason: str) -> PacsError: ...
    def call(self, doing: str, fn: Callable[[], T]) -> T: ...
    def search_studies(self, filters: dict, fields: Sequence[str] = (), limit: int | None = None) -> list[dict]: ...
    def search_series(self, study_uid: str, fields: Sequence[str] = ()) -> list[dict]: ...
    def iter_series(self, study_uid: str, series_uid: str) -> Iterator[pydicom.Dataset]: ...
    def store(self, datasets: Sequence[pydicom.Dataset], study_uid: str) -> None: ...


class PacsClient:
    """One DICOMweb server. Methods raise PacsError, never a library's exception."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        session = requests.Session()
        session.trust_env = False  # a proxy from the environment must not see hospital traffic or credentials
        if settings.token:
            session.headers["Authorization"] = f"Bearer {settings.token}"
        elif settings.username:
            session.auth = (settings.username, settings.password)
        # Reads of 64 KiB rather than its 1 MB: an instance is handed on (and progress and cancel seen) as soon as it
        # has arrived, not when a megabyte more has.
        self._web = DICOMwebClient(settings.url, session=session, timeout=settings.timeout_s, chunk_size=1 << 16)
        # Its default retries every failure five times with exponential waits: a server that is down would keep the
        # reader waiting for minutes before the message. One attempt; the reader can try again.
        self._web.set_http_retry_params(retry=False)

    def __repr__(self) -> str:
        return f"PacsClient({self.settings.public_url})"

    def error(self, reason: str) -> PacsError:
        return PacsError(self.settings.public_url, reason)

    @contextmanager
    def _translated(self, doing: str):
        try:
            yield
        except PacsError:
            raise
        except requests.Timeout:
            raise self.error(f"no answer within {self.settings.timeout_s:g} s while {doing}") from None
        except requests.ConnectionError as exc:
            if any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args):
                # a stream that stalls mid-body: requests reports it as a connection error
                raise self.error(f"no answer within {self.settings.timeout_s:g} s while {doing}") from None
            raise self.error(f"cannot be reached while {doing} (is the server running, is the URL right?)") from None
        except requests.HTTPError as exc:
            raise self.error(f"{_http_reason(exc)} while {doing}") from None
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, EOFError,
                pydicom.errors.InvalidDicomError) as exc:
            # JSON that does not parse (requests' JSONDecodeError is a ValueError too), multipart without parts,
            # parts that are not DICOM: not a DICOMweb answer.
            raise self.error(f"answered something that is not DICOMweb while {doing} ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise self.error(f"network failure while {doing} ({type(exc).__name__})") from None

    def call(self, doing: str, fn: Callable[[], T]) -> T:
        with self._translated(doing):
            return fn()

    def search_studies(self, filters: dict, fields: Sequence[str] = (), limit: int | None = None) -> list[dict]:
        result = self.call("searching for studies", lambda: self._web.search_for_studies(
            search_filters=filters, fields=list(fields) or None, limit=limit))
        return _json_list(self, result, "searching for studies")

    def search_series(self, study_uid: str, fields: Sequence[str] = ()) -> list[dict]:
        result = self.call("listing the study's series", lambda: self._web.search_for_series(
            study_instance_uid=study_uid, fields=list(fields) or None))
        return _json_list(self, result, "listing the study's series")

    def iter_series(self, study_uid: str, series_uid: str) -> Iterator[pydicom.Dataset]:
        """The series' instances one by one as they arrive; closing the iterator closes the connection."""
        doing = "retrieving a series"
        with self._translated(doing):
            for ds in self._web.iter_series(study_uid, series_uid, media_types=AS_STORED):
                if not isinstance(ds, pydicom.Dataset) or "SOPInstanceUID" not in ds:
                    raise self.error(f"answered something that is not DICOMweb while {doing} (a part without a "
                                     "SOP Instance UID)")
                yield ds

    def store(self, datasets: Sequence[pydicom.Dataset], study_uid: str) -> None:
        """STOW-RS into the study; a response that lists failed instances is an error."""
        response = self.call("storing results", lambda: self._web.store_instances(datasets, study_uid))
        failed = response.get("FailedSOPSequence") if isinstance(response, pydicom.Dataset) else None
        if failed:
            raise self.error(f"refused {len(failed)} of {len(datasets)} instances while storing results")


def _json_list(client: PacsClient, result, doing: str) -> list[dict]:
    if not isinstance(result, list) or not all(isinstance(item, dict) for item in result):
        raise client.error(f"answered something that is not DICOMweb while {doing} (not a list of datasets)")
    return result
