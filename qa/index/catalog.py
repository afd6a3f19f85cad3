"""The catalog: every live article's source, hash and rows, and every source file read; parsed only when needed.

``catalog-<build>.json`` sits at the top of the index folder beside
``manifest.json``, which names it in its ``files`` (size and sha256) like any
data file: the writer writes it before the manifest, so the manifest stays the
one commit point and a torn or altered catalog is found like any other file.

Only builds (what changed, what to delete, which vectors to reuse) and
listings (``qa info``, the web chat's Articles tab) need it. Answering does
not: the segments' record tables and deletion lists say which articles are
live and where (qa/index/live.py), so opening a large index never parses it.
A full check (``qa check``, and the background check of a large index) checks
that it agrees with the tables.

Indexes of format ``qa-index/2`` kept these entries inside the manifest; their
manifest parses into the same ``Catalog`` (``Manifest.inline``), and their next
build writes the catalog file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa.index.errors import IndexInvalid
from qa.index.format import build_command

if TYPE_CHECKING:
    from qa.index.manifest import Manifest

#: What a catalog file says it is (its own version, apart from the folder's ``INDEX_FORMAT``).
CATALOG_FORMAT = "qa-catalog/1"


@dataclass(frozen=True)
class SourceEntry:
    """A source file a build read: what decides whether the next build reads it again, and what it gave.

    ``seen_ns`` is when it was read (a file modified that close to it is hashed
    even if size and mtime match); ``skipped`` the messages of its lines that
    were skipped, repeated when the file is not read again.
    """

    size: int
    mtime_ns: int
    sha256: str
    seen_ns: int
    articles: tuple[str, ...]
    skipped: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"bytes": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256, "seen_ns": self.seen_ns,
                "articles": list(self.articles), "skipped": list(self.skipped)}

    @staticmethod
    def from_json(raw: dict[str, Any]) -> SourceEntry:
        return SourceEntry(int(raw["bytes"]), int(raw["mtime_ns"]), str(raw["sha256"]), int(raw.get("seen_ns", 0)),
                           tuple(str(i) for i in raw.get("articles") or ()),
                           tuple(str(m) for m in raw.get("skipped") or ()))


@dataclass(frozen=True)
class ArticleEntry:
    """A live article: its segment and the ``chunks`` rows there starting at ``row``."""

    id: str
    sha256: str
    source: str
    chunks: int
    segment: str
    row: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "sha256": self.sha256, "source": self.source, "chunks": self.chunks,
                "segment": self.segment, "row": self.row}

    @staticmethod
    def from_json(raw: dict[str, Any]) -> ArticleEntry:
        return ArticleEntry(str(raw["id"]), str(raw["sha256"]), str(raw["source"]), int(raw["chunks"]),
                            str(raw["segment"]), int(raw["row"]))


@dataclass(frozen=True)
class Catalog:
    """The live articles (in the order the build found them) and the source files read, keyed as the build read
    them (``bytes:<hex>`` for a name that is not UTF-8)."""

    articles: tuple[ArticleEntry, ...] = ()
    sources: dict[str, SourceEntry] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"articles": [a.to_json() for a in self.articles],
                "sources": {key: s.to_json() for key, s in self.sources.items()}}

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Catalog:
        """Parse (raising KeyError, TypeError or ValueError)."""
        if not isinstance(raw["articles"], list) or not isinstance(raw.get("sources", {}), dict):
            raise ValueError("articles")
        return Catalog(tuple(ArticleEntry.from_json(a) for a in raw["articles"]),
                       {str(k): SourceEntry.from_json(s) for k, s in raw.get("sources", {}).items()})


def encode_catalog(catalog: Catalog, build_id: str) -> str:
    """The text of the catalog file that build ``build_id`` writes (compact, like the manifest)."""
    return json.dumps({"format": CATALOG_FORMAT, "build_id": build_id, **catalog.to_json()}, ensure_ascii=False,
                      separators=(",", ":"))


def decode_catalog(text: str | bytes, build_id: str) -> Catalog:
    """Parse a catalog file written by build ``build_id``; ``ValueError`` naming what is wrong."""
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("format") != CATALOG_FORMAT:
            raise ValueError("format")
        if raw.get("build_id") != build_id:
            raise ValueError("build_id")
        return Catalog.from_json(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None


def read_catalog(folder: Path, manifest: Manifest, *, fd: int | None = None) -> Catalog:
    """The catalog of the committed ``manifest``: its file read once, checked against the manifest's size and
    sha256, parsed; or the one an older manifest holds inline. ``IndexInvalid`` (one line, what to do) if it
    cannot be read or does not match.

    ``fd``: the file, opened when the index was (so a newer build that removed it meanwhile does not matter).
    """
    if manifest.inline is not None:
        return manifest.inline
    rel = manifest.catalog
    entry = manifest.files[rel]
    path = Path(folder) / rel
    rebuild = build_command(folder, full=True)
    try:
        data = path.read_bytes() if fd is None else _read_whole(fd)
        if len(data) != entry.size:
            raise IndexInvalid(f"{folder}/{rel} has the wrong size for its manifest: run `{rebuild}`")
        if hashlib.sha256(data).hexdigest() != entry.sha256:  # the bytes parsed below, not a second read
            raise IndexInvalid(f"{folder}/{rel} does not match its manifest checksum: run `{rebuild}`")
    except FileNotFoundError:
        raise IndexInvalid(f"{folder}/ is missing {rel}, which its manifest names: run `{rebuild}`") from None
    except OSError as exc:
        raise IndexInvalid(f"{folder}/{rel} cannot be read ({exc.strerror or exc}): run `{rebuild}`") from None
    try:
        return decode_catalog(data, manifest.build_id)
    except ValueError as exc:
        raise IndexInvalid(f"{folder}/{rel} is incomplete or altered ({exc}): run `{rebuild}`") from None


def _read_whole(fd: int) -> bytes:
    """Every byte of an open file, from its start (``pread``: the descriptor's offset is not used)."""
    size = os.fstat(fd).st_size
    parts, done = [], 0
    while done < size:
        part = os.pread(fd, min(size - done, 64 << 20), done)
        if not part:
            break
        parts.append(part)
        done += len(part)
    return b"".join(parts)
