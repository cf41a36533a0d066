"""The scope guard: whether a slice is the kind of image a model was trained on, with a reason a reader understands.

The bundled models saw axial MR slices (T1 post-contrast, T2, FLAIR) as 2-D images. A study holds more: localisers,
sagittal and coronal series, diffusion, EPI, perfusion, reformats. Their probabilities mean nothing, so the session
keeps them but never flags them unless the reader asks.

Three sources of evidence, strongest first:
1. the slice's DICOM headers (`Slice.acquisition`, `Slice.series`): `header_verdict`. What they cannot tell (no
   orientation, a PNG or JPEG) stays undecided, never out;
2. the image itself: a blank or near-empty slice has no head to read (`Preprocessed.head_fraction`);
3. the model's own features: an out-of-distribution score (core/ood.py) above the threshold fitted at export.

How the session uses it: `LoadedModel.load` reads the package's fit (`load_ood`); the identity pass of `predict`
returns each slice's score with its logit from one forward pass (`SliceResult.ood_score`); `triage_chunks` asks
`rule_check` (headers, then the image) and then `model_reason` (the score against the fit), and keeps the first
reason as the slice's verdict. A verdict gates `flagged` unless the reader asks for out-of-scope slices; its text is
the CSV column `out_of_scope` and what the window shows. `series_verdict` sums a series' slice verdicts up for the
study browser. `assess` gives the full verdict (IN, OUT or UNDECIDED, with the evidence) for one slice.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .io.slices import Acquisition, SeriesInfo, Slice
from .preprocess import Preprocessed, has_head

IN, OUT, UNDECIDED = "in", "out", "undecided"

# Radiographers tilt axial brain series along the AC-PC or orbitomeatal line, typically 10-25 degrees off the true
# axial plane, and a flexed head adds a few more: the training slices are axial in that sense. At 45 degrees a plane
# is as near coronal (or sagittal) as axial, so 30 degrees keeps every routine angulation in scope with a margin
# while anything steeper is no longer the axial anatomy the models learnt.
AXIAL_TOLERANCE_DEG = 30.0
# Share of the model input brighter than 2 % of its range under which the model sees nothing to read. Over the
# 11,449 development slices the share is either 0 (138 slices: blank frames, LGG's slices above the head, and
# kaggle-navoneel images whose three grey levels normalise to black, `1 no.jpeg` among them) or at least 0.046.
MIN_CONTENT = 0.02

_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # and its .1-.4 multi-frame variants
_DIFFUSION_TYPES = {"DIFFUSION", "ADC", "EADC", "TRACE", "TRACEW", "FA", "TENSOR", "DTI", "ISODWI", "DWI", "EXP"}
_EPI_TYPES = {"MOSAIC", "PERFUSION", "FMRI", "BOLD", "ASL", "MOCO", "DSC", "CBF", "CBV", "RCBV", "MTT", "TTP"}
_REFORMAT_TYPES = {"REFORMATTED", "MPR", "MIP", "MINIP", "MNIP", "PROJECTION IMAGE", "CSA MPR", "CSAMPR", "CPR"}
# Series description words, matched as whole words of the lower-cased description (split on anything that is not a
# letter or digit): "diff" in "ep2d_diff" but never inside another word such as "different".
_DESCRIPTION_WORDS = (
    ({"localizer", "localiser", "scout", "survey", "loc", "3plane", "aahead"}, "a localiser (scout) image"),
    ({"dwi", "adc", "diff", "diffusion", "dti", "trace", "tracew", "tensor"}, "a diffusion image"),
    ({"bold", "fmri", "resting", "rsfmri", "ep2d", "epi"}, "an echo-planar (fMRI or diffusion) image"),
    ({"perf", "perfusion", "dsc", "dce", "asl", "pcasl", "pwi", "cbf", "cbv", "rcbv"}, "a perfusion image"),
    ({"mip", "minip", "mpr", "reformat", "reformatted"}, "a reformat or projection (MPR/MIP)"),
)


@dataclass(frozen=True)
class ScopeVerdict:
    """Whether a slice lies inside the model's intended use. `reason` says why, in words a reader understands;
    `evidence` names what decided: "headers", "image", "model", "series" (a summary of its slices' verdicts) or ""
    (nothing could tell)."""

    status: str  # IN, OUT or UNDECIDED
    reason: str = ""
    evidence: str = ""
    ood_score: float | None = None

    @property
    def out_of_scope(self) -> bool:
        return self.status == OUT


def _tokens(text: str) -> set[str]:
    low = text.lower().replace("3-plane", "3plane").replace("3 plane", "3plane")
    return {t for t in re.split(r"[^a-z0-9]+", low) if t}


def tilt_from_axial(orientation: tuple[float, ...]) -> tuple[float, str] | None:
    """Degrees between the slice normal and the patient's head-foot axis, and the plane the slice is nearest
    ("axial", "coronal", "sagittal"); None when the orientation is degenerate."""
    r, c = orientation[:3], orientation[3:6]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(sum(v * v for v in n))
    if not math.isfinite(norm) or norm < 0.5:  # row and column cosines nearly parallel: a broken header
        return None
    n = tuple(abs(v) / norm for v in n)
    tilt = math.degrees(math.acos(min(1.0, n[2])))
    plane = ("sagittal", "coronal", "axial")[max(range(3), key=lambda i: n[i])]  # LPS: x left, y posterior, z head
    return tilt, plane


def _orientation_rule(acq: Acquisition) -> ScopeVerdict | None:
    if acq.orientation is None:
        return None
    found = tilt_from_axial(acq.orientation)
    if found is None:
        return None
    tilt, plane = found
    if tilt <= AXIAL_TOLERANCE_DEG:
        return ScopeVerdict(IN, f"axial ({tilt:.0f} degrees from the axial plane)", "headers")
    what = f"a {plane} slice" if plane != "axial" else "a steeply oblique slice"
    return ScopeVerdict(OUT, f"{what} ({tilt:.0f} degrees from axial); the model was trained on axial slices",
                        "headers")


def _type_rule(acq: Acquisition) -> str | None:
    types = {t.strip().upper() for t in acq.image_type}
    if "LOCALIZER" in types:
        return "a localiser (scout) image"
    if types & _DIFFUSION_TYPES:
        return f"a diffusion image ({'/'.join(sorted(types & _DIFFUSION_TYPES))})"
    if types & _EPI_TYPES:
        return f"an EPI, fMRI or perfusion image ({'/'.join(sorted(types & _EPI_TYPES))})"
    if types & _REFORMAT_TYPES:
        return f"a reformat or projection ({'/'.join(sorted(types & _REFORMAT_TYPES))})"
    values = [t.strip().upper() for t in acq.image_type]
    if len(values) > 1 and values[1] == "SECONDARY":
        return "a secondary image (a capture or a copy, not the scanner's own slice)"
    if values and values[0] == "DERIVED":
        return "a derived image (computed from other images: a map, a subtraction or a reformat)"
    return None


def _sequence_rule(acq: Acquisition) -> str | None:
    if acq.b_value is not None and acq.b_value > 0:
        return f"a diffusion-weighted image (b = {acq.b_value:g} s/mm2)"
    if "EP" in {s.strip().upper() for s in acq.scanning_sequence}:
        return "an echo-planar acquisition (diffusion, fMRI or perfusion)"
    name = acq.sequence_name.strip().lower()
    if re.match(r"^\*?ep_b\d", name) or "diff" in name:
        return "a diffusion image (sequence " + acq.sequence_name.strip() + ")"
    if acq.sop_class_uid.startswith(_SECONDARY_CAPTURE):
        return "a secondary capture (a screenshot or a copy, not the scanner's own slice)"
    return None


def _description_rule(series: SeriesInfo) -> str | None:
    words = _tokens(series.description)
    for vocabulary, what in _DESCRIPTION_WORDS:
        if words & vocabulary:
            return f"{what} (series '{series.description.strip()}')"
    return None


def header_verdict(slice_: Slice) -> ScopeVerdict:
    """What the headers say: OUT with the first rule that fires, IN for an axial MR slice nothing objects to,
    UNDECIDED when the headers cannot tell (no DICOM or NIfTI headers, no orientation). A NIfTI file's name is its
    series description, so BIDS suffixes such as `_dwi` and `_bold` count."""
    series, acq = slice_.series, slice_.acquisition
    if acq is None:  # a PNG or JPEG: its "series" is only the folder it lies in, which says nothing
        return ScopeVerdict(UNDECIDED, "", "")
    modality = (series.modality if series else "").strip().upper()
    if modality and modality != "MR":
        return ScopeVerdict(OUT, f"a {modality} image; the model reads MR slices", "headers")
    for reason in (_type_rule(acq), _sequence_rule(acq), _description_rule(series) if series else None):
        if reason:
            return ScopeVerdict(OUT, reason, "headers")
    orientation = _orientation_rule(acq)
    if orientation is not None:
        return orientation
    return ScopeVerdict(UNDECIDED, "the headers do not give the slice orientation", "")


def content_fraction(preprocessed: Preprocessed) -> float:
    return float((preprocessed.image > 0.02).mean())


def is_blank(head_fraction: float, content: float) -> bool:
    """No head found, or a model input with (almost) nothing in it."""
    return not has_head(head_fraction) or content < MIN_CONTENT


def image_verdict(preprocessed: Preprocessed) -> ScopeVerdict | None:
    """OUT for a blank or near-empty slice: nothing that looks like a head."""
    if is_blank(preprocessed.head_fraction, content_fraction(preprocessed)):
        return ScopeVerdict(OUT, "no head found in this slice (blank or near-empty image)", "image")
    return None


def model_reason(ood_score: float | None, ood) -> str | None:
    """Why the model's own features put a slice out of scope (its out-of-distribution score over the fitted
    threshold of `ood`), or None: in range, or no score or no fit to judge by."""
    if ood is None or ood_score is None or not ood_score > ood.threshold:
        return None
    return (f"unlike the images this model was trained on (its feature distance {ood_score:.1f} exceeds "
            f"{ood.threshold:.1f})")


def assess(slice_: Slice, preprocessed: Preprocessed, ood_score: float | None, ood=None) -> ScopeVerdict:
    """The slice's verdict: headers first, then the image, then the model's out-of-distribution score against the
    fitted threshold of `ood` (core/ood.py OODDetector; None when the package has no fit). IN needs a positive word
    from the headers or from the model; otherwise the slice stays UNDECIDED (treated as in scope, said so)."""
    headers = header_verdict(slice_)
    if headers.out_of_scope:
        return ScopeVerdict(OUT, headers.reason, "headers", ood_score)
    blank = image_verdict(preprocessed)
    if blank is not None:
        return ScopeVerdict(OUT, blank.reason, "image", ood_score)
    if ood is not None and ood_score is not None:
        unlike = model_reason(ood_score, ood)
        if unlike:
            return ScopeVerdict(OUT, unlike, "model", ood_score)
        return ScopeVerdict(IN, headers.reason or "like the images this model was trained on", "model", ood_score)
    return ScopeVerdict(headers.status, headers.reason, headers.evidence, ood_score)


def rule_check(item, preprocessed: Preprocessed) -> str | None:
    """The header and blank-image rules in the session's scope-check form (core.session ScopeCheck): the reason a
    slice is out of scope, or None. The model's score needs the forward pass's features: see `assess`."""
    verdict = assess(item, preprocessed, None, None) if isinstance(item, Slice) else image_verdict(preprocessed)
    return verdict.reason if verdict is not None and verdict.out_of_scope else None


def series_verdict(verdicts: Iterable[str | None], most: float = 0.5) -> ScopeVerdict | None:
    """One verdict for a series from its slices' verdicts (a reason, or None for a slice in scope; the session's
    `verdicts`): OUT when at least `most` of its slices are out, named by their commonest kind of reason, e.g. "a
    sagittal slice (170 of 170 slices)"; else IN, saying how many slices are out. None before any slice is judged.
    Kinds are the reasons without their parenthesised detail, which varies slice by slice (degrees, distances)."""
    verdicts = list(verdicts)
    if not verdicts:
        return None
    kinds = Counter(reason.split(" (")[0] for reason in verdicts if reason)
    out, n = sum(kinds.values()), len(verdicts)
    if out and out >= most * n:
        kind, count = kinds.most_common(1)[0]
        others = f"; {out - count} for other reasons" if count < out else ""
        return ScopeVerdict(OUT, f"{kind} ({count} of {n} slices{others})", "series")
    return ScopeVerdict(IN, f"{out} of {n} slices out of scope" if out else f"all {n} slices in scope", "series")
