"""BrainMRI: brain MRI tumour triage. A triage aid, not a diagnosis."""

__version__ = "0.1.0"
