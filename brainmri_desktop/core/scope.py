"""The scope guard: whether a slice is the kind of image a model was trained on, with a reason a reader understands.

The bundled models saw axial MR slices (T1 post-contrast, T2, FLAIR) as 2-D images. A study holds more: localisers,
sagittal and coronal series, diffusion, EPI, perfusion, reformats. Their probabilities mean nothing, so the session
keeps them but never flags them unless the reader asks.

Three sources of evidence, strongest first:
1. the slice's DICOM headers (`Slice.acquisition`, `Slice.series`): `header_verdict`. What they cannot tell (no
   orientation, a PNG or JPEG) stays undecided, never out;
2. the image itself: a blank or near-empty slice has no head to read (`Preprocessed.head_fraction`), and where the
   headers do not give the orientation, the plane read from the pixels (core/plane.py) puts a sagittal or coronal
   picture out as its header would;
3. the model's own features: an out-of-distribution score (core/ood.py) above the threshold fitted at export.

Every verdict is a `ScopeVerdict`: its `Status`, its `Kind` (what sort of image, the words a series summary counts
by), the reason in a reader's words and the `Evidence` that decided. `assess` is the one place the checks are
combined, in that order: the session (`triage_chunks`), the trainer's scope measurements and the tests call it. Header
and image evidence may hide a slice; the model's features may not hide one at or over the threshold (they read what
the model detects with), which `ScopeVerdict.may_hide_finding` says and `core.session.decide` obeys. The verdict's
reason is the CSV column `out_of_scope` and what the window shows; `series_verdict` sums a series' slice verdicts up
by their kind for the study browser.
"""

from __future__ import annotations

import enum
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .io.slices import Acquisition, SeriesInfo, Slice
from .preprocess import Preprocessed, has_head


class Status(enum.StrEnum):
    IN = "in"
    OUT = "out"
    UNDECIDED = "undecided"  # nothing could tell: treated as in scope, and said so


IN, OUT, UNDECIDED = Status.IN, Status.OUT, Status.UNDECIDED


class Evidence(enum.StrEnum):
    HEADERS = "headers"
    IMAGE = "image"  # the pixels: a blank image, or the plane read from them
    MODEL = "model"  # the model's own features (its out-of-distribution score)
    SERIES = "series"  # a summary of a series' slice verdicts
    NONE = ""


class Kind(enum.StrEnum):
    """What sort of image a verdict is about, in the words a series summary names it by."""

    AXIAL = "an axial slice"
    SAGITTAL = "a sagittal slice"
    CORONAL = "a coronal slice"
    OBLIQUE = "a steeply oblique slice"
    OTHER_MODALITY = "another modality"
    LOCALISER = "a localiser (scout) image"
    DIFFUSION = "a diffusion image"
    ECHO_PLANAR = "an echo-planar, fMRI or perfusion image"
    PERFUSION = "a perfusion image"
    REFORMAT = "a reformat or projection"
    SECONDARY = "a secondary image or capture"
    DERIVED = "a derived image"
    BLANK = "no head found (blank or near-empty image)"
    UNLIKE_TRAINING = "unlike the training images"
    LIKE_TRAINING = "like the training images"
    UNKNOWN = "orientation not known"
    SERIES = "a series"


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
    ({"localizer", "localiser", "scout", "survey", "loc", "3plane", "aahead"}, Kind.LOCALISER,
     "a localiser (scout) image"),
    ({"dwi", "adc", "diff", "diffusion", "dti", "trace", "tracew", "tensor"}, Kind.DIFFUSION, "a diffusion image"),
    ({"bold", "fmri", "resting", "rsfmri", "ep2d", "epi"}, Kind.ECHO_PLANAR,
     "an echo-planar (fMRI or diffusion) image"),
    ({"perf", "perfusion", "dsc", "dce", "asl", "pcasl", "pwi", "cbf", "cbv", "rcbv"}, Kind.PERFUSION,
     "a perfusion image"),
    ({"mip", "minip", "mpr", "reformat", "reformatted"}, Kind.REFORMAT, "a reformat or projection (MPR/MIP)"),
)


@dataclass(frozen=True)
class ScopeVerdict:
    """Whether a slice lies inside the model's intended use: `kind` says what it is, `reason` says why in words a
    reader understands (with the slice's own detail: degrees, a distance), `evidence` what decided."""

    status: Status
    kind: Kind
    reason: str = ""
    evidence: Evidence = Evidence.NONE
    ood_score: float | None = None

    @property
    def out_of_scope(self) -> bool:
        return self.status is OUT

    @property
    def may_hide_finding(self) -> bool:
        """Whether this verdict may keep a slice at or over the threshold from being flagged: header and image
        evidence may, the model's features may not (an obvious lesion is itself unlike the training images)."""
        return self.out_of_scope and self.evidence is not Evidence.MODEL


