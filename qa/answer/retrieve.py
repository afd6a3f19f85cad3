"""Find the chunks nearest a question: dense (FAISS) and BM25, fused by reciprocal rank."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qa.records import Hit
from qa.index.searchable import Index


@dataclass(frozen=True)
class RetrieveSettings:
    """``mode`` is "hybrid", "dense" or "lexical"; depths are per retriever before fusion."""

    mode: str = "hybrid"
    depth: int = 50
    rrf_k: int = 60
    lexical_weight: float = 1.0


def retrieve(index: Index, query: str, query_vector: np.ndarray, k: int, settings: RetrieveSettings | None = None) -> list[Hit]:
    """The ``k`` best chunks for ``query``, best first, each with its cosine and BM25 score."""
    settings = settings or RetrieveSettings()
    if not index.chunks or k <= 0:
        return []
    depth = max(k, settings.depth)
    fused: dict[int, float] = {}
    dense_score: dict[int, float] = {}
    lexical_score: dict[int, float] = {}
    if settings.mode in ("hybrid", "dense"):
        rows, scores = index.dense_search(query_vector, depth)
        for rank, (row, score) in enumerate(zip(rows.tolist(), scores.tolist())):
            fused[row] = fused.get(row, 0.0) + 1.0 / (settings.rrf_k + rank + 1)
            dense_score[row] = score
    if settings.mode in ("hybrid", "lexical"):
        rows, scores = index.lexical.search(query, depth)
        for rank, (row, score) in enumerate(zip(rows.tolist(), scores.tolist())):
            fused[row] = fused.get(row, 0.0) + settings.lexical_weight / (settings.rrf_k + rank + 1)
            lexical_score[row] = score
    if settings.mode == "lexical" and not fused:
        return []
    best = sorted(fused, key=lambda r: (-fused[r], r))[:k]
    missing = [r for r in best if r not in dense_score]
    if missing:
        cos = np.asarray(index.vectors[missing], dtype=np.float32) @ np.asarray(query_vector, dtype=np.float32).ravel()
        dense_score.update(zip(missing, cos.tolist()))
    return [
        Hit(
            chunk=index.chunks[row],
            score=fused[row],
            rank=rank,
            dense=float(dense_score.get(row, 0.0)),
            lexical=float(lexical_score.get(row, 0.0)),
        )
        for rank, row in enumerate(best)
    ]
