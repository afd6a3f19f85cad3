"""Retrieval: the dense side (FAISS) and BM25 each rank the live chunks; reciprocal-rank fusion joins them.

A chunk's fused score is the sum, over the sides that found it within ``depth``, of
``weight / (rrf_k + rank + 1)`` (weight 1 for the dense side, ``lexical_weight`` for BM25);
hits come best first, ties to the lower row, each with its cosine and its BM25 score.
The index is real and small, built with the hash embedder (a bag of words, no model).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pytest

from qa.answer.retrieve import RetrieveSettings, retrieve
from qa.index.build import build_index
from qa.index.reader import load_index
from qa.index.searchable import Index

ARTICLES = {
    "bakery.txt": "Village bakery\n\nThe village bakery sells rye bread and cinnamon buns every morning before dawn.\n",
    "cars.txt": "Carmaker recall\n\nThe carmaker recalled twelve thousand cars after faulty brakes were found in its "
                "newest model.\n",
    "harbour.txt": "Harbour cranes\n\nA crane at the harbour lifted forty containers onto a cargo ship on Tuesday.\n",
    "pump.txt": "Spare parts\n\nWorkshops ordered the replacement pump under catalogue code XK4471 last spring.\n",
    "rain.txt": "Weather\n\nHeavy rain flooded the cellars of the old mill and closed the river path.\n",
    "school.txt": "School news\n\nThe school choir won the regional singing contest with a song about the sea.\n",
}


class Thesaurus:
    """The hash embedder as a sentence model hears text: synonyms alike, codes such as "XK4471" not at all.

    So a paraphrase ("automobiles withdrawn") is something only the dense side can match, and a
    catalogue code something only BM25 can.
    """

    def __init__(self, inner, synonyms: dict[str, str]) -> None:
        self.inner, self.synonyms = inner, synonyms
        self.name = f"{inner.name}+thesaurus"
        self.dim, self.max_tokens = inner.dim, inner.max_tokens

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def encode(self, texts: Sequence[str], *, progress=None) -> np.ndarray:
        heard = [" ".join(self.synonyms.get(w, w) for w in re.findall(r"\b[^\W\d]+\b", t.lower())) for t in texts]
        return self.inner.encode(heard, progress=progress)


@pytest.fixture
def embedder(hash_embedder):
    return Thesaurus(hash_embedder, {"automobiles": "cars", "withdrawn": "recalled"})


def _write(folder, articles: dict[str, str]):
    folder.mkdir(exist_ok=True)
    for name, text in articles.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def small(tmp_path, embedder) -> Index:
    build_index([_write(tmp_path / "articles", ARTICLES)], tmp_path / "index", embedder=embedder)
    return load_index(tmp_path / "index")


def ask(index: Index, embedder, query: str, k: int = 10, **settings) -> list:
    return retrieve(index, query, embedder.encode([query])[0], k, RetrieveSettings(**settings) if settings else None)


def names(index: Index, hits) -> list[str]:
    return [index.article_of(h.chunk).source.rsplit("/", 1)[-1] for h in hits]


def row(index: Index, hit) -> int:
    return index.chunks.index(hit.chunk)


def test_a_chunk_both_sides_rank_first_comes_first_with_both_scores(small, embedder):
    hits = ask(small, embedder, "crane")
    assert names(small, hits)[0] == "harbour.txt"
    assert hits[0].score == pytest.approx(2 / 61) and hits[0].rank == 0  # 1/(60 + 0 + 1) from each side
    assert hits[0].dense > 0 and hits[0].lexical > 0
    assert all(h.lexical == 0 for h in hits[1:])  # BM25 found nothing else; the dense side ranks every chunk


def test_a_word_only_bm25_can_read_is_found(small, embedder):
    hits = ask(small, embedder, "XK4471")
    assert names(small, hits)[0] == "pump.txt" and hits[0].lexical > 0 and hits[0].dense == 0
    assert names(small, ask(small, embedder, "XK4471", mode="lexical")) == ["pump.txt"]
    assert names(small, ask(small, embedder, "XK4471", mode="dense"))[0] != "pump.txt"  # the dense side alone misses it


def test_a_paraphrase_is_found_by_the_dense_side(small, embedder):
    assert ask(small, embedder, "automobiles withdrawn", mode="lexical") == []  # no word in common with any article
    hits = ask(small, embedder, "automobiles withdrawn")
    assert names(small, hits)[0] == "cars.txt" and hits[0].lexical == 0 and hits[0].dense > hits[1].dense


def test_a_tie_goes_to_the_lower_row(small, embedder):
    # "replacement" is in pump.txt only, "about" in school.txt only: the dense side puts pump.txt first,
    # BM25 school.txt (the shorter chunk), so both score 1/61 + 1/62.
    hits = ask(small, embedder, "about replacement", k=2)
    assert sorted(names(small, hits)) == ["pump.txt", "school.txt"]
    assert hits[0].score == hits[1].score == pytest.approx(1 / 61 + 1 / 62)
    assert row(small, hits[0]) < row(small, hits[1])


@pytest.mark.parametrize("k", [0, 1, 3, 6, 50])
def test_k_is_respected(small, embedder, k):
    for mode in ("hybrid", "dense"):  # the dense side ranks every chunk, so these fill up to k
        hits = ask(small, embedder, "bread", k=k, mode=mode)
        assert len(hits) == min(k, len(small.chunks)) and [h.rank for h in hits] == list(range(len(hits)))
    assert len(ask(small, embedder, "bread", k=k, mode="lexical")) == min(k, 1)  # only one chunk holds the word


def test_deleted_rows_are_never_returned(tmp_path, small, embedder):
    folder = tmp_path / "articles"
    (folder / "pump.txt").unlink()
    _write(folder, {"bakery.txt": ARTICLES["bakery.txt"].replace("rye", "spelt")})
    report = build_index([folder], tmp_path / "index", embedder=embedder)
    assert report.removed == 2 and report.reused == 4  # incremental: the old rows stay on disk, marked deleted
    index = load_index(tmp_path / "index")
    for query in ("XK4471", "replacement pump catalogue code", "rye bread", "spelt bread"):
        for mode in ("hybrid", "dense", "lexical"):
            hits = ask(index, embedder, query, k=50, mode=mode)
            assert all(h.chunk in index.chunks for h in hits)
            assert not any("XK4471" in h.chunk.text or "rye" in h.chunk.text for h in hits)
            if mode != "lexical":
                assert len(hits) == len(index.chunks) == 5
    assert ask(index, embedder, "XK4471", mode="lexical") == [] and ask(index, embedder, "rye", mode="lexical") == []
    assert names(index, ask(index, embedder, "spelt"))[0] == "bakery.txt"


def fused(index: Index, query: str, vector: np.ndarray, k: int, s: RetrieveSettings) -> list[tuple[int, float]]:
    """The fusion rule written out: each side's ranks within depth, summed as reciprocal ranks."""
    depth = max(k, s.depth)
    sides = []
    if s.mode in ("hybrid", "dense"):
        sides.append((index.dense_search(vector, depth)[0], 1.0))
    if s.mode in ("hybrid", "lexical"):
        sides.append((index.lexical.search(query, depth)[0], s.lexical_weight))
    total: dict[int, float] = {}
    for rows, weight in sides:
        for rank, r in enumerate(rows.tolist()):
            total[r] = total.get(r, 0.0) + weight / (s.rrf_k + rank + 1)
    return sorted(total.items(), key=lambda item: (-item[1], item[0]))[:k]


