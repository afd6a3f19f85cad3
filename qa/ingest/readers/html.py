"""HTML pages (.html, .htm): the main article text and its metadata, via trafilatura (imported on first use)."""

from __future__ import annotations

from typing import Any

from qa.ingest.article import ArticleFields
from qa.ingest.formats import LoadError
from qa.ingest.readers.raw import check_not_binary, read_bytes


def read_html(path: str) -> ArticleFields:
    """Main text (one paragraph per block), title, author and date of an HTML page."""
    data = read_bytes(path)
    check_not_binary(path, data)
    import trafilatura

    try:
        doc = trafilatura.bare_extraction(data, with_metadata=True, include_comments=False, include_tables=True)
    except RecursionError as exc:
        raise LoadError(f"{path}: HTML is nested too deeply to parse; simplify or convert it to text") from exc
    except Exception as exc:  # noqa: BLE001 - trafilatura/lxml raise many kinds
        raise LoadError(f"{path}: HTML could not be parsed ({type(exc).__name__}); convert it to text") from exc
    text = _field(doc, "text")
    if not text.strip():
        raise LoadError(f"{path}: no article text found in the HTML; save the article as text instead")
    # trafilatura puts one paragraph per line; make paragraphs explicit.
    return ArticleFields(
        text=text.replace("\n", "\n\n"),
        title=_field(doc, "title"),
        author=_field(doc, "author"),
        published=_field(doc, "date"),
    )


def _field(doc: Any, name: str) -> str:
    """A field of trafilatura's result: a ``Document`` in 2.x, a dict in 1.x, or None."""
    value = doc.get(name) if isinstance(doc, dict) else getattr(doc, name, None)
    return value if isinstance(value, str) else ""
