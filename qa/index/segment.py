"""Read one segment's files: records, vectors, FAISS index, BM25 postings and its deletion list.

Nothing here checks them against the manifest; qa/index/reader.py does that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.index.dense import read_dense
from qa.index.format import SEGMENT_FILES
from qa.index.lexical import Postings
from qa.index.manifest import SegmentEntry
from qa.records import Article, Chunk


@dataclass
class Segment:
    """One loaded segment: its records, vectors, FAISS index and postings, and which rows are deleted."""

    entry: SegmentEntry
    articles: list[Article]
    chunks: list[Chunk]
    vectors: np.ndarray
    dense: Any
    postings: Postings
    deleted: np.ndarray


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_vectors(folder: Path, entry: SegmentEntry) -> np.ndarray:
    """The segment's vectors, memory-mapped (float32 [chunks, dim])."""
    return np.load(folder / entry.folder / SEGMENT_FILES["vectors"], mmap_mode="r", allow_pickle=False)


def read_deletions(folder: Path, entry: SegmentEntry) -> np.ndarray:
    """The segment's deleted local rows (sorted; empty when it has no deletion list)."""
    if not entry.deletions:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(np.load(folder / entry.deletions, allow_pickle=False))


def read_segment(folder: Path, entry: SegmentEntry, *, records: bool = True) -> Segment:
    """Open one segment's files (vectors and FAISS memory-mapped); ``records=False`` skips the JSONL."""
    base = folder / entry.folder
    articles = [Article.from_json(r) for r in _read_jsonl(base / SEGMENT_FILES["articles"])] if records else []
    chunks = [Chunk.from_json(r) for r in _read_jsonl(base / SEGMENT_FILES["chunks"])] if records else []
    vectors = read_vectors(folder, entry)
    dense = read_dense(base / SEGMENT_FILES["dense"])
    postings = Postings.load(base, mmap=True)
    return Segment(entry, articles, chunks, vectors, dense, postings, read_deletions(folder, entry))