@pytest.mark.parametrize(
    "settings",
    [RetrieveSettings(), RetrieveSettings(rrf_k=5, depth=8), RetrieveSettings(lexical_weight=0.5, depth=4),
     RetrieveSettings(mode="dense", rrf_k=10), RetrieveSettings(mode="lexical", depth=3)],
)
def test_settings_are_honoured_on_the_bundled_articles(hash_index, hash_embedder, settings):
    index = load_index(hash_index)
    for query in ("How many troops did North Korea send to Russia?", "sanctions Security Council", "Kim Jong Un"):
        vector = hash_embedder.encode([query])[0]
        hits = retrieve(index, query, vector, 6, settings)
        expected = fused(index, query, vector, 6, settings)
        assert [row(index, h) for h in hits] == [r for r, _ in expected]
        assert [h.score for h in hits] == pytest.approx([score for _, score in expected])
        bm25 = index.lexical.scores(query)
        bm25_found = index.lexical.search(query, max(6, settings.depth))[0] if settings.mode != "dense" else []
        for h in hits:  # every hit carries its cosine (computed if only BM25 found it), and its BM25 score if found
            assert h.dense == pytest.approx(float(index.vectors[[row(index, h)]][0] @ vector), abs=1e-5)
            assert h.lexical == (pytest.approx(float(bm25[row(index, h)])) if row(index, h) in bm25_found else 0.0)
    assert retrieve(index, "Kim", hash_embedder.encode(["Kim"])[0], 3) == retrieve(
        index, "Kim", hash_embedder.encode(["Kim"])[0], 3, RetrieveSettings()
    )  # no settings: the defaults
