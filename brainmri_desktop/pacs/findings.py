"""The plain data a triage run hands to the PACS write-back: which model, which threshold, and per slice the source
instance (a local DICOM file, as retrieved into the cache), the probability, the flag and the reader's mark. Nothing
of the patient."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.manifest import Manifest
from ..core.model_choice import gradcam_caveat
from ..core.review import Mark
from ..core.session import Session, Threshold


@dataclass(frozen=True)
class ModelInfo:
    id: str
    name: str
    version: str
    weights_sha256: str  # the digest of the weights file that the package's manifest lists and the loader verified

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> "ModelInfo":
        return cls(manifest.id, manifest.name, manifest.version, manifest.files.get(manifest.weights_file, ""))


@dataclass(frozen=True)
class SliceFinding:
    path: Path  # the source DICOM file
    frame: int  # 0-based frame in that file (the loader's Slice.frame)
    probability: float
    flagged: bool  # the session's decision (core.session.decide), not re-derived here
    out_of_scope: str | None = None  # the scope verdict, when the slice lies outside what the model was trained on
    mark: Mark | None = None  # the reader's review (verdict, note, reader, time), when the slice has one
    warning: str | None = None  # flagged although its features are unlike the training images (Decision.warning)


@dataclass(frozen=True)
class TriageFindings:
    model: ModelInfo
    threshold: float
    operating_point: str  # which threshold decided and how it was chosen, in words (`operating_point_words`)
    slices: tuple[SliceFinding, ...]
    gradcam_caveat: str | None = None  # core.model_choice.gradcam_caveat of the model: every capture carries it
    include_out_of_scope: bool = False  # the reader's choice: out-of-scope slices flagged by their probability too

    @property
    def flagged(self) -> list[SliceFinding]:
        return [s for s in self.slices if s.flagged]


def operating_point_words(session: Session) -> str:
    """The threshold that decided, as it was chosen: a model without a high-sensitivity point decides with its main
    threshold when that point is asked for, and the words say so rather than the point asked for."""
    point, manifest = session.point, session.manifest
    chosen = f"({point.method_in_words}, chosen on {point.data})"
    if point is manifest.threshold:
        missing = ("; the high-sensitivity point was asked for, but this model has none"
                   if session.threshold is Threshold.HIGH_SENSITIVITY else "")
        return f"main threshold {chosen}{missing}"
    return f"high-sensitivity threshold {chosen}"


def session_findings(session: Session) -> TriageFindings:
    """What a triaged series says, slice by slice in order: the slices with a result, with the session's decisions
    (flag and scope verdict) at its operating point, and the reader's marks."""
    done = sorted(session.results)
    decisions = session.decisions()
    return TriageFindings(ModelInfo.from_manifest(session.manifest), session.point.threshold,
                          operating_point_words(session),
                          tuple(SliceFinding(session.slices[i].path, session.slices[i].frame,
                                             session.results[i].probability, decisions[i].flagged,
                                             decisions[i].out_of_scope, session.marks.get(i), decisions[i].warning)
                                for i in done),
                          gradcam_caveat(session.manifest), session.include_out_of_scope)
