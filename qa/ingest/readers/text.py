"""Plain text and markdown (.txt, .md, .markdown): decode whatever the encoding; a leading markdown heading is the title."""

from __future__ import annotations

import codecs
import re

from qa.ingest.article import ArticleFields
from qa.ingest.formats import suffix_of
from qa.ingest.readers.raw import check_not_binary, read_bytes

_MD_HEADING = re.compile(r"#{1,6}[ \t]+(?P<title>.+?)[ \t]*#*[ \t]*")


def read_text(path: str) -> ArticleFields:
    """The text of a .txt or markdown file; for markdown, a first-line heading becomes the title."""
    data = read_bytes(path)
    check_not_binary(path, data)
    text = decode_text(data)
    title = ""
    if suffix_of(path) in (".md", ".markdown"):
        lines = text.split("\n")
        first = next((i for i, line in enumerate(lines) if line.strip()), None)
        heading = _MD_HEADING.fullmatch(lines[first].strip().lstrip("\ufeff")) if first is not None else None
        if heading:
            title = heading.group("title")
            text = "\n".join(lines[first + 1 :])
    return ArticleFields(text=text, title=title)


def decode_text(data: bytes) -> str:
    """Decode bytes: utf-8 (BOM stripped), utf-16 with BOM, a charset_normalizer guess, cp1252, latin-1."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    guess = _guess_encoding(data)
    for encoding in ([guess] if guess else []) + ["cp1252"]:
        try:
            return data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("latin-1", errors="replace")


def _guess_encoding(data: bytes) -> str:
    """charset_normalizer's best guess, preferring cp1252 when it scores about as well.

    charset_normalizer alone often picks a Baltic code page (cp775) for short
    Western European text, so cp1252 wins any near tie.
    """
    try:
        import charset_normalizer
    except ImportError:
        return ""
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        return ""
    for match in matches:
        if (
            "cp1252" in match.could_be_from_charset
            and match.chaos <= best.chaos + 0.1
            and match.coherence >= best.coherence - 0.1
        ):
            return "cp1252"
    return best.encoding
