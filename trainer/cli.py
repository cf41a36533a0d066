"""`brainmri-train` (also `python -m trainer`): eda, train, cv, evaluate, ablate, export."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from brainmri_desktop.core.errors import BrainMRIError  # noqa: E402
from brainmri_desktop.core.preprocess import INTENSITY_SCALES  # noqa: E402
from brainmri_desktop.core.runtime import import_keras  # noqa: E402

from .augment import STRENGTHS  # noqa: E402
from .config import DataRoot, TrainConfig, read_config  # noqa: E402
from .distribute import MODES  # noqa: E402
from .train_graph import PRECISIONS  # noqa: E402


def _config(args) -> TrainConfig:
    cfg = read_config(getattr(args, "config", None))
    changes = {k: getattr(args, k, None) for k in ("arch", "epochs", "img_size", "seed", "batch_size", "augment",
                                                    "loss", "optimizer", "schedule", "backbone_weights",
                                                    "steps_per_epoch", "cache_dir", "strip_rim",
                                                    "lesion_weight", "lesion_evidence", "cell_score", "intensity_scale",
                                                    "precision", "workers", "distribute")}
    if getattr(args, "exclude_source", None):
        changes["exclude_sources"] = list(args.exclude_source)
    cfg = cfg.override(**changes)
    if getattr(args, "data", None):
        label = getattr(args, "label", None)
        cfg = cfg.override(data=[DataRoot(path=str(p), label=label).__dict__ for p in args.data])
    return cfg


def cmd_train(args) -> int:
    from .train import run

    results = run(_config(args), args.out, resume=args.resume, command=args.command_line, packed=args.packed_data,
                  time_budget=args.time_budget * 60 if args.time_budget else None)
    return 3 if "paused_after_epoch" in results else 0  # 3: stopped by --time-budget, continue with --resume


def cmd_export(args) -> int:
    from .export import export

    path = export(args.run_dir, args.to, args.id, args.force, args.name, leave_out_runs=args.leave_out)
    print(f"exported {path}")
    return 0


def cmd_choose_tta(args) -> int:
    from .train import choose_tta

    res = choose_tta(args.run_dir, args.views)
    print(f"default TTA {res['default_tta']}: validation AUC {res['validation']['auc']['value']}, "
          f"threshold {res['threshold']['threshold']:.3f}, ECE {res['ece_after']:.3f}")
    return 0


def cmd_eda(args) -> int:
    from .eda import eda

    report = eda(_config(args), args.out)
    print(json.dumps(report["summary"], indent=1))
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_package

    res = evaluate_package(args.model, _config(args), args.out)
    print(json.dumps({k: res[k] for k in ("overall",)}, indent=1))
    return 0


def cmd_cv(args) -> int:
    from .crossval import cross_validate

    res = cross_validate(_config(args), args.out, folds=args.folds, leave_one_source_out=args.leave_one_source_out)
    print(json.dumps(res["summary"], indent=1))
    return 0


def cmd_ablate(args) -> int:
    from .ablate import ablate

    table = ablate(Path(args.config), args.out)
    print(table)
    return 0


def _data_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--data", action="append", type=Path, required=required, help="a data root (repeatable)")
    p.add_argument("--label", type=int, choices=(0, 1), help="one label for every image of the --data folders")
    p.add_argument("--config", type=Path, help="TOML or YAML run configuration")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=("cnn", "resnet50"))
    p.add_argument("--epochs", type=int)
    p.add_argument("--img-size", type=int, dest="img_size")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--seed", type=int)
    p.add_argument("--augment", choices=STRENGTHS)
    p.add_argument("--loss", choices=("bce", "focal"))
    p.add_argument("--optimizer", choices=("adam", "adamw"))
    p.add_argument("--schedule", choices=("plateau", "cosine"))
    p.add_argument("--backbone-weights", dest="backbone_weights", help="imagenet, random or a local weights file")
    p.add_argument("--steps-per-epoch", type=int, dest="steps_per_epoch")
    p.add_argument("--cache-dir", dest="cache_dir")
    p.add_argument("--strip-rim", type=float, dest="strip_rim", help="share of the head diameter stripped from its border")
    p.add_argument("--intensity-scale", choices=INTENSITY_SCALES, dest="intensity_scale",
                   help="map the head's 1st/99th percentiles to 0/1, or its 1st percentile/median to 0/0.5")
    p.add_argument("--lesion-weight", type=float, dest="lesion_weight",
                   help="weight of the auxiliary tumour-location loss on the Grad-CAM layer (0: off)")
    p.add_argument("--lesion-evidence", action="store_true", default=None, dest="lesion_evidence",
                   help="let the logit read the peak of a tumour map on the Grad-CAM layer")
    p.add_argument("--cell-score", action="store_true", default=None, dest="cell_score",
                   help="score each image by a smooth maximum of per-cell tumour logits inside the head")
    p.add_argument("--exclude-source", action="append", help="keep a source out of training (leave-source-out)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="mixed_bfloat16 computes in bfloat16 (fast on a GPU); the exported package is float32 either way")
    p.add_argument("--workers", type=int, help="processes that read the images and build the training batches")
    p.add_argument("--distribute", choices=MODES,
                   help="data: data-parallel over every device JAX sees (KERAS_BACKEND=jax; docs/BATCH.md)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brainmri-train", description="Train, validate and export BrainMRI models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("eda", help="class balance, sizes, intensities and a sample grid")
    _data_args(p)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_eda)
    p = sub.add_parser("train", help="train, calibrate and choose thresholds; writes a run folder")
    _data_args(p)
    _train_args(p)
    p.add_argument("--out", type=Path, default=Path("runs/latest"))
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--packed-data", type=Path, dest="packed_data",
                   help="data preprocessed elsewhere (python -m trainer.remote pack-data) instead of the data folders")
    p.add_argument("--time-budget", type=float, dest="time_budget",
                   help="minutes: stop after the last epoch expected to end within them (exit status 3); "
                        "--resume continues")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("cv", help="k-fold or leave-one-source-out cross-validation")
    _data_args(p)
    _train_args(p)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--leave-one-source-out", action="store_true")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_cv)
    p = sub.add_parser("evaluate", help="score a model package on a labelled folder")
    p.add_argument("--model", type=Path, required=True)
    _data_args(p)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("ablate", help="train each override of a config and tabulate the results")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_ablate)
    p = sub.add_parser("export", help="write a run's model package")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--to", type=Path, help="models folder (default: the per-user models folder)")
    p.add_argument("--id")
    p.add_argument("--name")
    p.add_argument("--force", action="store_true",
                   help="replace a package with the same id; export a run with validation AUC below 0.7 or a "
                        "collapsed calibration")
    p.add_argument("--leave-out", action="append", type=Path, default=[],
                   help="a run trained with --exclude-source: its figures go into the model card (repeatable)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("choose-tta", help="make N views a run's default TTA, recalibrated from its saved predictions")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--views", type=int, required=True)
    p.set_defaults(func=cmd_choose_tta)
    from .onnx_export import add_graphs_parser
    from .plane import add_plane_parser
    from .scope_fit import add_fit_scope_parser

    add_fit_scope_parser(sub)
    add_plane_parser(sub)
    add_graphs_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["brainmri-train", *argv])  # recorded with the run, for its model card
    try:
        import_keras()  # every command builds or loads Keras models; TensorFlow's start-up notes stay quiet
        return args.func(args)
    except (ValueError, OSError, BrainMRIError) as exc:
        print("brainmri-train: " + " ".join(str(exc).split()), file=sys.stderr)  # one line, whatever the error
        return 2


if __name__ == "__main__":
    sys.exit(main())
