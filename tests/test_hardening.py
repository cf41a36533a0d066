"""Bad input at scale, faults and privacy (the hardening issue)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pydicom.data
import pytest

from brainmri_desktop.core.errors import BrainMRIError
from brainmri_desktop.core.io.dicom import read_dicom

OUTCOMES = json.loads((Path(__file__).parent / "data" / "pydicom_outcomes.json").read_text())


def _roots() -> dict[str, Path]:
    """The two wheels' folders of test files; the pydicom-data wheel (`data_store`) is a test dependency, and when it is
    missing its pinned files are named missing by the test below rather than dropped from the sweep."""
    roots = {"pydicom": Path(pydicom.data.__file__).parent / "test_files"}
    spec = importlib.util.find_spec("data_store")
    if spec is not None and spec.origin:
        roots["pydicom-data"] = Path(spec.origin).parent / "data"
    return roots


def _on_disk() -> dict[str, Path]:
    return {f"{tag}/{p.relative_to(root)}": p for tag, root in _roots().items() for p in sorted(root.rglob("*.dcm"))}


@pytest.mark.parametrize("key,path", [pytest.param(k, p, id=k) for k, p in _on_disk().items()])
def test_every_shipped_dicom_loads_or_is_refused_as_expected(key, path):
    """Each file's outcome was reviewed once and is pinned: a change in behaviour shows up here by name."""
    try:
        outcome = f"slices:{len(read_dicom(path))}"
    except BrainMRIError as exc:
        assert str(path) in str(exc) and exc.reason
        outcome = type(exc).__name__
    assert outcome == OUTCOMES.get(key, "new file: review and add it to tests/data/pydicom_outcomes.json")


def test_every_pinned_file_is_on_disk_and_the_sweep_covers_both_wheels():
    on_disk = _on_disk()
    missing = sorted(set(OUTCOMES) - set(on_disk))
    assert not missing, (f"{len(missing)} pinned files are not on disk (pip install pydicom-data for those under "
                         f"pydicom-data/), e.g. {missing[:3]}")
    assert sum(k.startswith("pydicom/") for k in on_disk) >= 70
    assert sum(k.startswith("pydicom-data/") for k in on_disk) >= 60


_WRITER = """
import sys, time
from brainmri_desktop.core import atomic
real = atomic.os.fsync
def slow_fsync(fd):
    print("writing", flush=True)
    time.sleep(30)
    real(fd)
atomic.os.fsync = slow_fsync
atomic.atomic_write_text(sys.argv[1], "new " * 100000)
"""


def test_killed_writer_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "marks.json"
    target.write_text('{"old": true}')
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_text() == '{"old": true}'


def test_full_disk_keeps_the_previous_file_and_leaves_no_debris(tmp_path, monkeypatch):
    import errno

    from brainmri_desktop.core import atomic

    target = tmp_path / "marks.json"
    target.write_text("previous")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(OSError) as info:
        atomic.atomic_write_text(target, "new")
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["marks.json"]


def test_folder_vanishing_while_loading_is_reported(tmp_path):
    from brainmri_desktop.core.io import load_paths

    from .synthetic import write_dicom_series

    folder = tmp_path / "study"
    paths = write_dicom_series(folder, n=4)
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 1:
            for p in paths:
                p.unlink(missing_ok=True)

    report = load_paths([folder], progress=progress)
    assert len(report.slices) == 1 and len(report.errors) == 3
    assert all("cannot be read" in e.reason or "no such" in e.reason.lower() for e in report.errors)


def test_patient_identity_never_reaches_exports_or_logs(qtbot, model_dir, tmp_path, caplog):
    """Sentinels in every identifying field; the whole workflow with identity hidden; every written file searched,
    the PDF through its text (its streams are compressed and its lines kerned into pieces). The same export with
    identity shown must hold the name, or the search could not have found it."""
    from PySide6.QtCore import QSettings

    from brainmri_desktop.ui.main_window import MainWindow

    from .pdf_text import pdf_text
    from .synthetic import write_dicom_series

    sentinels = ["ZZSENTINELNAME", "ZZSENTINELID", "19111111", "ZZSENTINELACC"]
    write_dicom_series(tmp_path / "study", n=4, patient=(sentinels[0], sentinels[1]),
                       extra={"PatientBirthDate": sentinels[2], "AccessionNumber": sentinels[3]})
    out = tmp_path / "out"
    out.mkdir()
    caplog.set_level("DEBUG")
    window = MainWindow(models_dirs=[model_dir], settings=QSettings(str(out / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(window)
    window.bar.choose("tiny-cnn")
    window.open_paths([tmp_path / "study"])
    qtbot.waitUntil(lambda: window.session is not None and window.session.complete
                    and window.triage.infer_worker is None, timeout=60000)
    assert window.bar.hide_identity.isChecked()
    assert not any(s in window.windowTitle() for s in sentinels)
    window.session.include_out_of_scope = True
    m = window.session.manifest
    window.session.manifest = replace(m, threshold=replace(m.threshold, threshold=1e-6))  # every slice in the PDF
    window.select_slice(1)
    window.mark("agree")
    window.export_csv(out / "table.csv")
    window.export_pdf(out / "report.pdf")
    qtbot.waitUntil(lambda: window.triage.export_worker is None, timeout=60000)
    text = pdf_text((out / "report.pdf").read_bytes())
    assert "BrainMRI triage report" in text and "reader: agree" in text
    shown = tmp_path / "shown"
    window.bar.hide_identity.setChecked(False)
    window.export_pdf(shown / "report.pdf")
    qtbot.waitUntil(lambda: window.triage.export_worker is None, timeout=60000)
    assert f"Patient: {sentinels[0]}" in pdf_text((shown / "report.pdf").read_bytes())  # the search can see it
    window.bar.hide_identity.setChecked(True)
    window.close()
    written = list(out.rglob("*")) + [window.session.reviews.path]
    home = Path(os.environ["XDG_DATA_HOME"]).parent
    written += [p for p in home.rglob("*") if p.is_file()]
    for path in written:
        if path.is_file():
            data = path.read_bytes()
            searched = pdf_text(data) if data[:5] == b"%PDF-" else data.decode("latin-1")
            for s in sentinels:
                assert s not in searched, f"{s} found in {path}"
    for s in sentinels:
        assert s not in caplog.text


def test_an_output_that_is_a_pipe_or_device_is_written_in_place_not_replaced_by_a_file(tmp_path):
    """`brainmri predict --out /dev/null` as root once put a regular file where /dev/null was (the atomic rename):
    a path that exists and is not a regular file is written through, and stays what it was. A FIFO stands in for
    the device here, so that a regression cannot break the machine that runs the test."""
    import stat
    import threading

    from brainmri_desktop.core import atomic

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    read = []
    reader = threading.Thread(target=lambda: read.append(fifo.read_bytes()), daemon=True)
    reader.start()
    atomic.atomic_write_text(fifo, "slice,probability\n")
    reader.join(10)
    assert read == [b"slice,probability\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["out.fifo"]
