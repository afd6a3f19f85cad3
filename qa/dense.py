"""The dense (FAISS) side of the index: choose, build, save and open it.

Vectors are L2-normalised, so inner product is cosine similarity. Exact (flat)
search up to ``FLAT_MAX`` chunks; above that an approximate index.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Up to this many chunks the dense index is exact (flat); above it, HNSW.
FLAT_MAX = 200_000


def make_dense(vectors: np.ndarray):
    """An inner-product FAISS index over ``vectors``: flat up to ``FLAT_MAX`` rows, else HNSW."""
    import faiss

    dim = vectors.shape[1]
    if len(vectors) <= FLAT_MAX:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def write_dense(index, path: Path) -> None:
    """Save with FAISS's own format (never pickle)."""
    import faiss

    faiss.write_index(index, str(path))


def read_dense(path: Path):
    """Open a saved FAISS index."""
    import faiss

    index = faiss.read_index(str(path))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(index.hnsw.efSearch, 64)
    return index


def search_dense(index, query_vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and inner-product scores of the ``k`` nearest vectors, best first."""
    scores, rows = index.search(np.asarray(query_vector, dtype=np.float32).reshape(1, -1), k)
    keep = rows[0] >= 0
    return rows[0][keep].astype(np.int64), scores[0][keep]
