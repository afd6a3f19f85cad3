"""Which segments to merge (the tiered policy) and merging them, without embedding or tokenizing again.

Segments are merged by size tier (``MERGE_FACTOR`` in qa/settings.py), or
into as few as ``MAX_SEGMENT_CHUNKS`` allows with ``optimize``; a segment at
least ``PURGE_DELETED_SHARE`` deleted is rewritten without its deleted rows. A
merge copies the live rows' vectors and postings; only the FAISS index is built
again (an IVF keeps the largest member's centroids while the size allows).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from qa.index.dense import build_dense
from qa.index.lexical import Postings
from qa.index.catalog import ArticleEntry
from qa.index.manifest import SegmentEntry
from qa.index.segment import read_segment
from qa.index.writer import IndexWriter
from qa.records import Article, Chunk
from qa.settings import MAX_SEGMENT_CHUNKS, MERGE_FACTOR, PURGE_DELETED_SHARE
from qa.text import counted

log = logging.getLogger(__name__)

#: Where each moved article now starts: article id -> (segment id, first row).
Moves = dict[str, tuple[str, int]]


def _tier(live: int) -> int:
    return int(math.log(max(live, 1), MERGE_FACTOR))


def plan_merges(
    segments: Sequence[SegmentEntry], removed: Sequence[ArticleEntry], optimize: bool, *,
    max_chunks: int = MAX_SEGMENT_CHUNKS,
) -> list[set[str]]:
    """Which segments to merge, never into one of more than ``max_chunks`` live chunks.

    * ``optimize``: neighbours packed into as few segments as ``max_chunks`` allows (one, up to it);
    * else any ``MERGE_FACTOR`` segments of one size tier (packed the same way), leaving alone a
      segment of at least half of ``max_chunks``;
    * and any segment at least ``PURGE_DELETED_SHARE`` deleted, rewritten without its deleted rows
      (alone, or within its group).

    ``removed`` (articles about to be deleted) counts toward the deleted share.
    """
    deleted = {s.id: s.deleted for s in segments}
    for a in removed:
        deleted[a.segment] = deleted.get(a.segment, 0) + a.chunks
    live = {s.id: s.chunks - deleted.get(s.id, 0) for s in segments}
    purge = {s.id for s in segments if s.chunks and deleted.get(s.id, 0) >= PURGE_DELETED_SHARE * s.chunks}
    if optimize:
        purge |= {s.id for s in segments if deleted.get(s.id)}
        candidates = [[s.id for s in segments]]
    else:
        tiers: dict[int, list[str]] = {}
        for s in segments:
            if s.id not in purge and live[s.id] < max_chunks / 2:
                tiers.setdefault(_tier(live[s.id]), []).append(s.id)
        candidates = [ids for ids in tiers.values() if len(ids) >= MERGE_FACTOR]
    groups: list[set[str]] = []
    for ids in candidates:
        groups += _pack(ids, live, max_chunks)
    grouped = set().union(*groups) if groups else set()
    groups += [{i} for i in sorted(purge) if i not in grouped]
    return [g for g in groups if len(g) > 1 or g & purge]


def _pack(ids: list[str], live: dict[str, int], max_chunks: int) -> list[set[str]]:
    """Consecutive runs of ``ids`` whose live chunks add up to at most ``max_chunks`` (a larger one stands alone)."""
    groups: list[set[str]] = []
    current: list[str] = []
    total = 0
    for i in ids:
        if current and total + live[i] > max_chunks:
            groups.append(set(current))
            current, total = [], 0
        current.append(i)
        total += live[i]
    if current:
        groups.append(set(current))
    return groups


def merge_segments(
    writer: IndexWriter, members: Sequence[SegmentEntry], live_articles: set[str]
) -> tuple[SegmentEntry | None, Moves]:
    """One segment from the live rows of ``members``: vectors and postings are copied, not recomputed.

    Returns its entry (None when nothing in them is live: they are dropped, nothing is written) and where
    each of ``live_articles`` held by the members now starts.
    """
    articles: list[Article] = []
    chunks: list[Chunk] = []
    blocks, parts = [], []
    largest = None
    for entry in members:
        seg = read_segment(writer.folder, entry)
        live = np.ones(entry.chunks, dtype=bool)
        live[np.asarray(seg.deleted, dtype=np.int64)] = False
        keep = np.flatnonzero(live)
        kept_ids = {seg.chunks[i].article_id for i in keep.tolist()}
        with_rows = {c.article_id for c in seg.chunks}
        # Live articles: those with kept rows, and live ones that never had a chunk (an empty text).
        articles.extend(
            a for a in seg.articles if a.id in kept_ids or (a.id in live_articles and a.id not in with_rows)
        )
        chunks.extend(seg.chunks[i] for i in keep.tolist())
        blocks.append(np.asarray(seg.vectors[keep], dtype=np.float32))
        parts.append((seg.postings, keep))
        if largest is None or entry.live > largest[0]:
            largest = (entry.live, seg.dense)
    articles = [a for a in articles if a.id in live_articles]
    names = ", ".join(e.id for e in members)
    if not articles and not chunks:
        log.info("dropped segment %s: every chunk in it was deleted", names)
        return None, {}
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, 0), dtype=np.float32)
    dense, info = build_dense(vectors, previous=largest[1] if largest else None)
    postings = Postings.merge(parts)
    entry = writer.write_segment(articles=articles, chunks=chunks, vectors=vectors, dense=dense, dense_info=info,
                                 postings=postings)
    moves: Moves = {}
    for row, chunk in enumerate(chunks):
        moves.setdefault(chunk.article_id, (entry.id, row))
    for a in articles:
        moves.setdefault(a.id, (entry.id, len(chunks)))  # an article without chunks
    if len(members) == 1:
        log.info("rewrote segment %s as %s without its deleted rows: %s", names, entry.id, counted(len(chunks), "chunk"))
    else:
        log.info("merged %d segments into %s: %s", len(members), entry.id, counted(len(chunks), "chunk"))
    return entry, moves


def apply_merges(
    writer: IndexWriter, segments: list[SegmentEntry], live_articles: set[str], optimize: bool, *,
    max_chunks: int = MAX_SEGMENT_CHUNKS,
) -> tuple[list[SegmentEntry], Moves]:
    """Merge what ``plan_merges`` picks from ``segments``; each merged segment takes its first member's place."""
    moves: Moves = {}
    for group in plan_merges(segments, [], optimize, max_chunks=max_chunks):
        merged, moved = merge_segments(writer, [s for s in segments if s.id in group], live_articles)
        moves.update(moved)
        first = next(i for i, s in enumerate(segments) if s.id in group)
        segments = [s for s in segments if s.id not in group]
        if merged is not None:
            segments.insert(first, merged)
    return segments, moves
