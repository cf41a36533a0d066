"""`brainmri batch` on a real Dask LocalCluster of two worker processes (issue 23): one row per slice, a second run
that does nothing, a worker killed in the middle of a study that loses and duplicates nothing, and failed studies
recorded with their reason while the rest go on."""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from brainmri_desktop.batch import BatchOptions, read_sources, run_batch
from brainmri_desktop.cli import main as brainmri
from brainmri_desktop.core.model_choice import find_model
from brainmri_desktop.core.packages import discover

from .synthetic import write_dicom_series


def _archive(root: Path, studies: int, slices: int = 8, extra: tuple[str, ...] = ()) -> Path:
    for k in range(studies):
        write_dicom_series(root / f"study{k}", n=slices, patient=(f"Synthetic^Patient{k}", f"SYN-{k:04d}"))
    list_file = root / "studies.txt"
    list_file.write_text("\n".join([f"study{k}" for k in range(studies)] + list(extra)) + "\n")
    return list_file


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _slice_counts(out: Path) -> Counter:
    return Counter((r["path"], r["frame"]) for r in _csv(out / "slices.csv") if not r["error"])


def test_three_studies_give_one_row_per_slice_and_a_second_run_redoes_nothing(model_dir, tmp_path, capsys):
    list_file, out = _archive(tmp_path, 3), tmp_path / "out"
    command = ["batch", "--workers", "2", "--models-dir", str(model_dir), "--model", "tiny-cnn", "--out", str(out),
               str(list_file)]
    assert brainmri(command) == 0
    err = capsys.readouterr().err
    assert "Dask dashboard: http" in err and "3 of 3 studies done (3 triaged by tiny-cnn" in err
    counts = _slice_counts(out)
    assert len(counts) == 24 and set(counts.values()) == {1}
    assert {r["model_id"] for r in _csv(out / "slices.csv")} == {"tiny-cnn"}
    table = _csv(out / "studies.csv")
    assert [(r["status"], r["slices"]) for r in table] == [("done", "8")] * 3
    written = {p: p.stat().st_mtime_ns for p in (out / "studies").glob("*.csv")}

    assert brainmri(command) == 0
    counts = _slice_counts(out)
    assert len(counts) == 24 and set(counts.values()) == {1}
    assert {p: p.stat().st_mtime_ns for p in (out / "studies").glob("*.csv")} == written  # nothing triaged again
    assert "3 of 3 studies done (0 triaged by tiny-cnn" in capsys.readouterr().err


def _first_study_started_and_not_done(studies: Path, deadline: float) -> tuple[Path, int]:
    while time.time() < deadline:
        for tries in sorted(studies.glob("*.tries")):
            if not tries.with_suffix(".json").exists():
                return tries, int(tries.read_text().split()[1])
        time.sleep(0.02)
    raise AssertionError("no study started within the time allowed")


def test_a_worker_killed_mid_study_loses_and_duplicates_nothing(model_dir, tmp_path):
    from distributed import Client, LocalCluster

    list_file = _archive(tmp_path, 4, extra=("unreadable", "not-there"))
    (tmp_path / "unreadable").mkdir()
    (tmp_path / "unreadable" / "a.png").write_bytes(b"not a picture")
    out = tmp_path / "out"
    options = BatchOptions(str(out), find_model(discover([model_dir]), "tiny-cnn"))
    sources = read_sources(list_file)
    results = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        runner = threading.Thread(target=lambda: results.extend(run_batch(client, sources, options, progress=False)))
        runner.start()
        # The first study to start is killed while it runs (the first one loads the model, which takes seconds).
        tries_file, pid = _first_study_started_and_not_done(out / "studies", time.time() + 180)
        os.kill(pid, signal.SIGKILL)
        runner.join(timeout=300)
        assert not runner.is_alive()

    counts = _slice_counts(out)
    assert len(counts) == 4 * 8 and set(counts.values()) == {1}  # every slice exactly once
    by_key = {r.study: r for r in results}
    killed = by_key[tries_file.stem]
    assert killed.status == "done" and killed.tries >= 2 and not killed.worker.endswith(f":{pid}")
    table = {r["line"]: r for r in _csv(out / "studies.csv")}
    assert [table[str(n)]["status"] for n in range(1, 7)] == ["done"] * 4 + ["failed"] * 2
    assert "nothing to triage" in table["5"]["error"] and table["6"]["error"]
    # The model is loaded once per worker process, not per study.
    statuses = [json.loads(p.read_text()) for p in (out / "studies").glob("*.json")]
    loads = Counter(s["worker"] for s in statuses if s["model_loaded"])
    studies_per_worker = Counter(s["worker"] for s in statuses)
    assert set(loads.values()) == {1} and max(studies_per_worker.values()) >= 2


