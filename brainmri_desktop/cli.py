"""`brainmri`: list models and triage images from the command line.

The CSV written by `predict` is a contract other tools read: one row per slice with at least
path, frame, model_id, probability, threshold, flagged, tta_std, cam_path, error for inputs that failed, and
out_of_scope: empty when the slice is in the model's scope, else the reason (such a slice keeps its probability but
is flagged only with --include-out-of-scope); warning: set on a flagged slice whose features are unlike the training
images (that check never hides a slice at or over the threshold).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import re
import sys
from pathlib import Path

from . import __version__
from .core import runtime
from .core.atomic import atomic_write_bytes, atomic_write_text
from .core.augment import MAX_TTA
from .core.errors import BrainMRIError
from .core.io import load_paths
from .core.model_choice import pointing_scores
from .core.packages import discover
from .core.review import Reviews, ReviewStore
from .core.wording import DISCLAIMER
from .pacs import cli as pacs_cli

CSV_COLUMNS = [
    "path", "frame", "model_id", "model_version", "probability", "threshold", "flagged", "second_look",
    "tta_std", "augmentations", "cam_path", "error", "out_of_scope", "warning",
]


class OneLineParser(argparse.ArgumentParser):
    """A command-line mistake is one line and exit status 2, not a usage block (`--help` still shows the usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def tta_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= count <= MAX_TTA:
        raise argparse.ArgumentTypeError(f"{count} is outside 1-{MAX_TTA}")
    return count


def _headline(metrics: dict) -> str:
    parts = []
    for key in ("auc", "sensitivity", "specificity"):
        value = metrics.get("validation", {}).get(key) if isinstance(metrics.get("validation"), dict) else None
        if isinstance(value, dict):
            value = value.get("value")
        if isinstance(value, (int, float)):
            parts.append(f"{key}={value:.3f}")
    parts += [f"gradcam_in_tumour[{source}]={cam['pointing_game']:.0%}" for source, cam in pointing_scores(metrics).items()]
    return " ".join(parts) or "-"


def cmd_models(args: argparse.Namespace) -> int:
    entries = discover(args.models_dir)
    if not entries:
        print("no model packages found", file=sys.stderr)
        return 1
    print(f"{'id':28} {'name':34} {'source':8} {'threshold':>9}  metrics")
    for e in entries:
        if e.ok:
            m = e.manifest
            print(f"{m.id:28} {m.name[:34]:34} {e.source:8} {m.threshold.threshold:9.3f}  {_headline(m.metrics)}")
        else:
            print(f"{e.path.name:28} {'UNUSABLE':34} {e.source:8} {'-':>9}  {e.error.reason}", file=sys.stdout)
    return 0 if any(e.ok for e in entries) else 1


def _cam_name(path: Path, frame: int) -> str:
    """One file name per slice, never a path: characters other than letters, digits, '.', '_' and '-' become '_'. The
    hash keeps names unique for equal file names in different folders, without any patient data in the name."""
    tag = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem)[:64].lstrip(".") or "slice"
    return f"{stem}_{tag}_f{frame}.npy"


def _save_cam(target: Path, heat) -> str:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, heat.astype(np.float32))
    atomic_write_bytes(target, buffer.getvalue())
    return str(target)


def _csv_text(session, cam_paths: dict[int, str], errors) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    model_id, version, threshold = session.manifest.id, session.manifest.version, session.point.threshold
    for i, d in session.decisions().items():
        s, r = session.slices[i], session.results[i]
        writer.writerow({
            "path": str(s.path), "frame": s.frame, "model_id": model_id, "model_version": version,
            "probability": f"{r.probability:.6f}", "threshold": f"{threshold:.6f}",
            "flagged": int(d.flagged), "second_look": int(d.second_look), "tta_std": f"{r.tta_std:.6f}",
            "augmentations": r.augmentations, "cam_path": cam_paths.get(i, ""), "error": "",
            "out_of_scope": d.out_of_scope or "", "warning": d.warning or "",
        })
    for err in errors:
        writer.writerow({"path": err.path, "frame": 0, "model_id": model_id, "error": err.reason})
    for i, reason in session.errors.items():
        writer.writerow({"path": str(session.slices[i].path), "frame": session.slices[i].frame, "model_id": model_id,
                         "error": reason})
    return out.getvalue()


def _scope_summary(session) -> str:
    outside = sum(1 for d in session.decisions().values() if d.out_of_scope)
    if not outside:
        return ""
    if session.include_out_of_scope:
        return f"{outside} outside what the model was trained on (flagged by probability, as asked); "
    return f"{outside} outside what the model was trained on, not flagged (--include-out-of-scope flags them); "


def _saved_marks(report) -> Reviews:
    """The marks readers saved in the window for these series (kept per series), so that the PDF and the report sent
    to a PACS say what the window's would."""

    reviews, offset = Reviews(), 0
    for series in report.series:
        reviews.marks.update({offset + i: mark for i, mark in ReviewStore(series.slices).marks.items()})
        offset += len(series.slices)
    return reviews


def _write_report(session, model, path: Path) -> None:
    """The PDF the window's File > Export report writes, with the patient hidden."""
    from .core.gradcam import GradCAM
    from .core.report import StudyReport, write_pdf_with_maps

    for _maps in write_pdf_with_maps(StudyReport.of(session, model.device), path, session,
                                     GradCAM(model)):
        pass  # maps go into the PDF only; a long study's do not pile up in the session


