"""Read article files (txt, md, html, pdf, docx, jsonl) into ``Article`` records.

``load_paths`` walks files and folders and never raises for a bad file: it
records a one-line message in ``LoadResult.skipped`` instead. ``load_file``
reads one file and raises ``LoadError`` with a message naming the file.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import json
import logging
import os
import re
import stat
import threading
import unicodedata
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from qa.errors import QAError
from qa.ingest.clean import clean_field, clean_text
from qa.records import Article

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".jsonl", ".jsonl.gz")
MAX_FILE_BYTES = 50_000_000
MAX_ARTICLE_CHARS = 2_000_000
#: A .jsonl(.gz) file may hold at most this many lines and unpack to at most this many bytes.
MAX_JSONL_LINES = 2_000_000
MAX_UNPACKED_BYTES = 500_000_000
#: Metadata is one line of at most this many characters (longer values are cut with "…").
MAX_FIELD_CHARS = {"title": 300, "author": 200, "published": 100, "source": 2000}
_SNIFF_BYTES = 8192
_MD_HEADING = re.compile(r"#{1,6}[ \t]+(?P<title>.+?)[ \t]*#*[ \t]*")


class LoadError(QAError):
    """A file that cannot be loaded; the message names the file and what to do."""


@dataclass(frozen=True)
class LoadResult:
    """The articles read, and one message per skipped file or jsonl line."""

    articles: tuple[Article, ...]
    skipped: tuple[str, ...]


def suffix_of(path: str | os.PathLike[str]) -> str:
    """The supported suffix of ``path`` (lower case, ".jsonl.gz" counted as one), or its last suffix."""
    name = os.path.basename(os.fspath(path)).lower()
    return ".jsonl.gz" if name.endswith(".jsonl.gz") else os.path.splitext(name)[1]


def load_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_article_chars: int = MAX_ARTICLE_CHARS,
) -> LoadResult:
    """Load every supported file under ``paths`` (files or folders, read recursively in sorted order)."""
    articles: dict[str, Article] = {}
    skipped: list[str] = []
    seen_files: set[str] = set()

    def skip(message: str) -> None:
        logger.debug("skipped %s", message)  # the caller shows LoadResult.skipped, once
        skipped.append(message)

    for given in paths:
        if not os.path.lexists(given):
            raise LoadError(f"{os.fspath(given)} does not exist; check the path")
        for path in _discover(os.fspath(given), skip):
            real = os.path.realpath(path)
            if real in seen_files:
                logger.debug("%s already read", path)
                continue
            seen_files.add(real)
            try:
                found, line_skips = _read(path, max_file_bytes, max_article_chars)
            except LoadError as exc:
                skip(str(exc))
                continue
            for message in line_skips:
                skip(message)
            for article in found:
                if article.source in articles:
                    skip(f"{path}: {article.source} was already loaded; duplicate skipped")
                else:
                    articles[article.source] = article
    logger.info("loaded %d articles, skipped %d", len(articles), len(skipped))
    return LoadResult(articles=tuple(articles.values()), skipped=tuple(skipped))


def load_file(
    path: str | os.PathLike[str],
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_article_chars: int = MAX_ARTICLE_CHARS,
) -> list[Article]:
    """Read one file into articles (several for jsonl); bad jsonl lines are logged and skipped."""
    articles, line_skips = _read(os.fspath(path), max_file_bytes, max_article_chars)
    for message in line_skips:
        logger.warning("skipped %s", message)
    return articles


def discover_files(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[str], list[str]]:
    """The files ``load_paths`` would read, in its order (each real file once), and its skip messages for the rest."""
    files: list[str] = []
    skipped: list[str] = []
    seen: set[str] = set()

    def skip(message: str) -> None:
        logger.warning("skipped %s", message)
        skipped.append(message)

    for given in paths:
        if not os.path.lexists(given):
            raise LoadError(f"{os.fspath(given)} does not exist; check the path")
        for path in _discover(os.fspath(given), skip):
            try:  # the same file reached twice (two given paths, a link): once; (device, inode) costs one stat
                st = os.stat(path)
                key = f"{st.st_dev}:{st.st_ino}"
            except OSError:
                key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                files.append(path)
    return files, skipped


def read_file(
    path: str, *, max_file_bytes: int = MAX_FILE_BYTES, max_article_chars: int = MAX_ARTICLE_CHARS
) -> tuple[list[Article], list[str]]:
    """One file's articles and its per-line skip messages; ``LoadError`` if the whole file is unusable."""
    return _read(path, max_file_bytes, max_article_chars)