def test_the_list_is_read_once_per_study_relative_to_its_folder(tmp_path):
    (tmp_path / "a").mkdir()
    list_file = tmp_path / "list.txt"
    list_file.write_text("# archive\n\na\n./a\n1.2.840.113619.2.55.3\n  1.2.840.113619.2.55.3  \n")
    sources = read_sources(list_file)
    assert [(s.line, s.text, s.pacs) for s in sources] == [
        (3, str((tmp_path / "a").resolve()), False), (5, "1.2.840.113619.2.55.3", True)]


def test_a_study_uid_without_a_server_is_one_line_and_status_2(model_dir, tmp_path, capsys):
    list_file = tmp_path / "list.txt"
    list_file.write_text("1.2.840.113619.2.55.3\n")
    code = brainmri(["batch", "--models-dir", str(model_dir), "--out", str(tmp_path / "out"), str(list_file)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "line 1 is a study UID: give --server URL" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("content", [None, "# nothing but a comment\n"])
def test_a_list_that_names_no_study_is_refused_naming_the_file(tmp_path, content, capsys):
    list_file = tmp_path / "list.txt"
    if content is not None:
        list_file.write_text(content)
    assert brainmri(["batch", "--out", str(tmp_path / "out"), str(list_file)]) == 2
    assert str(list_file) in capsys.readouterr().err


def test_pacs_studies_are_retrieved_by_the_workers_and_their_reports_sent(model_dir, tmp_path):
    from pydicom.uid import generate_uid

    from .orthanc import start_orthanc

    server = start_orthanc(tmp_path / "orthanc")
    try:
        on_pacs, not_on_pacs = generate_uid(), generate_uid()
        for path in write_dicom_series(tmp_path / "upload", n=6, extra={"StudyInstanceUID": on_pacs}):
            server.upload(path)
        write_dicom_series(tmp_path / "local", n=4)
        list_file, out = tmp_path / "studies.txt", tmp_path / "out"
        list_file.write_text(f"{on_pacs}\nlocal\n{not_on_pacs}\n")
        code = brainmri(["batch", "--workers", "1", "--models-dir", str(model_dir), "--model", "tiny-cnn",
                         "--server", server.dicomweb, "--send-results", "--out", str(out), str(list_file)])
        assert code == 1  # one study could not be done
        table = {r["line"]: r for r in _csv(out / "studies.csv")}
        assert [(table[n]["status"], table[n]["slices"]) for n in "123"] == [("done", "6"), ("done", "4"),
                                                                             ("failed", "0")]
        assert table["3"]["error"]
        assert len(_slice_counts(out)) == 10
        modalities = [s["00080060"]["Value"][0] for s in server.rest(f"/dicom-web/studies/{on_pacs}/series")]
        # The report (and the flagged slices' captures, OT) went back into the study it came from, once.
        assert modalities.count("SR") == 1 and modalities.count("MR") == 1
    finally:
        server.stop()


def test_without_dask_the_command_says_which_extra_to_install(model_dir, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # what an install without the extra (the desktop's) lacks
    (tmp_path / "study").mkdir()
    (tmp_path / "list.txt").write_text("study\n")
    assert brainmri(["batch", "--out", str(tmp_path / "out"), str(tmp_path / "list.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "'batch' extra (distributed is missing)" in err and len(err.splitlines()) == 1
