"""BM25 over per-segment postings: bm25s's scores, corpus-wide statistics over segments and deletions, no pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.index.lexical import Lexical, Postings, consecutive_offset, tokenize


def one_segment(postings: Postings) -> Lexical:
    """BM25 over one segment with every row live, as a fresh build's index holds it."""
    return Lexical([(postings, np.arange(postings.n_docs, dtype=np.int64))])


def test_postings_from_tokens_match_build_and_save_without_pickle(tmp_path: Path):
    texts = ["The cat sat on the mat.", "Dogs chase cats in the park.", "A mat for yoga.", "", "Cats, cats, cats!"]
    built = one_segment(Postings.build(texts))
    direct = one_segment(Postings.from_tokens([tokenize(t) for t in texts]))
    for query in ("cat mat", "yoga", "park dogs", "unknownword"):
        assert np.allclose(built.scores(query), direct.scores(query))
    Postings.build(texts).save(tmp_path / "bm25")
    names = [p.name for p in (tmp_path / "bm25").rglob("*")]
    assert not [n for n in names if n.endswith((".pkl", ".pickle"))]
    for path in (tmp_path / "bm25").glob("*.npy"):
        np.load(path, allow_pickle=False)  # raises if any array needs pickle
    loaded = one_segment(Postings.load(tmp_path / "bm25", mmap=True))
    rows, _ = loaded.search("cats", 5)
    assert rows.tolist()[0] == 4 and 3 not in rows.tolist()


def test_postings_opened_by_term_keys_score_the_same_without_reading_the_terms(tmp_path: Path):
    texts = _random_texts(300, seed=7)
    postings = Postings.build(texts)
    postings.save(tmp_path / "bm25")
    table = postings.key_table()
    assert table is not None and table.dtype == np.uint64 and len(table) == len(postings.terms)
    assert (np.diff(table[:, 0].astype(np.float64)) > 0).all(), "sorted, one key per term"
    np.save(tmp_path / "bm25" / "term_keys.npy", table, allow_pickle=False)
    by_dict = one_segment(Postings.load(tmp_path / "bm25", mmap=True))
    keyed = Postings.load(tmp_path / "bm25", mmap=True, keys=True)
    by_keys = one_segment(keyed)
    (tmp_path / "bm25" / "terms.json").unlink()  # opened by keys: the vocabulary itself is never read
    for query in ("korea troops", "Trump's summit 2024", "harbour storm court", "unknownword"):
        assert np.array_equal(by_keys.scores(query), by_dict.scores(query))
        assert by_keys.idf(tokenize(query)[0]) == by_dict.idf(tokenize(query)[0])
    assert keyed.term_id("unknownword") is None and keyed.term_id(tokenize("korea")[0]) is not None


def _random_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["korea", "troops", "russia", "ukraine", "missile", "kim", "trump", "summit", "election", "court",
             "senate", "harbour", "storm", "the", "of", "and", "Trump's", "2024"]
    return [" ".join(rng.choice(words, rng.integers(0, 40))) for _ in range(n)]


def test_lexical_scores_equal_bm25s(tmp_path: Path):
    """Our BM25 over postings gives bm25s's scores (its defaults, the Lucene variant), empty chunks included."""
    import bm25s
    from bm25s.tokenization import Tokenized

    texts = _random_texts(300, seed=1) + ["the of and", ""]
    vocab: dict[str, int] = {"": 0}
    ids = [[vocab.setdefault(t, len(vocab)) for t in tokenize(x)] or [0] for x in texts]
    reference = bm25s.BM25()
    reference.index(Tokenized(ids=ids, vocab=vocab), show_progress=False)
    ours = one_segment(Postings.build(texts))
    for query in ("korea troops", "trump kim summit summit", "court", "nosuchword", "storm harbour 2024"):
        tokens = [t for t in tokenize(query) if t in vocab]
        expected = reference.get_scores(tokens) if tokens else np.zeros(len(texts))
        assert np.allclose(ours.scores(query), expected, rtol=1e-5, atol=1e-6), query
        for term in tokenize(query):
            df = sum(term in tokenize(x) for x in texts)
            assert ours.idf(term) == pytest.approx(np.log(1 + (len(texts) - df + 0.5) / (df + 0.5)))


def test_lexical_over_segments_with_deletions_and_after_a_merge_equals_one_index():
    """Corpus-wide N, df and average length: segments minus deleted rows score exactly like one fresh index."""
    texts = _random_texts(400, seed=2)
    live = [i for i in range(400) if i % 5 and i not in (101, 102)]
    cuts = [(0, 150), (150, 390), (390, 400)]
    parts, keeps = [], []
    rows = np.full(400, -1)
    rows[live] = np.arange(len(live))
    for lo, hi in cuts:
        postings = Postings.build(texts[lo:hi])
        parts.append((postings, rows[lo:hi]))
        keeps.append((postings, [i - lo for i in live if lo <= i < hi]))
    segmented = Lexical(parts)
    merged = one_segment(Postings.merge(keeps))
    fresh = one_segment(Postings.build([texts[i] for i in live]))
    assert segmented.n_docs == merged.n_docs == fresh.n_docs == len(live)
    for query in ("korea troops", "trump kim summit summit", "court senate", "storm"):
        expected = fresh.scores(query)
        assert np.array_equal(segmented.scores(query), expected), query
        assert np.array_equal(merged.scores(query), expected), query
        assert segmented.search(query, 10)[0].tolist() == fresh.search(query, 10)[0].tolist()
        for term in tokenize(query):
            assert segmented.idf(term) == fresh.idf(term) == merged.idf(term)


