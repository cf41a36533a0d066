"""PACS against a real Orthanc with its DICOMweb plugin (tests/orthanc.py), and against tiny local HTTP servers that
misbehave on purpose (slow, garbage). Orthanc missing is a failure that says what to install."""

from __future__ import annotations

import http.server
import io
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
    assert capture.BurnedInAnnotation == "YES" and capture.ImageComments.startswith(LABEL)
    assert capture.PatientID == PATIENT_ID
    assert capture.SourceImageSequence[0].ReferencedSOPInstanceUID == refs[-1]
    assert capture.pixel_array.shape == (64, 64, 3)
    # the next triage of the study retrieves its images, not the results sent into it
    assert len(retrieve_study(client, StudyCache(tmp_path / "next"), study).paths) == SLICES + 1


class _Misbehaving(http.server.BaseHTTPRequestHandler):
    """Answers every request after `delay` seconds with `body` (and `content_type`), as a broken server would."""

    delay = 0.0
    body = b""
    content_type = "application/dicom+json"

    def do_GET(self):
        time.sleep(self.delay)
        try:
            self.send_response(200)
            self.send_header("Content-Type", self.content_type)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
        except OSError:
            pass  # the client gave up first: that is the point of the slow server

    def log_message(self, *args):
        pass


@pytest.fixture
def misbehaving():
    servers = []

    def start(handler: type = _Misbehaving, **attributes) -> str:
        handler = type("Handler", (handler,), attributes)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/dicom-web"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _nothing_written() -> bool:
    cache = StudyCache()
    return not any(p.is_file() for p in cache.root.rglob("*")) if cache.root.exists() else True


def test_missing_orthanc_fails_saying_what_to_install(monkeypatch, tmp_path):
    from . import orthanc as fixture

    monkeypatch.setattr(fixture, "ORTHANC", str(tmp_path / "no-orthanc"))
    with pytest.raises(RuntimeError, match="apt-get install orthanc orthanc-dicomweb"):
        fixture.start_orthanc(tmp_path / "orthanc")


def test_server_down_is_one_clear_error():
    from .orthanc import free_port

    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    with pytest.raises(PacsError, match="cannot be reached") as caught:
        find_studies(client_for(url), StudyQuery())
    assert caught.value.path == url
    with pytest.raises(PacsError, match="cannot be reached"):
        retrieve_study(client_for(url), StudyCache(), generate_uid())
    assert _nothing_written()


def test_slow_server_times_out(misbehaving):
    """The server would answer (an empty list) after 3 s: only the client's 0.5 s timeout makes this an error. How
    long giving up takes is benchmarks/robustness.py's to measure."""
    url = misbehaving(delay=3.0, body=b"[]")
    with pytest.raises(PacsError, match=r"no answer within 0.5 s while searching"):
        find_studies(client_for(url, timeout_s=0.5), StudyQuery())


@pytest.mark.parametrize("body, content_type", [
    (b"<html>login page</html>", "text/html"),
    (b'{"not": "a list"}', "application/dicom+json"),
    (b'[{"0020000D": {"vr": "UI", "Value": ["../../etc"]}}]', "application/dicom+json"),
    (b'[{"0020000D": {"vr": "XX", "Value": 5}}]', "application/dicom+json"),
])
def test_garbage_answers_are_one_clear_error(misbehaving, body, content_type):
    url = misbehaving(body=body, content_type=content_type)
    with pytest.raises(PacsError, match="not DICOMweb"):
        find_studies(client_for(url), StudyQuery())


def test_garbage_retrieve_leaves_nothing_in_the_cache(misbehaving):
    study_uid, series_uid = generate_uid(), generate_uid()
    series = f'[{{"0020000E": {{"vr": "UI", "Value": ["{series_uid}"]}}, "00201209": {{"vr": "IS", "Value": [2]}}}}]'
    boundary = "b0undary"
    multipart = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\nnot a DICOM file at all\r\n"
                 f"--{boundary}--").encode()

    class Handler(_Misbehaving):
        def do_GET(self):
            wado = self.path.endswith(f"/series/{series_uid}")  # else the QIDO search that lists the series
            self.body = multipart if wado else series.encode()
            self.content_type = (f'multipart/related; type="application/dicom"; boundary={boundary}' if wado
                                 else "application/dicom+json")
            super().do_GET()

    with pytest.raises(PacsError, match="not DICOMweb while retrieving"):
        retrieve_study(client_for(misbehaving(Handler)), StudyCache(), study_uid)
    assert _nothing_written()


