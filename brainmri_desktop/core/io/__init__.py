"""Reading slices from image, DICOM and NIfTI files, DICOMDIRs, zip archives and folders of them."""

from .slices import Acquisition, PatientInfo, SeriesInfo, Slice
from .study import OPENABLE_PATTERNS, LoadReport, Series, iter_load, load_paths

__all__ = ["Acquisition", "PatientInfo", "SeriesInfo", "Slice", "Series", "LoadReport", "iter_load", "load_paths",
           "OPENABLE_PATTERNS"]