def test_bm25_over_segments_with_and_without_deletions_equals_one_index_of_the_live_texts():
    """Whole segments take the offset path, segments with deletions the gather path: same scores as one index."""
    a = ["the bridge opened on monday", "a new bridge over the river", "troops were sent north"]
    b = ["the river flooded the bridge", "nothing about it here", "the mayor opened the bridge again"]
    rows_b = np.array([3, -1, 4], dtype=np.int64)  # its second chunk deleted
    split = Lexical([(Postings.build(a), np.arange(3, dtype=np.int64)), (Postings.build(b), rows_b)])
    whole = one_segment(Postings.build(a + [b[0], b[2]]))
    assert (
        consecutive_offset(np.arange(3, 6)) == 3
        and consecutive_offset(rows_b) is None
        and consecutive_offset(np.array([0, 2])) is None
    )
    for query in ("bridge opened", "river bridge", "troops", "mayor again", "unknown words"):
        assert np.array_equal(split.scores(query), whole.scores(query))
    terms = tokenize("bridge river opened mayor")
    assert [whole.doc_freq(t) for t in terms] == [4, 2, 2, 1]  # deleted "nothing about it here" counts nowhere
    assert [split.doc_freq(t) for t in terms] == [whole.doc_freq(t) for t in terms]


def test_tokenizing_imports_no_scipy():
    """The stop words come from bm25s's stopwords module alone: importing bm25s itself loads scipy (0.75 s of a cold
    process's first answer)."""
    import subprocess
    import sys

    code = ("import sys; from qa.index.lexical import tokenize; assert tokenize('The troops of Korea')[0] == 'troop'; "
            "print('scipy' in sys.modules, 'bm25s' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr


def test_a_merge_keeping_rows_out_of_order_scores_like_one_index_of_them():
    texts = _random_texts(120, seed=9)
    a, b = Postings.build(texts[:60]), Postings.build(texts[60:])
    keep_a, keep_b = [5, 3, 40, 41, 0], list(range(59, -1, -2))  # not ascending
    merged = one_segment(Postings.merge([(a, keep_a), (b, keep_b)]))
    fresh = one_segment(Postings.build([texts[i] for i in keep_a] + [texts[60 + i] for i in keep_b]))
    for query in ("korea troops", "trump kim summit summit", "court senate", "storm"):
        assert np.array_equal(merged.scores(query), fresh.scores(query)), query


def _reference_top(lexical: Lexical, query: str, k: int) -> tuple[list[int], np.ndarray]:
    """The top k by scoring every chunk: best first, ties to the lower row, score 0 left out."""
    scores = lexical.scores(query)
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    order = order[scores[order] > 0]
    return order.tolist(), scores[order]


def _segmented(texts: list[str], cuts: list[int], deleted: set[int]) -> Lexical:
    """BM25 over ``texts`` split into segments at ``cuts``, the rows of ``deleted`` deleted."""
    live = [i for i in range(len(texts)) if i not in deleted]
    rows = np.full(len(texts), -1, dtype=np.int64)
    rows[live] = np.arange(len(live))
    bounds = [0, *cuts, len(texts)]
    return Lexical([(Postings.build(texts[lo:hi]), rows[lo:hi]) for lo, hi in zip(bounds, bounds[1:]) if hi > lo])


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), copies=st.integers(1, 4),
       k=st.sampled_from([1, 2, 5, 10, 50, 1000]))
