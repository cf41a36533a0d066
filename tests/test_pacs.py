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


def _findings(paths: list[Path], probabilities: list[float], threshold: float = 0.5):
    from brainmri_desktop.pacs.findings import ModelInfo, SliceFinding, TriageFindings

    return TriageFindings(
        ModelInfo("tiny-cnn", "Tiny CNN", "1", "ab" * 32), threshold, "youden_j on synthetic",
        tuple(SliceFinding(p, 0, q, q >= threshold) for p, q in zip(paths, probabilities)))


def _sr_items(ds: pydicom.Dataset):
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _sr_items(item)


def test_send_sr_and_overlays_then_read_them_back(orthanc, study, tmp_path):
    from brainmri_desktop.core.report import DISCLAIMER
    from brainmri_desktop.pacs.sc import LABEL, burn_overlay
    from brainmri_desktop.pacs.send import send_results

    client = client_for(orthanc.dicomweb)
    retrieved = retrieve_study(client, StudyCache(), study)
    mr = sorted(p for p in retrieved.paths if pydicom.dcmread(p, stop_before_pixels=True).SeriesNumber == 3)
    probabilities = [i / SLICES for i in range(SLICES)]
    findings = _findings(mr, probabilities)
    cam = np.zeros((8, 8), np.float32)
    cam[2:5, 2:5] = 1
    overlay = burn_overlay(np.linspace(0, 1, 64 * 64).reshape(64, 64), cam)
    sent = send_results(client, findings, {SLICES - 1: overlay})

    series = {s.uid: s for s in list_series(client, study)}
    assert series[sent.sr_series_uid].modality == "SR" and series[sent.overlay_series_uid].modality == "OT"
    back = [pydicom.dcmread(p) for p in retrieve_study(client, StudyCache(tmp_path / "c"), study,
                                                       series_uids=[sent.sr_series_uid, sent.overlay_series_uid]).paths]
    sr = next(ds for ds in back if ds.Modality == "SR")
    source = pydicom.dcmread(mr[0], stop_before_pixels=True)
    assert (sr.StudyInstanceUID, sr.PatientID, sr.PatientName) == (study, PATIENT_ID, source.PatientName)
    assert "PatientWeight" not in sr and "PatientSize" not in sr and "PatientAge" not in sr
    texts = [str(i.get("TextValue", "")) for i in _sr_items(sr)]
    assert "tiny-cnn" in texts and "ab" * 32 in texts and DISCLAIMER in texts
    probs = [float(i.MeasuredValueSequence[0].NumericValue) for i in _sr_items(sr)
             if i.ConceptNameCodeSequence[0].CodeValue == "PROB"]
    assert probs == pytest.approx([round(p, 4) for p in probabilities])
    flags = [i.ConceptCodeSequence[0].CodeMeaning for i in _sr_items(sr) if i.ConceptNameCodeSequence[0].CodeValue == "FLAG"]
    assert flags == ["Yes" if p >= 0.5 else "No" for p in probabilities]
    refs = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in _sr_items(sr) if i.ValueType == "IMAGE"]
    assert refs == [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in mr]
    capture = next(ds for ds in back if ds.Modality == "OT")
    assert capture.BurnedInAnnotation == "YES" and capture.ImageComments == LABEL and capture.PatientID == PATIENT_ID
    assert capture.SourceImageSequence[0].ReferencedSOPInstanceUID == refs[-1]
    assert capture.pixel_array.shape == (64, 64, 3)
