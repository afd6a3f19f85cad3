"""The manifest as typed records, and the one place ``manifest.json`` is parsed and serialised.

The manifest lists the segments in order, each with its counts, the dense
index's parameters (kind, nlist, nprobe, measured recall) and its deletion
list; the model, chunking and counts; the catalog file's name; and every data
file's size and sha256 (the catalog's too). It stays small whatever the
number of articles: every live article with its segment and rows, and every
source file read, are in the catalog (qa/index/catalog.py), which only builds
and listings parse. Parsing checks that it names only its own segments' files
and its catalog, inside the folder, each with a checksum; whether the files
agree with it is qa/index/reader.py's job.

A manifest of the previous format (``qa-index/2``) holds the catalog's entries
itself; it parses into a ``Manifest`` whose ``inline`` is that catalog.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from qa.index.catalog import Catalog
from qa.index.format import (
    INDEX_FORMAT,
    OLD_INDEX_FORMATS,
    READABLE_FORMATS,
    WRITTEN_KINDS,
    is_catalog_name,
    is_deletions_name,
    is_id,
    kinds_of,
    segment_file_names,
    segment_folder,
    segment_holds,
)
from qa.index.lexical import B, K1
from qa.settings import ChunkSettings


class ManifestError(ValueError):
    """``manifest.json`` holds nothing this version can use (the reader says what to do)."""


class ManifestUnreadable(ManifestError):
    """Not JSON at all; the message is the decoder's error type."""


class ManifestOtherFormat(ManifestError):
    """Another layout's manifest; ``found`` is its format (None if it names none)."""

    def __init__(self, found: Any) -> None:
        super().__init__(f"format {found!r}")
        self.found = found
        self.older = found in OLD_INDEX_FORMATS


class ManifestMalformed(ManifestError):
    """This format, but a key is missing, of the wrong type, or names a file it may not."""


@dataclass(frozen=True)
class FileEntry:
    """One data file the manifest names: its size (``bytes`` in JSON), sha256 and mtime when written."""

    size: int
    sha256: str
    mtime_ns: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bytes": self.size, "sha256": self.sha256}
        if self.mtime_ns is not None:
            out["mtime_ns"] = self.mtime_ns
        return out

    @staticmethod
    def from_json(raw: dict[str, Any]) -> FileEntry:
        if not isinstance(raw, dict) or not isinstance(raw.get("bytes"), int) or not isinstance(raw.get("sha256"), str):
            raise ValueError("file entry")
        mtime = raw.get("mtime_ns")
        return FileEntry(raw["bytes"], raw["sha256"], mtime if isinstance(mtime, int) else None)


