"""Read one article file (txt, md, html, pdf, docx, jsonl) into ``Article`` records: the one entry point.

``load_file`` checks the file (a regular file, not empty, within the size
limit of its format: a jsonl archive has none of its own), hands it to the
reader for its suffix (``readers/``), and cleans what the reader found into
articles. A file that cannot be used raises ``LoadError`` with a message naming
it; a jsonl file's bad lines are skip messages in the result instead, so its
good lines still load. The build reads every file ``discover.discover_files``
finds with it, and the web chat's articles folder checks each upload with it.
``iter_articles`` reads the same articles one at a time, so a caller need not
hold a whole file's.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from qa.ingest.article import ArticleFields, make_article
from qa.ingest.formats import (
    JSONL_SUFFIXES,
    MAX_ARTICLE_CHARS,
    MAX_FILE_BYTES,
    SUPPORTED_SUFFIXES,
    LoadError,
    megabytes,
    suffix_of,
    unsupported,
)
from qa.ingest.readers.docx import read_docx
from qa.ingest.readers.html import read_html
from qa.ingest.readers.jsonl import iter_jsonl
from qa.ingest.readers.pdf import read_pdf
from qa.ingest.readers.text import read_text
from qa.records import Article

#: The reader of each suffix that holds one article (jsonl, several a file, is read apart).
READERS: dict[str, Callable[[str], ArticleFields]] = {
    ".txt": read_text,
    ".md": read_text,
    ".markdown": read_text,
    ".html": read_html,
    ".htm": read_html,
    ".pdf": read_pdf,
    ".docx": read_docx,
}


@dataclass(frozen=True)
class LoadResult:
    """The articles read, and one message per skipped file or jsonl line."""

    articles: tuple[Article, ...]
    skipped: tuple[str, ...]


def load_file(
    path: str | os.PathLike[str],
    *,
    max_file_bytes: int | None = None,
    max_article_chars: int = MAX_ARTICLE_CHARS,
) -> LoadResult:
    """One file's articles (several for jsonl) and its per-line skip messages; ``LoadError`` if it is unusable.

    ``max_file_bytes=None`` is the format's own limit: ``MAX_FILE_BYTES`` for a
    file of one article, none for jsonl (read a line at a time, limited per line
    and against gzip bombs). A number is a limit for every format, jsonl too:
    the web chat's uploads pass theirs.
    """
    skipped: list[str] = []
    articles = iter_articles(path, skip=skipped.append, max_file_bytes=max_file_bytes,
                             max_article_chars=max_article_chars)
    return LoadResult(articles=tuple(articles), skipped=tuple(skipped))


def iter_articles(
    path: str | os.PathLike[str],
    *,
    skip: Callable[[str], None],
    max_file_bytes: int | None = None,
    max_article_chars: int = MAX_ARTICLE_CHARS,
) -> Iterator[Article]:
    """One file's articles, one at a time; ``skip`` is handed each jsonl line's skip message as it is met.

    The file itself is checked at the call (``LoadError``; ``max_file_bytes`` as
    for ``load_file``); a jsonl file is then read a line at a time as the
    iterator is consumed, and a read error there raises ``LoadError`` from it.
    """
    path = os.fspath(path)
    suffix = suffix_of(path)
    if suffix not in SUPPORTED_SUFFIXES:
        raise LoadError(unsupported(path))
    if suffix in JSONL_SUFFIXES:
        _check_size(path, max_file_bytes)
        return iter_jsonl(path, max_article_chars, skip)
    _check_size(path, MAX_FILE_BYTES if max_file_bytes is None else max_file_bytes)
    return iter((make_article(path, path, READERS[suffix](path), max_article_chars),))


def _check_size(path: str, max_file_bytes: int | None) -> None:
    """``LoadError`` unless ``path`` is a regular file, not empty, of at most ``max_file_bytes`` (if given)."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise LoadError(f"{path}: cannot be read ({exc.strerror or exc}); check the path and its permissions") from exc
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise LoadError(f"{path}: not a regular file (a pipe, device or socket); remove it from the folder")
    if size == 0:
        raise LoadError(f"{path}: empty file; add text or remove it")
    if max_file_bytes is not None and size > max_file_bytes:
        raise LoadError(
            f"{path}: {megabytes(size)} MB, over the {megabytes(max_file_bytes)} MB limit; "
            "split it or raise max_file_bytes"
        )
