"""BM25 over the chunks: per-segment postings, corpus-wide statistics; JSON and .npy (no pickle).

The same tokenizer (lower case, English stop words, Snowball stems when
PyStemmer is installed) serves the index, the queries and the sentence scorer.

A segment's ``Postings`` hold raw counts only: for each term the chunks
(local rows) that contain it and how often, plus each chunk's length, as a
term-major sparse matrix (CSR) in four .npy arrays and the terms in a JSON
list. Nothing in them depends on the rest of the corpus, so adding a segment
never rewrites another one. ``Lexical`` scores over any number of segments
with the statistics of the live chunks of all of them (N, each term's
document frequency, the average length), so every score equals that of one
index built over the same live chunks. The formula and parameters are
bm25s's defaults (the "lucene" variant, k1 = 1.5, b = 0.75), which this
project used before segments, so scores did not change: a test checks them
against bm25s.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from itertools import repeat
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"\w\w+|\d", re.UNICODE)


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    """bm25s's English stop words, read from its ``stopwords`` module alone.

    ``import bm25s.stopwords`` would run ``bm25s/__init__.py`` first, which
    imports scipy: 0.75 s of a cold process's first answer, for a tuple of words.
    """
    spec = importlib.util.find_spec("bm25s")
    locations = spec.submodule_search_locations if spec else None
    path = Path(locations[0]) / "stopwords.py" if locations else None
    if path is None or not path.is_file():  # pragma: no cover - bm25s is a dependency
        return frozenset()
    module_spec = importlib.util.spec_from_file_location("_qa_bm25s_stopwords", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return frozenset(module.STOPWORDS_EN)


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


#: BM25 parameters (bm25s's defaults, the Lucene variant).
K1 = 1.5
B = 0.75

_TERMS = "terms.json"
#: Each term's 64-bit key and id, sorted by key: looking a term up needs no dict of the vocabulary.
TERM_KEYS = "term_keys.npy"
_ARRAYS = ("term_ptr", "post_rows", "post_tfs", "lengths")


def term_key(token: str) -> int:
    """A term's 64-bit key in ``term_keys.npy`` (BLAKE2b of its UTF-8)."""
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")


def tokenizer_tag() -> str:
    """Names the tokenizer, so postings are only combined with those of the same one."""
    return "words+stopwords" + ("+snowball" if _stemmer() is not None else "")


