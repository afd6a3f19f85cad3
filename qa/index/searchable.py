"""The opened index: the live chunks of every segment, searchable as one (dense and BM25).

Nothing is read whole when an index is opened: chunks and articles are read
from their segments when asked for (``index.chunks[row]``,
``index.articles[id]``), vectors are read by row, the catalog when a listing
asks for it (``index.catalog()``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from qa.index.dense import search_segments
from qa.index.errors import IndexInvalid
from qa.index.format import build_command
from qa.index.lexical import Lexical
from qa.index.catalog import Catalog, read_catalog
from qa.index.live import LiveArticles
from qa.index.manifest import Manifest
from qa.index.records import RecordDamaged, close_quietly
from qa.index.segment import Segment
from qa.records import Article, Chunk


class RowMap:
    """Global rows to (segment, local row): the live rows of the first segment come first, then the second's..."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        counts, self.live_local = [], []
        for seg in segments:
            if len(seg.deleted):
                live = np.ones(seg.entry.chunks, dtype=bool)
                live[seg.deleted] = False
                self.live_local.append(np.flatnonzero(live))
            else:
                self.live_local.append(None)  # every row live: local = global - start
            counts.append(seg.entry.chunks - len(seg.deleted))
        self.starts = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.starts[1:])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, row: int) -> tuple[int, int]:
        """The segment number and local row of global row ``row``."""
        if not 0 <= row < len(self):
            raise IndexError(row)
        seg = int(np.searchsorted(self.starts, row, side="right")) - 1
        local = row - int(self.starts[seg])
        live = self.live_local[seg]
        return seg, local if live is None else int(live[local])

    def locate_many(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Segment numbers and local rows of many global rows."""
        rows = np.asarray(rows, dtype=np.int64)
        segs = np.searchsorted(self.starts, rows, side="right") - 1
        local = rows - self.starts[segs]
        for seg in np.unique(segs).tolist():
            live = self.live_local[seg]
            if live is not None:
                where = segs == seg
                local[where] = live[local[where]]
        return segs, local

    def global_rows(self, seg: int, chunks: int) -> np.ndarray:
        """For each local row of segment ``seg`` (``chunks`` of them), its global row; -1 if deleted."""
        live = self.live_local[seg]
        if live is None:
            return self.starts[seg] + np.arange(chunks, dtype=np.int64)
        rows = np.full(chunks, -1, dtype=np.int64)
        rows[live] = self.starts[seg] + np.arange(len(live), dtype=np.int64)
        return rows


class Chunks(Sequence[Chunk]):
    """The live chunks by global row, each read from its segment when asked for."""

    def __init__(self, index: Index, rows: RowMap) -> None:
        self._index = index
        self._segments = index.segments
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, row):  # type: ignore[override]
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = int(row)
        seg, local = self._rows.locate(row + len(self) if row < 0 else row)
        self._index.raise_if_damaged()
        try:
            return self._segments[seg].chunks[local]
        except RecordDamaged as exc:
            raise self._index.damaged_record(str(exc)) from None

    def __iter__(self) -> Iterator[Chunk]:
        self._index.raise_if_damaged()
        try:
            for number, seg in enumerate(self._segments):
                live = self._rows.live_local[number]
                if live is None:
                    yield from seg.chunks
                else:
                    keep = set(live.tolist())
                    yield from (c for i, c in enumerate(seg.chunks) if i in keep)
        except RecordDamaged as exc:
            raise self._index.damaged_record(str(exc)) from None


class Articles(Mapping[str, Article]):
    """The live articles by id, in segment order, each read from its segment when asked for.

    Which articles are live, and where, comes from the segments' tables
    (``LiveArticles``); an id is confirmed by reading its record (checked against its digest).
    """

    def __init__(self, index: Index, live: LiveArticles) -> None:
        self._index = index
        self._live = live
        self._segments = index.segments

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[str]:
        self._index.raise_if_damaged()
        try:
            for seg, positions in zip(self._segments, self._live.positions):
                for position in positions.tolist():
                    yield seg.articles[position].id
        except RecordDamaged as exc:
            raise self._index.damaged_record(str(exc)) from None

    def with_chunks(self) -> Iterator[tuple[Article, int]]:
        """Each live article and its number of chunks, in segment order, one record read at a time.

        For listings that must not wait for the catalog (parsing it takes seconds at ten million chunks): the
        counts come from the segments' chunk tables.
        """
        for seg, positions in self.by_segment():
            yield from self.in_segment(seg, positions.tolist())

    def by_segment(self) -> list[tuple[Segment, np.ndarray]]:
        """Each segment with the positions of its live articles there (ascending), in segment order.

        Segments are immutable, so what a listing read from one (by its ``entry.id``) holds for every later
        generation that still serves it; only which positions are live changes.
        """
        return list(zip(self._segments, self._live.positions))

    def in_segment(self, seg: Segment, positions: Sequence[int]) -> Iterator[tuple[Article, int]]:
        """The articles at ``positions`` of ``seg`` (one of ``by_segment``'s) and each one's number of chunks."""
        if not len(positions):
            return
        self._index.raise_if_damaged()
        try:
            counts = seg.chunks_per_article()
            for position in positions:
                yield seg.articles[position], int(counts[position])
        except RecordDamaged as exc:
            raise self._index.damaged_record(str(exc)) from None

    def titles_in(self, seg: Segment, positions: Sequence[int]) -> Iterator[tuple[str, str, str, int]]:
        """(id, title, source, number of chunks) of the articles at ``positions`` of ``seg``: from its titles file,
        one small read, when it has one (segments written before they held one: from each article's record)."""
        if seg.titles is None:
            for article, count in self.in_segment(seg, positions):
                yield article.id, article.title, article.source, count
            return
        if not len(positions):
            return
        self._index.raise_if_damaged()
        try:
            rows = seg.titles.read(len(seg.articles))
        except RecordDamaged as exc:
            raise self._index.damaged_record(str(exc)) from None
        counts = seg.chunks_per_article()
        for position in positions:
            yield (*rows[position], int(counts[position]))

    def __getitem__(self, article_id: str) -> Article:
        place = self._live.place(article_id) if isinstance(article_id, str) else None
        if place is None:
            raise KeyError(article_id)
        self._index.raise_if_damaged()
        try:
            article = self._segments[place[0]].articles[place[1]]
        except RecordDamaged as exc:
            raise self._index.damaged_record(str(exc)) from None
        if article.id != article_id:  # another id with the same digest key
            raise KeyError(article_id)
        return article


class RowVectors:
    """The live chunks' vectors by global row, read from each segment's file on use."""

    def __init__(self, segments: Sequence[Segment], rows: RowMap, dim: int) -> None:
        self._vectors = [s.vectors for s in segments]
        self._rows = rows
        self.shape = (len(rows), dim)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        if isinstance(rows, (int, np.integer)):
            seg, local = self._rows.locate(int(rows))
            return np.asarray(self._vectors[seg][local], dtype=np.float32)
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        segs, locals_ = self._rows.locate_many(rows)
        for seg in np.unique(segs).tolist():
            where = segs == seg
            local = locals_[where]
            order = np.argsort(local, kind="stable")  # read each file in ascending order
            block = np.empty((len(local), self.shape[1]), dtype=np.float32)
            block[order] = self._vectors[seg][local[order]]
            out[where] = block
        return out

    def __array__(self, dtype=None, copy=None):
        return self[:].astype(dtype or np.float32, copy=False)


class Index:
    """An opened index generation: the live articles and chunks of all its segments, searchable as one.

    Rows are global: the live chunks of the first segment, then the second's, and
    so on. ``chunks[row]``, ``vectors[row]``, ``dense_search`` and ``lexical``
    all use them. ``qa.index.reader.load_index`` makes one after checking the files.
    """

    def __init__(self, folder: Path, manifest: Manifest, segments: list[Segment], live: LiveArticles,
                 catalog_fd: int | None = None) -> None:
        self.folder = folder
        self.manifest = manifest
        self.segments = segments
        #: Set when a check found a file that does not match the manifest: every later read raises it.
        self.damage: IndexInvalid | None = None
        #: Set when checking ends: at once for a small index, after a background thread hashed a large one's
        #: bulk files, or at once when the opener asked for no more checks (``check="quick"``).
        self.checked = threading.Event()
        rows = RowMap(segments)
        self.articles: Articles = Articles(self, live)
        self._catalog_fd = catalog_fd
        self._catalog: Catalog | None = None
        self._catalog_lock = threading.Lock()
        self.chunks: Sequence[Chunk] = Chunks(self, rows)
        self.vectors = RowVectors(segments, rows, manifest.dim)
        dense_parts, lexical_parts = [], []
        for number, seg in enumerate(segments):
            global_rows = rows.global_rows(number, seg.entry.chunks)
            refine = int(seg.entry.dense.get("refine", 0))
            dense_parts.append((seg.dense, global_rows, seg.entry.deleted, seg.vectors, refine))
            lexical_parts.append((seg.postings, global_rows))
        self._dense_parts = dense_parts
        self.lexical = Lexical(lexical_parts, damaged=self.damaged_record)

    @property
    def build_id(self) -> str:
        """The build that committed this generation."""
        return self.manifest.build_id

    def __del__(self) -> None:
        close_quietly(getattr(self, "_catalog_fd", None))

    def catalog(self, *, keep: bool = True) -> Catalog:
        """The catalog (each live article's source and rows, the source files read), read on first use and kept
        (``keep=False``: read, not kept: a check's one look).

        Only listings and checks need it; answering never does. It is read from
        the file opened with the index, so a newer build that removed it does not
        matter. ``IndexInvalid`` if it cannot be read or does not match the
        manifest's checksum.
        """
        with self._catalog_lock:
            if self._catalog is not None:
                return self._catalog
            catalog = read_catalog(self.folder, self.manifest, fd=self._catalog_fd)
            if keep:
                self._catalog = catalog
            return catalog

    def raise_if_damaged(self) -> None:
        """Raise the ``IndexInvalid`` a check found, if one did: a damaged index is never served silently."""
        if self.damage is not None:
            raise self.damage

    def damaged_record(self, detail: str) -> IndexInvalid:
        """Take the index out of service because a record does not match its digest; the error to raise."""
        self.damage = IndexInvalid(
            f"{self.folder}/{detail} was altered after its build (its records do not agree with their checksums): "
            f"run `{build_command(self.folder, full=True)}`"
        )
        return self.damage

    def article_of(self, chunk: Chunk) -> Article:
        """The article a chunk quotes."""
        return self.articles[chunk.article_id]

    def dense_search(self, query_vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Global rows and cosine scores of the ``k`` nearest live chunks, over every segment."""
        self.raise_if_damaged()
        k = min(k, len(self.chunks))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return search_segments(self._dense_parts, query_vector, k)
