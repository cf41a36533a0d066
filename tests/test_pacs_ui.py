"""File > Open from PACS and Send results to PACS, driven through the real dialog and window against a real Orthanc
(tests/orthanc.py), offscreen."""

from __future__ import annotations

import threading

import pydicom
from PySide6.QtCore import Qt

from brainmri_desktop.pacs.cache import StudyCache
from brainmri_desktop.pacs.query import list_series
from brainmri_desktop.pacs.retrieve import retrieve_study
from brainmri_desktop.ui.pacs_dialog import SERVERS_KEY

from .orthanc import free_port
from .test_app import _set_threshold, window  # noqa: F401 - window: a fixture
from .test_pacs import PATIENT_ID, SLICES, _nothing_written, _sr_items, client_for
from .test_pacs import orthanc, scanner_study  # noqa: F401 - fixtures


def _menu_action(window, name):
    return next(a for a in window.actions() if a.objectName() == name)


def _search(qtbot, window, url: str, secret: str = ""):
    _menu_action(window, "openFromPacs").trigger()
    dialog = window.pacs.dialog
    dialog.server.setEditText(url)
    if secret:
        dialog.auth.setCurrentIndex(dialog.auth.findData("basic"))
        dialog.user.setText("reader")
        dialog.secret.setText(secret)
    qtbot.mouseClick(dialog.search_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dialog.worker is None, timeout=30000)
    return dialog


def test_search_lists_the_study_with_the_patient_hidden_until_asked(qtbot, window, orthanc, scanner_study, tmp_path):
    dialog = _search(qtbot, window, orthanc.dicomweb, secret="s3cret-pa55")  # this Orthanc ignores credentials
    assert dialog.table.rowCount() == 1 and [s.uid for s in dialog.studies] == [scanner_study]
    assert dialog.table.item(0, 0).text() == "20040826" and dialog.table.item(0, 3).text() == str(SLICES)
    assert dialog.table.item(0, 5).text() == PATIENT_ID and dialog.table.isColumnHidden(5)
    window.bar.hide_identity.setChecked(False)
    assert not dialog.table.isColumnHidden(5)
    window.settings.sync()
    assert orthanc.dicomweb in window.settings.value(SERVERS_KEY)  # remembered for the next time, without the secret
    assert "basic" in window.settings.value(SERVERS_KEY) and "s3cret" not in (tmp_path / "settings.ini").read_text()


def test_retrieve_opens_the_slices_and_send_stores_a_report_with_overlays(qtbot, window, orthanc, scanner_study):
    send = _menu_action(window, "sendToPacs")
    assert not send.isEnabled()
    dialog = _search(qtbot, window, orthanc.dicomweb)
    qtbot.mouseClick(dialog.retrieve_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.session is not None and window.session.complete
                    and window.triage.infer_worker is None, timeout=60000)
    assert len(window.session.slices) == SLICES and not dialog.isVisible()
    assert all(s.path.is_relative_to(StudyCache().studies_dir / scanner_study) for s in window.session.slices)
    qtbot.waitUntil(send.isEnabled, timeout=10000)
    # pydicom's MR_small is marked DERIVED\SECONDARY, so the scope guard keeps its slices from being flagged unless
    # the reader includes them; three or more (ties) are flagged here so that their captures can be checked
    window.session.include_out_of_scope = True
    _set_threshold(window, sorted(r.probability for r in window.session.results.values())[-3] - 1e-9)
    flagged = len(window.session.flagged())
    assert flagged >= 3
    _menu_action(window, "pacsOverlays").trigger()  # checked: the flagged slices' captures go too
    send.trigger()
    qtbot.waitUntil(lambda: window.pacs.send_worker is None, timeout=60000)
    status = window.status.text()
    assert status.startswith(f"Sent to the PACS: stored a structured report of 30 slices ({flagged} flagged) and "
                             f"{flagged} Grad-CAM overlay images"), status
    assert PATIENT_ID not in status
    client = client_for(orthanc.dicomweb)
    series = {s.modality: s for s in list_series(client, scanner_study)}
    sr = pydicom.dcmread(retrieve_study(client, StudyCache(), scanner_study, [series["SR"].uid]).paths[0])
    assert "tiny-cnn" in [str(i.get("TextValue", "")) for i in _sr_items(sr)]
    assert series["OT"].instance_count == flagged  # the flagged slices' burnt-in captures


