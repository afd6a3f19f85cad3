"""Which articles are live, and where, from the segments' own record tables and deletion lists.

An article is live in a segment when some chunk row of it there is not
deleted; a build deletes all of an article's rows or none, so every article
holds either all its rows or none. The same id can sit in an older segment with
all its rows deleted and in a newer one live (a file removed, then added
again): the live one is the one found. No id is live twice: the rows of the
older copy would not have been deleted, so the tables would not agree with what
the build committed, and opening refuses the index.

Nothing here reads a record or the catalog: the chunks' table says which
article (by position) each row belongs to, the articles' table holds each
article's id as a 64-bit key (``qa.index.records.id_key``). Finding an article
by id is one binary search over the live keys of every segment, then one read
of its record (checked against its digest) to confirm the id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qa.index.records import AUX, id_key
from qa.index.segment import Segment


@dataclass(frozen=True)
class LiveArticles:
    """The live articles of every segment: per segment the positions (ascending), and all their keys sorted.

    ``keys`` is sorted, each once; ``segment[i]`` and ``position[i]`` say where
    the article with key ``keys[i]`` is. ``positions[s]`` lists segment ``s``'s
    live articles in their order there.
    """

    positions: tuple[np.ndarray, ...]
    keys: np.ndarray
    segment: np.ndarray
    position: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def place(self, article_id: str) -> tuple[int, int] | None:
        """The segment number and position of the live article whose key is ``article_id``'s (None: none is).

        The caller reads that record to confirm the id: an id that is not 16 hex
        digits is keyed by a digest, which another id could share.
        """
        key = np.uint64(id_key(article_id))
        at = int(np.searchsorted(self.keys, key))
        if at < len(self.keys) and self.keys[at] == key:
            return int(self.segment[at]), int(self.position[at])
        return None


def live_positions(seg: Segment) -> np.ndarray:
    """The positions of the segment's live articles, ascending; ``ValueError`` if its tables do not agree with
    its deletion list (a row pointing at no article, an article only partly deleted)."""
    n_articles = len(seg.articles)
    positions = seg.article_positions()
    if len(positions) and (positions.min() < 0 or positions.max() >= n_articles):
        raise ValueError(f"segment {seg.entry.id}: chunk rows point at no article")
    rows = np.bincount(positions, minlength=n_articles)
    if not len(seg.deleted):
        return np.flatnonzero(rows)
    deleted = np.asarray(seg.deleted, dtype=np.int64)
    if deleted.min() < 0 or deleted.max() >= len(positions) or bool((np.diff(deleted) <= 0).any()):
        raise ValueError(f"segment {seg.entry.id}: deleted rows out of range, out of order or repeated")
    gone = np.bincount(positions[deleted], minlength=n_articles)
    if bool(((gone > 0) & (gone != rows)).any()):
        raise ValueError(f"segment {seg.entry.id}: an article is only partly deleted")
    return np.flatnonzero(rows - gone)


def live_articles(segments: Sequence[Segment]) -> LiveArticles:
    """The live articles of ``segments`` (in manifest order); ``ValueError`` if the tables disagree with the
    deletion lists or an id is live in two places."""
    positions = tuple(live_positions(seg) for seg in segments)
    keys = np.concatenate([np.asarray(seg.articles.table[:-1, AUX])[p] for seg, p in zip(segments, positions)]
                          or [np.zeros(0, dtype=np.uint64)])
    segment = np.concatenate([np.full(len(p), i, dtype=np.int32) for i, p in enumerate(positions)]
                             or [np.zeros(0, dtype=np.int32)])
    position = np.concatenate(positions or (np.zeros(0, dtype=np.int64),))
    order = np.argsort(keys, kind="stable")
    keys, segment, position = keys[order], segment[order], position[order]
    if len(keys) > 1 and bool((keys[1:] == keys[:-1]).any()):
        raise ValueError("an article is live in two places")
    return LiveArticles(positions, keys, segment, position)
