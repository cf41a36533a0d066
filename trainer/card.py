"""The model card of an exported package, written from the run's own results: nothing in it is typed by hand."""

from __future__ import annotations

import json
from pathlib import Path

from brainmri_desktop.core.inference import LoadedModel

from .config import TrainConfig
from .data import Sample
from .evaluate import evaluate_samples, mid_brain
from .metrics import with_intervals
from .train import load_samples

# Where each source of the development data comes from, for the sources a run trained on.
SOURCE_REFERENCES = {
    "kaggle-navoneel": "Kaggle 'Brain MRI Images for Brain Tumor Detection' (N. Chakrabarty)",
    "kaggle-4class": "Kaggle 'Brain Tumor MRI Dataset' (M. Nickparvar; figshare, SARTAJ, Br35H)",
    "br35h": "Br35H (A. Hamada)",
    "lgg-flair": "TCGA-LGG FLAIR with masks (Buda et al., TCIA)",
}


def split_samples(run_dir: Path) -> dict[str, list[Sample]]:
    """The run's validation and test samples, read once for everything the card measures on them."""
    cfg = TrainConfig.from_dict(json.loads((Path(run_dir) / "config.json").read_text()))
    split = {part: set(paths) for part, paths in json.loads((Path(run_dir) / "split.json").read_text()).items()}
    samples = load_samples(cfg)
    return {part: [s for s in samples if str(s.path) in split[part]] for part in ("val", "test")}


def outlined_validation(samples: dict[str, list[Sample]], limit_per_source: int = 300) -> list[Sample]:
    """The validation tumour slices with a mask or an outline, at most `limit_per_source` of each source."""
    chosen, per_source = [], {}
    for s in samples["val"]:
        if s.label == 1 and (s.mask is not None or s.outline is not None):
            if per_source.setdefault(s.source, 0) < limit_per_source:
                per_source[s.source] += 1
                chosen.append(s)
    return chosen


def gradcam_scores(chosen: list[Sample], model: LoadedModel) -> dict:
    """Grad-CAM pointing game on outlined tumour slices (outlined_validation)."""
    return evaluate_samples(model, chosen, tta=1, gradcam=True)["explanations"]


def mid_brain_metrics(samples: dict[str, list[Sample]], model: LoadedModel, bootstrap: int = 500) -> dict:
    """Metrics on the mid-brain slices of the patients in the validation and test splits, per source."""
    out: dict = {}
    threshold = model.manifest.threshold.threshold
    for part in ("val", "test"):
        chosen = [s for s in samples[part] if s.patient is not None]
        if not chosen:
            continue
        ev = evaluate_samples(model, chosen, tta=model.manifest.default_tta, gradcam=False)
        keep = mid_brain(ev["samples"], ev["head_fraction"])
        for source in sorted(set(ev["sources"][keep])):
            sel = keep & (ev["sources"] == source)
            out.setdefault(part, {})[source] = with_intervals(ev["probs"][sel], ev["labels"][sel], threshold, bootstrap)
    return out


def _m(d: dict | None, key: str) -> str:
    if not d or not isinstance(d.get(key), dict) or d[key].get("value") is None:
        return "-"
    v = d[key]
    lo, hi = v.get("ci95", [None, None])
    return f"{v['value']:.3f}" + (f" ({lo:.3f}-{hi:.3f})" if lo is not None and hi is not None else "")


def _table(rows: dict) -> str:
    out = "| source | n | tumour | AUC (95% CI) | sensitivity | specificity |\n|---|---|---|---|---|---|\n"
    for source, d in rows.items():
        out += f"| {source} | {d['n']} | {d['positives']} | {_m(d, 'auc')} | {_m(d, 'sensitivity')} | {_m(d, 'specificity')} |\n"
    return out


def _calibration_line(res: dict) -> str:
    line = (f"- Calibration: probability = sigmoid(logit / {res['temperature']:.3f} + {res.get('logit_bias', 0.0):.3f}) "
            f"(temperature scaling with a bias, fitted on the calibration part of validation). Expected calibration "
            f"error (15 bins) on that data: {res['ece_before']:.3f} uncalibrated")
    if res.get("ece_temperature_only") is not None:
        line += f", {res['ece_temperature_only']:.3f} with a temperature alone"
    line += f", {res['ece_after']:.3f} with temperature and bias"
    if res.get("ece_test") is not None:
        line += f"; on the held-out test split, never used for fitting: {res['ece_test']:.3f}"
    return line + "."


