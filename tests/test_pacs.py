"""PACS against a real Orthanc with its DICOMweb plugin (tests/orthanc.py), and against tiny local HTTP servers that
misbehave on purpose (slow, garbage). Orthanc missing is a failure that says what to install."""

from __future__ import annotations

import http.server
import os
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from brainmri_desktop.core.errors import CancelledError, PacsError
from brainmri_desktop.pacs.cache import StudyCache, default_cache_dir
from brainmri_desktop.pacs.client import PacsClient
from brainmri_desktop.pacs.query import StudyQuery, find_studies, list_series
from brainmri_desktop.pacs.retrieve import retrieve_study
from brainmri_desktop.pacs.settings import ServerSettings

from .orthanc import Orthanc, start_orthanc

SLICES = 30
PATIENT_ID = "PACS-TEST-1"


def scanner_series(folder: Path, study_uid: str, n: int = SLICES) -> list[Path]:
    """A 30-slice axial series made from a real scanner's MR file (pydicom's MR_small.dcm, Toshiba): its header and
    pixels, new UIDs, positions stepping along the normal and the pixels shifted so that slices differ."""
    source = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    series_uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        ds = source.copy()
        ds.PatientID = PATIENT_ID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesNumber, ds.InstanceNumber = 3, i + 1
        ds.SeriesDescription = "T2 axial"
        ds.AccessionNumber = "ACC-0001"
        ds.ImagePositionPatient = [-83.9063, -91.2, 6.6406 + 5.0 * i]
        ds.SliceLocation = 6.6406 + 5.0 * i
        ds.PixelData = np.roll(source.pixel_array, i, axis=0).astype(np.int16).tobytes()
        paths.append(folder / f"mr{i:02d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def multiframe_series(folder: Path, study_uid: str) -> Path:
    """A second series in the same study: pydicom's enhanced (multi-frame) MR file, ten frames."""
    ds = pydicom.dcmread(get_testdata_file("emri_small.dcm"))
    ds.PatientID, ds.PatientName, ds.AccessionNumber = PATIENT_ID, "CompressedSamples^MR1", "ACC-0001"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyDate, ds.SeriesNumber, ds.Modality = "20040826", 4, "MR"
    path = folder / "emri.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def orthanc(tmp_path):
    server = start_orthanc(tmp_path / "orthanc")
    yield server
    server.stop()


@pytest.fixture
def study(orthanc: Orthanc, tmp_path) -> str:
    """Orthanc holding one study of two series: 30 single-frame slices and one ten-frame instance."""
    study_uid = generate_uid()
    for path in scanner_series(tmp_path / "upload", study_uid) + [multiframe_series(tmp_path / "upload", study_uid)]:
        orthanc.upload(path)
    return study_uid


def client_for(url: str, **kwargs) -> PacsClient:
    return PacsClient(ServerSettings(url, **kwargs))


def test_search_by_patient_date_modality_and_accession(orthanc, study):
    client = client_for(orthanc.dicomweb)
    for query in (StudyQuery(patient_id=PATIENT_ID), StudyQuery(date="20040801-20040831"),
                  StudyQuery(modality="MR", accession="ACC-0001"), StudyQuery()):
        found = find_studies(client, query)
        assert [s.uid for s in found] == [study], query
    assert find_studies(client, StudyQuery(patient_id="NOBODY")) == []
    assert find_studies(client, StudyQuery(date="20050101-")) == []
    summary = find_studies(client, StudyQuery(patient_id=PATIENT_ID))[0]
    assert summary.date == "20040826" and summary.instance_count == SLICES + 1 and "MR" in summary.modalities
    assert PATIENT_ID not in repr(summary)
    series = list_series(client, study)
    assert [(s.number, s.instance_count) for s in series] == [(3, SLICES), (4, 1)]


def test_retrieve_multiseries_study_into_the_cache(orthanc, study):
    from brainmri_desktop.core.io import load_paths

    seen = []
    result = retrieve_study(client_for(orthanc.dicomweb), StudyCache(), study, progress=lambda d, t: seen.append((d, t)))
    assert len(result.paths) == SLICES + 1 and all(p.is_relative_to(default_cache_dir()) for p in result.paths)
    assert seen[-1] == (SLICES + 1, SLICES + 1) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    report = load_paths(result.paths)
    assert not report.errors
    assert sorted(len(s.slices) for s in report.series) == [10, SLICES]
    again = retrieve_study(client_for(orthanc.dicomweb), StudyCache(), study)
    assert again.from_cache == 2 and sorted(again.paths) == sorted(result.paths)
