"""What changed: which articles the index should hold, reading only the files that are new or changed.

A source file whose size and mtime match the catalog's record is not read at
all (nor one whose bytes hash the same): its articles are already indexed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from qa.index.catalog import Catalog, SourceEntry
from qa.ingest.formats import LoadError
from qa.ingest.load import load_file
from qa.records import Article, sha256_file
from qa.text import counted

log = logging.getLogger(__name__)

#: A file modified this close to (or after) the moment it was last read is hashed even if its size and
#: mtime match: a write within the same clock tick as that read would otherwise go unseen.
RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class Wanted:
    """An article the index should hold: ``article`` is set when its file was read in this build."""

    id: str
    sha256: str
    source: str
    article: Article | None = None


@dataclass(frozen=True)
class Scan:
    """The articles wanted (in order), the source records for the next catalog, and what was skipped."""

    wanted: list[Wanted]
    sources: dict[str, SourceEntry]
    skipped: list[str]
    files_read: int


def scan(files: list[str], previous: Catalog | None, skipped: list[str]) -> Scan:
    """What the index should hold, reading only files that are new or changed since the catalog's record.

    ``skipped`` are messages about paths already skipped while finding ``files``;
    the result adds those of files and lines skipped here, and of duplicates.
    """
    old_sources = previous.sources if previous is not None else {}
    old_articles = {a.id: a for a in previous.articles} if previous is not None else {}
    wanted: list[Wanted] = []
    sources: dict[str, SourceEntry] = {}
    skipped = list(skipped)
    seen_sources: set[str] = set()
    read = 0
    for path in files:
        now = time.time_ns()
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            st = None  # a pipe or device: never opened here (it could block); load_file says why it is skipped
        key = _source_key(path)
        entry = old_sources.get(key)
        found: list[Wanted] | None = None
        line_skips: list[str] = []
        if st is not None and entry is not None and entry.size == st.st_size:
            ids = entry.articles
            same = entry.mtime_ns == st.st_mtime_ns and st.st_mtime_ns < entry.seen_ns - RACY_NS
            if ids and all(i in old_articles for i in ids) and (same or _sha(path) == entry.sha256):
                found = [Wanted(i, old_articles[i].sha256, old_articles[i].source) for i in ids]
                line_skips = list(entry.skipped)
                sources[key] = dataclasses.replace(entry, mtime_ns=st.st_mtime_ns)
        if found is None:
            # Hashed before reading: if the file changes meanwhile, the next build reads it again.
            digest = _sha(path) if st is not None else ""
            try:
                loaded = load_file(path)
            except LoadError as exc:
                log.debug("skipped %s", exc)
                skipped.append(str(exc))
                continue
            articles, line_skips = loaded.articles, list(loaded.skipped)
            read += 1
            found = [Wanted(a.id, a.sha256, a.source, a) for a in articles]
            if st is not None and digest:
                sources[key] = SourceEntry(st.st_size, st.st_mtime_ns, digest, now, tuple(a.id for a in articles),
                                           tuple(_printable(m) for m in line_skips))
        for message in line_skips:
            log.debug("skipped %s", message)
            skipped.append(message)
        for item in found:
            if item.source in seen_sources:
                message = f"{path}: {item.source} was already loaded; duplicate skipped"
                log.debug("skipped %s", message)
                skipped.append(message)
                continue
            seen_sources.add(item.source)
            wanted.append(item)
    log.info("%s from %s (%d read, %d unchanged)", counted(len(wanted), "article"), counted(len(files), "file"), read,
             len(files) - read)
    return Scan(wanted, sources, skipped, read)


def _source_key(path: str) -> str:
    """``path`` as a catalog key: itself, or its bytes in hex when the name is not valid UTF-8."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return "bytes:" + os.fsencode(path).hex()


def _printable(message: str) -> str:
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def _sha(path: str) -> str:
    try:
        return sha256_file(Path(path))
    except OSError:
        return ""
