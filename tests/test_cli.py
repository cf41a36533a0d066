from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import cv2

from brainmri_desktop.cli import main as brainmri
from brainmri_desktop.ui.app import main as desktop

from .synthetic import head_image, write_dicom_series


def test_models_lists_usable_and_unusable_packages(model_dir, tmp_path, capsys):
    shutil.copytree(model_dir, tmp_path / "m")
    (tmp_path / "m" / "spot" / "weights.npz").write_bytes(b"tampered")
    assert brainmri(["models", "--models-dir", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "tiny-cnn" in out and "UNUSABLE" in out and "sha256" in out


def test_predict_mixed_inputs_writes_the_contract_csv(model_dir, tmp_path):
    write_dicom_series(tmp_path / "series", n=3)
    cv2.imwrite(str(tmp_path / "a.png"), head_image(70, 90))
    (tmp_path / "bad.png").write_bytes(b"xx")
    out = tmp_path / "out.csv"
    code = brainmri(["predict", "--models-dir", str(model_dir), "--model", "tiny-cnn", "--tta", "3",
                     "--out", str(out), str(tmp_path / "series"), str(tmp_path / "a.png"), str(tmp_path / "bad.png")])
    assert code == 0
    rows = list(csv.DictReader(open(out)))
    assert {"path", "frame", "model_id", "probability", "threshold", "flagged", "tta_std", "cam_path", "error"} <= set(rows[0])
    good = [r for r in rows if not r["error"]]
    assert len(good) == 4 and all(0 <= float(r["probability"]) <= 1 for r in good)
    assert [r for r in rows if r["error"]][0]["path"].endswith("bad.png")


def test_predict_exits_non_zero_when_nothing_is_readable(model_dir, tmp_path):
    (tmp_path / "bad.dcm").write_bytes(b"")
    assert brainmri(["predict", "--models-dir", str(model_dir), str(tmp_path / "bad.dcm")]) != 0


def test_self_test_passes_and_fails_on_a_tampered_package(model_dir, tmp_path, capsys):
    assert desktop(["--self-test", "--models-dir", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "self-test passed" in out
    assert re.search(r"in the window's engine process \(.+\): within \S+ of this process OK", out), out
    shutil.copytree(model_dir / "tiny-cnn", tmp_path / "bad" / "tiny-cnn")
    (tmp_path / "bad" / "tiny-cnn" / "extra.txt").write_text("x")
    assert desktop(["--self-test", "--models-dir", str(tmp_path / "bad")]) == 1


def test_startup_check_opens_the_window_and_reports_when(model_dir, tmp_path):
    """In a process of its own, as a user starts it: app.exec() in the test process would end pytest-qt's loops."""
    import os
    import subprocess
    import sys
    import time

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_DATA_HOME": str(tmp_path / "data")}
    before = time.time()
    proc = subprocess.run([sys.executable, "-m", "brainmri_desktop.ui.app", "--startup-check", "--models-dir",
                           str(model_dir)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("window shown at ")
    assert before <= float(line.rsplit(" ", 1)[1]) <= time.time()


def test_predict_names_stay_inside_the_cam_folder_and_unwritable_targets_fail_cleanly(model_dir, tmp_path, capsys):
    odd = tmp_path / "in" / "..\\..\\Ünïcode name;rm -rf.png"
    odd.parent.mkdir()
    cv2.imwrite(str(tmp_path / "plain.png"), head_image(64, 64))
    odd.write_bytes((tmp_path / "plain.png").read_bytes())
    cams = tmp_path / "cams"
    assert brainmri(["predict", "--models-dir", str(model_dir), "--model", "tiny-cnn", "--cam-dir", str(cams),
                     "--out", str(tmp_path / "out.csv"), str(odd)]) == 0
    written = list(cams.iterdir())
    assert len(written) == 1 and written[0].parent == cams
    assert all(c.isalnum() or c in "._-" for c in written[0].name)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    capsys.readouterr()
    # a target under a regular file cannot be written, even by root (CI runs as root, so permissions would not do)
    assert brainmri(["predict", "--models-dir", str(model_dir), "--model", "tiny-cnn",
                     "--out", str(blocker / "out.csv"), str(odd)]) == 2
    err = capsys.readouterr().err
    assert "could not be written" in err and "a-file" in err
    assert brainmri(["predict", "--models-dir", str(model_dir), "--model", "tiny-cnn",
                     "--cam-dir", str(blocker / "cams"), str(odd)]) == 2
    assert blocker.read_text() == "not a folder"


def _run_cli(*args: str, env_home=None):
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_DATA_HOME": str(env_home or "/nonexistent")}
    return subprocess.run([sys.executable, "-m", "brainmri_desktop.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_command_line_mistakes_end_in_one_line_and_a_non_zero_status(model_dir, tmp_path):
    cv2.imwrite(str(tmp_path / "x.png"), head_image(64, 64))
    for args, words in ((["--tta", "99"], "99 is outside 1-8"), (["--tta", "0"], "0 is outside 1-8"),
                        (["--tta", "two"], "'two' is not a whole number"), (["--model", "nope"], "nope: no usable model"),
                        (["--colour"], "unrecognized arguments: --colour")):
        proc = _run_cli("predict", "--models-dir", str(model_dir), *args, str(tmp_path / "x.png"), env_home=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_predict_help_names_the_default_model_policy():
    proc = _run_cli("predict", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "Grad-CAM was measured to point at tumours" in text and "ResNet50" not in text and "1-8" in text


def test_a_manifest_asking_for_more_views_than_exist_predicts_with_all_of_them(model_dir, tmp_path):
    import json

    shutil.copytree(model_dir / "tiny-cnn", tmp_path / "m" / "tiny-cnn")
    manifest = tmp_path / "m" / "tiny-cnn" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "default_tta": 10}))
    cv2.imwrite(str(tmp_path / "a.png"), head_image(70, 90))
    out = tmp_path / "out.csv"
    assert brainmri(["predict", "--models-dir", str(tmp_path / "m"), "--model", "tiny-cnn", "--full-tta",
                     "--out", str(out), str(tmp_path / "a.png")]) == 0
    assert [r["augmentations"] for r in csv.DictReader(open(out))] == ["8"]


def test_high_sensitivity_decides_the_flags_of_the_csv(model_dir, tmp_path):
    """tiny-cnn gives a large disc about 0.95, a small one about 0.35 and none about 0.05: the small discs are
    flagged at the high-sensitivity point (0.2) only."""
    large, small = (2, 5), (1, 4)
    write_dicom_series(tmp_path / "series", n=6, tumour_slices=large, small_tumour_slices=small)
    rows = {}
    for flag in ([], ["--high-sensitivity"]):
        out = tmp_path / f"out{len(flag)}.csv"
        assert brainmri(["predict", "--models-dir", str(model_dir), "--model", "tiny-cnn", *flag, "--out", str(out),
                         str(tmp_path / "series")]) == 0
        rows[bool(flag)] = list(csv.DictReader(open(out)))  # in the series' order, slice 0 first
    for high, threshold, flagged in ((False, 0.5, large), (True, 0.2, large + small)):
        assert all(float(r["threshold"]) == threshold for r in rows[high])
        assert [r["flagged"] for r in rows[high]] == [str(int(float(r["probability"]) >= threshold)) for r in rows[high]]
        assert [r["flagged"] for r in rows[high]] == [str(int(i in flagged)) for i in range(6)]


def _flag_everything(model_dir, tmp_path):
    """A copy of tiny-cnn whose threshold flags every slice it may flag: what is left unflagged was gated."""
    import json

    shutil.copytree(model_dir / "tiny-cnn", tmp_path / "m" / "tiny-cnn")
    manifest = tmp_path / "m" / "tiny-cnn" / "manifest.json"
    d = json.loads(manifest.read_text())
    d["threshold"]["threshold"] = 1e-6
    manifest.write_text(json.dumps(d))
    return tmp_path / "m"


def test_a_sagittal_series_is_out_of_scope_and_flagged_only_when_asked(model_dir, tmp_path, capsys):
    """Every slice carries a large disc (tiny-cnn: about 0.95): what is left unflagged was gated."""
    write_dicom_series(tmp_path / "sag", n=4, tumour_slices=range(4),
                       extra={"ImageOrientationPatient": [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]})
    write_dicom_series(tmp_path / "ax", n=3, tumour_slices=range(3))
    rows = {}
    for flag in ([], ["--include-out-of-scope"]):
        out = tmp_path / f"out{len(flag)}.csv"
        assert brainmri(["predict", "--models-dir", str(model_dir), "--model", "tiny-cnn", "--tta", "1", *flag,
                         "--out", str(out), str(tmp_path / "sag"), str(tmp_path / "ax")]) == 0
        rows[bool(flag)] = list(csv.DictReader(open(out)))
        assert "4 outside what the model was trained on" in capsys.readouterr().err
    for included in (False, True):
        sagittal = [r for r in rows[included] if Path(r["path"]).parent.name == "sag"]
        axial = [r for r in rows[included] if Path(r["path"]).parent.name == "ax"]
        assert len(sagittal) == 4 and len(axial) == 3
        assert all("sagittal" in r["out_of_scope"] and 0 <= float(r["probability"]) <= 1 for r in sagittal)
        assert all(r["out_of_scope"] == "" and r["flagged"] == "1" for r in axial)
        assert [r["flagged"] for r in sagittal] == (
            [str(int(float(r["probability"]) >= float(r["threshold"]))) for r in sagittal] if included else ["0"] * 4)
    assert [r["probability"] for r in rows[False]] == [r["probability"] for r in rows[True]]
    # new columns come last, so the others keep their places
    assert list(rows[False][0])[-2:] == ["out_of_scope", "warning"]


def test_a_blank_png_is_out_of_scope_with_its_reason(model_dir, tmp_path):
    import numpy as np

    cv2.imwrite(str(tmp_path / "blank.png"), np.zeros((64, 64), np.uint8))
    out = tmp_path / "out.csv"
    assert brainmri(["predict", "--models-dir", str(_flag_everything(model_dir, tmp_path)), "--model", "tiny-cnn",
                     "--out", str(out), str(tmp_path / "blank.png")]) == 0
    [row] = list(csv.DictReader(open(out)))
    assert "no head" in row["out_of_scope"] and row["flagged"] == "0" and row["probability"] != ""


def test_predict_report_writes_the_windows_pdf_with_the_caveat_and_the_readers_marks(model_dir, tmp_path, capsys):
    """Issue 25.1: `brainmri predict --report FILE.pdf` writes what File > Export report writes (the same function),
    with the map's caveat and the marks the reader saved in the window; the CSV names the model's version."""
    from brainmri_desktop.core.gradcam import GradCAM
    from brainmri_desktop.core.inference import LoadedModel
    from brainmri_desktop.core.io import load_paths
    from brainmri_desktop.core.model_choice import find_model, gradcam_caveat
    from brainmri_desktop.core.packages import discover
    from brainmri_desktop.core.report import StudyReport, write_pdf_with_maps
    from brainmri_desktop.core.review import ReviewStore
    from brainmri_desktop.core.session import Session

    from .pdf_text import pdf_text

    write_dicom_series(tmp_path / "series", n=3)
    slices = load_paths([tmp_path / "series"]).slices
    ReviewStore(slices).set(0, "agree", "seen", reader="Dr CLI")
    code = brainmri(["predict", "--models-dir", str(model_dir), "--model", "tiny-cnn", "--out",
                     str(tmp_path / "p.csv"), "--report", str(tmp_path / "r.pdf"), str(tmp_path / "series")])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    entry = find_model(discover([model_dir]), "tiny-cnn")
    assert {r["model_version"] for r in rows} == {entry.manifest.version}
    text = pdf_text((tmp_path / "r.pdf").read_bytes())
    assert gradcam_caveat(entry.manifest) in text and "reader: agree (by Dr CLI, " in text
    assert "Triage aid, not a diagnosis." in text
    # the window's export of the same series and marks: the same pages, but for the minute it was written
    model = LoadedModel.load(entry)
    session = Session(slices, ReviewStore(slices))
    session.run(model)
    list(write_pdf_with_maps(StudyReport.of(session, model.device), tmp_path / "w.pdf", session,
                             GradCAM(model)))
    strip = lambda t: [line for line in t.splitlines() if not line.startswith("Date: ")]  # noqa: E731
    assert strip(pdf_text((tmp_path / "w.pdf").read_bytes())) == strip(text)
