"""PACS: DICOMweb search and retrieval into a local cache, and DICOM results (SR) sent back into the study.

Qt-free like the core (never imports Qt or the trainer); the window and the command line drive it.
"""
