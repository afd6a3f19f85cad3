"""New articles into new segments: chunk them, reuse the vectors of identical texts, write what was embedded.

A build writes a segment each time ``SEGMENT_FLUSH_CHUNKS`` new chunks are
reached, so its memory does not grow with the number of new articles.

An article whose text is already indexed (a renamed or copied file) and that
chunks alike takes that article's vectors; only the others are embedded. The
new segment gets its own FAISS index and BM25 postings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qa.index.dense import build_dense
from qa.index.lexical import Postings
from qa.index.catalog import ArticleEntry
from qa.index.manifest import SegmentEntry
from qa.index.segment import read_vectors
from qa.index.writer import IndexWriter
from qa.ingest.chunk import chunk_article, embedding_text
from qa.records import Article, Chunk
from qa.settings import SEGMENT_FLUSH_CHUNKS, ChunkSettings


@dataclass(frozen=True)
class NewChunks:
    """The new articles' chunks, in article order; per article the vectors it reuses (None: embed it); the texts to
    embed."""

    articles: list[Article]
    chunks: list[Chunk]
    reused: list[np.ndarray | None]
    to_embed: list[str]
    counts: Counter[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", Counter(c.article_id for c in self.chunks))

    @property
    def reused_chunks(self) -> int:
        """How many chunks take the vectors of an identical indexed text."""
        return sum(len(block) for block in self.reused if block is not None)

    def first_rows(self, segment_id: str) -> dict[str, tuple[str, int]]:
        """Where each article starts in the new segment: article id -> (segment id, first row)."""
        out, row = {}, 0
        for article in self.articles:
            out[article.id] = (segment_id, row)
            row += self.counts[article.id]
        return out


def chunk_batches(
    folder: Path,
    articles: Sequence[Article],
    indexed: Sequence[ArticleEntry],
    indexed_segments: Sequence[SegmentEntry],
    chunking: ChunkSettings,
    count_tokens: Callable[[str], int],
    progress: Callable[[int, int], None],
    *,
    max_chunks: int = SEGMENT_FLUSH_CHUNKS,
) -> Iterator[NewChunks]:
    """Chunk ``articles`` in order, one batch each time ``max_chunks`` chunks are reached (and the rest at the end).

    Each article's chunks stay in one batch. Per article, the vectors of an
    identical text the index in ``folder`` already holds (``indexed``, in ``indexed_segments``) are found (so it
    is not embedded again).
    """
    twins = {a.sha256: a for a in indexed}
    segments = {s.id: s for s in indexed_segments}
    batch: list[Article] = []
    chunks: list[Chunk] = []
    reused: list[np.ndarray | None] = []
    to_embed: list[str] = []
    for i, article in enumerate(articles):
        article_chunks = chunk_article(article, chunking, count_tokens)
        vectors = _vectors_of_twin(folder, segments, twins.get(article.sha256), len(article_chunks))
        if vectors is None:
            to_embed.extend(embedding_text(article, c, chunking, count_tokens) for c in article_chunks)
        batch.append(article)
        chunks.extend(article_chunks)
        reused.append(vectors)
        progress(i + 1, len(articles))
        if len(chunks) >= max_chunks:
            yield NewChunks(batch, chunks, reused, to_embed)
            batch, chunks, reused, to_embed = [], [], [], []
    if batch:
        yield NewChunks(batch, chunks, reused, to_embed)


def _vectors_of_twin(
    folder: Path, segments: dict[str, SegmentEntry], twin: ArticleEntry | None, count: int
) -> np.ndarray | None:
    """The vectors of an indexed article with the same text (a renamed or copied file), if it chunked alike."""
    if twin is None or twin.chunks != count or twin.segment not in segments:
        return None
    vectors = read_vectors(folder, segments[twin.segment])
    return np.array(vectors[twin.row : twin.row + count], dtype=np.float32)


def write_new(writer: IndexWriter, new: NewChunks, embedded: np.ndarray | None, dim: int) -> SegmentEntry:
    """Write the new segment: vectors in chunk order (reused blocks and ``embedded`` ones), FAISS and BM25."""
    if embedded is not None and len(embedded) == len(new.chunks):
        vectors = np.ascontiguousarray(embedded, dtype=np.float32)  # nothing reused: no second copy
    else:
        vectors = np.zeros((len(new.chunks), dim), dtype=np.float32)
        row = cursor = 0
        for article, block in zip(new.articles, new.reused):
            count = new.counts[article.id]
            if block is None:
                vectors[row : row + count] = embedded[cursor : cursor + count]
                cursor += count
            else:
                vectors[row : row + count] = block
            row += count
    dense, info = build_dense(vectors)
    postings = Postings.build(c.text for c in new.chunks)
    return writer.write_segment(articles=new.articles, chunks=new.chunks, vectors=vectors, dense=dense,
                                dense_info=info, postings=postings)
