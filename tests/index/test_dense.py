"""The dense index: exact below the threshold, calibrated IVF above it, checked against brute force; memory-mapped on load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qa.index import dense
from qa.index.dense import build_dense, calibration_queries, read_dense, recall_at, search_dense, write_dense


def clustered(n: int, dim: int = 48, centres: int = 40, seed: int = 0) -> np.ndarray:
    """Unit vectors around a few centres (real embeddings cluster by topic too)."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, dim)).astype(np.float32)
    x = middle[rng.integers(0, centres, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def topic_articles(folder: Path, seed: int, count: int = 120) -> Path:
    """``count`` short articles, each of sentences drawn from its own 30 of 400 words."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(400)]
    folder.mkdir()
    for n in range(count):
        topic = rng.choice(words, 30)
        sentences = [" ".join(rng.choice(topic, 12)) + "." for _ in range(6)]
        (folder / f"a{n:03}.txt").write_text(f"Article {n}\n\n" + "\n\n".join(sentences))
    return folder


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


def test_small_index_is_exact_and_matches_brute_force():
    x = clustered(800)
    index, info = build_dense(x)
    assert info.kind == "IndexFlatIP" and type(index).__name__ == "IndexFlatIP"
    q = calibration_queries(x, 30, seed=3)
    _, found = index.search(q, 10)
    assert recall_at(found, brute_force(x, q, 10)) == 1.0
    rows, scores = search_dense(index, q[0], 5)
    assert np.allclose(scores, np.sort(q[0] @ x.T)[::-1][:5], atol=1e-5)
    assert rows.tolist() == brute_force(x, q[:1], 5)[0].tolist()


def test_large_index_is_ivf_with_recall_at_10_of_095_against_brute_force(tmp_path: Path):
    x = clustered(6000)
    index, info = build_dense(x, flat_max=1000)
    assert info.kind == "IndexIVFFlat" and info.nlist > 1
    assert 1 <= info.nprobe < info.nlist, "calibration should stop before scanning every list"
    assert info.recall_at_10 >= dense.CALIBRATION_RECALL
    # Fresh queries, not the calibration ones, after a save and a memory-mapped load.
    path = tmp_path / "dense.faiss"
    write_dense(index, path)
    loaded = read_dense(path)
    assert loaded.nprobe == info.nprobe, "nprobe is saved in the FAISS file"
    rng = np.random.default_rng(11)
    q = x[rng.choice(len(x), 300, replace=False)] + 0.05 * rng.standard_normal((300, x.shape[1])).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    _, found = loaded.search(q, 10)
    assert recall_at(found, brute_force(x, q, 10)) >= dense.TARGET_RECALL


def test_ivf_on_structureless_vectors_still_reaches_the_target():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index, info = build_dense(x, flat_max=100)
    q = calibration_queries(x, 200, seed=9)
    _, found = index.search(q, 10)
    assert recall_at(found, brute_force(x, q, 10)) >= dense.TARGET_RECALL


@pytest.mark.parametrize("flat_max", [None, 500])
def test_read_dense_memory_maps_the_vectors(tmp_path: Path, flat_max):
    x = clustered(2000)
    path = tmp_path / "dense.faiss"
    write_dense(build_dense(x, flat_max=flat_max)[0], path)
    index = read_dense(path)
    maps = Path("/proc/self/maps").read_text()
    assert str(path) in maps, "the index file should be mapped, not copied into memory"
    q = calibration_queries(x, 5, seed=1)
    _, mapped = index.search(q, 5)
    _, copied = read_dense(path, mmap=False).search(q, 5)
    assert (mapped == copied).all()


def test_tiny_ivf_does_not_crash():
    x = clustered(30)
    index, info = build_dense(x, flat_max=5)
    assert info.nlist == 1 and index.ntotal == 30


def test_store_uses_ivf_above_the_threshold_and_search_agrees(tmp_path: Path, hash_embedder, monkeypatch):
    """A real build through qa.index.build with a lowered threshold: the committed index is IVF and searches well."""
    from qa.index.build import build_index
    from qa.index.reader import load_index

    folder = topic_articles(tmp_path / "articles", seed=2)
    monkeypatch.setattr(dense, "FLAT_MAX", 50)
    build_index([folder], tmp_path / "index", embedder=hash_embedder)
    index = load_index(tmp_path / "index")
    (segment,) = index.manifest.segments
    assert segment.dense["kind"] == "ivf" and segment.dense["nlist"] > 1 and segment.dense["nprobe"] >= 1
    assert segment.dense["recall_at_10"] >= dense.CALIBRATION_RECALL
    vectors = np.asarray(index.vectors)
    queries = hash_embedder.encode([c.text for c in index.chunks[::7]])
    found = np.array([np.pad(index.dense_search(q, 10)[0], (0, 10))[:10] for q in queries])
    assert recall_at(found, brute_force(vectors, queries, 10)) >= dense.TARGET_RECALL


def test_ivf_rebuild_keeps_the_previous_centroids_and_its_recall(tmp_path: Path):
    x = clustered(5000, seed=1)
    first, info = build_dense(x, flat_max=1000)
    write_dense(first, tmp_path / "old.faiss")
    previous = read_dense(tmp_path / "old.faiss")
    grown = np.concatenate([x, clustered(300, seed=2)])
    again, info2 = build_dense(grown, flat_max=1000, previous=previous)
    old_centroids = previous.quantizer.reconstruct_n(0, previous.nlist)
    assert info2.nlist == info.nlist and np.array_equal(again.quantizer.reconstruct_n(0, again.nlist), old_centroids)
    assert again.ntotal == len(grown) and info2.recall_at_10 >= dense.CALIBRATION_RECALL
    # A corpus that grew past twice the size trains afresh.
    third, info3 = build_dense(np.concatenate([grown, clustered(6000, seed=3)]), flat_max=1000, previous=previous)
    fresh = third.quantizer.reconstruct_n(0, info3.nlist)
    assert fresh.shape != old_centroids.shape or not np.array_equal(fresh, old_centroids)


def test_past_the_compression_size_the_lists_hold_8_bit_codes_and_searches_rescore_exactly(tmp_path: Path):
    x = clustered(6000)
    flat, flat_info = build_dense(x, flat_max=1000)
    index, info = build_dense(x, flat_max=1000, compress_min=2000)
    assert info.kind == "IndexIVFScalarQuantizer" and info.refine == dense.REFINE
    assert info.to_json()["kind"] == "ivf-sq8" and info.to_json()["refine"] == dense.REFINE
    assert info.recall_at_10 >= dense.CALIBRATION_RECALL
    write_dense(flat, tmp_path / "flat.faiss")
    write_dense(index, tmp_path / "sq8.faiss")
    assert (tmp_path / "sq8.faiss").stat().st_size < 0.4 * (tmp_path / "flat.faiss").stat().st_size
    loaded = read_dense(tmp_path / "sq8.faiss")
    assert str(tmp_path / "sq8.faiss") in Path("/proc/self/maps").read_text(), "mapped, not copied"
    rng = np.random.default_rng(12)
    q = x[rng.choice(len(x), 300, replace=False)] + 0.05 * rng.standard_normal((300, x.shape[1])).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    found = np.array([np.pad(search_dense(loaded, v, 10, x, info.refine)[0], (0, 10), constant_values=-1)[:10]
                      for v in q])
    assert recall_at(found, brute_force(x, q, 10)) >= dense.TARGET_RECALL
    rows, scores = search_dense(loaded, q[0], 10, x, info.refine)
    assert np.allclose(scores, x[rows] @ q[0], atol=1e-6), "returned scores are exact cosines"
    assert (np.diff(scores) <= 1e-7).all()


def test_a_compressed_segment_is_recorded_and_searched_through_the_index(tmp_path: Path, hash_embedder, monkeypatch):
    from qa.index.build import build_index
    from qa.index.reader import load_index

    folder = topic_articles(tmp_path / "articles", seed=4)
    monkeypatch.setattr(dense, "FLAT_MAX", 50)
    monkeypatch.setattr(dense, "COMPRESS_MIN", 60)
    build_index([folder], tmp_path / "index", embedder=hash_embedder)
    index = load_index(tmp_path / "index")
    (segment,) = index.manifest.segments
    assert segment.dense["kind"] == "ivf-sq8" and segment.dense["refine"] == dense.REFINE
    vectors = np.asarray(index.vectors)
    queries = hash_embedder.encode([c.text for c in index.chunks[::7]])
    found = np.array([np.pad(index.dense_search(q, 10)[0], (0, 10), constant_values=-1)[:10] for q in queries])
    assert recall_at(found, brute_force(vectors, queries, 10)) >= dense.TARGET_RECALL
    rows, scores = index.dense_search(queries[0], 5)
    assert np.allclose(scores, vectors[rows] @ queries[0], atol=1e-6)


class CountingRows:
    """A segment's exact vectors that count the rows a search reads from them."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors, self.read = vectors, 0

    def __getitem__(self, rows):
        self.read += len(np.atleast_1d(rows))
        return self.vectors[rows]


def test_compressed_segments_rescore_one_pool_across_segments_with_the_same_recall():
    """Several 8-bit segments (one with deletions) and a flat one: the pooled re-scoring reads POOLED_REFINE * k
    vectors in all instead of REFINE * k in each segment, and finds what brute force over the live rows finds."""
    x = clustered(12_500, seed=3)
    cuts = [0, 3000, 6000, 9000, 12_000, 12_500]
    deleted = set(range(3000, 3300))  # in the second segment
    live = np.array([i for i in range(len(x)) if i not in deleted])
    global_of = np.full(len(x), -1, dtype=np.int64)
    global_of[live] = np.arange(len(live))
    parts, counters = [], []
    for lo, hi in zip(cuts, cuts[1:]):
        index, info = build_dense(x[lo:hi], flat_max=1000, compress_min=2000)
        assert (info.kind == "IndexIVFScalarQuantizer") == (hi - lo > 2000)
        counter = CountingRows(x[lo:hi])
        counters.append(counter)
        parts.append((index, global_of[lo:hi], sum(lo <= d < hi for d in deleted), counter, info.refine))
    rng = np.random.default_rng(5)
    q = x[live[rng.choice(len(live), 200, replace=False)]] + 0.05 * rng.standard_normal((200, x.shape[1]))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    exact = brute_force(x[live], q, 10)
    for pooled in (dense.POOLED_REFINE, 0):
        for counter in counters:
            counter.read = 0
        found = np.array([np.pad(dense.search_segments(parts, v, 10, pooled=pooled)[0], (0, 10),
                                 constant_values=-1)[:10] for v in q])
        assert recall_at(found, exact) >= dense.TARGET_RECALL, pooled
        compressed_reads = sum(c.read for c in counters[:4]) / len(q)
        assert compressed_reads <= (pooled * 10 if pooled else 4 * dense.REFINE * (10 + 300))
        if pooled:
            assert compressed_reads == pooled * 10
    rows, scores = dense.search_segments(parts, q[0], 10)
    assert np.allclose(scores, x[live][rows] @ q[0], atol=1e-6), "exact cosines, best first"
    assert (np.diff(scores) <= 1e-7).all()