ScopeCheck = Callable[[object, Preprocessed], "ScopeVerdict | None"]  # an item and its model input -> OUT or None


def _out(kind: Kind, reason: str, evidence: Evidence = Evidence.HEADERS) -> ScopeVerdict:
    return ScopeVerdict(OUT, kind, reason, evidence)


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
        return ScopeVerdict(IN, Kind.AXIAL, f"axial ({tilt:.0f} degrees from the axial plane)", Evidence.HEADERS)
    kind = {"sagittal": Kind.SAGITTAL, "coronal": Kind.CORONAL}.get(plane, Kind.OBLIQUE)
    return _out(kind, f"{kind} ({tilt:.0f} degrees from axial); the model was trained on axial slices")


def _type_rule(acq: Acquisition) -> ScopeVerdict | None:
    types = {t.strip().upper() for t in acq.image_type}
    if "LOCALIZER" in types:
        return _out(Kind.LOCALISER, "a localiser (scout) image")
    if types & _DIFFUSION_TYPES:
        return _out(Kind.DIFFUSION, f"a diffusion image ({'/'.join(sorted(types & _DIFFUSION_TYPES))})")
    if types & _EPI_TYPES:
        return _out(Kind.ECHO_PLANAR, f"an EPI, fMRI or perfusion image ({'/'.join(sorted(types & _EPI_TYPES))})")
    if types & _REFORMAT_TYPES:
        return _out(Kind.REFORMAT, f"a reformat or projection ({'/'.join(sorted(types & _REFORMAT_TYPES))})")
    values = [t.strip().upper() for t in acq.image_type]
    if len(values) > 1 and values[1] == "SECONDARY":
        return _out(Kind.SECONDARY, "a secondary image (a capture or a copy, not the scanner's own slice)")
    if values and values[0] == "DERIVED":
        return _out(Kind.DERIVED, "a derived image (computed from other images: a map, a subtraction or a reformat)")
    return None


def _sequence_rule(acq: Acquisition) -> ScopeVerdict | None:
    if acq.b_value is not None and acq.b_value > 0:
        return _out(Kind.DIFFUSION, f"a diffusion-weighted image (b = {acq.b_value:g} s/mm2)")
    if "EP" in {s.strip().upper() for s in acq.scanning_sequence}:
        return _out(Kind.ECHO_PLANAR, "an echo-planar acquisition (diffusion, fMRI or perfusion)")
    name = acq.sequence_name.strip().lower()
    if re.match(r"^\*?ep_b\d", name) or "diff" in name:
        return _out(Kind.DIFFUSION, "a diffusion image (sequence " + acq.sequence_name.strip() + ")")
    if acq.sop_class_uid.startswith(_SECONDARY_CAPTURE):
        return _out(Kind.SECONDARY, "a secondary capture (a screenshot or a copy, not the scanner's own slice)")
    return None


def _description_rule(series: SeriesInfo) -> ScopeVerdict | None:
    words = _tokens(series.description)
    for vocabulary, kind, what in _DESCRIPTION_WORDS:
        if words & vocabulary:
            return _out(kind, f"{what} (series '{series.description.strip()}')")
    return None


def header_verdict(slice_: Slice) -> ScopeVerdict:
    """What the headers say: OUT with the first rule that fires, IN for an axial MR slice nothing objects to,
    UNDECIDED when the headers cannot tell (no DICOM or NIfTI headers, no orientation). A NIfTI file's name is its
    series description, so BIDS suffixes such as `_dwi` and `_bold` count."""
    series, acq = slice_.series, slice_.acquisition
    if acq is None:  # a PNG or JPEG: its "series" is only the folder it lies in, which says nothing
        return ScopeVerdict(UNDECIDED, Kind.UNKNOWN)
    modality = (series.modality if series else "").strip().upper()
    if modality and modality != "MR":
        return _out(Kind.OTHER_MODALITY, f"a {modality} image; the model reads MR slices")
    for verdict in (_type_rule(acq), _sequence_rule(acq), _description_rule(series) if series else None):
        if verdict is not None:
            return verdict
    orientation = _orientation_rule(acq)
    if orientation is not None:
        return orientation
    return ScopeVerdict(UNDECIDED, Kind.UNKNOWN, "the headers do not give the slice orientation")


def content_fraction(preprocessed: Preprocessed) -> float:
    return float((preprocessed.image > 0.02).mean())