def test_cancel_halfway_leaves_nothing_half_written_and_opens_nothing(qtbot, window, orthanc, scanner_study):
    dialog = _search(qtbot, window, orthanc.dicomweb)
    reached, go = threading.Event(), threading.Event()

    def hold(done, total):  # in the worker thread: waits at the fifth instance until Cancel has been clicked
        if done == 5:
            reached.set()
            go.wait(10)

    dialog.retrieveProgress.connect(hold, Qt.DirectConnection)
    qtbot.mouseClick(dialog.retrieve_button, Qt.LeftButton)
    qtbot.waitUntil(reached.is_set, timeout=30000)
    assert dialog.cancel_button.isEnabled()
    qtbot.mouseClick(dialog.cancel_button, Qt.LeftButton)
    go.set()
    qtbot.waitUntil(lambda: dialog.worker is None, timeout=30000)
    assert "cancelled" in dialog.message.text() and dialog.isVisible()
    assert _nothing_written() and window.session is None and window.pacs.origin is None


def test_a_server_that_is_down_shows_one_clear_message(qtbot, window):
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    dialog = _search(qtbot, window, url, secret="s3cret-pa55")
    text = dialog.message.text()
    assert "cannot be reached" in text and url in text and "\n" not in text and "s3cret" not in text
    assert dialog.table.rowCount() == 0 and not dialog.retrieve_button.isEnabled()
    assert window.settings.value(SERVERS_KEY) is None  # only a server that answered is remembered
    dialog.date.setText("last week")
    qtbot.mouseClick(dialog.search_button, Qt.LeftButton)
    assert "YYYYMMDD" in dialog.message.text()


def test_send_from_the_window_without_sex_time_id_or_referrer_carries_the_readers_disagreement(qtbot, window, orthanc,
                                                                                              tmp_path):
    """Issue 26 items 1 and 2 through the window: a study lacking PatientSex, StudyTime, StudyID and
    ReferringPhysicianName is sent, the SR holds the reader's "disagree", and that slice's capture says so."""
    from pydicom.uid import generate_uid

    from brainmri_desktop.pacs.sc import REVIEW_LINES

    from .test_pacs import upload_without_identity

    study_uid = generate_uid()
    upload_without_identity(orthanc, tmp_path / "up", study_uid)
    dialog = _search(qtbot, window, orthanc.dicomweb)
    qtbot.mouseClick(dialog.retrieve_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.session is not None and window.session.complete
                    and window.triage.infer_worker is None, timeout=60000)
    window.session.include_out_of_scope = True  # MR_small is DERIVED\SECONDARY (see the test above)
    _set_threshold(window, min(r.probability for r in window.session.results.values()) - 1e-9)
    window.session.mark(1, "disagree", reader="Dr Window")
    disagreed = pydicom.dcmread(window.session.slices[1].path, stop_before_pixels=True).SOPInstanceUID
    _menu_action(window, "pacsOverlays").trigger()
    _menu_action(window, "sendToPacs").trigger()
    qtbot.waitUntil(lambda: window.pacs.send_worker is None, timeout=60000)
    assert window.status.text().startswith("Sent to the PACS: stored a structured report of 4 slices (4 flagged) and "
                                           "4 Grad-CAM overlay images"), window.status.text()
    client = client_for(orthanc.dicomweb)
    series = {s.modality: s for s in list_series(client, study_uid)}
    back = [pydicom.dcmread(p) for p in retrieve_study(client, StudyCache(tmp_path / "back"), study_uid,
                                                       [series["SR"].uid, series["OT"].uid]).paths]
    sr = next(ds for ds in back if ds.Modality == "SR")
    codes = [i.ConceptCodeSequence[0].CodeValue for i in _sr_items(sr)
             if i.ConceptNameCodeSequence[0].CodeValue == "REVIEW"]
    assert codes == ["DISAGREE"] and "Dr Window" in [str(i.get("TextValue", "")) for i in _sr_items(sr)]
    comments = {ds.SourceImageSequence[0].ReferencedSOPInstanceUID: ds.ImageComments
                for ds in back if ds.Modality == "OT"}
    assert len(comments) == 4 and REVIEW_LINES["disagree"] in comments[disagreed]
    assert sum(REVIEW_LINES["disagree"] in c for c in comments.values()) == 1
