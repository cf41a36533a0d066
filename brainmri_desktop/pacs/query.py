"""Searching a server for studies (QIDO-RS) and the plain summaries a search gives back."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pydicom

from ..core.io.dicom_meta import int_or_none, text
from .client import Server

_DATE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
STUDY_FIELDS = ("StudyInstanceUID", "StudyDate", "StudyDescription", "ModalitiesInStudy", "AccessionNumber",
                "PatientID", "PatientName", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_FIELDS = ("SeriesInstanceUID", "Modality", "SeriesDescription", "SeriesNumber",
                 "NumberOfSeriesRelatedInstances")


def valid_uid(uid: str) -> bool:
    """A DICOM UID (digits and dots, at most 64 characters): the only strings used as cache folder names."""
    return len(uid) <= 64 and bool(_UID.match(uid))


@dataclass(frozen=True)
class StudyQuery:
    """What `brainmri pacs find` and the search form ask for; empty fields match everything."""

    patient_id: str = ""
    date: str = ""  # YYYYMMDD, or a range YYYYMMDD-YYYYMMDD with either end open
    modality: str = ""
    accession: str = ""
    limit: int = 100

    def __post_init__(self) -> None:
        if self.date and not _DATE.match(self.date):
            raise ValueError(f"date must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD, not {self.date!r}")

    def __repr__(self) -> str:
        return f"StudyQuery(<hidden>, date={self.date!r}, modality={self.modality!r})"

    def filters(self) -> dict:
        terms = {"PatientID": self.patient_id, "StudyDate": self.date, "ModalitiesInStudy": self.modality,
                 "AccessionNumber": self.accession}
        return {key: value for key, value in terms.items() if value}


@dataclass(frozen=True)
class StudySummary:
    uid: str
    date: str = ""
    description: str = ""
    modalities: tuple[str, ...] = ()
    series_count: int | None = None
    instance_count: int | None = None
    patient_id: str = field(default="", repr=False)  # identity: shown to the reader, never logged
    patient_name: str = field(default="", repr=False)
    accession: str = field(default="", repr=False)


@dataclass(frozen=True)
class SeriesSummary:
    uid: str
    modality: str = ""
    description: str = ""
    number: int | None = None
    instance_count: int | None = None


def _dataset(client: Server, item: dict, doing: str) -> pydicom.Dataset:
    ds = client.call(doing, lambda: pydicom.Dataset.from_json(item))
    uid = str(ds.get("StudyInstanceUID", "") if "SeriesInstanceUID" not in ds else ds.SeriesInstanceUID)
    if not valid_uid(uid):
        raise client.error(f"answered something that is not DICOMweb while {doing} (invalid UID)")
    return ds


def find_studies(client: Server, query: StudyQuery) -> list[StudySummary]:
    doing = "searching for studies"
    studies = []
    for item in client.search_studies(query.filters(), STUDY_FIELDS, query.limit):
        ds = _dataset(client, item, doing)
        modalities = ds.get("ModalitiesInStudy", [])
        modalities = (modalities,) if isinstance(modalities, str) else tuple(str(m) for m in modalities or ())
        studies.append(StudySummary(
            uid=str(ds.StudyInstanceUID), date=text(ds, "StudyDate"), description=text(ds, "StudyDescription"),
            modalities=modalities, series_count=int_or_none(ds.get("NumberOfStudyRelatedSeries")),
            instance_count=int_or_none(ds.get("NumberOfStudyRelatedInstances")), patient_id=text(ds, "PatientID"),
            patient_name=text(ds, "PatientName"), accession=text(ds, "AccessionNumber")))
    return sorted(studies, key=lambda s: (s.date, s.uid), reverse=True)


def list_series(client: Server, study_uid: str) -> list[SeriesSummary]:
    doing = "listing the study's series"
    series = []
    for item in client.search_series(study_uid, SERIES_FIELDS):
        ds = _dataset(client, item, doing)
        series.append(SeriesSummary(
            uid=str(ds.SeriesInstanceUID), modality=text(ds, "Modality"), description=text(ds, "SeriesDescription"),
            number=int_or_none(ds.get("SeriesNumber")),
            instance_count=int_or_none(ds.get("NumberOfSeriesRelatedInstances"))))
    return sorted(series, key=lambda s: (s.number is None, s.number or 0, s.uid))