def is_blank(head_fraction: float, content: float) -> bool:
    """No head found, or a model input with (almost) nothing in it."""
    return not has_head(head_fraction) or content < MIN_CONTENT


def image_verdict(preprocessed: Preprocessed) -> ScopeVerdict | None:
    """OUT for a blank or near-empty slice: nothing that looks like a head."""
    if is_blank(preprocessed.head_fraction, content_fraction(preprocessed)):
        return _out(Kind.BLANK, "no head found in this slice (blank or near-empty image)", Evidence.IMAGE)
    return None


def plane_verdict(slice_: Slice) -> ScopeVerdict | None:
    """OUT for a slice whose pixels read as sagittal or coronal (core/plane.py), for slices whose headers do not give
    the orientation: the verdict a header would give, with the evidence and the classifier's confidence."""
    from .plane import bundled_classifier, plane_input

    plane, p = bundled_classifier().plane(plane_input(slice_.values(), slice_.window))
    if plane == "axial":
        return None
    kind = Kind.SAGITTAL if plane == "sagittal" else Kind.CORONAL
    return _out(kind, f"{kind}, read from its pixels (no header gives the orientation; plane classifier "
                      f"{p:.2f}); the model was trained on axial slices", Evidence.IMAGE)


def rule_check(item, preprocessed: Preprocessed) -> ScopeVerdict | None:
    """The header and image rules (the session's default ScopeCheck): the headers, then a blank image, then, where
    the headers cannot tell the orientation, the plane from the pixels; OUT with the first that objects, or None.
    An item that is not a Slice (a trainer's sample) has only its model input to judge by."""
    if not isinstance(item, Slice):
        return image_verdict(preprocessed)
    headers = header_verdict(item)
    if headers.out_of_scope:
        return headers
    blank = image_verdict(preprocessed)
    if blank is not None:
        return blank
    return plane_verdict(item) if headers.status is UNDECIDED else None


def model_verdict(ood_score: float | None, ood) -> ScopeVerdict | None:
    """OUT when the model's own features are unlike its training images (its out-of-distribution score over the
    fitted threshold of `ood`), or None: in range, or no score or no fit to judge by."""
    if ood is None or ood_score is None or not ood_score > ood.threshold:
        return None
    return ScopeVerdict(OUT, Kind.UNLIKE_TRAINING,
                        f"unlike the images this model was trained on (its feature distance {ood_score:.1f} exceeds "
                        f"{ood.threshold:.1f})", Evidence.MODEL, ood_score)


def assess(item, preprocessed: Preprocessed, ood_score: float | None = None, ood=None,
           checks: Sequence[ScopeCheck] = (rule_check,)) -> ScopeVerdict:
    """The slice's verdict, the one place the checks are combined: `checks` in order (by default the headers, then
    the image), then the model's out-of-distribution score against the fitted threshold of `ood` (core/ood.py
    OODDetector; None when the package has no fit). IN needs a positive word from the headers or from the model;
    otherwise the slice stays UNDECIDED (treated as in scope, said so)."""
    for check in checks:
        verdict = check(item, preprocessed)
        if verdict is not None and verdict.out_of_scope:
            return verdict
    unlike = model_verdict(ood_score, ood)
    if unlike is not None:
        return unlike
    headers = header_verdict(item) if isinstance(item, Slice) else ScopeVerdict(UNDECIDED, Kind.UNKNOWN)
    if ood is not None and ood_score is not None:
        return ScopeVerdict(IN, headers.kind if headers.status is IN else Kind.LIKE_TRAINING,
                            headers.reason or "like the images this model was trained on", Evidence.MODEL, ood_score)
    return headers


def series_verdict(verdicts: Iterable[ScopeVerdict | None], most: float = 0.5) -> ScopeVerdict | None:
    """One verdict for a series from its slices' verdicts (None, or an IN verdict, for a slice in scope; the
    session's `verdicts`): OUT when at least `most` of its slices are out, named by their commonest kind, e.g. "a
    sagittal slice (170 of 170 slices)"; else IN, saying how many slices are out. None before any slice is judged."""
    verdicts = list(verdicts)
    if not verdicts:
        return None
    kinds = Counter(v.kind for v in verdicts if v is not None and v.out_of_scope)
    out, n = sum(kinds.values()), len(verdicts)
    if out and out >= most * n:
        kind, count = kinds.most_common(1)[0]
        others = f"; {out - count} for other reasons" if count < out else ""
        return ScopeVerdict(OUT, kind, f"{kind} ({count} of {n} slices{others})", Evidence.SERIES)
    return ScopeVerdict(IN, Kind.SERIES, f"{out} of {n} slices out of scope" if out else f"all {n} slices in scope",
                        Evidence.SERIES)
