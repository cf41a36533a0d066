"""Review marks without Qt: who and when, clearing, note-only marks, version 1 files, atomic writes, and the exports
that carry them (CSV columns, every flagged slice in the PDF or a count of those left out)."""

from __future__ import annotations

import csv
import errno
import getpass
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from brainmri_desktop.core import atomic
from brainmri_desktop.core.inference import SliceResult
from brainmri_desktop.core.io.slices import Slice
from brainmri_desktop.core.model_choice import find_model
from brainmri_desktop.core.packages import discover
from brainmri_desktop.core.report import StudyReport, write_csv, write_pdf
from brainmri_desktop.core.review import Mark, Reviews, ReviewStore, slice_keys, system_reader
from brainmri_desktop.core.session import Session

from .pdf_text import pdf_text
from .synthetic import head_image


def _slices(n: int) -> list[Slice]:
    return [Slice(Path(f"/nowhere/s{i}.png"), head_image(48, 48, seed=i)) for i in range(n)]


def test_a_mark_records_the_reader_and_the_time_with_its_zone(tmp_path, monkeypatch):
    monkeypatch.setattr(getpass, "getuser", lambda: "sysuser")
    store = ReviewStore(_slices(3), tmp_path)
    before = datetime.now().astimezone()
    store.set(1, "agree", "clear margin", reader="Dr Reader")
    store.set(2, "disagree")  # no reader name set: the system user name
    one, two = store.marks[1], store.marks[2]
    assert (one.verdict, one.note, one.reader) == ("agree", "clear margin", "Dr Reader")
    assert two.reader == "sysuser"
    stamp = datetime.fromisoformat(one.time)
    assert stamp.tzinfo is not None and abs((stamp - before).total_seconds()) < 5
    again = ReviewStore(_slices(3), tmp_path).marks
    assert again[1] == one and again[2] == two  # reader and time are saved, not only kept in memory
    assert "Dr Reader" not in repr(one)  # a logged mark does not carry the name


@pytest.mark.parametrize("error", [KeyError("uid 12345"), OSError("no user name")])
def test_no_system_user_name_gives_an_empty_reader_not_a_crash(monkeypatch, error):
    def fails():
        raise error

    monkeypatch.setattr(getpass, "getuser", fails)
    assert system_reader() == ""
    reviews = Reviews()
    reviews.set(0, "agree")
    assert reviews.marks[0].reader == "" and reviews.marks[0].byline.startswith("20")  # the time alone


def test_clearing_a_mark_forgets_it_on_disk(tmp_path):
    slices = _slices(3)
    store = ReviewStore(slices, tmp_path)
    store.set(0, "agree", "a")
    store.set(2, "disagree", "b")
    store.clear(0)
    assert list(store.marks) == [2]
    saved = json.loads(store.path.read_text())["marks"]
    assert list(saved) == [slice_keys(slices)[2]]
    assert list(ReviewStore(slices, tmp_path).marks) == [2]
    session = Session(slices, ReviewStore(slices, tmp_path))
    session.mark(2, None)  # the session's way of clearing
    assert session.marks == {} and ReviewStore(slices, tmp_path).marks == {}


def test_a_note_without_a_verdict_is_a_note_only_mark(tmp_path):
    slices = _slices(3)
    session = Session(slices, ReviewStore(slices, tmp_path))
    session.note(1, "small bright spot, check prior", reader="R1")
    mark = ReviewStore(slices, tmp_path).marks[1]
    assert (mark.verdict, mark.note, mark.reader) == ("", "small bright spot, check prior", "R1")
    session.mark(1, "agree", "small bright spot, check prior", reader="R1")
    time_marked = session.marks[1].time
    session.note(1, "small bright spot, check prior")  # unchanged text: neither reader nor time change
    assert session.marks[1].time == time_marked and session.marks[1].reader == "R1"
    session.note(1, "", reader="R2")  # emptied: the verdict stays
    assert (session.marks[1].verdict, session.marks[1].note, session.marks[1].reader) == ("agree", "", "R2")
    session.note(2, "typo")
    session.note(2, "")  # emptied note-only mark: nothing left to keep
    assert 2 not in ReviewStore(slices, tmp_path).marks


def test_marks_without_a_store_live_in_memory_with_the_same_rules():
    session = Session(_slices(2))
    session.note(0, "only a note", reader="R")
    session.mark(1, "disagree", reader="R")
    assert session.marks[0].verdict == "" and session.marks[1].reader == "R"
    session.mark(1, None)
    assert list(session.marks) == [0]
    with pytest.raises(ValueError):
        session.mark(0, "maybe")


