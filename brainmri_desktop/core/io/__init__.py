"""Reading slices from image files, DICOM files and folders of them."""

from .slices import PatientInfo, SeriesInfo, Slice
from .study import LoadReport, Series, load_paths

__all__ = ["PatientInfo", "SeriesInfo", "Slice", "Series", "LoadReport", "load_paths"]
