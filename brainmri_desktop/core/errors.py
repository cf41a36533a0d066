"""The typed errors of the core: each names the file it is about and the reason, so a message can be shown as is."""

from __future__ import annotations

from pathlib import Path


class BrainMRIError(Exception):
    """Base of every error the core raises on purpose."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = str(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class UnreadableFileError(BrainMRIError):
    """A file that is empty, truncated, corrupt or of a format the application does not read."""


class NotAnImageError(BrainMRIError):
    """A valid file that holds no image, such as a DICOM RT plan or structured report."""


class UnsupportedError(BrainMRIError):
    """An image whose encoding or layout is understood but not supported (for example an unknown transfer syntax)."""


class ModelPackageError(BrainMRIError):
    """A model package that is incomplete, tampered with or inconsistent; it is skipped, never half-loaded."""


class EngineError(BrainMRIError):
    """The process a model computes in (core/engine.py) could not load it or answer; the reason is the child's."""

    def __init__(self, reason: str) -> None:
        super().__init__(None, reason)


class CancelledError(BrainMRIError):
    """Long work stopped because the user asked."""

    def __init__(self) -> None:
        super().__init__(None, "cancelled")


class PacsError(BrainMRIError):
    """A DICOM server that cannot be reached, is too slow, refuses the credentials, answers something unusable, or
    a local cache that cannot be written. `path` is the server's URL without credentials (or the cache folder);
    nothing is left half-written."""
