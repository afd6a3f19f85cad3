"""What ingest accepts: the supported suffixes, the limits on input, and ``LoadError`` for a file it cannot use.

The walker (``discover.py``), the readers (``readers/``) and the loader
(``load.py``) all check against these, so a limit is changed in one place.
"""

from __future__ import annotations

import os

from qa.errors import QAError

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".jsonl", ".jsonl.gz")
MAX_FILE_BYTES = 50_000_000
MAX_ARTICLE_CHARS = 2_000_000
#: A .jsonl(.gz) file may hold at most this many lines and unpack to at most this many bytes.
MAX_JSONL_LINES = 2_000_000
MAX_UNPACKED_BYTES = 500_000_000
#: Metadata is one line of at most this many characters (longer values are cut with "…").
MAX_FIELD_CHARS = {"title": 300, "author": 200, "published": 100, "source": 2000}


class LoadError(QAError):
    """A file that cannot be loaded; the message names the file and what to do."""


def suffix_of(path: str | os.PathLike[str]) -> str:
    """The supported suffix of ``path`` (lower case, ".jsonl.gz" counted as one), or its last suffix."""
    name = os.path.basename(os.fspath(path)).lower()
    return ".jsonl.gz" if name.endswith(".jsonl.gz") else os.path.splitext(name)[1]


def unsupported(path: str) -> str:
    """The message for a file whose suffix no reader handles."""
    return f"{path}: unsupported file type; use one of {', '.join(SUPPORTED_SUFFIXES)}"


def megabytes(n: int) -> str:
    """``n`` bytes as megabytes for a message: three significant digits, never an exponent ("2,730", "0.605")."""
    mb = float(f"{n / 1e6:.3g}")
    return f"{mb:,.0f}" if mb >= 100 else f"{mb:g}"