def _mid_brain_lines(mid: dict | None) -> list[str]:
    rows = {f"{source}, {'validation' if part == 'val' else 'test'}": d
            for part in ("val", "test") for source, d in (mid or {}).get(part, {}).items()}
    if not rows:
        return []
    return ["Mid-brain slices of the patients above (head area at least 60% of that patient's largest). LGG's "
            "no-tumour slices are mostly the top and the base of the head, so on the whole set a model can score by "
            "telling slice levels apart; here tumour and no-tumour slices come from similar levels:", "", _table(rows)]


def _supervision_line(cfg: dict) -> str:
    line = "- Supervision: the slice label (tumour / no tumour)"
    if cfg.get("cell_score"):
        return line + (" on the score, which is a smooth maximum (LogSumExp, learnt sharpness) of per-cell tumour "
                       "logits over the cells inside the head (`cell_logit`, pooled by `logit`"
                       + ("; cells on conv3's 8-pixel grid, conv4's cell features upsampled onto it"
                          if cfg.get("fine_cells") else "") + "); no globally pooled "
                       "path reaches it. A lesion loss (weight "
                       f"{cfg.get('lesion_weight', 0):g}) trains the same cells on the LGG masks and Br35H outlines of "
                       "the training images (and that no-tumour slices have none)"
                       + (", each cell's target being the part of its central half inside the tumour"
                          if cfg.get("lesion_target") == "centre" else "") + ". Grad-CAM reads `cell_evidence`, "
                       "the features those cells score, so its peak is the cell that carries the score.")
    if cfg.get("lesion_weight"):
        line += (f", plus a lesion loss (weight {cfg['lesion_weight']:g}) during training: a 1x1 convolution on the "
                 "Grad-CAM layer is trained on the LGG masks and Br35H outlines of the training images (and on "
                 "no-tumour slices having none); whether the Grad-CAM map then points at tumours is measured below")
    if cfg.get("lesion_evidence"):
        return line + (". The logit reads the highest cell of that tumour map beside the head's features (layers "
                       "`lesion`, `lesion_peak`, `evidence`), so the decision rests partly on a located finding.")
    if cfg.get("lesion_weight"):
        return line + ". That convolution is dropped after training; it only asks the layer to carry the location."
    return line + " only."


def _deletion_line(deletion: dict | None) -> str:
    if not deletion:
        return "- Deletion test (does the map show what the score rests on?): not measured for this release."
    share = next(iter(deletion.values()))["share"]
    parts = [f"{s}: {v['drop_top']:+.3f} against {v['drop_random']:+.3f} over {v['n']} slices"
             + (f" ({v['empty_maps']} with an empty map left out)" if v["empty_maps"] else "")
             for s, v in deletion.items() if v["n"]]
    return (f"- Deletion test on the same slices: the map's top {share:.0%} of head cells filled with the head's median "
            "grey, against as many random head cells (mean of three draws); mean drop of the calibrated probability, "
            "top cells against random: " + ("; ".join(parts) or "no slice with a map") + ". A map that shows the "
            "evidence makes the first drop the larger.")


def _leave_out_lines(runs: list[Path], cfg: dict, mid_brain: dict[str, dict] | None = None) -> list[str]:
    """Figures of runs trained with a source left out, on that source's validation and test images.

    `mid_brain` holds each run's mid-brain figures by run folder name (see mid_brain_metrics): a left-out source whose
    no-tumour slices sit at other levels of the head can be scored by slice level alone, without finding a lesion.
    """
    if not runs:
        return ["- Leave-one-source-out: not measured for this release "
                "(`brainmri-train train --config <config> --exclude-source <source>` measures it)."]
    out = ["- Leave-one-source-out (the same recipe trained without a source, scored on that source's validation "
           "and test images, which it never saw; calibration, threshold and best epoch from the other sources):", ""]
    out.append("| left out | run | recipe | validation AUC (95% CI) | test AUC (95% CI) | validation sensitivity at "
               "the high-sensitivity point | mid-brain slices only: validation / test AUC |\n|---|---|---|---|---|---|---|")
    defaults = TrainConfig().to_dict()
    for run in runs:
        res = json.loads((Path(run) / "results.json").read_text())
        rcfg = json.loads((Path(run) / "config.json").read_text())
        recipe = f"{rcfg['arch']} {rcfg['img_size']} px, {rcfg['epochs']} epochs"
        # Keys a run's trainer did not know yet had their default value.
        if any(rcfg.get(k, defaults[k]) != cfg.get(k, defaults[k])
               for k in ("arch", "img_size", "epochs", "augment", "steps_per_epoch", "progressive", "strip_rim",
                         "intensity_scale", "lesion_weight", "lesion_evidence")):
            recipe += " (differs from this model's)"
        if "early_stopping_images" not in res:  # runs of trainer 0.1 chose their best epoch on every source
            recipe += " (best epoch chosen with the left-out source in view: optimistic)"
        if rcfg.get("init_from"):
            recipe += (f", started from the weights of `{Path(rcfg['init_from']).name}`: the left-out images are new "
                       "to this run, not necessarily to those weights (optimistic where their training saw that "
                       "source)")
        for src in res.get("excluded_sources") or []:
            val = res["validation_by_source"].get(src)
            test = (res.get("test_by_source") or {}).get(src)
            high = (val or {}).get("high_sensitivity_point", {})
            mid = (mid_brain or {}).get(Path(run).name, {})
            mid_auc = " / ".join(_m(mid.get(part, {}).get(src), "auc") for part in ("val", "test"))
            out.append(f"| {src} | `{Path(run).name}` | {recipe} | {_m(val, 'auc')} | {_m(test, 'auc')} | "
                       f"{_m(high, 'sensitivity')} | {mid_auc} |")
    return out + [""]


