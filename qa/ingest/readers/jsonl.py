"""JSON lines (.jsonl, .jsonl.gz): one article per line, ``{"text": ..., "title", "url", "id", "author", "published"}``.

Read a line at a time: the articles are yielded as they are parsed. A bad line
is a skip message naming the file and line; the other lines still load. The
file has no size limit of its own: a line is limited by ``max_article_chars``,
and limits on lines and on unpacked bytes (against a gzip bomb) stop reading.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from qa.ingest.article import ArticleFields, make_article
from qa.ingest.formats import MAX_JSONL_LINES, MAX_UNPACK_RATIO, LoadError, max_unpacked_bytes, megabytes
from qa.ingest.readers.raw import SNIFF_BYTES, check_not_binary
from qa.records import Article


def iter_jsonl(path: str, max_article_chars: int, skip: Callable[[str], None]) -> Iterator[Article]:
    """Yield one article per good line, in order, and hand ``skip`` one message per bad line as it is met.

    Only the current line and the sources seen so far (to skip a repeated one)
    are held, so a caller that does not keep the articles reads a file of any
    size in little memory. ``LoadError`` if the file is unusable; a read error
    half-way (a truncated gzip) raises it after the articles before it were yielded.
    """
    seen: set[str] = set()
    used = False  # a line that is not blank was met
    opener = gzip.open if path.lower().endswith(".gz") else open
    # A JSON-escaped character takes at most 12 bytes (a surrogate pair); leave room for metadata.
    max_line_bytes = max_article_chars * 12 + 1_000_000
    try:
        packed = os.stat(path).st_size
        max_unpacked = max_unpacked_bytes(packed)
        with opener(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
            check_not_binary(path, head)
            f.seek(0)
            for lineno, line in _lines(f, max_line_bytes, max_unpacked):
                stop = _stop(path, lineno, f.tell(), packed)
                if stop:
                    skip(stop)
                    return
                if line is not None and not line.strip():
                    continue
                used = True
                if line is None:
                    skip(
                        f"{path}: line {lineno}: over {max_line_bytes:,} bytes, too long for the "
                        f"{max_article_chars:,} character limit (max_article_chars)"
                    )
                    continue
                try:
                    article = _line_article(path, lineno, line, max_article_chars)
                except LoadError as exc:
                    skip(str(exc))
                    continue
                if article.source in seen:
                    skip(f"{path}: line {lineno}: repeats source {article.source}")
                    continue
                seen.add(article.source)
                yield article
    except (OSError, EOFError, zlib.error) as exc:
        raise LoadError(f"{path}: cannot be read ({exc}); check the file or re-create it") from exc
    if not used:
        raise LoadError(f"{path}: no JSON lines; add one object with a \"text\" per line")


def _stop(path: str, lineno: int, unpacked: int, packed: int) -> str:
    """Why reading stops at line ``lineno`` after ``unpacked`` bytes of a file of ``packed``; "" to go on."""
    if lineno > MAX_JSONL_LINES:
        return f"{path}: stopped at line {lineno:,}: over {MAX_JSONL_LINES:,} lines; split the file"
    if unpacked > max_unpacked_bytes(packed):
        return (
            f"{path}: stopped at line {lineno:,}: over {megabytes(max_unpacked_bytes(packed))} MB unpacked, "
            f"more than {MAX_UNPACK_RATIO} times its {megabytes(packed)} MB on disk; split the file"
        )
    return ""


def _lines(f: Any, max_line_bytes: int, max_unpacked: int) -> Iterator[tuple[int, bytes | None]]:
    """Yield (1-based line number, line bytes), or None for a line over ``max_line_bytes``.

    A long line is read past in pieces, up to ``max_unpacked`` bytes into the file.
    """
    lineno = 0
    while True:
        line = f.readline(max_line_bytes + 1)
        if not line:
            return
        lineno += 1
        if len(line) > max_line_bytes:
            while line and not line.endswith(b"\n") and f.tell() <= max_unpacked:
                line = f.readline(1 << 20)  # drain the rest of the long line
            yield lineno, None
        else:
            yield lineno, line


def _line_article(path: str, lineno: int, line: bytes, max_article_chars: int) -> Article:
    """Parse one jsonl line into an article or raise LoadError naming the line."""
    where = f"{path}: line {lineno}"
    try:
        data = json.loads(line.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LoadError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise LoadError(f"{where}: not a JSON object")
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise LoadError(f"{where}: no \"text\" string")
    source = _str(data.get("url")) or _str(data.get("id")) or f"{path}#L{lineno}"
    fields = ArticleFields(
        text=text,
        title=_str(data.get("title")),
        author=_str(data.get("author")),
        published=_str(data.get("published")),
    )
    return make_article(where, source, fields, max_article_chars)


def _str(value: Any) -> str:
    """A metadata value as a string: lists joined with ", ", numbers as text, other types ignored."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        return ", ".join(v.strip() for v in value if isinstance(v, str) and v.strip())
    return ""
