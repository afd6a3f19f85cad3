"""Open one segment's files: records (read one at a time), vectors, FAISS index, BM25 postings, deletion list.

Nothing here checks them against the manifest; qa/index/reader.py does that.
Opening reads no records and no vectors: the records are read by position
through their tables (qa/index/records.py), the vectors by row
(qa/index/vectors.py), and the FAISS index and the postings are memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa.index import npy
from qa.index.dense import read_dense
from qa.index.format import SEGMENT_FILES
from qa.index.lexical import Postings
from qa.index.manifest import FileEntry, SegmentEntry
from qa.index.records import AUX, RecordDamaged, RecordFile, close_quietly, id_key, table_of
from qa.index.vectors import VectorFile
from qa.records import Article, Chunk


class TitlesFile:
    """A segment's ``titles.json`` (each article's id, title and source, by position): opened with the segment, so
    a later build's clean-up cannot take it away, and read whole when asked for, checked against its manifest sha256.
    """

    def __init__(self, path: Path, sha256: str | None) -> None:
        self.name = f"{path.parent.name}/{path.name}"
        self._sha256 = sha256
        self._fd = os.open(path, os.O_RDONLY)

    def __del__(self) -> None:
        close_quietly(getattr(self, "_fd", None))

    def read(self, articles: int) -> list[tuple[str, str, str]]:
        """The ``articles`` rows; ``RecordDamaged`` if the file does not match its checksum or holds anything else."""
        data = os.pread(self._fd, os.fstat(self._fd).st_size, 0)
        if self._sha256 is None or hashlib.sha256(data).hexdigest() != self._sha256:
            raise RecordDamaged(self.name)
        try:
            rows = json.loads(data)
        except ValueError:
            raise RecordDamaged(self.name) from None
        if not isinstance(rows, list) or len(rows) != articles or not all(
                isinstance(r, list) and len(r) == 3 and all(isinstance(x, str) for x in r) for r in rows):
            raise RecordDamaged(self.name)
        return [(r[0], r[1], r[2]) for r in rows]


@dataclass
class Segment:
    """One opened segment: its records, vectors, FAISS index and postings, and which rows are deleted."""

    entry: SegmentEntry
    articles: RecordFile[Article]
    chunks: RecordFile[Chunk]
    vectors: VectorFile
    dense: Any
    postings: Postings
    deleted: np.ndarray
    titles: TitlesFile | None = None  # None: written before segments held one
    _by_key: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def keys_sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """The articles' id keys, sorted, and the position of each (sorted once, on first use)."""
        if self._by_key is None:
            keys = np.asarray(self.articles.table[:-1, AUX])
            order = np.argsort(keys, kind="stable")
            self._by_key = (keys[order], order)
        return self._by_key

    def article_positions(self) -> np.ndarray:
        """For each local row, the position of its chunk's article among the segment's articles."""
        return np.asarray(self.chunks.table[:-1, AUX], dtype=np.int64)

    def chunks_per_article(self) -> np.ndarray:
        """How many chunks (deleted ones too) each of the segment's articles has, by position; for a segment
        whose tables were checked to agree (``qa.index.agreement``)."""
        return np.bincount(self.article_positions(), minlength=len(self.articles))


def read_vectors(folder: Path, entry: SegmentEntry) -> VectorFile:
    """The segment's vectors (float32 [chunks, dim]), read by row when asked for."""
    return VectorFile(folder / entry.folder / SEGMENT_FILES["vectors"])


def read_deletions(folder: Path, entry: SegmentEntry) -> np.ndarray:
    """The segment's deleted local rows (sorted; empty when it has no deletion list)."""
    if not entry.deletions:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(npy.load(folder / entry.deletions))


def read_tables(folder: Path, entry: SegmentEntry) -> tuple[np.ndarray, np.ndarray]:
    """The record tables of the articles and the chunks (made by reading the records when the segment has none)."""
    base = folder / entry.folder
    if entry.has_tables:
        articles, chunks = (npy.load(base / SEGMENT_FILES[kind], mmap_mode="r")
                            for kind in ("article_table", "chunk_table"))
        return articles, chunks
    position: dict[str, int] = {}

    def article_key(i: int, row: dict) -> int:
        position[str(row["id"])] = i
        return id_key(str(row["id"]))

    articles = table_of(base / SEGMENT_FILES["articles"], article_key)
    chunks = table_of(base / SEGMENT_FILES["chunks"], lambda _, row: position[str(row["article_id"])])
    return articles, chunks


def read_segment(folder: Path, entry: SegmentEntry, files: Mapping[str, FileEntry] | None = None) -> Segment:
    """Open one segment's files; nothing is read whole. ``files`` is the manifest's (paths relative to
    ``folder``): a titles file is checked against its checksum there when it is read."""
    base = folder / entry.folder
    article_table, chunk_table = read_tables(folder, entry)
    articles = RecordFile(base / SEGMENT_FILES["articles"], article_table, Article.from_json, cache=256)
    chunks = RecordFile(base / SEGMENT_FILES["chunks"], chunk_table, Chunk.from_json, cache=4096)
    vectors = read_vectors(folder, entry)
    dense = read_dense(base / SEGMENT_FILES["dense"])
    postings = Postings.load(base, mmap=True, keys="term_keys" in entry.kinds)
    titles = None
    if "titles" in entry.kinds:
        rel = f"{entry.folder}/{SEGMENT_FILES['titles']}"
        known = (files or {}).get(rel)
        titles = TitlesFile(folder / rel, known.sha256 if known is not None else None)
    return Segment(entry, articles, chunks, vectors, dense, postings, read_deletions(folder, entry), titles)
