"""What can go wrong when an index is opened or read; every message is one line that says what to do."""

from __future__ import annotations

from qa.errors import QAError


class IndexLoadError(QAError):
    """The index cannot be used; the message says what to do."""


class IndexMissing(IndexLoadError):
    """There is no index in the folder yet."""


class IndexInvalid(IndexLoadError):
    """The folder holds an index that does not match its manifest, this version, or the model."""