def _compute_line(res: dict) -> str:
    """How long, where and with which precision the run trained, from the sessions it recorded."""
    minutes = (f"{res['epoch_seconds'] / 60:.0f} min of training epochs" if res.get("epoch_seconds")
               else f"{res['train_seconds'] / 60:.0f} min")
    line = (f"- Trained {res['epochs_trained']} epochs (best validation AUC at epoch {res['best_epoch']}), {minutes}")
    sessions = [s for s in res.get("sessions") or [] if s["epochs"][1] > s["epochs"][0]]
    if not sessions:
        return line + "; the trainer of this run did not record its hardware."
    parts = [(f"epoch {b}" if a + 1 == b else f"epochs {a + 1}-{b}") + f" on {s['device']}, "
             f"{s['precision']}, {s['seconds'] / 60:.1f} min" for s in sessions for a, b in [s["epochs"]]]
    return line + ": " + "; ".join(parts) + "."


def _sources_lines(res: dict) -> list[str]:
    """Split, references and limitations of the sources this run read, and which of them trained."""
    by_source = res["data"]["by_source"]
    dg = res["duplicate_groups"]
    patients = [s for s, d in by_source.items() if d.get("patients")]
    others = [s for s in by_source if s not in patients]
    groups = ", ".join(filter(None, [f"{', '.join(patients)} by patient" if patients else "",
                                     f"{', '.join(others)} by near-duplicate group" if others else ""]))
    refs = [SOURCE_REFERENCES[s] for s in by_source if s in SOURCE_REFERENCES]
    return [f"Split {res['split_sizes']} (train/validation/test images) over groups: {groups} (16x16 difference hash, "
            f"Hamming distance <= {dg['max_distance']}: {dg['links']} links, {dg['images_merged']} images in shared "
            "groups), across sets."
            + (f" Sources: {'; '.join(refs)} - research use under their licences." if refs else "")]


def _limitations(res: dict, m: dict) -> list[str]:
    by_source = res["data"]["by_source"]
    trained = [s for s in by_source if s not in (res.get("excluded_sources") or [])]
    no_patients = [s for s, d in by_source.items() if not d.get("patients")]
    lines = ["- Single 2-D slices; no use of neighbouring slices or other sequences of the study.",
             f"- Seen in training: slices of {', '.join(trained)} only; other sources, sequences, scanners and "
             "populations are untested; the leave-one-source-out figures above show how far a new source can fall."]
    if m["preprocessing"].get("strip_rim"):
        lines.append(f"- The border of the head ({m['preprocessing']['strip_rim']:.0%} of its diameter: scalp, skull, "
                     "outer cortex) is blanked before the model sees a slice: tumours at the surface of the brain "
                     "(meningiomas, for example) lose part of their evidence there.")
    if no_patients:
        lines.append(f"- No patient information in {', '.join(no_patients)}: slices of one patient may sit on both "
                     "sides of a split where the duplicate hash did not join them.")
    if "kaggle-navoneel" in by_source:
        lines.append("- In this data snapshot the kaggle-navoneel images hold only three grey levels (0-2): they carry "
                     "little anatomy, and metrics on that source say little.")
    return lines + ["- The figures above are what this run measured, with the intervals shown."]


