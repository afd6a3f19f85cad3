"""The dense (FAISS) side of the index: choose, build, save and open it.

Vectors are L2-normalised, so inner product is cosine similarity.

* Up to ``FLAT_MAX`` chunks the index is exact (``IndexFlatIP``): a query
  scans every vector, which stays within a few milliseconds at that size
  (measured in docs/benchmarks.md).
* Above it, ``IndexIVFFlat``: the vectors are grouped around ``nlist``
  k-means centroids and a query scans only the ``nprobe`` nearest groups. The
  vectors themselves are kept exactly (no compression). ``nprobe`` is chosen
  when the index is built: the smallest value whose recall@10 against
  exact search, on a sample of the index's own vectors used as queries, is at
  least ``TARGET_RECALL``. The chosen value is saved in the FAISS file.
  Calibration queries are normalised sums of four random indexed vectors:
  like real questions they sit between topics, not on top of one chunk
  (on RealTime QA vectors, recall for these was slightly below recall for
  the real questions at every ``nprobe``, so the choice errs on the safe side;
  noisy copies of indexed vectors were far too easy and chose ``nprobe`` 2
  where the questions needed 32).

* Above ``COMPRESS_MIN`` chunks, ``IndexIVFScalarQuantizer`` with 8-bit codes:
  the lists hold 384 bytes a vector instead of 1,536, and each search asks
  FAISS for ``REFINE`` times as many candidates and re-scores them exactly
  against the segment's own ``vectors.npy`` (a few hundred rows are read,
  with ``pread``: qa/index/vectors.py). ``nprobe`` is calibrated with that re-scoring included, so the
  recall target holds for what the search returns. The manifest records
  ``kind: "ivf-sq8"`` and ``refine``. Over several segments (``search_segments``)
  the re-scoring is pooled: the ``POOLED_REFINE * k`` best candidates of all
  compressed segments by their 8-bit scores are re-scored, not ``refine * k`` of
  each (61 segments: 200 vectors read a search instead of 9,600, recall@10
  0.970 either way), and the segments are searched by a few threads, so the
  disk reads of an index larger than the page cache overlap.

IVF rather than HNSW: at a million chunks HNSW took many minutes to build on
two cores where IVF takes seconds, and FAISS can memory-map the flat and IVF
vector storage on load (``IO_FLAG_MMAP_IFC``), so opening an index costs
about the same at 10,000 chunks as at a million and the pages are shared with
the operating system's file cache instead of copied into the process.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.embed.base import l2_normalize

log = logging.getLogger(__name__)

#: Up to this many chunks the dense index is exact (flat); above it, IVF. One flat query took 2 ms at
#: 25,000 chunks and 12 ms at 50,000 (the vectors stop fitting in the CPU cache), IVF under 0.2 ms.
FLAT_MAX = 25_000
#: The smallest recall@10 against exact search an approximate index may have.
TARGET_RECALL = 0.95
#: Aim a little above the target so a sample's noise does not drop real recall below it.
CALIBRATION_RECALL = 0.97
#: Queries used to calibrate ``nprobe``.
CALIBRATION_QUERIES = 200
#: Indexed vectors summed into one calibration query.
CALIBRATION_MIX = 4
#: Above this many chunks a segment's IVF lists hold 8-bit codes and searches re-score exactly
#: (measured in docs/benchmarks.md: the same recall, a quarter of the list bytes to build, merge and page in).
COMPRESS_MIN = 100_000
#: Candidates a compressed search re-scores against the exact vectors, per result wanted.
REFINE = 4


@dataclass(frozen=True)
class DenseInfo:
    """What kind of dense index was built, and how well it agrees with exact search."""

    kind: str
    rows: int
    nlist: int = 0
    nprobe: int = 0
    recall_at_10: float = 1.0
    refine: int = 0

    def to_json(self) -> dict:
        """The parameters a manifest records: what was built, not which class built it."""
        kind = {"IndexFlatIP": "flat", "IndexIVFScalarQuantizer": "ivf-sq8"}.get(self.kind, "ivf")
        out: dict = {"kind": kind, "metric": "inner_product", "rows": self.rows, "recall_at_10": round(self.recall_at_10, 4)}
        if kind != "flat":
            out.update(nlist=self.nlist, nprobe=self.nprobe)
        if self.refine:
            out.update(refine=self.refine)
        return out


def nlist_for(rows: int) -> int:
    """Number of IVF lists for ``rows`` vectors: about 4·√rows, a power of two, 64..65536."""
    return int(min(65536, max(64, 2 ** round(math.log2(4 * math.sqrt(max(rows, 1)))))))


def _reusable_centroids(previous, rows: int, dim: int):
    """The previous IVF's centroids if they still suit ``rows`` vectors of ``dim``, else None."""
    import faiss

    if previous is None or isinstance(previous, faiss.IndexFlat):
        return None
    ivf = faiss.try_extract_index_ivf(previous)
    if ivf is None or ivf.d != dim or not previous.ntotal or not (previous.ntotal / 2 <= rows <= previous.ntotal * 2):
        return None
    return ivf.quantizer.reconstruct_n(0, ivf.nlist)