def _discover(given: str, skip: Callable[[str], None]) -> Iterator[str]:
    """Yield the files to read for one user-given path, reporting skips via ``skip``."""
    if os.path.isdir(given):
        root = os.path.realpath(given)
        yield from _walk(given, root, {root}, skip)
    elif suffix_of(given) in SUPPORTED_SUFFIXES:
        yield given
    elif os.path.exists(given):
        skip(f"{given}: unsupported file type; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    else:
        skip(f"{given}: broken symlink; fix or remove it")


def _walk(folder: str, root: str, visited: set[str], skip: Callable[[str], None]) -> Iterator[str]:
    """Recurse into ``folder`` in sorted order, skipping hidden entries and escaping symlinks."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        skip(f"{folder}: cannot list folder ({exc.strerror or exc}); check its permissions")
        return
    for name in names:
        path = os.path.join(folder, name)
        if name.startswith("."):
            logger.debug("ignoring hidden %s", path)
            continue
        is_link = os.path.islink(path)
        real = os.path.realpath(path) if is_link else ""  # resolving every plain file costs an lstat per path part
        if is_link and os.path.commonpath([root, real]) != root:
            skip(f"{path}: symlink to {real}, outside {root}; not followed")
            continue
        if os.path.isdir(path):
            real = real or os.path.realpath(path)
            if real in visited:
                logger.debug("already walked %s", path)
                continue
            yield from _walk(path, root, visited | {real}, skip)
        elif not os.path.exists(path):
            skip(f"{path}: broken symlink; fix or remove it")
        elif suffix_of(path) in SUPPORTED_SUFFIXES:
            yield path
        else:
            skip(f"{path}: unsupported file type; use one of {', '.join(SUPPORTED_SUFFIXES)}")


def _read(path: str, max_file_bytes: int, max_article_chars: int) -> tuple[list[Article], list[str]]:
    """Dispatch on the suffix; return the articles and per-line skip messages."""
    suffix = suffix_of(path)
    if suffix not in SUPPORTED_SUFFIXES:
        raise LoadError(f"{path}: unsupported file type; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    _check_size(path, max_file_bytes)
    if suffix in (".jsonl", ".jsonl.gz"):
        return _read_jsonl(path, max_article_chars)
    if suffix == ".pdf":
        fields = _pdf_fields(path)
    elif suffix == ".docx":
        fields = _docx_fields(path)
    else:
        data = _read_bytes(path)
        _check_not_binary(path, data)
        fields = _html_fields(path, data) if suffix in (".html", ".htm") else _text_fields(decode_text(data), suffix)
    return [_make_article(path, path, fields, max_article_chars)], []


def _check_size(path: str, max_file_bytes: int) -> None:
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise LoadError(f"{path}: cannot be read ({exc.strerror or exc}); check the path and its permissions") from exc
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise LoadError(f"{path} is not a regular file (a pipe, device or socket); remove it from the folder")
    if size == 0:
        raise LoadError(f"{path} is empty; add text or remove the file")
    if size > max_file_bytes:
        raise LoadError(
            f"{path} is {_mb(size)} MB, over the {_mb(max_file_bytes)} MB limit; split it or raise max_file_bytes"
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.3g}"


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise LoadError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from exc


def _check_not_binary(path: str, data: bytes) -> None:
    head = data[:_SNIFF_BYTES]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return
    controls = sum(1 for b in head if b < 32 and b not in b"\t\n\r\x0c")
    if b"\x00" in head or controls > len(head) * 0.3:
        raise LoadError(f"{path} looks binary, not text; convert it to a supported format or remove it")


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


def _text_fields(text: str, suffix: str) -> dict[str, str]:
    """Fields of a plain-text or markdown file; a leading markdown heading is the title."""
    title = ""
    if suffix in (".md", ".markdown"):
        lines = text.split("\n")
        first = next((i for i, line in enumerate(lines) if line.strip()), None)
        heading = _MD_HEADING.fullmatch(lines[first].strip().lstrip("\ufeff")) if first is not None else None
        if heading:
            title = heading.group("title")
            text = "\n".join(lines[first + 1 :])
    return {"text": text, "title": title}


def _html_fields(path: str, data: bytes) -> dict[str, str]:
    """Main text and metadata of an HTML page, via trafilatura."""
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
    return {
        "text": text.replace("\n", "\n\n"),
        "title": _field(doc, "title"),
        "author": _field(doc, "author"),
        "published": _field(doc, "date"),
    }


def _field(doc: Any, name: str) -> str:
    """A field of trafilatura's result: a ``Document`` in 2.x, a dict in 1.x, or None."""
    value = doc.get(name) if isinstance(doc, dict) else getattr(doc, name, None)
    return value if isinstance(value, str) else ""


def _pdf_fields(path: str) -> dict[str, str]:
    """Text of every page joined with blank lines, plus title/author from the metadata."""
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
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_PDF_LOG_LOCK = threading.Lock()


def _read_pdf(pypdf: Any, path: str) -> dict[str, str]:
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
    return {
        "text": "\n\n".join(pages),
        "title": str(title),
        "author": str(author),
        "published": created.date().isoformat() if created else "",
    }


def _docx_fields(path: str) -> dict[str, str]:
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
    return {
        "text": "\n\n".join(text for text, _ in paragraphs),
        "title": title,
        "author": author,
        "published": created.date().isoformat() if created else "",
    }


def _make_article(path: str, source: str, fields: dict[str, str], max_article_chars: int) -> Article:
    """Clean the text and build the article; raise LoadError if it is too long or empty."""
    text = fields.get("text", "")
    if len(text) > max_article_chars:
        raise LoadError(
            f"{path}: text is {len(text):,} characters, over the {max_article_chars:,} limit; "
            "split it or raise max_article_chars"
        )
    cleaned = clean_text(text, title_hint=clean_field(fields.get("title", ""), MAX_FIELD_CHARS["title"]))
    if not cleaned.text:
        raise LoadError(f"{path}: no text left after removing boilerplate; check the file's content")
    return Article.make(
        text=cleaned.text,
        source=safe_source(source),
        title=clean_field(cleaned.title, MAX_FIELD_CHARS["title"]),
        author=clean_field(fields.get("author", "") or cleaned.author, MAX_FIELD_CHARS["author"]),
        published=clean_field(fields.get("published", ""), MAX_FIELD_CHARS["published"]),
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


def _read_jsonl(path: str, max_article_chars: int) -> tuple[list[Article], list[str]]:
    """One article per line; bad lines become skip messages naming the line."""
    articles: list[Article] = []
    skips: list[str] = []
    seen: set[str] = set()
    opener = gzip.open if path.lower().endswith(".gz") else open
    # A JSON-escaped character takes at most 12 bytes (a surrogate pair); leave room for metadata.
    max_line_bytes = max_article_chars * 12 + 1_000_000
    try:
        with opener(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
            _check_not_binary(path, head)
            f.seek(0)
            for lineno, line in _lines(f, max_line_bytes):
                if lineno > MAX_JSONL_LINES or f.tell() > MAX_UNPACKED_BYTES:
                    skips.append(
                        f"{path}: stopped at line {lineno:,}: over {MAX_JSONL_LINES:,} lines or "
                        f"{_mb(MAX_UNPACKED_BYTES)} MB unpacked; split the file"
                    )
                    break
                if line is None:
                    skips.append(
                        f"{path}: line {lineno} is over {max_line_bytes:,} bytes, too long for the "
                        f"{max_article_chars:,} character limit (max_article_chars); skipped"
                    )
                    continue
                if not line.strip():
                    continue
                try:
                    article = _jsonl_article(path, lineno, line, max_article_chars)
                except LoadError as exc:
                    skips.append(str(exc))
                    continue
                if article.source in seen:
                    skips.append(f"{path}: line {lineno} repeats source {article.source}; skipped")
                    continue
                seen.add(article.source)
                articles.append(article)
    except (OSError, EOFError, zlib.error) as exc:
        raise LoadError(f"{path}: cannot be read ({exc}); check the file or re-create it") from exc
    if not articles and not skips:
        raise LoadError(f"{path} has no JSON lines; add one object with a \"text\" per line")
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


def _jsonl_article(path: str, lineno: int, line: bytes, max_article_chars: int) -> Article:
    """Parse one jsonl line into an article or raise LoadError naming the line."""
    where = f"{path}: line {lineno}"
    try:
        data = json.loads(line.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LoadError(f"{where} is not valid JSON ({exc}); skipped") from exc
    if not isinstance(data, dict):
        raise LoadError(f"{where} is not a JSON object; skipped")
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise LoadError(f"{where} has no \"text\" string; skipped")
    source = _str(data.get("url")) or _str(data.get("id")) or f"{path}#L{lineno}"
    fields = {
        "text": text,
        "title": _str(data.get("title")),
        "author": _str(data.get("author")),
        "published": _str(data.get("published")),
    }
    try:
        return _make_article(where, source, fields, max_article_chars)
    except LoadError as exc:
        raise LoadError(f"{exc}; skipped") from exc


def _str(value: Any) -> str:
    """A metadata value as a string: lists joined with ", ", numbers as text, other types ignored."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        return ", ".join(v.strip() for v in value if isinstance(v, str) and v.strip())
    return ""
