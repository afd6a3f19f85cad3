"""Word files (.docx): paragraphs and core properties, via python-docx (imported on first use)."""

from __future__ import annotations

from qa.ingest.article import ArticleFields
from qa.ingest.formats import LoadError


def read_docx(path: str) -> ArticleFields:
    """Paragraphs joined with blank lines; title from core properties or a Title/Heading 1 paragraph."""
    import docx

    try:
        document = docx.Document(path)
        props = document.core_properties
        paragraphs = [(p.text, p.style.name if p.style is not None else "") for p in document.paragraphs]
        title, author, created = props.title or "", props.author or "", props.created
    except Exception as exc:  # noqa: BLE001 - zip/xml/package errors
        raise LoadError(f"{path}: not a valid .docx file ({type(exc).__name__}); re-save it from your editor") from exc
    if not title:
        title = next((text for text, style in paragraphs if style in ("Title", "Heading 1") and text.strip()), "")
    return ArticleFields(
        text="\n\n".join(text for text, _ in paragraphs),
        title=title,
        author=author,
        published=created.date().isoformat() if created else "",
    )
