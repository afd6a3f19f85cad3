"""BM25 over the chunks, with bm25s; saved as JSON and .npy arrays (no pickle).

The same tokenizer (lower case, English stop words, Snowball stems when
PyStemmer is installed) serves the index, the queries and the sentence scorer.

Each chunk's tokens are saved too (token ids in one flat int32 array plus
offsets), so a rebuild can hand the previous index to ``Lexical.build`` and
tokenize only the chunks whose text is new: BM25 statistics are recomputed
for the whole corpus (they change with every chunk added), the tokenizing,
which is most of the cost, is not.
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
    stop = _stopwords()
    words = [w for w in _TOKEN.findall(text.lower()) if w not in stop]
    stemmer = _stemmer()
    return stemmer.stemWords(words) if stemmer is not None and words else words


_TOKEN_IDS = "qa-token-ids.npy"
_TOKEN_OFFSETS = "qa-token-offsets.npy"


def _tokenizer_tag() -> str:
    """Names the tokenizer, so saved tokens are reused only by the same one."""
    return "words+stopwords" + ("+snowball" if _stemmer() is not None else "")


class Lexical:
    """A BM25 index over chunk texts, rows in chunk order."""

    def __init__(self, retriever, n_docs: int, token_ids=None, token_offsets=None, tokenizer: str = "") -> None:
        self._bm25 = retriever
        self.n_docs = n_docs
        indptr = np.asarray(retriever.scores["indptr"])
        self._df = np.diff(indptr)
        self._token_ids = token_ids
        self._token_offsets = token_offsets
        self._tokenizer = tokenizer

    @staticmethod
    def build(texts: Sequence[str], *, previous: Lexical | None = None, previous_texts: Sequence[str] = ()) -> Lexical:
        """Index ``texts`` (one per chunk); chunks whose text ``previous`` already holds keep their token ids.

        ``previous_texts`` are the previous index's chunk texts in its row
        order. Its vocabulary is kept (ids stay valid), new words are appended.
        """
        vocab: dict[str, int] = {"": 0}
        rows: dict[str, int] = {}
        ids = offsets = None
        if previous is not None and previous.can_reuse(previous_texts):
            vocab = dict(previous._bm25.vocab_dict)
            ids, offsets = np.asarray(previous._token_ids), np.asarray(previous._token_offsets)
            rows = {text: row for row, text in enumerate(previous_texts)}
        docs = []
        reused = 0
        for text in texts:
            row = rows.get(text)
            if row is not None:
                docs.append(ids[offsets[row] : offsets[row + 1]].tolist())
                reused += 1
            else:
                docs.append([vocab.setdefault(t, len(vocab)) for t in tokenize(text)])
        if reused:
            log.info("BM25: reused the tokens of %d of %d chunks", reused, len(docs))
        return Lexical._from_ids(docs, vocab)

    def can_reuse(self, texts: Sequence[str]) -> bool:
        """True if this index saved its tokens, with this tokenizer, for exactly ``len(texts)`` chunks."""
        return (
            self._token_ids is not None
            and self._tokenizer == _tokenizer_tag()
            and len(texts) == self.n_docs
            and len(self._token_offsets) == self.n_docs + 1
        )

    def tokens_by_text(self, texts: Sequence[str]) -> dict[str, list[str]]:
        """``text -> tokens`` for this index's chunks, given their texts in row order ({} if not saved or stale)."""
        if not self.can_reuse(texts):
            return {}
        vocab = {i: t for t, i in self._bm25.vocab_dict.items()}
        ids, offsets = np.asarray(self._token_ids), np.asarray(self._token_offsets)
        return {text: [vocab[i] for i in ids[offsets[r] : offsets[r + 1]].tolist()] for r, text in enumerate(texts)}

    @staticmethod
    def from_tokens(corpus: Sequence[Sequence[str]]) -> Lexical:
        """Index chunks already tokenized with ``tokenize`` (one token list per chunk)."""
        vocab: dict[str, int] = {"": 0}
        return Lexical._from_ids([[vocab.setdefault(t, len(vocab)) for t in doc] for doc in corpus], vocab)

    @staticmethod
    def _from_ids(ids: list[list[int]], vocab: dict[str, int]) -> Lexical:
        """Index token ids with our own vocabulary, so bm25s does not tokenize or re-map strings again.

        A chunk with no token gets the empty token (id 0), which matches no query.
        """
        import bm25s
        from bm25s.tokenization import Tokenized

        lengths = np.fromiter((len(doc) for doc in ids), dtype=np.int64, count=len(ids))
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter((i for doc in ids for i in doc), dtype=np.int32, count=int(offsets[-1]))
        retriever = bm25s.BM25()
        retriever.index(Tokenized(ids=[doc or [0] for doc in ids] or [[0]], vocab=vocab), show_progress=False)
        return Lexical(retriever, len(ids), flat, offsets, _tokenizer_tag())

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._bm25.save(str(folder), allow_pickle=False, show_progress=False)
        meta = {"n_docs": self.n_docs}
        if self._token_ids is not None:
            np.save(folder / _TOKEN_IDS, np.asarray(self._token_ids, dtype=np.int32), allow_pickle=False)
            np.save(folder / _TOKEN_OFFSETS, np.asarray(self._token_offsets, dtype=np.int64), allow_pickle=False)
            meta["tokenizer"] = self._tokenizer
        (folder / "qa.json").write_text(json.dumps(meta))

    @staticmethod
    def load(folder: Path, mmap: bool = False) -> Lexical:
        import bm25s

        retriever = bm25s.BM25.load(str(folder), mmap=mmap, allow_pickle=False, load_corpus=False)
        meta = json.loads((folder / "qa.json").read_text())
        ids = offsets = None
        if (folder / _TOKEN_IDS).is_file() and (folder / _TOKEN_OFFSETS).is_file():
            mode = "r" if mmap else None
            ids = np.load(folder / _TOKEN_IDS, mmap_mode=mode, allow_pickle=False)
            offsets = np.load(folder / _TOKEN_OFFSETS, mmap_mode=mode, allow_pickle=False)
        return Lexical(retriever, meta["n_docs"], ids, offsets, meta.get("tokenizer", ""))

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