def test_server_that_stalls_halfway_through_a_series_times_out_and_leaves_nothing(misbehaving):
    study_uid, series_uid = generate_uid(), generate_uid()
    series = f'[{{"0020000E": {{"vr": "UI", "Value": ["{series_uid}"]}}, "00201209": {{"vr": "IS", "Value": [3]}}}}]'
    instance = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    instance.StudyInstanceUID, instance.SeriesInstanceUID = study_uid, series_uid
    part = io.BytesIO()
    instance.save_as(part, enforce_file_format=True)

    class Handler(_Misbehaving):
        def do_GET(self):
            if not self.path.endswith(f"/series/{series_uid}"):
                self.body = series.encode()
                return super().do_GET()
            self.send_response(200)
            self.send_header("Content-Type", 'multipart/related; type="application/dicom"; boundary=b0')
            self.end_headers()
            head = b"--b0\r\nContent-Type: application/dicom\r\n\r\n"
            # The first instance whole, the second cut off after 70 kB (more than one read), then silence.
            self.wfile.write(head + part.getvalue() + b"\r\n" + head + part.getvalue() * 10)
            self.wfile.flush()
            time.sleep(3)

    written = []
    with pytest.raises(PacsError, match="no answer within 0.5 s while retrieving"):
        retrieve_study(client_for(misbehaving(Handler), timeout_s=0.5), StudyCache(), study_uid,
                       progress=lambda done, total: written.append((done, total)))
    assert written == [(1, 3)]  # one instance was on disk (in partial/) when the server stalled
    assert _nothing_written()


def test_a_killed_retrieve_is_swept_from_the_cache(tmp_path):
    cache = StudyCache(tmp_path / "cache")
    stale = cache.partial_dir / "1.2.3.abc"
    stale.mkdir(parents=True)
    (stale / "1.2.3.4.dcm").write_bytes(b"half")
    os.utime(stale, (1, 1))
    fresh = cache.partial_dir / "1.2.3.def"
    fresh.mkdir()
    cache.evict()
    assert not stale.exists() and fresh.exists()


def test_authentication(tmp_path):
    server = start_orthanc(tmp_path / "orthanc", users={"reader": "correct horse"})
    try:
        with pytest.raises(PacsError, match="refused the credentials") as caught:
            find_studies(client_for(server.dicomweb, username="reader", password="wrong"), StudyQuery())
        assert "wrong" not in str(caught.value)
        with pytest.raises(PacsError, match="refused the credentials"):
            find_studies(client_for(server.dicomweb), StudyQuery())
        assert find_studies(client_for(server.dicomweb, username="reader", password="correct horse"),
                            StudyQuery()) == []
        in_url = ServerSettings(server.dicomweb.replace("http://", "http://reader:correct%20horse@"))
        assert find_studies(PacsClient(in_url), StudyQuery()) == []
        assert "correct" not in repr(in_url) + in_url.url + str(in_url.to_dict()) + repr(PacsClient(in_url))
    finally:
        server.stop()


def test_bearer_token_is_sent_and_never_shown(misbehaving):
    seen = []

    class Handler(_Misbehaving):
        body = b"[]"

        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            super().do_GET()

    settings = ServerSettings(misbehaving(Handler), token="t0ken-secret")
    assert find_studies(PacsClient(settings), StudyQuery()) == []
    assert seen == ["Bearer t0ken-secret"]
    assert "t0ken" not in repr(settings) + str(settings.to_dict())


