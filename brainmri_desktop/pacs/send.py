"""Sending a triage result back into its study: the SR, optionally the overlay captures, in one STOW-RS request."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pydicom

from ..core.errors import BrainMRIError, UnreadableFileError
from ..core.session import SLICE_VIEW, Session
from .client import Server
from .findings import TriageFindings
from .sc import build_overlay_images, burn_overlay, capture_lines
from .sr import build_sr, read_sources


@dataclass(frozen=True)
class SentResults:
    study_uid: str
    sr_series_uid: str
    sr_instance_uid: str
    overlay_series_uid: str = ""
    overlay_count: int = 0


def _sources(findings: TriageFindings) -> dict:
    try:
        return read_sources(findings)
    except (OSError, pydicom.errors.InvalidDicomError, AttributeError, ValueError) as exc:
        raise UnreadableFileError(getattr(exc, "filename", None), f"a source instance cannot be read for the report "
                                  f"({type(exc).__name__})") from None


def flagged_overlays(session: Session, gradcam, findings: TriageFindings) -> dict[int, np.ndarray]:
    """Burnt-in Grad-CAM images of the flagged slices, keyed by their place in `findings`; maps not cached yet are
    computed with `gradcam` (None: only the cached ones)."""
    order = sorted(session.results)  # the findings' order (session_findings)
    wanted = {order[k]: k for k, f in enumerate(findings.slices) if f.flagged}
    maps = {i: m for i in wanted if (m := session.cam(i, SLICE_VIEW)) is not None}
    if gradcam is not None:
        for part in session.cam_chunks(gradcam, session.missing_cams(list(wanted), SLICE_VIEW), SLICE_VIEW):
            maps.update({i: m for (i, _view), m in part.items()})
    return {wanted[i]: burn_overlay(session.slices[i].display_image(), m,
                                    capture_lines(findings.slices[wanted[i]], findings.gradcam_caveat))
            for i, m in maps.items()}


def send_results(client: Server, findings: TriageFindings,
                 overlays: Mapping[int, np.ndarray] | None = None) -> SentResults:
    """Builds the report (and the captures of `overlays`: index into `findings.slices` -> RGB image from
    `sc.burn_overlay`) and stores them in the source study. Raises PacsError when the server does not take them."""
    sources = _sources(findings)
    try:
        with warnings.catch_warnings():
            # highdicom warns about a one-part patient name with the name in the text: identity stays out of logs.
            warnings.filterwarnings("ignore", message=".*person name", category=UserWarning)
            sr = build_sr(findings, sources)
            captures = build_overlay_images(list(findings.slices), sources, overlays or {}, findings.gradcam_caveat)
    except (ValueError, TypeError) as exc:  # its text may quote a patient's value: only its kind is shown
        raise BrainMRIError(None, "no report sent: a value copied from the source instances' patient or study "
                                  f"header is not valid DICOM ({type(exc).__name__})") from None
    client.store([sr, *captures], str(sr.StudyInstanceUID))
    return SentResults(
        study_uid=str(sr.StudyInstanceUID), sr_series_uid=str(sr.SeriesInstanceUID),
        sr_instance_uid=str(sr.SOPInstanceUID),
        overlay_series_uid=str(captures[0].SeriesInstanceUID) if captures else "", overlay_count=len(captures))


def sent_message(findings: TriageFindings, sent: SentResults, where: str) -> str:
    """The one line that tells the reader what was stored where (UIDs and counts only: nothing of the patient)."""
    overlays = f" and {sent.overlay_count} Grad-CAM overlay images" if sent.overlay_count else ""
    return (f"stored a structured report of {len(findings.slices)} slices ({len(findings.flagged)} flagged){overlays} "
            f"in study {sent.study_uid} on {where} (series {sent.sr_series_uid})")
