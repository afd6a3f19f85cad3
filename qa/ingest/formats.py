"""What ingest accepts: the supported suffixes, the limits on input, and ``LoadError`` for a file it cannot use.

The walker (``discover.py``), the readers (``readers/``) and the loader
(``load.py``) all check against these, so a limit is changed in one place.
"""

from __future__ import annotations

import os

from qa.errors import QAError

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".jsonl", ".jsonl.gz")
#: Archives of many articles, read a line at a time: no file size limit unless the caller sets one (an upload).
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
#: A file of one article (every other format) may be at most this large.
MAX_FILE_BYTES = 50_000_000
MAX_ARTICLE_CHARS = 2_000_000
#: A .jsonl(.gz) file is read up to this many lines: 20 times the million articles of a ten-million-chunk archive.
MAX_JSONL_LINES = 20_000_000
#: ... and stops once it has unpacked more than both MAX_UNPACKED_BYTES and MAX_UNPACK_RATIO times its size on
#: disk (a gzip bomb). News JSONL packs about 3:1 with gzip (the RealTime QA archive 2.8:1); a bomb packs
#: 100 to 1,000:1. A plain .jsonl unpacks to its own size, so only a .gz can be stopped by this.
MAX_UNPACKED_BYTES = 500_000_000
MAX_UNPACK_RATIO = 50
#: Metadata is one line of at most this many characters (longer values are cut with "…").
MAX_FIELD_CHARS = {"title": 300, "author": 200, "published": 100, "source": 2000}


class LoadError(QAError):
    """A file that cannot be loaded; the message names the file and what to do."""


def suffix_of(path: str | os.PathLike[str]) -> str:
    """The supported suffix of ``path`` (lower case, ".jsonl.gz" counted as one), or its last suffix."""
    name = os.path.basename(os.fspath(path)).lower()
    return ".jsonl.gz" if name.endswith(".jsonl.gz") else os.path.splitext(name)[1]


def max_unpacked_bytes(size_on_disk: int) -> int:
    """How many bytes a .jsonl(.gz) file of ``size_on_disk`` bytes may unpack to before reading it stops."""
    return max(MAX_UNPACKED_BYTES, MAX_UNPACK_RATIO * size_on_disk)


def unsupported(path: str) -> str:
    """The message for a file whose suffix no reader handles."""
    return f"{path}: unsupported file type; use one of {', '.join(SUPPORTED_SUFFIXES)}"


def megabytes(n: int) -> str:
    """``n`` bytes as megabytes for a message: three significant digits, never an exponent ("2,730", "0.605")."""
    mb = float(f"{n / 1e6:.3g}")
    return f"{mb:,.0f}" if mb >= 100 else f"{mb:g}"
