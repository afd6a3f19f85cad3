"""JSON lines (.jsonl, .jsonl.gz): one article per line, ``{"text": ..., "title", "url", "id", "author", "published"}``.

A bad line is a skip message naming the file and line; the other lines still
load. Limits on lines and unpacked size stop a gzip bomb.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from typing import Any

from qa.ingest.article import ArticleFields, make_article
from qa.ingest.formats import MAX_JSONL_LINES, MAX_UNPACKED_BYTES, LoadError, megabytes
from qa.ingest.readers.raw import SNIFF_BYTES, check_not_binary
from qa.records import Article


def read_jsonl(path: str, max_article_chars: int) -> tuple[list[Article], list[str]]:
    """One article per line, and one skip message per bad line; ``LoadError`` if the file is unusable."""
    articles: list[Article] = []
    skips: list[str] = []
    seen: set[str] = set()
    opener = gzip.open if path.lower().endswith(".gz") else open
    # A JSON-escaped character takes at most 12 bytes (a surrogate pair); leave room for metadata.
    max_line_bytes = max_article_chars * 12 + 1_000_000
    try:
        with opener(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
            check_not_binary(path, head)
            f.seek(0)
            for lineno, line in _lines(f, max_line_bytes):
                if lineno > MAX_JSONL_LINES or f.tell() > MAX_UNPACKED_BYTES:
                    skips.append(
                        f"{path}: stopped at line {lineno:,}: over {MAX_JSONL_LINES:,} lines or "
                        f"{megabytes(MAX_UNPACKED_BYTES)} MB unpacked; split the file"
                    )
                    break
                if line is None:
                    skips.append(
                        f"{path}: line {lineno}: over {max_line_bytes:,} bytes, too long for the "
                        f"{max_article_chars:,} character limit (max_article_chars)"
                    )
                    continue
                if not line.strip():
                    continue
                try:
                    article = _line_article(path, lineno, line, max_article_chars)
                except LoadError as exc:
                    skips.append(str(exc))
                    continue
                if article.source in seen:
                    skips.append(f"{path}: line {lineno}: repeats source {article.source}")
                    continue
                seen.add(article.source)
                articles.append(article)
    except (OSError, EOFError, zlib.error) as exc:
        raise LoadError(f"{path}: cannot be read ({exc}); check the file or re-create it") from exc
    if not articles and not skips:
        raise LoadError(f"{path}: no JSON lines; add one object with a \"text\" per line")
    return articles, skips


def _lines(f: Any, max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """Yield (1-based line number, line bytes), or None for a line over ``max_line_bytes``."""
    lineno = 0
    while True:
        line = f.readline(max_line_bytes + 1)
        if not line:
            return
        lineno += 1
        if len(line) > max_line_bytes:
            while line and not line.endswith(b"\n") and f.tell() <= MAX_UNPACKED_BYTES:
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
