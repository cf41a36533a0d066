"""Turning a finished run folder into a model package the application finds."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from brainmri_desktop.core import backend
from brainmri_desktop.core.errors import ModelPackageError
from brainmri_desktop.core.manifest import Manifest, OperatingPoint
from brainmri_desktop.core.packages import user_models_dir, write_package
from brainmri_desktop.core.preprocess import PreprocessSpec

from . import __version__
from .architectures import gradcam_layer, load_run_model
from .calibrate import TEMPERATURE_BOUNDS
from .onnx_export import graph_files

NAMES = {"cnn": "Custom CNN (32-64-128)", "resnet50": "ResNet50, dual-branch head"}
MIN_VALIDATION_AUC = 0.7  # below it a package would flag near chance, yet appear in the window beside the bundled ones


def weakness(results: dict) -> str | None:
    """Why a run (its results.json) is too weak to export without --force, or None."""
    auc = ((results.get("validation") or {}).get("auc") or {}).get("value")
    if auc is None or not auc >= MIN_VALIDATION_AUC:
        return f"its validation AUC is {'unknown' if auc is None else f'{auc:.2f}'}, below {MIN_VALIDATION_AUC}"
    t = float(results["temperature"])
    if not TEMPERATURE_BOUNDS[0] * 1.01 < t < TEMPERATURE_BOUNDS[1] * 0.99:
        return f"its calibration collapsed (temperature {t:.2f} at the fit's bound)"
    return None


def _point(d: dict, method: str, data: str) -> OperatingPoint:
    return OperatingPoint(threshold=float(d["threshold"]), method=method, data=data,
                          sensitivity=d.get("sensitivity"), specificity=d.get("specificity"))


def manifest_from_run(run_dir: Path, model_id: str | None = None, name: str | None = None) -> Manifest:
    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    res = json.loads((run_dir / "results.json").read_text())
    arch = cfg["arch"]
    data = "calibrated validation predictions (mixed sources"
    data += f", without {', '.join(res['excluded_sources'])})" if res.get("excluded_sources") else ")"
    weights = cfg.get("backbone_weights", "random")
    init = ("random initialisation, trained from scratch" if weights == "random" or arch == "cnn"
            else f"backbone from {weights} weights, two-phase fine-tuning")
    if cfg.get("init_from"):
        init = f"the weights of {Path(cfg['init_from']).name} (copied layer by layer), then trained further"
    return Manifest(
        id=model_id or f"{arch}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}",
        name=name or NAMES[arch],
        architecture=arch,
        preprocessing=PreprocessSpec.from_dict(res["preprocessing"]),
        gradcam_layer=gradcam_layer(arch, cfg.get("gradcam_layer"), bool(cfg.get("cell_score"))),
        temperature=float(res["temperature"]),
        logit_bias=float(res.get("logit_bias", 0.0)),
        threshold=_point(res["threshold"], "youden_j", data),
        high_sensitivity=_point(res["high_sensitivity"], f"sensitivity>={cfg.get('sensitivity_target', 0.95)}", data),
        files={},
        weights_dtype="float16" if arch == "resnet50" else "float32",
        default_tta=int(res.get("default_tta", 1)),
        version=datetime.now(timezone.utc).strftime("%Y.%m.%d"),
        initialisation=init,
        metrics={k: res.get(k) for k in ("validation", "validation_by_source", "test", "test_by_source",
                                         "ece_before", "ece_temperature_only", "ece_after", "ece_test",
                                         "tta_comparison")},
        training_data={"summary": res.get("data"), "duplicate_groups": res.get("duplicate_groups"),
                       "split_sizes": res.get("split_sizes"), "excluded_sources": res.get("excluded_sources"),
                       # where and how long it trained: backend, device, precision, seconds and command per session
                       "sessions": res.get("sessions")},
        config=cfg,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        trainer_version=__version__,
    )


def export(run_dir: Path, to: Path | None = None, model_id: str | None = None, force: bool = False,
           name: str | None = None, explain: bool = True, leave_out_runs: list[Path] | None = None) -> Path:
    """Write the package; its model card is generated from the run, with Grad-CAM measured on validation."""
    from brainmri_desktop.core.inference import LoadedModel
    from brainmri_desktop.core.packages import ModelEntry

    from .card import (gradcam_scores, mid_brain_metrics, model_card, outlined_validation, reproduce_commands,
                       split_samples)
    from .faithfulness import deletion_test

    def run_model(run: Path, manifest: Manifest) -> LoadedModel:
        return LoadedModel(ModelEntry(Path(run), "dir", manifest=manifest), manifest, load_run_model(run))

    run_dir = Path(run_dir)
    weak = weakness(json.loads((run_dir / "results.json").read_text()))
    if weak and not force:
        raise ModelPackageError(run_dir, f"not exported: {weak} (use --force to export it anyway)")
    manifest = manifest_from_run(run_dir, model_id, name)
    loaded = run_model(run_dir, manifest)
    target = Path(to or user_models_dir()) / manifest.id
    if target.exists() and not force:
        raise ModelPackageError(target, "a package with this id exists already (use --force to replace it)")
    cams, mid, leave_out_mid = {}, {}, {}
    if explain:
        samples = split_samples(run_dir)
        outlined = outlined_validation(samples)
        cams, mid = gradcam_scores(outlined, loaded), mid_brain_metrics(samples, loaded)
        manifest = replace(manifest, metrics={**manifest.metrics, "gradcam": cams, "mid_brain": mid,
                                              "deletion": deletion_test(loaded, outlined)})
        for run in leave_out_runs or []:
            leave_out_mid[Path(run).name] = mid_brain_metrics(split_samples(run), run_model(run, manifest_from_run(run)))
    trained = reproduce_commands(json.loads((run_dir / "results.json").read_text()))
    command = "\n".join(trained or [f"brainmri-train train --config <config below> --out {run_dir.name}"]) \
        + f"\nbrainmri-train export {run_dir.name} --id {manifest.id}"
    for run in leave_out_runs or []:
        command += f" --leave-out {Path(run).name}"
    card = model_card(run_dir, manifest.to_dict(), cams, command, leave_out_runs, mid, leave_out_mid)
    from .scope_fit import add_scope

    manifest, scope_files, card = add_scope(run_dir, loaded.keras_model, manifest, card)  # the scope guard's fit
    # Written from a model loaded afresh, and the graphs traced from another: Grad-CAM's head model ([input, layer] ->
    # logit) adds nodes to the model it cuts that Keras cannot serialise where a layer also reads the input (a cell
    # model's HeadCells).
    def fresh():
        return load_run_model(run_dir)

    graphs = {}
    if backend.name() == "tensorflow":  # what ONNX Runtime runs in the application; TensorFlow traces the graphs
        manifest, graphs = graph_files(packaged(fresh(), manifest, scope_files))
    written = write_package(target, manifest, fresh(), {"MODEL_CARD.md": card.encode(), **scope_files, **graphs},
                            force=force)
    if not graphs:
        print(f"note: {written} has no ONNX graphs (Keras runs on {backend.display_name()} here, and TensorFlow "
              f"traces them); the application runs it through Keras until they are added: KERAS_BACKEND=tensorflow "
              f"brainmri-train add-graphs {written} --out {written.parent} --force")
    return written


def packaged(keras_model, manifest: Manifest, scope_files: dict[str, bytes]):
    """The model as the package will load it: weights rounded to the package's precision, with its scope fit."""
    from brainmri_desktop.core.inference import LoadedModel
    from brainmri_desktop.core.ood import detector_from_bytes
    from brainmri_desktop.core.packages import ModelEntry, rounded_weights

    keras_model.set_weights(rounded_weights(keras_model, manifest.weights_dtype))
    ood = detector_from_bytes(scope_files[manifest.ood_file], Path(manifest.ood_file)) if manifest.ood_file else None
    return LoadedModel(ModelEntry(Path(manifest.id), "dir", manifest=manifest), manifest, keras_model, ood)