def reproduce_commands(res: dict) -> list[str]:
    """The commands that trained the run, one per session, as typed (paths as they were where it ran)."""
    return [s["command"] for s in res.get("sessions") or [] if s.get("command")]


def model_card(run_dir: Path, manifest_dict: dict, explanations: dict, command: str,
               leave_out_runs: list[Path] | None = None, mid_brain: dict | None = None,
               leave_out_mid_brain: dict[str, dict] | None = None) -> str:
    res = json.loads((Path(run_dir) / "results.json").read_text())
    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    m = manifest_dict
    data = res["data"]["by_source"]
    lines = [
        f"# Model card: {m['name']} (`{m['id']}`)",
        "",
        "## Intended use",
        "A triage aid for 2-D brain MRI slices: it ranks slices by the probability that they show a tumour, so a "
        "qualified reader looks at the likeliest first. **It is not a diagnosis** and must not be used to rule a "
        "tumour in or out. Not intended for: other organs, CT, paediatric or post-operative imaging, 3-D volumes as a "
        "whole, or any use without a reader.",
        "",
        "## Model",
        f"- Architecture: {m['architecture']}; input {m['preprocessing']['input_size']} px; "
        f"Grad-CAM layer `{m['gradcam_layer']}`; weights stored as {m['weights_dtype']}.",
        f"- Initialisation: {m['initialisation']}.",
        _compute_line(res),
        _supervision_line(cfg),
        f"- Preprocessing: {'; '.join(m['preprocessing']['steps'])}.",
        "",
        "## Data",
        "| source | images | tumour | no tumour | patients |\n|---|---|---|---|---|",
    ]
    lines += [f"| {s} | {d['images']} | {d['tumour']} | {d['no_tumour']} | {d['patients'] or '-'} |" for s, d in data.items()]
    lines += [
        "",
        *_sources_lines(res),
        "",
        "## Results (calibrated probabilities, threshold chosen on validation)",
        f"Validation, all sources: AUC {_m(res['validation'], 'auc')}, sensitivity {_m(res['validation'], 'sensitivity')}, "
        f"specificity {_m(res['validation'], 'specificity')}.",
        "",
        "Validation by source:",
        "",
        _table(res["validation_by_source"]),
        "Held-out test split by source (never used for training, calibration or thresholds):",
        "",
        _table(res["test_by_source"] or {}),
        *_mid_brain_lines(mid_brain),
        _calibration_line(res),
        f"- Threshold: {res['threshold']['threshold']:.3f} by Youden's J on the calibrated validation predictions "
        f"(sensitivity {res['threshold']['sensitivity']:.3f}, specificity {res['threshold']['specificity']:.3f}); "
        f"high-sensitivity point {res['high_sensitivity']['threshold']:.3f} (sensitivity "
        f"{res['high_sensitivity']['sensitivity']:.3f}, specificity {res['high_sensitivity']['specificity']:.3f}).",
        f"- Test-time augmentation, validation AUC / ECE after scaling: "
        + ", ".join(f"TTA {k}: {v['auc']} / {v['ece_after']:.3f}" for k, v in res["tta_comparison"].items())
        + f"; default TTA {res['default_tta']} " + ("(chosen with `brainmri-train choose-tta`, calibration and "
                                                     "threshold refitted for it)." if res.get("tta_choice") == "chosen"
                                                     else "(more views are kept only when they raise AUC by > 0.002)."),
        "- Grad-CAM on validation tumour slices with a mask (LGG) or an outline (Br35H): "
        + ("; ".join(f"{s}: peak inside the tumour on {v['pointing_game']:.1%} of {v['n']} slices, "
                     f"{v['energy_inside']:.1%} of the map's energy inside" for s, v in explanations.items()
                     if v["n"]) or "not measured") + ".",
        _deletion_line(m.get("metrics", {}).get("deletion")),
        *_leave_out_lines(list(leave_out_runs or []), cfg, leave_out_mid_brain),
        "## Known limitations",
        *_limitations(res, m),
        "",
        "## Reproduce",
        f"```\n{command}\n```",
        "",
        "Configuration:",
        f"```json\n{json.dumps(cfg, indent=1)}\n```",
    ]
    return "\n".join(lines) + "\n"


HIDDEN_TITLE = "## Scope checks and confident findings"
# Each check on its own, in the order core.scope.assess asks them.
SCOPE_CHECKS = ("headers", "blank image", "plane from the pixels", "feature distance")