@settings(max_examples=150, deadline=None)
def test_pruned_search_returns_exactly_what_scoring_every_chunk_returns(seed, n, copies, k):
    """MaxScore pruning over random segments with deletions and replicated texts (ties): the same rows, the same
    float32 scores, the same order (ties to the lower row) as sorting every chunk's score."""
    rng = np.random.default_rng(seed)
    vocab = ["korea", "troops", "russia", "ukraine", "missile", "kim", "trump", "summit", "election", "court",
             "senate", "harbour", "storm", "the", "of", "rare", "zebra", "quasar", "2024"]
    weights = rng.dirichlet(np.full(len(vocab), 0.3))  # a few common words, many rare ones, differently each time
    base = [" ".join(rng.choice(vocab, rng.integers(0, 30), p=weights)) for _ in range(n)]
    texts = [t for _ in range(copies) for t in base]  # replicas tie, as in the scale benchmark's archive
    cuts = sorted(set(rng.integers(1, len(texts), rng.integers(0, 6)).tolist())) if len(texts) > 1 else []
    deleted = set(rng.choice(len(texts), rng.integers(0, len(texts) // 3 + 1), replace=False).tolist())
    lexical = _segmented(texts, cuts, deleted)
    queries = [" ".join(rng.choice(vocab, rng.integers(1, 8))) for _ in range(6)] + ["zebra quasar rare rare",
                                                                                       "nosuchword", ""]
    for prepared in (False, True):  # pruned with IDF bounds, then with each segment's largest share of them
        if prepared:
            lexical.prepare_bounds()
        for query in queries:
            rows, scores = lexical.search(query, k, prune=True)
            want_rows, want_scores = _reference_top(lexical, query, k)
            assert lexical.search(query, k)[0].tolist() == want_rows  # small: scores every chunk
            assert rows.tolist() == want_rows, (query, prepared)
            assert scores.dtype == np.float32 and np.array_equal(scores, want_scores), (query, prepared)
            ex_rows, ex_scores = lexical.search_exhaustive(query, k)
            assert ex_rows.tolist() == want_rows and np.array_equal(ex_scores, want_scores), query
    for kept in lexical._scratch or ():  # the kept scratch arrays are handed back all zeros
        assert not kept.any()


def test_pruned_search_leaves_a_segment_alone_when_its_words_cannot_reach_the_top():
    """A rare word and a common one: a segment holding only the common word cannot reach the top 3, and its posting
    lists are not touched; scoring every chunk reads them."""
    texts = ["the common word and a rare one: zebra"] * 3 + [f"the common word, number {i}" for i in range(5000)]
    lexical = _segmented(texts, [2000], set())
    postings = lexical._parts[1][0]
    touched = _watch(postings)
    rows, scores = lexical.search("zebra common", 3, prune=True)
    assert touched == [] and postings.term_id("common") is not None
    assert rows.tolist() == [0, 1, 2] and np.array_equal(scores, _reference_top(lexical, "zebra common", 3)[1])
    assert touched  # scoring every chunk read them


class _Watched(np.ndarray):
    """Posting rows that note every access."""

    touched: list[object]

    def __getitem__(self, item):
        self.touched.append(item)
        return super().__getitem__(item)


def _watch(postings: Postings) -> list[object]:
    """Note every access to ``postings``' rows from now on; the list of them."""
    watched = np.asarray(postings.post_rows).view(_Watched)
    watched.touched = []
    postings.post_rows = watched
    return watched.touched


def test_prepared_bounds_are_each_terms_largest_share_of_its_idf():
    texts = ["storm storm harbour", "storm", "harbour court court court", "court senate", "senate"] * 7
    lexical = _segmented(texts, [12, 20], {3, 17})
    lexical.prepare_bounds()
    for (postings, _), norms, fractions in zip(lexical._parts, lexical._norms, lexical._fractions):
        ptr = np.asarray(postings.term_ptr)
        for tid in range(len(ptr) - 1):
            lo, hi = int(ptr[tid]), int(ptr[tid + 1])
            tfs = np.asarray(postings.post_tfs[lo:hi], dtype=np.float64)
            want = float((tfs / (norms[np.asarray(postings.post_rows[lo:hi])] + tfs)).max()) if hi > lo else 0.0
            assert fractions[tid] == want and 0 <= want < 1


def test_prepared_bounds_leave_a_segment_alone_that_the_idf_bound_reads():
    """The second segment holds only the common word, in long chunks: one occurrence there adds a fifth of its IDF.
    The IDF alone (2.3) is above the third best score (1.53), so a search reads that segment's list; bounded by
    the prepared share (0.45), it is left alone. Both return the same top 3."""
    zebra = [f"zebra seen at the zoo today number {i}" for i in range(40)]
    filler = [f"filler text number {i} about nothing much" for i in range(860)]
    common = [" ".join(["common", *(f"pad{j}" for j in range(30))]) for _ in range(100)]
    lexical = _segmented(zebra + filler + common, [900], set())
    want = _reference_top(lexical, "zebra common", 3)
    touched = _watch(lexical._parts[1][0])
    rows, scores = lexical.search("zebra common", 3, prune=True)
    assert touched, "with IDF bounds the common word's list is read"
    assert rows.tolist() == want[0] == [0, 1, 2] and np.array_equal(scores, want[1])
    lexical.prepare_bounds()
    touched.clear()
    rows, scores = lexical.search("zebra common", 3, prune=True)
    assert touched == []
    assert rows.tolist() == want[0] and np.array_equal(scores, want[1])


def test_a_lexical_index_keeps_a_bounded_number_of_words(monkeypatch):
    """Every distinct word a server is asked about, unknown ones too, would otherwise stay cached for its life."""
    from qa.index import lexical as module

    monkeypatch.setattr(module, "WORDS_KEPT", 8)
    lexical = _segmented(["storm harbour court senate"] * 20, [7], set())
    want = _reference_top(lexical, "storm court", 5)
    for i in range(50):
        lexical.search(f"storm court unknownword{i}", 5, prune=True)
    assert len(lexical._span_cache) == 8 and len(lexical._df) == 8
    rows, scores = lexical.search("storm court", 5, prune=True)  # forgotten words are looked up again
    assert rows.tolist() == want[0] and np.array_equal(scores, want[1])
