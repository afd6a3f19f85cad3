"""The loaded index: the live chunks of every segment, searchable as one (dense and BM25)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qa.index.dense import search_segments
from qa.index.lexical import Lexical
from qa.index.manifest import Manifest
from qa.index.segment import Segment
from qa.records import Article, Chunk


class RowVectors:
    """The live chunks' vectors by global row, read from each segment's memory-mapped file on use."""

    def __init__(self, segments: Sequence[Segment], seg_of: np.ndarray, local_of: np.ndarray, dim: int) -> None:
        self._vectors = [s.vectors for s in segments]
        self._seg_of = seg_of
        self._local_of = local_of
        self.shape = (len(seg_of), dim)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        if isinstance(rows, (int, np.integer)):
            return np.asarray(self._vectors[self._seg_of[rows]][self._local_of[rows]], dtype=np.float32)
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        segs = self._seg_of[rows]
        for seg in np.unique(segs).tolist():
            where = segs == seg
            local = self._local_of[rows[where]]
            order = np.argsort(local, kind="stable")  # read each file in ascending order
            block = np.empty((len(local), self.shape[1]), dtype=np.float32)
            block[order] = self._vectors[seg][local[order]]
            out[where] = block
        return out

    def __array__(self, dtype=None, copy=None):
        return self[:].astype(dtype or np.float32, copy=False)


class Index:
    """A loaded index generation: the live articles and chunks of all its segments, searchable as one.

    Rows are global: the live chunks of the first segment, then the second's, and
    so on. ``chunks[row]``, ``vectors[row]``, ``dense_search`` and ``lexical``
    all use them. ``qa.index.reader.load_index`` makes one after checking the files.
    """

    def __init__(self, folder: Path, manifest: Manifest, segments: list[Segment]) -> None:
        self.folder = folder
        self.manifest = manifest
        self.segments = segments
        order = [a.id for a in manifest.articles]
        by_id = {a.id: a for s in segments for a in s.articles}
        self.articles: dict[str, Article] = {i: by_id[i] for i in order}
        self.chunks: list[Chunk] = []
        seg_of, local_of, dense_parts, lexical_parts = [], [], [], []
        for number, seg in enumerate(segments):
            live = np.ones(seg.entry.chunks, dtype=bool)
            live[seg.deleted] = False
            local = np.flatnonzero(live)
            rows = np.full(seg.entry.chunks, -1, dtype=np.int64)
            rows[local] = len(self.chunks) + np.arange(len(local))
            self.chunks.extend(seg.chunks[i] for i in local.tolist())
            seg_of.append(np.full(len(local), number, dtype=np.int64))
            local_of.append(local)
            dense_parts.append((seg.dense, rows, seg.entry.deleted))
            lexical_parts.append((seg.postings, rows))
        cat = lambda a: np.concatenate(a) if a else np.zeros(0, dtype=np.int64)  # noqa: E731
        self.vectors = RowVectors(segments, cat(seg_of), cat(local_of), manifest.dim)
        self._dense_parts = dense_parts
        self.lexical = Lexical(lexical_parts)

    @property
    def build_id(self) -> str:
        """The build that committed this generation."""
        return self.manifest.build_id

    def article_of(self, chunk: Chunk) -> Article:
        """The article a chunk quotes."""
        return self.articles[chunk.article_id]

    def dense_search(self, query_vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Global rows and cosine scores of the ``k`` nearest live chunks, over every segment."""
        k = min(k, len(self.chunks))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return search_segments(self._dense_parts, query_vector, k)