def session_for(report, model, args):
    """(Session, TTAConfig) for triaging a loaded study as `args` ask (predict's options, or batch's of the same
    names): the marks readers saved for its series, the operating point, the out-of-scope switch and the views."""
    from .core.inference import TTAConfig
    from .core.session import Session, Threshold

    session = Session(report.slices, _saved_marks(report))
    session.threshold = Threshold.HIGH_SENSITIVITY if args.high_sensitivity else Threshold.DEFAULT
    session.include_out_of_scope = args.include_out_of_scope
    session.start(model.manifest)
    return session, TTAConfig(count=args.tta or model.manifest.default_tta, adaptive=not args.full_tta)


def cmd_predict(args: argparse.Namespace) -> int:
    from .core.inference import LoadedModel
    from .core.model_choice import find_model

    entry = find_model(discover(args.models_dir), args.model)
    model = LoadedModel.load(entry)
    report = load_paths(pacs_cli.retrieve_for_predict(args) if args.server else args.paths)
    for err in report.errors:
        print(f"skipped {err.path}: {err.reason}", file=sys.stderr)
    if not report.slices:
        where = ", ".join(str(p) for p in args.paths) if args.paths else f"study {args.study}"
        why = "every file was refused (above)" if report.errors else "no image, DICOM or NIfTI file found"
        print(f"error: nothing to triage in {where}: {why}", file=sys.stderr)
        return 1
    session, tta = session_for(report, model, args)
    cam_dir = Path(args.cam_dir) if args.cam_dir else None
    cam_paths: dict[int, str] = {}
    try:
        for chunk in session.triage(model, tta, explain=(lambda i, s: True) if cam_dir else None):
            cams, chunk.cams = chunk.cams, {}  # written as they come, never kept: a long study's maps do not pile up
            session.accept(chunk)
            for i, heat in cams.items():
                cam_paths[i] = _save_cam(cam_dir / _cam_name(session.slices[i].path, session.slices[i].frame), heat)
        text = _csv_text(session, cam_paths, report.errors)
        if args.out:
            atomic_write_text(Path(args.out), text)
        else:
            sys.stdout.write(text)
        if args.report:
            _write_report(session, model, Path(args.report))
    except OSError as exc:
        print(f"error: {exc.filename or args.out or args.report or args.cam_dir} could not be written: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    if args.send_results:
        from .core.gradcam import GradCAM

        print(pacs_cli.send_for_predict(args, session, GradCAM(model)), file=sys.stderr)
    print(f"{len(session.results)} slices, {len(session.flagged())} flagged by {model.id} "
          f"({model.device}); {_scope_summary(session)}"
          f"{len(report.errors) + len(session.errors)} inputs unreadable. {DISCLAIMER}", file=sys.stderr)
    return 0 if session.results else 1


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="brainmri", description=f"Brain MRI tumour triage. {DISCLAIMER}")
    parser.add_argument("--version", action="version", version=f"brainmri {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", action="append", type=Path, default=[],
                        help="another folder of model packages (repeatable; also BRAINMRI_MODELS)")
    add_runtime_argument(common)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", parents=[common], help="list every model package found").set_defaults(func=cmd_models)
    p = sub.add_parser("predict", parents=[common], help="triage images, DICOM files and folders")
    p.add_argument("paths", nargs="*", type=Path, help="images, DICOM files and folders (none with --server)")
    p.add_argument("--model", help="model id (default: the bundled model whose Grad-CAM was measured to point at "
                                   "tumours, then the best validation AUC; `brainmri models` lists them)")
    p.add_argument("--tta", type=tta_count, help=f"test-time augmentations, 1-{MAX_TTA} (default: the model's)")
    p.add_argument("--full-tta", action="store_true", help="augment every slice, not only those near the threshold")
    p.add_argument("--high-sensitivity", action="store_true", help="use the model's high-sensitivity operating point")
    p.add_argument("--include-out-of-scope", action="store_true",
                   help="flag slices outside what the model was trained on by their probability too (by default "
                        "they keep their probability, are named in the out_of_scope column and are not flagged)")
    p.add_argument("--cam-dir", type=Path, help="save each slice's Grad-CAM map here as float32 .npy")
    p.add_argument("--out", type=Path, help="CSV file (default: standard output)")
    p.add_argument("--report", type=Path, metavar="FILE.pdf",
                   help="also write the PDF report the window exports (pictured slices with their Grad-CAM maps)")
    pacs_cli.add_predict_arguments(p)
    p.set_defaults(func=cmd_predict)
    from .batch import add_batch_command  # batch imports this module's predict functions; Dask loads only when run

    add_batch_command(sub, [common])
    pacs_cli.add_pacs_commands(sub)
    return parser


def add_runtime_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", choices=runtime.RUNTIMES,
                        help="what runs the models: onnx (ONNX Runtime, the package's exported graphs), keras (the "
                             "Keras model; needs the trainer's install), auto (default: onnx where the package has "
                             f"graphs and ONNX Runtime is installed); also {runtime.ENV_RUNTIME}")


def use_runtime(args: argparse.Namespace) -> None:
    """The runtime asked for on the command line, for every model this process loads (and the workers it starts)."""
    if getattr(args, "runtime", None):
        os.environ[runtime.ENV_RUNTIME] = args.runtime


def _predict_problem(args: argparse.Namespace) -> str | None:
    if args.server and args.paths:
        return "give either paths or --server, not both"
    if not args.server and not args.paths:
        return "give images, DICOM files or folders to triage, or --server URL --study STUDY_UID"
    return pacs_cli.check_predict_arguments(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "predict" and (problem := _predict_problem(args)):
        parser.error(problem)
    use_runtime(args)
    try:
        return args.func(args)
    except BrainMRIError as exc:  # a model that cannot be found or loaded, a file the core refused
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