def _check_verdicts(slice_, pre, ood_score: float | None, ood) -> dict[str, object]:
    from brainmri_desktop.core.scope import UNDECIDED, header_verdict, image_verdict, model_verdict, plane_verdict

    headers = header_verdict(slice_)
    return {"headers": headers if headers.out_of_scope else None, "blank image": image_verdict(pre),
            "plane from the pixels": plane_verdict(slice_) if headers.status is UNDECIDED else None,
            "feature distance": model_verdict(ood_score, ood)}


def hidden_findings(model: LoadedModel, samples: list[Sample]) -> dict[str, dict]:
    """Per source, the tumour slices among `samples` at or over the model's threshold that each scope check, taken
    alone, puts out of scope, and how many of them it would have hidden before issue 25 (every out-of-scope verdict
    hid a slice) and hides now (`ScopeVerdict.may_hide_finding`: the feature distance only warns)."""
    from brainmri_desktop.core.flag_rule import at_or_over
    from brainmri_desktop.core.inference import TTAConfig
    from brainmri_desktop.core.io.study import read_file
    from brainmri_desktop.core.session import triage_chunks

    tumour = []
    for s in samples:
        if s.label == 1:
            try:
                tumour.append((s.source, read_file(Path(s.path))[0]))
            except (OSError, ValueError) as exc:  # the split was read before: a file gone since is said, not hidden
                print(f"hidden findings: {s.path} skipped ({exc})")
    threshold = model.manifest.threshold.threshold
    out: dict[str, dict] = {}
    tta = TTAConfig(count=model.manifest.default_tta, adaptive=False)
    for chunk in triage_chunks(model, [slice_ for _s, slice_ in tumour], tta, scope=()):
        for i, r in chunk.results.items():
            source = tumour[i][0]
            row = out.setdefault(source, {"tumour": 0, "over_threshold": 0, **{
                c: {"out": 0, "hidden_before": 0, "hidden_after": 0} for c in SCOPE_CHECKS}})
            row["tumour"] += 1
            if not at_or_over(r.probability, threshold):
                continue
            row["over_threshold"] += 1
            for check, verdict in _check_verdicts(tumour[i][1], chunk.inputs[i], r.ood_score, model.ood).items():
                if verdict is not None and verdict.out_of_scope:
                    row[check]["out"] += 1
                    row[check]["hidden_before"] += 1
                    row[check]["hidden_after"] += int(verdict.may_hide_finding)
    return dict(sorted(out.items()))


def hidden_lines(hidden: dict[str, dict]) -> str:
    """The card's section: per source and check, the confident tumour slices hidden before and after."""
    lines = [HIDDEN_TITLE,
             "Validation tumour slices at or over the threshold that each scope check, taken alone, would hide "
             "(keep from being flagged): before issue 25 every out-of-scope verdict hid a slice; now the model's "
             "feature distance only warns ('unusual image: ...') and headers, a blank image and the plane read "
             "from the pixels still hide. The plane check hides sagittal and coronal pictures whatever their "
             "probability: the models' scope is axial slices, although kaggle-4class's figshare images, which the "
             "bundled models trained on, include sagittal and coronal T1 post-contrast tumour slices (most of "
             "what it hides there). Every figshare slice shows a tumour and no other source gives those planes, so "
             "training saw no tumour-free sagittal or coronal slice: a score there may read the plane, not a "
             "lesion.", "",
             "| source | tumour slices | at or over the threshold | " + " | ".join(
                 f"{c}: hidden before / after" for c in SCOPE_CHECKS) + " |",
             "|---|---|---|" + "---|" * len(SCOPE_CHECKS)]
    for source, row in hidden.items():
        lines.append(f"| {source} | {row['tumour']} | {row['over_threshold']} | " + " | ".join(
            f"{row[c]['hidden_before']} / {row[c]['hidden_after']}" for c in SCOPE_CHECKS) + " |")
    return "\n".join(lines) + "\n"


def with_card_section(card: str, title: str, section: str) -> str:
    """The card with `section` (starting with its `title` line) before its known limitations, replacing an earlier
    section of that title."""
    start = card.find(title)
    if start >= 0:
        end = card.find("\n## ", start + 1)
        card = card[:start] + card[end + 1:] if end >= 0 else card[:start]
    at = card.find("## Known limitations")
    return card[:at] + section + "\n" + card[at:] if at >= 0 else card + "\n" + section