def test_retrieve_cancelled_halfway_leaves_nothing_half_written(orthanc, study):
    progress = []
    with pytest.raises(CancelledError):
        retrieve_study(client_for(orthanc.dicomweb), StudyCache(), study,
                       progress=lambda done, total: progress.append(done), cancel=lambda: len(progress) >= SLICES // 2)
    assert len(progress) == SLICES // 2
    assert _nothing_written()
    result = retrieve_study(client_for(orthanc.dicomweb), StudyCache(), study)
    assert len(result.paths) == SLICES + 1 and result.from_cache == 0


def test_cache_is_bounded_least_recently_used_first_and_cleared_on_request(orthanc, study, tmp_path):
    other = generate_uid()
    for path in scanner_series(tmp_path / "other", other, n=3):
        orthanc.upload(path)
    client = client_for(orthanc.dicomweb)
    first = retrieve_study(client, StudyCache(), study)
    size = StudyCache().size()
    os.utime(first.paths[0].parents[1], (1, 1))  # long unused
    small = StudyCache(max_bytes=size // 2)
    retrieve_study(client, small, other)
    assert [p.name for p in small.studies()] == [other]
    assert not first.paths[0].exists()
    small.clear()
    assert small.size() == 0 and _nothing_written()


def _pacs_parser():
    import argparse

    from brainmri_desktop.pacs.cli import add_pacs_commands, add_predict_arguments

    parser = argparse.ArgumentParser(prog="brainmri")
    sub = parser.add_subparsers(dest="command", required=True)
    add_pacs_commands(sub)
    add_predict_arguments(sub.add_parser("predict"))
    return parser


def test_pacs_find_retrieve_and_cache_commands(orthanc, study, capsys):
    parser = _pacs_parser()
    args = parser.parse_args(["pacs", "find", "--server", orthanc.dicomweb, "--patient", PATIENT_ID,
                              "--date", "20040101-"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert study in out and "MR" in out and PATIENT_ID not in out and "ACC-0001" not in out
    args = parser.parse_args(["pacs", "find", "--server", orthanc.dicomweb, "--accession", "ACC-0001",
                              "--show-identity"])
    assert args.func(args) == 0 and PATIENT_ID in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["pacs", "find", "--server", orthanc.dicomweb, "--date", "last week"])
    assert "YYYYMMDD" in capsys.readouterr().err
    args = parser.parse_args(["pacs", "retrieve", "--server", orthanc.dicomweb, "--study", study])
    assert args.func(args) == 0 and f"{SLICES + 1} instances in" in capsys.readouterr().out
    assert StudyCache().size() > 0
    args = parser.parse_args(["pacs", "cache", "--clear"])
    assert args.func(args) == 0 and StudyCache().size() == 0


def test_predict_arguments_are_checked():
    from brainmri_desktop.pacs.cli import check_predict_arguments

    parser = _pacs_parser()
    assert "needs --study" in check_predict_arguments(parser.parse_args(["predict", "--server", "http://h/dw"]))
    assert "need --server" in check_predict_arguments(parser.parse_args(["predict", "--send-results"]))
    assert check_predict_arguments(parser.parse_args(["predict", "--server", "http://h/dw", "--study", "1.2"])) is None


def test_password_comes_from_the_environment_and_stays_out_of_messages(tmp_path, monkeypatch):
    from brainmri_desktop.pacs.cli import server_from_args

    server = start_orthanc(tmp_path / "orthanc", users={"reader": "pa55word"})
    try:
        parser = _pacs_parser()
        args = parser.parse_args(["pacs", "find", "--server", server.dicomweb, "--user", "reader"])
        monkeypatch.setenv("BRAINMRI_PACS_PASSWORD", "wrong-pa55")
        with pytest.raises(PacsError) as caught:
            args.func(args)
        assert "refused the credentials" in str(caught.value) and "pa55" not in str(caught.value)
        monkeypatch.setenv("BRAINMRI_PACS_PASSWORD", "pa55word")
        assert args.func(args) == 0
        assert "pa55" not in repr(server_from_args(args))
    finally:
        server.stop()


def test_end_to_end_retrieve_triage_and_send_the_report(orthanc, study, model_dir):
    """The issue's bar as far as it goes without `brainmri predict`'s wiring: 30 slices of a scanner's series from
    Orthanc, through the loader and the tiny model, and a report in the study that names the model."""
    from brainmri_desktop.core.inference import LoadedModel
    from brainmri_desktop.core.io import load_paths
    from brainmri_desktop.core.packages import discover
    from brainmri_desktop.core.session import Session
    from brainmri_desktop.pacs.cli import retrieve_for_predict, send_for_predict

    parser = _pacs_parser()
    args = parser.parse_args(["predict", "--server", orthanc.dicomweb, "--study", study, "--send-results"])
    series_uid = next(s.uid for s in list_series(client_for(orthanc.dicomweb), study) if s.number == 3)
    args.series = [series_uid]
    report = load_paths(retrieve_for_predict(args, progress=lambda d, t: None))
    assert not report.errors and len(report.slices) == SLICES
    entry = next(e for e in discover([model_dir]) if e.ok and e.manifest.id == "tiny-cnn")
    model = LoadedModel.load(entry)
    session = Session(report.slices)
    session.run(model)
    done = sorted(session.results)
    decisions = session.decisions()
    assert len(done) == SLICES
    message = send_for_predict(args, session)
    results = [session.results[i] for i in done]
    assert f"{SLICES} slices" in message and study in message
    client = client_for(orthanc.dicomweb)
    reports = [s for s in list_series(client, study) if s.modality == "SR"]
    assert len(reports) == 1 and reports[0].instance_count == 1
    sr = pydicom.dcmread(retrieve_study(client, StudyCache(), study, [reports[0].uid]).paths[0])
    texts = [str(i.get("TextValue", "")) for i in _sr_items(sr)]
    assert "tiny-cnn" in texts and model.manifest.files[model.manifest.weights_file] in texts
    probs = [float(i.MeasuredValueSequence[0].NumericValue) for i in _sr_items(sr)
             if i.ConceptNameCodeSequence[0].CodeValue == "PROB"]
    assert probs == pytest.approx([round(r.probability, 4) for r in results])
    flags = [i.ConceptCodeSequence[0].CodeMeaning for i in _sr_items(sr) if i.ConceptNameCodeSequence[0].CodeValue == "FLAG"]
    assert flags == ["Yes" if decisions[i].flagged else "No" for i in done]
    scopes = [str(i.TextValue) for i in _sr_items(sr) if i.ConceptNameCodeSequence[0].CodeValue == "SCOPE"]
    assert scopes == [decisions[i].out_of_scope for i in done if decisions[i].out_of_scope]


def test_the_pacs_package_imports_no_qt_and_no_trainer():
    import subprocess
    import sys

    code = ("import sys, brainmri_desktop.pacs.cli; "
            "sys.exit(any(m.startswith(('PySide6', 'PyQt', 'superqt', 'trainer')) for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_server_settings_keep_secrets_out_of_every_string():
    settings = ServerSettings("http://reader:s3cret@[::1]:8042/dicom-web/", timeout_s=5)
    assert (settings.url, settings.username, settings.password) == ("http://[::1]:8042/dicom-web", "reader", "s3cret")
    saved = settings.to_dict()
    assert "s3cret" not in repr(settings) + str(saved) and saved["auth"] == "basic"
    assert ServerSettings.from_dict(saved, password="s3cret") == settings
    for bad in ("ftp://h/dw", "http:///dw", "http://reader:s3cret@h:port/dw"):
        with pytest.raises(ValueError) as caught:
            ServerSettings(bad)
        assert "s3cret" not in str(caught.value)
    with pytest.raises(ValueError, match="YYYYMMDD"):
        StudyQuery(date="2024-01-01")


def test_patient_identity_never_reaches_a_log(orthanc, study, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    client = client_for(orthanc.dicomweb)
    assert find_studies(client, StudyQuery(patient_id=PATIENT_ID, accession="ACC-0001"))
    retrieve_study(client, StudyCache(), study)
    assert caplog.records and PATIENT_ID not in caplog.text and "ACC-0001" not in caplog.text


@pytest.fixture
def dimse_study(tmp_path):
    """Orthanc with its DICOM port open (AE ORTHANC, knowing BRAINMRI) holding the same two-series study."""
    server = start_orthanc(tmp_path / "orthanc", dicom=True)
    study_uid = generate_uid()
    for path in scanner_series(tmp_path / "upload", study_uid) + [multiframe_series(tmp_path / "upload", study_uid)]:
        server.upload(path)
    yield server, study_uid
    server.stop()


def test_dimse_find_retrieve_and_store(dimse_study, tmp_path, capsys):
    from brainmri_desktop.pacs.dimse import DimseClient, DimseSettings
    from brainmri_desktop.pacs.send import send_results

    server, study_uid = dimse_study
    client = DimseClient(DimseSettings.from_url(f"dicom://ORTHANC@127.0.0.1:{server.dicom_port}", timeout_s=10))
    assert [s.uid for s in find_studies(client, StudyQuery(patient_id=PATIENT_ID, date="20040826"))] == [study_uid]
    assert find_studies(client, StudyQuery(patient_id="NOBODY")) == []
    progress = []
    result = retrieve_study(client, StudyCache(), study_uid, progress=lambda d, t: progress.append(d))
    assert len(result.paths) == SLICES + 1 and progress[-1] == SLICES + 1
    mr = sorted(p for p in result.paths if pydicom.dcmread(p, stop_before_pixels=True).SeriesNumber == 3)
    sent = send_results(client, _findings(mr, [0.9] * SLICES))
    # read back over DICOMweb: the same server, the other protocol
    reports = [s for s in list_series(client_for(server.dicomweb), study_uid) if s.modality == "SR"]
    assert [s.uid for s in reports] == [sent.sr_series_uid]
    args = _pacs_parser().parse_args(["pacs", "find", "--server", client.settings.public_url, "--patient", PATIENT_ID])
    assert args.func(args) == 0 and study_uid in capsys.readouterr().out


def test_dimse_cancel_leaves_nothing_and_failures_are_one_error(dimse_study):
    from brainmri_desktop.pacs.dimse import DimseClient, DimseSettings

    from .orthanc import free_port

    server, study_uid = dimse_study
    client = DimseClient(DimseSettings.from_url(f"dicom://ORTHANC@127.0.0.1:{server.dicom_port}", timeout_s=10))
    progress = []
    with pytest.raises(CancelledError):
        retrieve_study(client, StudyCache(), study_uid, progress=lambda d, t: progress.append(d),
                       cancel=lambda: len(progress) >= 5)
    assert _nothing_written()
    stranger = DimseClient(DimseSettings.from_url(f"dicom://ORTHANC@127.0.0.1:{server.dicom_port}", "STRANGER", 10))
    with pytest.raises(PacsError, match="dropped the request while searching for studies .*STRANGER"):
        find_studies(stranger, StudyQuery())
    down = DimseClient(DimseSettings.from_url(f"dicom://ORTHANC@127.0.0.1:{free_port()}", timeout_s=2))
    with pytest.raises(PacsError, match="cannot be reached"):
        find_studies(down, StudyQuery())
    with pytest.raises(ValueError, match="dicom://"):
        DimseSettings.from_url("dicom://ORTHANC@127.0.0.1")


def test_dimse_slow_peer_times_out():
    from pynetdicom import AE, evt

    from brainmri_desktop.pacs.dimse import FIND_MODEL, DimseClient, DimseSettings

    def slow_find(event):
        time.sleep(3)
        yield 0x0000, None

    peer = AE(ae_title="SLOW")
    peer.add_supported_context(FIND_MODEL)
    server = peer.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, slow_find)])
    try:
        client = DimseClient(DimseSettings.from_url(f"dicom://SLOW@127.0.0.1:{server.server_address[1]}",
                                                    timeout_s=1))
        with pytest.raises(PacsError, match="no answer within 1 s while searching for studies"):
            find_studies(client, StudyQuery())
    finally:
        server.shutdown()


@pytest.fixture
def scanner_study(orthanc: Orthanc, tmp_path) -> str:
    """Orthanc holding one study: the 30 slices of the scanner's series and nothing else."""
    study_uid = generate_uid()
    for path in scanner_series(tmp_path / "scanner", study_uid):
        orthanc.upload(path)
    return study_uid


def _brainmri(argv: list[str], capsys) -> tuple[int, str, str]:
    from brainmri_desktop import cli

    try:
        status = cli.main(argv)
    except SystemExit as exc:  # argument errors leave through the parser
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_brainmri_predict_from_the_server_writes_every_row_and_stores_the_report(orthanc, scanner_study, model_dir,
                                                                                 tmp_path, capsys):
    """The issue's bar: `brainmri predict --server URL --study UID --send-results --out p.csv`."""
    import csv

    out = tmp_path / "p.csv"
    # --include-out-of-scope: this scanner series lies outside the tiny model's scope, and flagged slices are needed
    status, _, err = _brainmri(["predict", "--server", orthanc.dicomweb, "--study", scanner_study, "--send-results",
                                "--include-out-of-scope", "--out", str(out), "--models-dir", str(model_dir), "--model",
                                "tiny-cnn"], capsys)
    assert status == 0, err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == SLICES and all(r["model_id"] == "tiny-cnn" and not r["error"] for r in rows)
    assert all(Path(r["path"]).is_relative_to(default_cache_dir()) for r in rows)
    assert f"stored a structured report of {SLICES} slices" in err and PATIENT_ID not in err
    flagged = sum(r["flagged"] == "1" for r in rows)
    assert flagged and f"and {flagged} Grad-CAM overlay images" in err  # the captures, as the window sends them
    client = client_for(orthanc.dicomweb)
    reports = [s for s in list_series(client, scanner_study) if s.modality == "SR"]
    assert len(reports) == 1
    assert [s.modality for s in list_series(client, scanner_study)].count("OT") == 1
    sr = pydicom.dcmread(retrieve_study(client, StudyCache(tmp_path / "back"), scanner_study, [reports[0].uid]).paths[0])
    texts = [str(i.get("TextValue", "")) for i in _sr_items(sr)]
    assert "tiny-cnn" in texts
    probs = [float(i.MeasuredValueSequence[0].NumericValue) for i in _sr_items(sr)
             if i.ConceptNameCodeSequence[0].CodeValue == "PROB"]
    assert probs == pytest.approx([round(float(r["probability"]), 4) for r in rows], abs=1e-4)


def test_brainmri_pacs_find_lists_studies(orthanc, scanner_study, capsys):
    status, out, _ = _brainmri(["pacs", "find", "--server", orthanc.dicomweb, "--patient", PATIENT_ID,
                                "--date", "20040101-20041231"], capsys)
    assert status == 0 and scanner_study in out and PATIENT_ID not in out
    status, out, err = _brainmri(["pacs", "find", "--server", orthanc.dicomweb, "--patient", "NOBODY"], capsys)
    assert status == 0 and scanner_study not in out and "no studies match" in err


@pytest.mark.parametrize("case", ["down", "slow", "garbage", "unknown study", "no study", "send without server",
                                  "paths and server", "nothing to triage", "bad date"])
def test_brainmri_pacs_failures_are_one_line_and_leave_nothing(case, orthanc, scanner_study, model_dir, tmp_path,
                                                               misbehaving, capsys):
    from .orthanc import free_port

    out = tmp_path / "p.csv"
    predict = ["predict", "--out", str(out), "--models-dir", str(model_dir), "--model", "tiny-cnn"]
    server_for = {  # the server each case talks to; started only for its own case
        "down": lambda: f"http://127.0.0.1:{free_port()}/dicom-web",
        "slow": lambda: misbehaving(delay=3.0, body=b"[]"),
        "garbage": lambda: misbehaving(body=b"<html>login</html>", content_type="text/html"),
    }
    url = server_for.get(case, lambda: orthanc.dicomweb)()
    argv = {
        "down": predict + ["--server", url, "--study", scanner_study, "--send-results"],
        "slow": predict + ["--server", url, "--timeout", "0.5", "--study", scanner_study, "--send-results"],
        "garbage": ["pacs", "find", "--server", url],
        "unknown study": predict + ["--server", url, "--study", generate_uid(), "--send-results"],
        "no study": predict + ["--server", url],
        "send without server": predict + ["--send-results", str(tmp_path)],
        "paths and server": predict + ["--server", url, "--study", scanner_study, str(tmp_path)],
        "nothing to triage": predict,
        "bad date": ["pacs", "find", "--server", url, "--date", "last week"],
    }[case]
    status, stdout, err = _brainmri(argv, capsys)
    lines = err.strip().splitlines()
    assert status != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert not stdout and not out.exists() and _nothing_written()
    assert not [s for s in list_series(client_for(orthanc.dicomweb), scanner_study) if s.modality == "SR"]


IDENTITY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
            "AccessionNumber", "ReferringPhysicianName")


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_results_are_sent_whatever_identity_the_sources_lack(orthanc, tmp_path, capsys, how):
    """Issue 26 item 1: converted and anonymised series lack type-2 identity (PatientSex, StudyTime...); the report
    and the captures are built from what the source has, one study per attribute lacking and one lacking them all."""
    from brainmri_desktop.pacs.sc import burn_overlay
    from brainmri_desktop.pacs.send import send_results

    client = client_for(orthanc.dicomweb)
    overlay = burn_overlay(np.linspace(0, 1, 64 * 64).reshape(64, 64), np.ones((8, 8), np.float32))
    for lacking in [(k,) for k in IDENTITY] + [IDENTITY]:
        study_uid = generate_uid()
        paths = scanner_series(tmp_path / "up" / lacking[0] / str(len(lacking)), study_uid, n=2)
        for path in paths:
            ds = pydicom.dcmread(path)
            ds.PatientName = "Anonymous"  # one part only: highdicom warns with the name in the text
            for keyword in lacking:
                if how == "missing":
                    delattr(ds, keyword)
                else:
                    setattr(ds, keyword, "")
            ds.save_as(path, enforce_file_format=True)
            orthanc.upload(path)
        mr = retrieve_study(client, StudyCache(tmp_path / "c" / study_uid), study_uid).paths
        sent = send_results(client, _findings(sorted(mr), [0.9, 0.1]), {0: overlay})
        assert sent.overlay_count == 1, lacking
        back = retrieve_study(client, StudyCache(tmp_path / "b" / study_uid), study_uid,
                              series_uids=[sent.sr_series_uid, sent.overlay_series_uid]).paths
        for ds in map(pydicom.dcmread, back):
            assert ds.StudyInstanceUID == study_uid and all(ds.get(k, "x") == "" for k in lacking), lacking
    assert "Anonymous" not in capsys.readouterr().err


def test_a_source_without_its_references_is_one_line_naming_what_it_lacks(tmp_path):
    from brainmri_desktop.core.errors import UnreadableFileError
    from brainmri_desktop.pacs.send import send_results

    path = scanner_series(tmp_path, generate_uid(), n=1)[0]
    ds = pydicom.dcmread(path)
    del ds.SOPClassUID
    ds.save_as(path)
    with pytest.raises(UnreadableFileError, match="no SOPClassUID"):
        send_results(None, _findings([path], [0.9]))


def upload_without_identity(orthanc, folder, study_uid: str) -> None:
    """A four-slice scanner series whose instances lack PatientSex, StudyTime, StudyID and ReferringPhysicianName
    (type 2, absent in many real exports), stored in Orthanc."""
    for path in scanner_series(folder, study_uid, n=4):
        ds = pydicom.dcmread(path)
        for keyword in ("PatientSex", "StudyTime", "StudyID", "ReferringPhysicianName"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.save_as(path, enforce_file_format=True)
        orthanc.upload(path)


def test_brainmri_predict_sends_results_for_a_study_without_sex_time_id_or_referrer(orthanc, model_dir, tmp_path,
                                                                                  capsys):
    """Issue 26's bar: the instances lack PatientSex, StudyTime, StudyID and ReferringPhysicianName."""
    study_uid = generate_uid()
    upload_without_identity(orthanc, tmp_path / "up", study_uid)
    status, _, err = _brainmri(["predict", "--server", orthanc.dicomweb, "--study", study_uid, "--send-results",
                                "--include-out-of-scope", "--out", str(tmp_path / "p.csv"),
                                "--models-dir", str(model_dir), "--model", "tiny-cnn"], capsys)
    assert status == 0 and "Traceback" not in err, err
    assert [s.modality for s in list_series(client_for(orthanc.dicomweb), study_uid)].count("SR") == 1


def test_the_report_carries_each_marks_reader_and_time_and_a_disagreed_capture_says_so(orthanc, study, tmp_path):
    """Issue 26 item 2: the SR holds each reviewed slice's mark, reader and time; the capture of a slice the reader
    disagreed with is labelled so, and every capture and the SR carry the caveat on the model's map."""
    from dataclasses import replace

    from brainmri_desktop.core.review import Mark
    from brainmri_desktop.pacs.sc import REVIEW_LINES, burn_overlay, capture_lines
    from brainmri_desktop.pacs.send import send_results

    client = client_for(orthanc.dicomweb)
    mr = sorted(p for p in retrieve_study(client, StudyCache(), study).paths
                if pydicom.dcmread(p, stop_before_pixels=True).SeriesNumber == 3)[:4]
    marks = {0: Mark("agree", "", "Dr Reader", "2026-12-03T07:00:00+01:00"),
             1: Mark("disagree", "a vessel", "Dr Other", "2026-12-03T07:05:00+01:00"), 2: Mark("", "note only", "", "")}
    caveat = "For this model the Grad-CAM map does not show where a tumour is"
    base = _findings(mr, [0.9, 0.8, 0.2, 0.7])
    findings = replace(base, slices=tuple(replace(s, mark=marks.get(k)) for k, s in enumerate(base.slices)),
                       gradcam_caveat=caveat)
    image = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    overlays = {k: burn_overlay(image, np.ones((8, 8), np.float32), capture_lines(findings.slices[k], caveat))
                for k in (0, 1, 3)}
    assert not np.array_equal(overlays[0], overlays[1])  # the review is burnt in, not only written in a header
    sent = send_results(client, findings, overlays)
    back = [pydicom.dcmread(p) for p in retrieve_study(client, StudyCache(tmp_path / "c"), study,
                                                       series_uids=[sent.sr_series_uid, sent.overlay_series_uid]).paths]
    sr = next(ds for ds in back if ds.Modality == "SR")
    slices = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "SLICE"]

    def values(item, code):
        for child in item.ContentSequence:
            if child.ConceptNameCodeSequence[0].CodeValue == code:
                return (child.ConceptCodeSequence[0].CodeValue if child.ValueType == "CODE"
                        else child.get("TextValue") or child.get("DateTime"))
        return None

    assert [values(s, "REVIEW") for s in slices] == ["AGREE", "DISAGREE", None, None]
    assert [values(s, "READER") for s in slices] == ["Dr Reader", "Dr Other", None, None]
    assert [values(s, "MARKEDAT") for s in slices] == ["20261203070000+0100",
                                                       "20261203070500+0100", None, None]
    assert [values(s, "NOTE") for s in slices] == [None, "a vessel", "note only", None]
    assert caveat in [str(i.get("TextValue", "")) for i in _sr_items(sr)]
    comments = {ds.SourceImageSequence[0].ReferencedSOPInstanceUID: ds.ImageComments
                for ds in back if ds.Modality == "OT"}
    uids = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in mr]
    assert REVIEW_LINES["disagree"] in comments[uids[1]] and REVIEW_LINES["agree"] in comments[uids[0]]
    assert "NOT REVIEWED" in comments[uids[3]] and all(caveat.upper() in c for c in comments.values())


