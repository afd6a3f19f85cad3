"""PDF files: the text of every page and the document's metadata, via pypdf (imported on first use).

pypdf logs what it repairs ("EOF marker not found") without naming the file;
those lines are logged again here with the file's path in front.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from qa.ingest.article import ArticleFields
from qa.ingest.formats import LoadError

logger = logging.getLogger(__name__)

_PDF_LOG_LOCK = threading.Lock()


def read_pdf(path: str) -> ArticleFields:
    """Text of every page joined with blank lines, plus title, author and creation date from the metadata."""
    import pypdf

    with _pdf_warnings_named(path):
        return _read_pdf(pypdf, path)


@contextlib.contextmanager
def _pdf_warnings_named(path: str) -> Iterator[None]:
    """pypdf's own log lines ("EOF marker not found") re-logged with the file they are about."""
    caught: list[logging.LogRecord] = []
    handler = _ListHandler(caught)
    pdf_logger = logging.getLogger("pypdf")
    with _PDF_LOG_LOCK:
        propagate = pdf_logger.propagate
        pdf_logger.addHandler(handler)
        pdf_logger.propagate = False
        try:
            yield
        except LoadError:
            for record in caught:  # the skip message says what went wrong; the details are for -v
                logger.debug("%s: pypdf: %s", path, record.getMessage())
            raise
        else:
            for record in caught:
                logger.log(record.levelno, "%s: pypdf: %s", path, record.getMessage())
        finally:
            pdf_logger.removeHandler(handler)
            pdf_logger.propagate = propagate


class _ListHandler(logging.Handler):
    """Keeps the records it is given (warnings and worse) in a list."""

    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _read_pdf(pypdf: Any, path: str) -> ArticleFields:
    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError(f"{path}: PDF is encrypted; save an unencrypted copy")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta = reader.metadata
        title = (meta.title or "") if meta else ""
        author = (meta.author or "") if meta else ""
        created = meta.creation_date if meta else None
    except LoadError:
        raise
    except RecursionError as exc:
        raise LoadError(f"{path}: PDF is nested too deeply to parse; re-save or export it as text") from exc
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on corrupt files
        raise LoadError(f"{path}: PDF could not be parsed ({type(exc).__name__}: {exc}); re-save or export it") from exc
    return ArticleFields(
        text="\n\n".join(pages),
        title=str(title),
        author=str(author),
        published=created.date().isoformat() if created else "",
    )
