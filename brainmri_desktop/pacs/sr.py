"""The triage result as a DICOM Comprehensive SR built with highdicom, in the source study as a new series.

Patient and study identity are copied by highdicom from the source instances (the evidence); nothing else about the
patient is added. Concepts DICOM has no code for use the private scheme 99BRAINMRI.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from ..core.errors import BrainMRIError, UnreadableFileError
from ..core.report import DISCLAIMER
from .findings import TriageFindings

MANUFACTURER = "BrainMRI"
SR_SERIES_NUMBER = 9901
SR_SERIES_DESCRIPTION = "BrainMRI tumour triage (AI triage aid, not a diagnosis)"
_SCHEME = "99BRAINMRI"


def _concept(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, _SCHEME, meaning)


TITLE = _concept("TRIAGE", "Brain MRI tumour triage report (AI triage aid)")
WEIGHTS_SHA256 = _concept("SHA256", "Model weights SHA-256")
THRESHOLD = _concept("THRESHOLD", "Decision threshold on the tumour probability")
OPERATING_POINT = _concept("OPPOINT", "Operating point")
DISCLAIMER_CONCEPT = _concept("DISCLAIMER", "Disclaimer")
SLICE_RESULT = _concept("SLICE", "Slice triage result")
PROBABILITY = _concept("PROB", "Tumour probability (calibrated model output)")
FLAGGED = _concept("FLAG", "Flagged for review")
FLAGGED_COUNT = _concept("NFLAGGED", "Slices flagged for review")
OUT_OF_SCOPE = _concept("SCOPE", "Outside what the model was trained on")
SCOPE_POLICY = _concept("SCOPEPOLICY", "How slices outside what the model was trained on were decided")
REVIEW = _concept("REVIEW", "Reader's review of the model's result")
REVIEW_VALUES = {"agree": _concept("AGREE", "Reader agrees with the model's result"),
                 "disagree": _concept("DISAGREE", "Reader disagrees with the model's result")}
READER = _concept("READER", "Reader")
MARKED_AT = _concept("MARKEDAT", "Time of the reader's review")
NOTE = _concept("NOTE", "Reader's note")
UNUSUAL = _concept("UNUSUAL", "Flagged although unlike the images the model was trained on")
GRADCAM_CAVEAT = _concept("CAMCAVEAT", "Caveat on the model's Grad-CAM map")
_CONTAINS = hd.sr.RelationshipTypeValues.CONTAINS


def _text(name, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name, value, relationship_type=_CONTAINS)


def _number(name, value: float) -> hd.sr.NumContentItem:
    return hd.sr.NumContentItem(name, value, codes.UCUM.NoUnits, relationship_type=_CONTAINS)


# What a result may take from its source: the patient's and the study's identity, and what references the instance.
# highdicom copies whole modules from the evidence (size, weight, age...), so the evidence is cut down to these first.
SOURCE_KEYWORDS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                   "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
                   "StudyDescription", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "NumberOfFrames",
                   "ImageOrientationPatient", "SpecificCharacterSet")
# Type 2 in the patient and study modules: a result must hold them, empty when the source has no value. highdicom
# reads them off the evidence unguarded, and converted or anonymised series often lack them.
TYPE2_IDENTITY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                  "AccessionNumber", "ReferringPhysicianName")
# Without these no result can say which images it is about.
REQUIRED = ("StudyInstanceUID", "SOPClassUID", "SOPInstanceUID")


def source_header(path: Path) -> pydicom.Dataset:
    full = pydicom.dcmread(path, stop_before_pixels=True)
    header = pydicom.Dataset()
    for keyword in SOURCE_KEYWORDS:
        if keyword in full:
            header.add(full.data_element(keyword))  # as stored: setting the value anew logs it when pydicom dislikes it
    if missing := [k for k in REQUIRED if not header.get(k)]:
        raise UnreadableFileError(path, f"the source instance has no {', '.join(missing)}, which a report must "
                                        "reference")
    for keyword in TYPE2_IDENTITY:
        if header.get(keyword) is None:
            setattr(header, keyword, "")
    return header


def read_sources(findings: TriageFindings) -> dict[Path, pydicom.Dataset]:
    """The identity headers of the source files, once per file."""
    return {path: source_header(path) for path in dict.fromkeys(s.path for s in findings.slices)}


def _slice_item(finding, source: pydicom.Dataset) -> hd.sr.ContainerContentItem:
    item = hd.sr.ContainerContentItem(SLICE_RESULT, relationship_type=_CONTAINS)
    frames = int(source.get("NumberOfFrames", 1) or 1)
    item.ContentSequence = hd.sr.ContentSequence([
        _number(PROBABILITY, round(float(finding.probability), 4)),
        hd.sr.CodeContentItem(FLAGGED, codes.SCT.Yes if finding.flagged else codes.SCT.No,
                              relationship_type=_CONTAINS),
        hd.sr.ImageContentItem(codes.DCM.SourceOfMeasurement, source.SOPClassUID, source.SOPInstanceUID,
                               referenced_frame_numbers=finding.frame + 1 if frames > 1 else None,
                               relationship_type=_CONTAINS),
    ])
    if finding.out_of_scope:
        item.ContentSequence.append(_text(OUT_OF_SCOPE, finding.out_of_scope))
    if finding.warning:
        item.ContentSequence.append(_text(UNUSUAL, finding.warning))
    item.ContentSequence.extend(_review_items(finding.mark))
    return item


def _review_items(mark) -> list[hd.sr.ContentItem]:
    """The reader's mark as the window recorded it; a note-only mark has no verdict, and files written before
    readers and times were kept have neither."""
    if mark is None:
        return []
    items = []
    if mark.verdict in REVIEW_VALUES:
        items.append(hd.sr.CodeContentItem(REVIEW, REVIEW_VALUES[mark.verdict], relationship_type=_CONTAINS))
    if mark.reader:
        # text, not a person name: what the reader typed has no DICOM name components to split it by
        items.append(_text(READER, mark.reader))
    try:
        items.append(hd.sr.DateTimeContentItem(MARKED_AT, datetime.fromisoformat(mark.time),
                                               relationship_type=_CONTAINS))
    except ValueError:
        pass  # no time recorded
    if mark.note:
        items.append(_text(NOTE, mark.note))
    return items


def build_sr(findings: TriageFindings, sources: Mapping[Path, pydicom.Dataset]) -> hd.sr.ComprehensiveSR:
    if not findings.slices:
        raise BrainMRIError(None, "no report sent: no slice results to report")
    studies = {str(ds.StudyInstanceUID) for ds in sources.values()}
    if len(studies) != 1:
        raise BrainMRIError(None, "no report sent: the slices come from more than one study; a report belongs to one")
    model = findings.model
    root = hd.sr.ContainerContentItem(TITLE)
    root.ContentSequence = hd.sr.ContentSequence([
        _text(codes.DCM.AlgorithmName, model.id),
        _text(codes.DCM.AlgorithmVersion, model.version),
        _text(WEIGHTS_SHA256, model.weights_sha256 or "unknown"),
        _number(THRESHOLD, round(float(findings.threshold), 4)),
        _text(OPERATING_POINT, findings.operating_point),
        _number(FLAGGED_COUNT, len(findings.flagged)),
        _text(SCOPE_POLICY, "flagged by their probability, as the reader asked" if findings.include_out_of_scope
              else "not flagged, whatever their probability"),
        _text(DISCLAIMER_CONCEPT, DISCLAIMER),
        *([_text(GRADCAM_CAVEAT, findings.gradcam_caveat)] if findings.gradcam_caveat else []),
        *(_slice_item(s, sources[s.path]) for s in findings.slices),
    ])
    sr = hd.sr.ComprehensiveSR(
        evidence=list(sources.values()), content=root, series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False)
    sr.SeriesDescription = SR_SERIES_DESCRIPTION
    return sr