class Postings:
    """One segment's BM25 counts: term-major CSR over its chunks (local rows), and chunk lengths.

    ``term_ptr[t]:term_ptr[t+1]`` slices ``post_rows`` (the rows holding term
    ``t``, ascending) and ``post_tfs`` (how often). ``lengths[row]`` is the
    chunk's token count, at least 1 (an empty chunk counted as one empty token,
    as bm25s did, so average lengths stay as they were).
    """

    def __init__(self, terms: list[str] | None, term_ptr, post_rows, post_tfs, lengths, *,
                 keys: np.ndarray | None = None, terms_path: Path | None = None) -> None:
        #: Where it was loaded from (its segment folder's name), for messages.
        self.source = ""
        self._terms = terms
        self._terms_path = terms_path  # read on first use when ``terms`` is None
        self._keys = keys
        self._ids: dict[str, int] | None = None
        self.term_ptr = term_ptr
        self.post_rows = post_rows
        self.post_tfs = post_tfs
        self.lengths = lengths

    @property
    def terms(self) -> list[str]:
        """The terms, by id (read from ``terms.json`` the first time when the segment was opened by its keys)."""
        if self._terms is None:
            self._terms = _read_terms(self._terms_path)
            if len(self._terms) != self.n_terms:
                raise ValueError("terms")
        return self._terms

    @property
    def n_terms(self) -> int:
        return len(self.term_ptr) - 1

    def term_id(self, token: str) -> int | None:
        """The id of ``token`` in these postings, None if no chunk holds it.

        Opened with keys, a binary search in the memory-mapped ``term_keys.npy``; else a dict of the terms.
        """
        if self._keys is not None:
            key = np.uint64(term_key(token))
            at = int(np.searchsorted(self._keys[:, 0], key))
            return int(self._keys[at, 1]) if at < len(self._keys) and self._keys[at, 0] == key else None
        if self._ids is None:
            self._ids = {t: i for i, t in enumerate(self.terms)}
        return self._ids.get(token)

    def key_table(self) -> np.ndarray | None:
        """``term_keys.npy``: each term's 64-bit key and id, sorted by key; None if two terms share a key."""
        keys = np.fromiter((term_key(t) for t in self.terms), dtype=np.uint64, count=len(self.terms))
        order = np.argsort(keys, kind="stable")
        table = np.stack([keys[order], order.astype(np.uint64)], axis=1)
        if len(keys) > 1 and bool((np.diff(table[:, 0]) == 0).any()):
            return None
        return table.reshape(-1, 2)

    @property
    def n_docs(self) -> int:
        return len(self.lengths)

    @staticmethod
    def build(texts: Iterable[str]) -> Postings:
        """Tokenize ``texts`` (one per chunk) and count, one chunk at a time."""
        return Postings.from_tokens(tokenize(t) for t in texts)

    @staticmethod
    def from_tokens(corpus: Iterable[Sequence[str]]) -> Postings:
        """Count chunks already tokenized with ``tokenize`` (one token list per chunk).

        Each chunk's tokens are counted and let go before the next is read: what
        stays is one (term, row, count) triple of 32-bit numbers per distinct
        term of a chunk, not every token string (100,000 chunks' token lists took
        about 700 MB).
        """
        vocab: dict[str, int] = {}
        terms, rows, tfs, lengths = array("i"), array("i"), array("i"), array("i")
        for row, doc in enumerate(corpus):
            lengths.append(len(doc))
            counts = Counter(doc)
            terms.extend(vocab.setdefault(t, len(vocab)) for t in counts)
            tfs.extend(counts.values())
            rows.extend(repeat(row, len(counts)))
        term_of = np.frombuffer(terms, dtype=np.int32)
        order = np.argsort(term_of, kind="stable")  # by term; rows stay ascending within each term
        term_ptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_of, minlength=len(vocab)), out=term_ptr[1:])
        return Postings(list(vocab), term_ptr, np.frombuffer(rows, dtype=np.int32)[order],
                        np.frombuffer(tfs, dtype=np.int32)[order],
                        np.maximum(np.frombuffer(lengths, dtype=np.int32), 1))

    @staticmethod
    def merge(parts: Sequence[tuple[Postings, np.ndarray]]) -> Postings:
        """One segment's postings from several: ``(postings, keep)`` keeps the local rows ``keep``, in that order.

        The members' lists are renumbered and sorted by term (32-bit arrays, one
        sort): no pair repeats, as every kept row is a new one.
        """
        terms: dict[str, int] = {}
        term_blocks, row_blocks, tf_blocks, length_blocks = [], [], [], []
        offset = 0
        ascending = True
        for postings, keep in parts:
            keep = np.asarray(keep, dtype=np.int64)
            ascending = ascending and bool((np.diff(keep) > 0).all())
            new_row = np.full(postings.n_docs, -1, dtype=np.int32)
            new_row[keep] = offset + np.arange(len(keep), dtype=np.int32)
            term_map = np.fromiter((terms.setdefault(t, len(terms)) for t in postings.terms), dtype=np.int32,
                                   count=len(postings.terms))
            rows = new_row[np.asarray(postings.post_rows)]
            live = rows >= 0
            term_blocks.append(np.repeat(term_map, np.diff(np.asarray(postings.term_ptr)))[live])
            row_blocks.append(rows[live])
            tf_blocks.append(np.asarray(postings.post_tfs, dtype=np.int32)[live])
            length_blocks.append(np.asarray(postings.lengths, dtype=np.int32)[keep])
            offset += len(keep)
        cat = lambda blocks: np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int32)  # noqa: E731
        term_of, rows, tfs = cat(term_blocks), cat(row_blocks), cat(tf_blocks)
        del term_blocks, row_blocks, tf_blocks
        # kept rows ascending: rows already ascend within each term, so a stable sort by term is enough
        order = np.argsort(term_of, kind="stable") if ascending else np.lexsort((rows, term_of))
        term_ptr = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_of, minlength=len(terms)), out=term_ptr[1:])
        return Postings(list(terms), term_ptr, rows[order], tfs[order], cat(length_blocks))

    @staticmethod
    def bulk_file_names() -> list[str]:
        """The files ``save`` writes that grow with the postings (not with the vocabulary or the chunks)."""
        return ["post_rows.npy", "post_tfs.npy"]

    @staticmethod
    def file_names() -> list[str]:
        """The files ``save`` writes, relative to its folder."""
        return [_TERMS, *(f"{name}.npy" for name in _ARRAYS)]

    def save(self, folder: Path) -> None:
        """Write the terms (JSON) and the arrays (.npy, allow_pickle=False) into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / _TERMS).write_text(json.dumps(self.terms, ensure_ascii=False), encoding="utf-8")
        for name in _ARRAYS:
            np.save(folder / f"{name}.npy", np.asarray(getattr(self, name)), allow_pickle=False)

    @staticmethod
    def load(folder: Path, mmap: bool = False, *, keys: bool = False) -> Postings:
        """Open what ``save`` wrote; with ``mmap`` the arrays stay on disk and are paged in on use.

        With ``keys`` (the segment holds ``term_keys.npy``), terms are looked up by
        key and ``terms.json`` is not read until something needs the terms themselves.
        """
        mode = "r" if mmap else None
        arrays = [np.load(folder / f"{name}.npy", mmap_mode=mode, allow_pickle=False) for name in _ARRAYS]
        if keys:
            table = np.load(folder / TERM_KEYS, mmap_mode=mode, allow_pickle=False)
            if table.dtype != np.uint64 or table.ndim != 2 or table.shape[1] != 2:
                raise ValueError("term keys")
            postings = Postings(None, *arrays, keys=table, terms_path=folder / _TERMS)
            n_terms = len(table)
        else:
            terms = _read_terms(folder / _TERMS)
            postings = Postings(terms, *arrays)
            n_terms = len(terms)
        postings.source = folder.name
        term_ptr, post_rows, post_tfs, lengths = arrays
        if (
            term_ptr.shape != (n_terms + 1,)
            or post_rows.shape != post_tfs.shape
            or (len(term_ptr) and (term_ptr[0] != 0 or term_ptr[-1] != len(post_rows)))
            or lengths.ndim != 1
            # mapped posting lists are not read whole here: each list's rows are checked when it is used
            or (not mmap and len(post_rows) and int(post_rows.max()) >= len(lengths))
        ):
            raise ValueError("postings arrays do not agree")
        return postings


def _read_terms(path: Path) -> list[str]:
    terms = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
        raise ValueError("terms")
    return terms


def consecutive_offset(rows: np.ndarray) -> int | None:
    """``rows[0]`` when ``rows`` is a run of consecutive global rows (a segment with nothing deleted), else None.

    ``Lexical`` then maps a segment's local row ``i`` to ``offset + i`` without a gather or a mask.
    """
    if not len(rows):
        return 0
    start = int(rows[0])
    return start if start >= 0 and bool((np.diff(rows) == 1).all()) else None


class Lexical:
    """BM25 over the live chunks of one or more segments, scored with corpus-wide statistics.

    ``parts`` pairs each segment's ``Postings`` with ``rows``: the global row
    of each local row, -1 for a deleted chunk. Global rows run 0..n_docs-1.
    ``damaged(detail)`` makes the error raised when a posting list points past
    its segment (memory-mapped lists are checked when used, not when opened).
    """

    def __init__(self, parts: Sequence[tuple[Postings, np.ndarray]],
                 damaged: Callable[[str], Exception] = ValueError) -> None:
        self._parts = [(p, np.asarray(rows, dtype=np.int64)) for p, rows in parts]
        self._damaged = damaged  # makes the error raised for a posting list that points past its segment
        self.n_docs = int(sum(int((rows >= 0).sum()) for _, rows in self._parts))
        total = sum(int(np.asarray(p.lengths, dtype=np.int64)[rows >= 0].sum()) for p, rows in self._parts)
        self.avg_length = total / self.n_docs if self.n_docs else 1.0
        # The length part of each chunk's BM25 denominator, fixed for this set of live chunks: computed once here.
        self._norms = [K1 * ((1 - B) + B * np.asarray(p.lengths, dtype=np.float64) / self.avg_length) for p, _ in self._parts]
        # A segment with no deleted chunk maps local row i to global row offset + i: no gather or mask needed.
        self._offsets = [consecutive_offset(rows) for _, rows in self._parts]
        self._df: dict[str, int] = {}

    def _spans(self, token: str):
        """Per segment holding ``token``: its postings, row map, length norms, row offset and posting range."""
        for (postings, rows), norms, offset in zip(self._parts, self._norms, self._offsets):
            tid = postings.term_id(token)
            if tid is not None:
                yield postings, rows, norms, offset, int(postings.term_ptr[tid]), int(postings.term_ptr[tid + 1])

    def _local_rows(self, postings: Postings, lo: int, hi: int) -> np.ndarray:
        """One posting list's local rows, checked to lie in its segment."""
        local = np.asarray(postings.post_rows[lo:hi], dtype=np.int64)
        if len(local) and (int(local.max()) >= postings.n_docs or int(local.min()) < 0):
            raise self._damaged(f"{postings.source}/post_rows.npy")
        return local

    def _postings(self, token: str):
        """(global rows, term counts, length norms) of the live chunks holding ``token``, per segment."""
        for postings, rows, norms, offset, lo, hi in self._spans(token):
            local = self._local_rows(postings, lo, hi)
            if offset is not None:
                yield local + offset, np.asarray(postings.post_tfs[lo:hi]), norms[local]
                continue
            found = rows[local]
            live = found >= 0
            yield found[live], np.asarray(postings.post_tfs[lo:hi])[live], norms[local[live]]

    def doc_freq(self, token: str) -> int:
        """Live chunks that hold ``token``, over all segments (counted from posting ranges, not gathered)."""
        df = self._df.get(token)
        if df is None:
            df = 0
            for postings, rows, _, offset, lo, hi in self._spans(token):
                if offset is not None:
                    df += hi - lo
                else:
                    df += int((rows[self._local_rows(postings, lo, hi)] >= 0).sum())
            self._df[token] = df
        return df

    def idf(self, token: str) -> float:
        """Inverse document frequency of a (tokenized) term; unknown terms count as rare."""
        df = self.doc_freq(token)
        return float(np.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5)))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every live chunk (by global row) for ``query``; zeros when no term is known.

        A term that occurs twice in the query counts twice, as in bm25s.
        """
        out = np.zeros(self.n_docs, dtype=np.float64)
        if self.n_docs == 0:
            return out.astype(np.float32)
        for token in tokenize(query):
            if not self.doc_freq(token):
                continue
            idf = self.idf(token)
            for found, tfs, norms in self._postings(token):
                tfs = tfs.astype(np.float64)
                out[found] += idf * tfs / (norms + tfs)
        return out.astype(np.float32)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and scores of the ``k`` best chunks, best first (ties: lower row); rows with score 0 are left out."""
        scores = self.scores(query)
        k = min(k, len(scores))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        keep = scores[top] > 0
        return top[keep].astype(np.int64), scores[top][keep]