@dataclass(frozen=True)
class SegmentEntry:
    """One segment as the manifest names it; ``deletions`` is its deletion list's name ("" for none).

    ``dense`` is the dense index's parameters as ``DenseInfo.to_json`` recorded
    them (kind, rows, recall; nlist and nprobe for IVF), kept as written.
    ``kinds`` is what its folder holds (``holds`` in JSON; older segments have
    no record tables).
    """

    id: str
    articles: int
    chunks: int
    deleted: int
    deletions: str
    dense: dict[str, Any]
    kinds: tuple[str, ...] = WRITTEN_KINDS

    @property
    def folder(self) -> str:
        return segment_folder(self.id)

    @property
    def live(self) -> int:
        return self.chunks - self.deleted

    @property
    def has_tables(self) -> bool:
        """Whether its records can be read one at a time (it holds record tables)."""
        return "chunk_table" in self.kinds

    def with_deletions(self, deleted: int, deletions: str) -> SegmentEntry:
        """The same segment with another deletion list."""
        return replace(self, deleted=deleted, deletions=deletions)

    def files(self) -> list[str]:
        """The files this entry needs, relative to the index folder."""
        names = segment_file_names(self.kinds)
        return [f"{self.folder}/{name}" for name in names] + ([self.deletions] if self.deletions else [])

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "folder": self.folder,
            "articles": self.articles,
            "chunks": self.chunks,
            "deleted": self.deleted,
            "deletions": self.deletions or None,
            "holds": segment_holds(self.kinds),
            "dense": self.dense,
        }

    @staticmethod
    def from_json(raw: dict[str, Any]) -> SegmentEntry:
        seg_id = str(raw["id"])
        if not is_id(seg_id) or raw.get("folder", segment_folder(seg_id)) != segment_folder(seg_id):
            raise ValueError("id")
        deletions = raw.get("deletions") or ""
        if deletions and not is_deletions_name(deletions, seg_id):
            raise ValueError("deletions")
        entry = SegmentEntry(seg_id, int(raw["articles"]), int(raw["chunks"]), int(raw["deleted"]), deletions,
                             dict(raw["dense"]), kinds_of(raw.get("holds")))
        if bool(deletions) != bool(entry.deleted) or not 0 <= entry.deleted <= entry.chunks:
            raise ValueError("deleted")
        return entry


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json``: one committed generation of the index.

    ``files`` is keyed by the path relative to the index folder; ``counts``
    holds articles (live), chunks (live), segments and deleted_chunks.
    ``catalog`` is the catalog file's name (one of ``files``); an index of the
    previous format has none ("") and holds its catalog in ``inline``.
    """

    build_id: str
    created: str
    model: str
    dim: int
    chunking: ChunkSettings
    tokenizer: str
    segments: tuple[SegmentEntry, ...]
    catalog: str
    files: dict[str, FileEntry]
    counts: dict[str, int]
    versions: dict[str, str]
    inline: Catalog | None = None

    @property
    def format(self) -> str:
        """The layout it was written in: ``INDEX_FORMAT``, or the older one whose catalog is inline."""
        return INDEX_FORMAT if self.inline is None else READABLE_FORMATS[0]

    @property
    def dense_kind(self) -> str:
        """The dense indexes in one phrase: "2 flat, 1 ivf (3 segments)"."""
        kinds = [str(s.dense.get("kind", "?")) for s in self.segments]
        if not kinds:
            return "empty"
        counted = ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds)))
        return counted + f" ({len(kinds)} segment{'s' * (len(kinds) != 1)})"

    def to_json(self) -> dict[str, Any]:
        """The manifest as written (an older one as it was: the catalog's entries inline, no catalog file)."""
        where = {"catalog": self.catalog} if self.inline is None else self.inline.to_json()
        return {
            "format": self.format,
            "build_id": self.build_id,
            "created": self.created,
            "model": {"name": self.model, "dim": self.dim, "normalized": True, "metric": "inner_product"},
            "chunking": {"splitter": "langchain RecursiveCharacterTextSplitter", **self.chunking.to_json()},
            "lexical": {"kind": "bm25", "variant": "lucene", "k1": K1, "b": B, "tokenizer": self.tokenizer},
            "segments": [s.to_json() for s in self.segments],
            "counts": dict(self.counts),
            **where,
            "files": {rel: f.to_json() for rel, f in self.files.items()},
            "versions": dict(self.versions),
        }

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Manifest:
        """Parse (raising KeyError, TypeError or ValueError naming what is wrong); the format is checked already
        (``INDEX_FORMAT``, or an older one in ``READABLE_FORMATS`` whose catalog is inline)."""
        if not is_id(str(raw["build_id"])):
            raise ValueError("build_id")
        if not isinstance(raw["segments"], list) or not isinstance(raw["files"], dict):
            raise ValueError("segments")
        segments = []
        for i, seg in enumerate(raw["segments"]):
            try:
                segments.append(SegmentEntry.from_json(seg))
            except ValueError as exc:
                raise ValueError(f"segments[{i}].{exc}") from None
        files = {}
        for rel, entry in raw["files"].items():
            try:
                files[rel] = FileEntry.from_json(entry)
            except ValueError:
                raise ValueError(f"files.{rel}") from None
        if raw.get("format") == INDEX_FORMAT:
            catalog, inline = raw["catalog"], None
            if not isinstance(catalog, str) or not is_catalog_name(catalog) or catalog not in files:
                raise ValueError("catalog")
        else:
            catalog, inline = "", Catalog.from_json(raw)
        _check_names(segments, files, catalog)
        lexical = raw.get("lexical")
        chunking = raw["chunking"]
        return Manifest(
            build_id=str(raw["build_id"]),
            created=str(raw.get("created", "")),
            model=str(raw["model"]["name"]),
            dim=int(raw["model"]["dim"]),
            chunking=ChunkSettings(
                chunk_tokens=int(chunking["chunk_tokens"]),
                overlap_tokens=int(chunking["overlap_tokens"]),
                title_tokens=int(chunking.get("title_tokens", 0)),
            ),
            tokenizer=str(lexical.get("tokenizer", "")) if isinstance(lexical, dict) else "",
            segments=tuple(segments),
            catalog=catalog,
            files=files,
            counts={k: int(v) for k, v in raw["counts"].items()},
            versions=dict(raw.get("versions", {})),
            inline=inline,
        )


def _check_names(segments: list[SegmentEntry], files: dict[str, FileEntry], catalog: str) -> None:
    """Each segment's files have a checksum; every file named lies in a segment folder or is a deletion list or
    the catalog."""
    for segment in segments:
        for rel in segment.files():
            if rel not in files:
                raise ValueError(f"files lacks {rel}")
    allowed = {s.folder for s in segments} | {s.deletions for s in segments if s.deletions} | ({catalog} - {""})
    for rel in files:
        parts = rel.split("/")
        top = parts[0] if len(parts) == 2 else rel
        if top not in allowed or ".." in parts or "" in parts or len(parts) > 2:
            raise ValueError(f"files.{rel}")
    if len({s.id for s in segments}) != len(segments):
        raise ValueError("segments repeat")


def encode_manifest(manifest: Manifest) -> str:
    """The text of ``manifest.json`` (compact: ``json.dumps`` runs the C encoder, ``json.dump`` pure Python)."""
    return json.dumps(manifest.to_json(), ensure_ascii=False, separators=(",", ":"))


def decode_manifest(text: str) -> Manifest:
    """Parse the text of ``manifest.json``; raise a ``ManifestError`` that says what is wrong."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ManifestUnreadable(type(exc).__name__) from None
    found = raw.get("format") if isinstance(raw, dict) else None
    if found != INDEX_FORMAT and found not in READABLE_FORMATS:
        raise ManifestOtherFormat(found)
    try:
        return Manifest.from_json(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ManifestMalformed(str(exc)) from None
