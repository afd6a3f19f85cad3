"""Whether an opened index's parts agree with each other and with its manifest (nothing here opens files).

Three levels, cheapest first:

* ``tables_agree``: counts, shapes, record tables and deletion lists against
  the manifest, and which articles are live (qa/index/live.py); reads no
  records and not the catalog. Every opening runs it.
* ``catalog_agrees``: the catalog's live articles are exactly the live ones,
  each at the rows the tables give it. A full check runs it when opening, a
  lazy one in the background; an older index's inline catalog is checked when
  opening, as before the catalog had its own file.
* ``records_agree``: every record decodes and matches its table and its article
  (reads everything: the full check only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qa.index.catalog import ArticleEntry, Catalog
from qa.index.live import LiveArticles, live_articles
from qa.index.manifest import Manifest, SegmentEntry
from qa.index.records import check_table, id_key, id_keys
from qa.index.segment import Segment


def tables_agree(manifest: Manifest, segments: Sequence[Segment]) -> LiveArticles | None:
    """The live articles if every count, shape and table agrees with the manifest and the deletion lists; else None.

    Reads no records: each chunk's article is its table's position, each article's id its table's key.
    """
    if sum(s.entry.live for s in segments) != manifest.counts.get("chunks"):
        return None
    for seg in segments:
        e = seg.entry
        if (
            len(seg.chunks) != e.chunks
            or len(seg.articles) != e.articles
            or seg.vectors.dtype != np.float32
            or seg.vectors.shape != (e.chunks, manifest.dim)
            or seg.dense.ntotal != e.chunks
            or seg.dense.d != manifest.dim
            or seg.postings.n_docs != e.chunks
            or len(seg.deleted) != e.deleted
        ):
            return None
        try:
            check_table(np.asarray(seg.articles.table), e.articles, seg.articles.size)
            check_table(np.asarray(seg.chunks.table), e.chunks, seg.chunks.size)
        except ValueError:
            return None
    try:
        live = live_articles(segments)
    except (ValueError, TypeError, IndexError):
        return None
    return live if len(live) == manifest.counts.get("articles") else None


def span_rows(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Every row of the spans ``[starts[i], starts[i] + lengths[i])``, span after span (no loop over spans)."""
    total = int(lengths.sum())
    return np.repeat(starts, lengths) + (np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths))


def live_rows(segments: Sequence[SegmentEntry], articles: Sequence[ArticleEntry]) -> dict[str, np.ndarray]:
    """Per segment, which local rows ``articles`` hold (a boolean mask); ValueError if they overlap or fall out."""
    masks = {s.id: np.zeros(s.chunks, dtype=bool) for s in segments}
    number = {s.id: i for i, s in enumerate(segments)}
    seg_of = np.fromiter((number[a.segment] for a in articles), dtype=np.int64, count=len(articles))  # KeyError
    rows = np.fromiter((a.row for a in articles), dtype=np.int64, count=len(articles))
    counts = np.fromiter((a.chunks for a in articles), dtype=np.int64, count=len(articles))
    for i, seg in enumerate(segments):  # vectorised per segment: a loop over articles took 1 s at 10M chunks
        mask = masks[seg.id]
        mine = seg_of == i
        r, c = rows[mine], counts[mine]
        if len(r) and (r.min() < 0 or c.min() < 0 or (r + c).max() > len(mask)):
            raise ValueError(f"segment {seg.id}: article rows out of range")
        held = c > 0
        order = np.argsort(r[held], kind="stable")
        starts, lengths = r[held][order], c[held][order]
        if len(starts) > 1 and bool((starts[1:] < (starts + lengths)[:-1]).any()):
            raise ValueError(f"segment {seg.id}: articles overlap")
        mask[span_rows(starts, lengths)] = True
    return masks


def catalog_agrees(manifest: Manifest, catalog: Catalog, segments: Sequence[Segment]) -> bool:
    """The catalog lists each live article once, and the chunk rows it gives each are exactly the rows of that
    article that are not deleted: so its live set, and every deletion list, are the ones the tables say."""
    articles = catalog.articles
    if len(articles) != manifest.counts.get("articles") or len({a.id for a in articles}) != len(articles):
        return False
    try:
        masks = live_rows([s.entry for s in segments], articles)
    except (ValueError, KeyError, TypeError):
        return False
    by_segment: dict[str, list[ArticleEntry]] = {}
    for a in articles:
        by_segment.setdefault(a.segment, []).append(a)
    found = 0
    for seg in segments:
        if not np.array_equal(np.flatnonzero(~masks[seg.entry.id]), np.asarray(seg.deleted, dtype=np.int64)):
            return False
        entries = by_segment.get(seg.entry.id, [])
        if not _spans_agree(seg, entries):
            return False
        found += len(entries)
    return found == len(articles)


def _spans_agree(seg: Segment, entries: list[ArticleEntry]) -> bool:
    """The chunk rows each catalog article claims are exactly the rows whose table points at that article."""
    sorted_keys, order = seg.keys_sorted()
    wanted = id_keys([a.id for a in entries])
    at = np.searchsorted(sorted_keys, wanted)
    if len(entries) and (at.max() >= len(sorted_keys) or not np.array_equal(sorted_keys[at], wanted)):
        return False
    if len(np.unique(wanted)) != len(wanted):
        return False
    positions = seg.article_positions()
    if len(positions) and (positions.min() < 0 or positions.max() >= len(sorted_keys)):
        return False
    position = order[at] if len(entries) else np.zeros(0, dtype=np.int64)
    rows = np.fromiter((a.row for a in entries), dtype=np.int64, count=len(entries))
    counts = np.fromiter((a.chunks for a in entries), dtype=np.int64, count=len(entries))
    if not np.array_equal(np.bincount(positions, minlength=len(sorted_keys))[position], counts):
        return False
    claimed = span_rows(rows, counts)
    if len(claimed) and (claimed.min() < 0 or claimed.max() >= len(positions)):
        return False
    return bool(np.array_equal(positions[claimed], np.repeat(position, counts)))


def records_agree(segments: Sequence[Segment]) -> bool:
    """Every record decodes, matches its table and its article; a chunk's text is its article's slice (reads all).

    Raises ``RecordDamaged`` for a record that does not match its digest.
    """
    for seg in segments:
        articles = list(seg.articles)
        if any(id_key(a.id) != seg.articles.aux(i) for i, a in enumerate(articles)):
            return False
        for row, chunk in enumerate(seg.chunks):
            article = articles[seg.chunks.aux(row)]
            if chunk.article_id != article.id or article.text[chunk.start : chunk.end] != chunk.text:
                return False
    return True