def test_files_of_the_first_version_still_load(tmp_path):
    slices = _slices(4)
    keys = slice_keys(slices)
    store_path = ReviewStore(slices, tmp_path).path
    store_path.parent.mkdir(parents=True, exist_ok=True)
    store_path.write_text(json.dumps({"version": 1, "marks": {
        keys[0]: {"verdict": "agree", "note": ""},
        keys[3]: {"verdict": "disagree", "note": "motion"},
        keys[1]: {"verdict": "unsure", "note": "not a verdict this app knows"},
        "/elsewhere/x.png#0": {"verdict": "agree", "note": ""},
    }}))
    store = ReviewStore(slices, tmp_path)
    assert store.load_error is None
    assert store.marks == {0: Mark("agree", ""), 3: Mark("disagree", "motion")}
    assert store.marks[3].byline == "reader and time not recorded"
    store.set(0, "disagree", reader="R")  # saved in the new version, the old marks kept
    raw = json.loads(store_path.read_text())
    assert raw["version"] == 2 and raw["marks"][keys[3]]["note"] == "motion" and raw["marks"][keys[0]]["reader"] == "R"


def test_a_failed_write_keeps_the_previous_file_and_the_mark_in_memory(tmp_path, monkeypatch):
    slices = _slices(2)
    store = ReviewStore(slices, tmp_path)
    store.set(0, "agree", reader="R")
    before = store.path.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(OSError):
        store.set(1, "disagree", reader="R")
    with pytest.raises(OSError):
        store.clear(0)
    assert store.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [store.path.name]  # no temporary file left behind
    assert list(store.marks) == [1]  # kept for this session


def _report(model_dir, n: int, marks: dict[int, tuple]) -> StudyReport:
    session = Session(_slices(n))
    session.manifest = find_model(discover([model_dir]), "tiny-cnn").manifest
    session.results = {i: SliceResult(i, 0.6 + i / (10 * n), 0.0, 0.6, 0.7, 1, 0.5) for i in range(n)}
    for i, (verdict, note, reader) in marks.items():
        session.mark(i, verdict, note, reader) if verdict else session.note(i, note, reader)
    return StudyReport.of(session, "CPU")


def test_the_csv_carries_each_marks_reader_and_time(tmp_path, model_dir):
    report = _report(model_dir, 4, {1: ("agree", "ok", "R1"), 2: (None, "note only", "R2")})
    write_csv(report, tmp_path / "t.csv")
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert [r["reader"] for r in rows] == ["", "R1", "R2", ""]
    assert rows[1]["marked_at"] == report.marks[1].time and datetime.fromisoformat(rows[2]["marked_at"]).tzinfo
    assert (rows[2]["review"], rows[2]["note"]) == ("", "note only")


def test_the_pdf_shows_every_flagged_slice_up_to_the_bound_and_counts_those_left_out(tmp_path, model_dir):
    report = _report(model_dir, 7, {0: ("disagree", "motion", "Reader One")})
    assert len(report.flagged) == 7
    write_pdf(report, tmp_path / "all.pdf", lambda i: None)
    text = pdf_text((tmp_path / "all.pdf").read_bytes())
    assert all(f"slice {i + 1}: s{i}.png" in text for i in range(7))
    assert "left out" not in text
    assert "reader: disagree (by Reader One, " in text and "note: motion" in text
    write_pdf(report, tmp_path / "bounded.pdf", lambda i: None, max_slices=3)
    text = pdf_text((tmp_path / "bounded.pdf").read_bytes())
    assert "4 left out (the marked and the most probable are kept)" in text
    # the marked slice, then the most probable two (the last slices here), in slice order
    assert [i for i in range(7) if f"slice {i + 1}: s{i}.png" in text] == [0, 5, 6]
    assert "slice 1  disagree (by Reader One, " in text


def test_the_pdf_pictures_unflagged_slices_with_a_second_look_or_a_mark_and_the_csv_names_the_model(tmp_path,
                                                                                                     model_dir):
    """Issue 26 item 4: a reader who agreed with an unflagged slice finds it in the PDF; the CSV says which model."""
    from dataclasses import replace

    from brainmri_desktop.core.model_choice import gradcam_caveat

    report = _report(model_dir, 5, {1: ("agree", "tumour, missed", "R1")})
    t = report.point.threshold
    report.results = {i: SliceResult(i, p, 0.0, lo, hi, 2, 0.5) for i, (p, lo, hi) in enumerate(
        [(0.1, 0.05, 0.15), (t - 0.2, t - 0.25, t - 0.15), (t - 0.01, t - 0.1, t + 0.1), (0.9, 0.85, 0.95),
         (0.05, 0.0, 0.1)])}
    report.decisions = {i: replace(report.decisions[i], flagged=r.probability >= t,
                                   second_look=r.p_low < t <= r.p_high) for i, r in report.results.items()}
    assert report.flagged == [3] and report.pdf_slices() == [1, 2, 3]
    write_pdf(report, tmp_path / "r.pdf", lambda i: None)
    text = pdf_text((tmp_path / "r.pdf").read_bytes())
    assert [i for i in range(5) if f"slice {i + 1}: s{i}.png" in text] == [1, 2, 3]
    # "flagged" is cut at its "fl" ligature in the PDF's text
    assert f"p = {t - 0.2:.3f} (threshold {t:.3f}) - not " in text and "reader: agree (by R1, " in text
    assert gradcam_caveat(report.manifest) in text
    write_csv(report, tmp_path / "r.csv")
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert {(r["model_id"], r["model_version"]) for r in rows} == {(report.manifest.id, report.manifest.version)}
    assert all(r["disclaimer"].startswith("Triage aid, not a diagnosis.") for r in rows)