def _session_with(paths: list[Path], model_dir, probabilities: list[float], verdicts: dict):
    from brainmri_desktop.core.inference import SliceResult
    from brainmri_desktop.core.io import load_paths
    from brainmri_desktop.core.model_choice import find_model
    from brainmri_desktop.core.packages import discover
    from brainmri_desktop.core.session import Session

    session = Session(load_paths(paths).slices)
    session.manifest = find_model(discover([model_dir]), "tiny-cnn").manifest
    session.results = {i: SliceResult(i, p, 0.0, p, p, 1, 0.5) for i, p in enumerate(probabilities)}
    session.verdicts = {i: verdicts.get(i) for i in range(len(probabilities))}
    return session


def _sr_of(session):
    from brainmri_desktop.pacs.findings import session_findings
    from brainmri_desktop.pacs.sr import build_sr, read_sources

    findings = session_findings(session)
    sr = build_sr(findings, read_sources(findings))
    return {i.ConceptNameCodeSequence[0].CodeValue: i for i in _sr_items(sr)}, list(_sr_items(sr))


def test_the_report_says_what_decided_out_of_scope_slices_and_which_threshold_was_used(tmp_path, model_dir):
    """Issue 25.1: an out-of-scope slice flagged at the reader's request is not called "not flagged", and a model
    without a high-sensitivity point is not said to have used one."""
    from dataclasses import replace

    from brainmri_desktop.core.session import Threshold

    paths = scanner_series(tmp_path, generate_uid(), n=2)
    from brainmri_desktop.core.scope import Kind, ScopeVerdict, Status

    localiser = ScopeVerdict(Status.OUT, Kind.LOCALISER, "a localiser (scout) image")  # header evidence
    session = _session_with(paths, model_dir, [0.9, 0.1], {0: localiser})
    session.include_out_of_scope = True
    named, items = _sr_of(session)
    flags = [i.ConceptCodeSequence[0].CodeMeaning for i in items if i.ConceptNameCodeSequence[0].CodeValue == "FLAG"]
    assert flags == ["Yes", "No"] and "not flagged" not in named["SCOPE"].ConceptNameCodeSequence[0].CodeMeaning
    assert named["SCOPEPOLICY"].TextValue == "flagged by their probability, as the reader asked"
    assert named["OPPOINT"].TextValue.startswith("main threshold (")
    session.include_out_of_scope = False
    named, _ = _sr_of(session)
    assert named["SCOPEPOLICY"].TextValue == "not flagged, whatever their probability"
    session.threshold = Threshold.HIGH_SENSITIVITY
    assert _sr_of(session)[0]["OPPOINT"].TextValue.startswith("high-sensitivity threshold (")
    session.manifest = replace(session.manifest, high_sensitivity=None)
    text = _sr_of(session)[0]["OPPOINT"].TextValue
    assert "High-sensitivity" not in text and text.startswith("main threshold (") and "has none" in text


def test_a_report_the_sources_cannot_make_is_one_line_in_the_command_line(orthanc, model_dir, tmp_path, capsys):
    """A real failure to send (here a PatientSex value DICOM does not allow, which highdicom refuses) is one line
    naming the reason, without the patient's values, and no traceback."""
    study_uid = generate_uid()
    for path in scanner_series(tmp_path / "up", study_uid, n=2):
        ds = pydicom.dcmread(path)
        ds.PatientSex = "Male"
        ds.save_as(path, enforce_file_format=True)
        orthanc.upload(path)
    status, _, err = _brainmri(["predict", "--server", orthanc.dicomweb, "--study", study_uid, "--send-results",
                                "--out", str(tmp_path / "p.csv"), "--models-dir", str(model_dir), "--model",
                                "tiny-cnn"], capsys)
    lines = [line for line in err.splitlines() if not line.startswith("retrieved ")]
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: no report sent: ") and "Male" not in err and PATIENT_ID not in err