def build_dense(vectors: np.ndarray, *, flat_max: int | None = None, compress_min: int | None = None, seed: int = 0,
                previous=None):
    """An inner-product FAISS index over ``vectors`` and its ``DenseInfo`` (kind, nlist, nprobe, measured recall@10).

    Flat up to ``flat_max`` (``FLAT_MAX``) rows, else calibrated IVF, with 8-bit
    codes and exact re-scoring above ``compress_min`` (``COMPRESS_MIN``) rows.
    ``previous`` (the index being replaced) lets an IVF rebuild keep its trained
    centroids instead of running k-means again, while the corpus has not changed
    size by more than a factor of two.
    """
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows, dim = vectors.shape
    if rows <= (FLAT_MAX if flat_max is None else flat_max):
        index = faiss.IndexFlatIP(dim)
        if rows:
            index.add(vectors)
        return index, DenseInfo(kind="IndexFlatIP", rows=rows)
    compress = rows > (COMPRESS_MIN if compress_min is None else compress_min)
    centroids = _reusable_centroids(previous, rows, dim)
    nlist = len(centroids) if centroids is not None else max(1, min(nlist_for(rows), rows // 39))  # >= 39 points per list
    quantizer = faiss.IndexFlatIP(dim)
    if compress:
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = min(rows, max(nlist * 64, 20_000))
    train = vectors[np.sort(rng.choice(rows, size=sample, replace=False))] if sample < rows else vectors
    if centroids is not None:
        quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
        if compress:
            index.train(train)  # the quantizer holds its nlist centroids: only the 8-bit codec is trained
        else:
            index.is_trained = True
    else:
        index.cp.seed = seed
        index.train(train)
    for start in range(0, rows, 65_536):  # in blocks: FAISS copies what it is given
        index.add(vectors[start : start + 65_536])
    refine = REFINE if compress else 0
    nprobe, recall = calibrate_nprobe(index, vectors, seed=seed, refine=refine)
    index.nprobe = nprobe
    kind = type(index).__name__
    log.info("dense index: %s over %d vectors, nlist=%d, nprobe=%d, recall@10=%.3f", kind, rows, nlist, nprobe, recall)
    return index, DenseInfo(kind=kind, rows=rows, nlist=nlist, nprobe=nprobe, recall_at_10=recall, refine=refine)


def refined(index, vectors: np.ndarray, queries: np.ndarray, k: int, refine: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's ``refine * k`` best by its (compressed) scores, re-scored exactly against ``vectors``: the ``k`` best.

    Returns (scores, rows) shaped like ``index.search``'s, -1 where fewer were found.
    """
    approx_scores, approx = index.search(queries, k * refine) if refine else index.search(queries, k)
    if not refine:
        return approx_scores, approx
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    rows = np.full((len(queries), k), -1, dtype=np.int64)
    for i, (query, found) in enumerate(zip(queries, approx)):
        found = found[found >= 0]
        if not len(found):
            continue
        order = np.argsort(found)  # read the file in ascending order
        exact = np.empty(len(found), dtype=np.float32)
        exact[order] = np.asarray(vectors[found[order]], dtype=np.float32) @ query
        best = np.lexsort((found, -exact))[:k]
        scores[i, : len(best)] = exact[best]
        rows[i, : len(best)] = found[best]
    return scores, rows


def calibration_queries(vectors: np.ndarray, count: int = CALIBRATION_QUERIES, seed: int = 0) -> np.ndarray:
    """Normalised sums of ``CALIBRATION_MIX`` random rows: queries between topics, as questions are."""
    rng = np.random.default_rng(seed + 1)
    rows = rng.integers(0, len(vectors), size=(count, CALIBRATION_MIX))
    queries = np.asarray(vectors[np.sort(rows.ravel())], dtype=np.float32)[np.argsort(np.argsort(rows.ravel()))]
    queries = queries.reshape(count, CALIBRATION_MIX, -1).sum(axis=1)
    return l2_normalize(queries)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row ids of the exact ``k`` best inner products (brute force, FAISS's BLAS kernel)."""
    import faiss

    _, ids = faiss.knn(np.ascontiguousarray(queries), np.ascontiguousarray(vectors, dtype=np.float32), k,
                       metric=faiss.METRIC_INNER_PRODUCT)
    return ids


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top-k found in its approximate top-k."""
    hits = [len(set(f[f >= 0].tolist()) & set(e.tolist())) / max(1, len(e)) for f, e in zip(found, exact)]
    return float(np.mean(hits)) if hits else 1.0


def calibrate_nprobe(index, vectors: np.ndarray, *, k: int = 10, seed: int = 0, refine: int = 0) -> tuple[int, float]:
    """The smallest ``nprobe`` with recall@k >= ``CALIBRATION_RECALL``, and that recall (searching as
    ``refined`` does with ``refine``).

    Doubling finds the first power of two that is enough; a bisection between
    it and the previous power then finds the smallest value (each probe of
    the list costs query time, so overshooting by 2x would double it).
    """
    queries = calibration_queries(vectors, seed=seed)
    k = min(k, len(vectors))
    exact = exact_top(vectors, queries, k)

    def recall(nprobe: int) -> float:
        index.nprobe = nprobe
        _, found = refined(index, vectors, queries, k, refine)
        return recall_at(found, exact)

    high, best = 1, recall(1)
    while best < CALIBRATION_RECALL and high < index.nlist:
        high = min(index.nlist, high * 2)
        best = recall(high)
    low = high // 2  # known (or assumed, at 1) not to be enough
    while high - low > max(1, high // 16):
        middle = (low + high) // 2
        value = recall(middle)
        if value >= CALIBRATION_RECALL:
            high, best = middle, value
        else:
            low = middle
    index.nprobe = high
    return high, best


def write_dense(index, path: Path) -> None:
    """Save with FAISS's own format (never pickle)."""
    import faiss

    faiss.write_index(index, str(path))


def read_dense(path: Path, *, mmap: bool = True):
    """Open a saved FAISS index; with ``mmap`` its vectors stay on disk and are paged in on use."""
    import faiss

    flags = getattr(faiss, "IO_FLAG_MMAP_IFC", 0) if mmap else 0
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError:
        if not flags:
            raise
        return faiss.read_index(str(path))  # a FAISS build that cannot map this kind


def search_dense(index, query_vector: np.ndarray, k: int, vectors: np.ndarray | None = None,
                 refine: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows and inner-product scores of the ``k`` nearest vectors, best first (re-scored against
    ``vectors`` when ``refine``).

    One query runs on one thread: FAISS's OpenMP threads gain nothing on a
    single query and, on a busy machine, waiting for them cost 30 ms where the
    search itself took 0.4 ms (measured in docs/benchmarks.md).
    """
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        query = np.asarray(query_vector, dtype=np.float32).reshape(1, -1)
        if refine and vectors is not None:
            scores, rows = refined(index, vectors, query, k, refine)
        else:
            scores, rows = index.search(query, k)
    finally:
        faiss.omp_set_num_threads(threads)
    keep = rows[0] >= 0
    return rows[0][keep].astype(np.int64), scores[0][keep]


#: Compressed segments' candidates re-scored exactly per search, over all of them together: this many times ``k``
#: (the best by FAISS's 8-bit scores across segments), instead of ``refine * k`` in each segment.
POOLED_REFINE = 4


def search_segments(parts, query_vector: np.ndarray, k: int, pooled: int = POOLED_REFINE) -> tuple[np.ndarray, np.ndarray]:
    """Search several segments' indexes and merge: global rows and scores of the ``k`` best, best first.

    ``parts`` holds ``(index, rows, deleted, vectors, refine)`` per segment: ``rows[local]`` is
    the global row of a local one, -1 if deleted, ``deleted`` how many are, and
    ``refine`` (with the segment's ``vectors``) how a compressed index re-scores.
    Each segment is asked for ``k + deleted`` so that ``k`` live rows survive
    the filter; flat segments are exact, so the merge equals one flat index
    over the live rows (ties broken by the lower global row).

    Compressed segments are asked for ``refine`` times that by their 8-bit
    scores, and then the ``pooled * k`` best of those over all compressed
    segments, not each segment's own, are re-scored exactly: at 61 segments a
    search reads 200 vectors instead of 9,600, for the same recall@10
    (docs/benchmarks.md). ``pooled=0`` re-scores in each segment, as before.
    """
    found_rows, found_scores = [], []
    pool = []  # (segment, global rows, local rows, approximate scores) of the compressed segments' candidates

    def one(number: int):
        index, rows, deleted, vectors, refine = parts[number]
        want = min(int(index.ntotal), k + int(deleted))
        if want <= 0:
            return None
        if refine and vectors is not None and pooled:  # its 8-bit scores only: re-scored below, with the pool
            local, approx = search_dense(index, query_vector, want * refine)
            mapped = rows[local]
            live = mapped >= 0
            return "pool", (number, mapped[live], local[live], approx[live])
        local, scores = search_dense(index, query_vector, want, vectors, refine)
        mapped = rows[local]
        live = mapped >= 0
        return "found", (mapped[live], scores[live])

    numbers = range(len(parts))
    results = list(_segment_pool().map(one, numbers)) if len(parts) > 1 else [one(n) for n in numbers]
    for result in results:
        if result is None:
            continue
        if result[0] == "pool":
            pool.append(result[1])
        else:
            found_rows.append(result[1][0])
            found_scores.append(result[1][1])
    if pool:
        query = np.asarray(query_vector, dtype=np.float32).ravel()
        numbers = np.concatenate([np.full(len(g), n, dtype=np.int64) for n, g, _, _ in pool])
        global_rows = np.concatenate([g for _, g, _, _ in pool])
        local_rows = np.concatenate([loc for _, _, loc, _ in pool])
        approx = np.concatenate([a for _, _, _, a in pool])
        best = np.lexsort((global_rows, -approx))[: pooled * k]
        for number in np.unique(numbers[best]).tolist():
            mine = best[numbers[best] == number]
            vectors = parts[number][3]
            found_rows.append(global_rows[mine])
            found_scores.append(_exact_scores(vectors, local_rows[mine], query))
    if not found_rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    rows = np.concatenate(found_rows)
    scores = np.concatenate(found_scores)
    order = np.lexsort((rows, -scores))[:k]
    return rows[order].astype(np.int64), scores[order].astype(np.float32)


#: Segments searched at once: a search of an index larger than the page cache waits on the disk for each
#: IVF list it reads, and the waits of several segments overlap.
SEARCH_THREADS = 16
_POOL = None
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:
    global _POOL, _POOL_LOCK
    _POOL = None  # a forked child has none of its parent's threads: it starts its own pool
    _POOL_LOCK = threading.Lock()  # and no thread that could still release the lock


os.register_at_fork(after_in_child=_forget_pool)


def _segment_pool():
    """The threads that search segments, started on first use (once, whichever thread asks first)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            _POOL = ThreadPoolExecutor(max_workers=SEARCH_THREADS, thread_name_prefix="qa-dense")
        return _POOL


def _exact_scores(vectors, local: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Inner products of ``query`` with the rows ``local`` of a segment's exact vectors, read in file order."""
    order = np.argsort(local)
    exact = np.empty(len(local), dtype=np.float32)
    exact[order] = np.asarray(vectors[local[order]], dtype=np.float32) @ query
    return exact
