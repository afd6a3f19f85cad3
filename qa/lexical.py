"""BM25 over the chunks, with bm25s; saved as JSON and .npy arrays (no pickle).

The same tokenizer (lower case, English stop words, Snowball stems when
PyStemmer is installed) serves the index, the queries and the sentence scorer.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"\w\w+|\d", re.UNICODE)


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    try:
        from bm25s.stopwords import STOPWORDS_EN

        return frozenset(STOPWORDS_EN)
    except ImportError:  # pragma: no cover - bm25s is a dependency
        return frozenset()


@lru_cache(maxsize=1)
def _stemmer():
    try:
        import Stemmer

        return Stemmer.Stemmer("english")
    except ImportError:
        log.info("PyStemmer not installed: BM25 without stemming")
        return None


def tokenize(text: str) -> list[str]:
    """Lower-cased, stop-word-free, stemmed tokens of ``text``."""
    words = [w for w in _TOKEN.findall(text.lower()) if w not in _stopwords()]
    stemmer = _stemmer()
    return stemmer.stemWords(words) if stemmer is not None and words else words


class Lexical:
    """A BM25 index over chunk texts, rows in chunk order."""

    def __init__(self, retriever, n_docs: int) -> None:
        self._bm25 = retriever
        self.n_docs = n_docs
        indptr = np.asarray(retriever.scores["indptr"])
        self._df = np.diff(indptr)

    @staticmethod
    def build(texts: Sequence[str]) -> Lexical:
        """Index ``texts`` (one per chunk)."""
        import bm25s

        retriever = bm25s.BM25()
        corpus = [tokenize(t) or [""] for t in texts]
        if not corpus:
            corpus = [[""]]
        retriever.index(corpus, show_progress=False)
        return Lexical(retriever, len(texts))

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._bm25.save(str(folder), allow_pickle=False, show_progress=False)
        (folder / "qa.json").write_text(json.dumps({"n_docs": self.n_docs}))

    @staticmethod
    def load(folder: Path, mmap: bool = False) -> Lexical:
        import bm25s

        retriever = bm25s.BM25.load(str(folder), mmap=mmap, allow_pickle=False, load_corpus=False)
        n_docs = json.loads((folder / "qa.json").read_text())["n_docs"]
        return Lexical(retriever, n_docs)

    def idf(self, token: str) -> float:
        """Inverse document frequency of a (tokenized) term; unknown terms count as rare."""
        tid = self._bm25.vocab_dict.get(token)
        df = 0 if tid is None or tid >= len(self._df) else int(self._df[tid])
        return float(np.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5)))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for ``query`` (zeros when no term is known)."""
        tokens = [t for t in tokenize(query) if t in self._bm25.vocab_dict]
        if not tokens or self.n_docs == 0:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(tokens), dtype=np.float32)[: self.n_docs]

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and scores of the ``k`` best chunks, best first; rows with score 0 are left out."""
        scores = self.scores(query)
        k = min(k, len(scores))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        keep = scores[top] > 0
        return top[keep].astype(np.int64), scores[top][keep]
