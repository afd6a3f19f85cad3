"""What a reader found becomes an ``Article``: cleaned text, metadata cut to one short line, a printable source.

Every reader returns ``ArticleFields`` (the jsonl reader one per line);
``make_article`` is the one place they turn into the record the rest of the
pipeline uses.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from qa.ingest.clean import clean_field, clean_text
from qa.ingest.formats import MAX_FIELD_CHARS, LoadError
from qa.records import Article


@dataclass(frozen=True)
class ArticleFields:
    """The raw text and metadata a reader extracted from a file, before cleaning."""

    text: str
    title: str = ""
    author: str = ""
    published: str = ""


def make_article(where: str, source: str, fields: ArticleFields, max_article_chars: int) -> Article:
    """Clean the text and build the article; ``LoadError`` (naming ``where``) if it is too long or empty."""
    text = fields.text
    if len(text) > max_article_chars:
        raise LoadError(
            f"{where}: text is {len(text):,} characters, over the {max_article_chars:,} limit; "
            "split it or raise max_article_chars"
        )
    cleaned = clean_text(text, title_hint=clean_field(fields.title, MAX_FIELD_CHARS["title"]))
    if not cleaned.text:
        raise LoadError(f"{where}: no text left after removing boilerplate; check the file's content")
    return Article.make(
        text=cleaned.text,
        source=safe_source(source),
        title=clean_field(cleaned.title, MAX_FIELD_CHARS["title"]),
        author=clean_field(fields.author or cleaned.author, MAX_FIELD_CHARS["author"]),
        published=clean_field(fields.published or cleaned.published, MAX_FIELD_CHARS["published"]),
    )


def safe_source(source: str) -> str:
    """A source (path or URL) that prints on one line and encodes as UTF-8.

    Undecodable bytes of file names and control or invisible characters become
    visible escapes (``\\udce9``, ``\\u202e``), so two different names stay different.
    """
    text = source.strip().encode("utf-8", "backslashreplace").decode("utf-8")
    text = "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text
    )
    limit = MAX_FIELD_CHARS["source"]
    return text if len(text) <= limit else text[: limit - 1] + "…"
