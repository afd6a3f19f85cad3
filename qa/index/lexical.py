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

``Lexical.search`` finds the top k without scoring every chunk that holds a
query word (MaxScore): each occurrence of a term adds less than its IDF to a
chunk's score (``tf / (norm + tf) < 1``), so once k chunks are known to score
at least ``theta``, a chunk holding none of the terms still to be read cannot
reach ``theta`` when those terms' IDFs sum to less. The rarest terms' postings
are read whole; the common terms are looked up (a binary search in their
sorted posting lists) only for the chunks that can still make the top k. The
result is exactly ``search_exhaustive``'s, scores to the last bit: every
returned score is summed in the same order as ``scores`` sums it.

A large index's background check also finds, per segment and term, the largest
``tf / (norm + tf)`` over the term's postings (``prepare_bounds``): bounding a
term by that share of its IDF instead of all of it lets a search read about
30% fewer postings (warm BM25 at 10M chunks: 107 against 142 ms a question).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
import threading
from array import array
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from itertools import repeat
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from qa.index import npy

log = logging.getLogger(__name__)
T = TypeVar("T")

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
        order = np.argsort(keys)  # no stable sort needed: a table whose keys repeat is not used (None below)
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
        arrays = [npy.load(folder / f"{name}.npy", mmap_mode=mode) for name in _ARRAYS]
        if keys:
            table = npy.load(folder / TERM_KEYS, mmap_mode=mode)
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


def _impact(idf: float, tfs: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """One occurrence of a query term's BM25 contribution to chunks holding it ``tfs`` times (float64).

    ``scores`` and ``search`` both call it, so a chunk's score is the same bits whichever computes it.
    """
    tfs = np.asarray(tfs).astype(np.float64)
    return idf * tfs / (norms + tfs)


def _impact_into(idf: float, tfs: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """``_impact`` with fewer temporaries, bit for bit the same (the same operations in the same order);
    ``norms`` is a fresh array (a gather), overwritten."""
    out = np.asarray(tfs).astype(np.float64)
    norms += out
    out *= idf
    out /= norms
    return out


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by sorting (numpy's hashing ``unique`` took most of a pruned search's time on int64 keys)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Where the ``k`` largest of ``values`` are (of equal ones, the first), in no particular order."""
    if len(values) <= k:
        return np.arange(len(values))
    kth = np.partition(values, len(values) - k)[len(values) - k]
    above = np.flatnonzero(values > kth)
    return np.concatenate([above, np.flatnonzero(values == kth)[: k - len(above)]])


def _runs(ascending: np.ndarray) -> tuple[list[int], list[int], list[int]]:
    """The distinct values of an ascending array and where each one's run starts and ends."""
    if not len(ascending):
        return [], [], []
    starts = np.flatnonzero(np.r_[True, ascending[1:] != ascending[:-1]])
    return ascending[starts].tolist(), starts.tolist(), [*starts[1:].tolist(), len(ascending)]


#: ``Lexical.search`` prunes when the query's terms hold this many postings or more. Below it, scoring every
#: chunk is as fast or faster: the same on the 1M-chunk archive (about 700,000 postings a question), 10x faster
#: at 10k chunks (0.8 against 9 ms); at 10M (about 6 million) pruning takes 1.3-1.5x less CPU.
PRUNE_MIN_POSTINGS = 1_000_000

#: How many words' posting ranges and document frequencies a ``Lexical`` keeps (the least recently used are
#: forgotten): a word's ranges take about 200 bytes a segment holding it, so at most about 50 MB at 61 segments,
#: where a forgotten word costs one key search a segment again (under a millisecond).
WORDS_KEPT = 4096


class _Recent(Generic[T]):
    """At most ``size`` entries by key, the least recently used forgotten first; safe to share between threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> T | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: T) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


#: A pruning bound is trusted only with this relative margin: a float64 sum, then its float32, may round up.
_MARGIN = 1e-6


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
        # A search's candidate key for local row i of segment s: bases[s] + i (ascending by segment, then row).
        self._bases = np.cumsum([0, *(len(rows) for _, rows in self._parts)]).astype(np.int64)
        # A pruned search's partial scores by key, all zeros between searches: kept, as allocating and zeroing
        # n_docs floats per question is what scoring every chunk costs (another thread's search allocates its own).
        # With it, the look-ups' candidate positions by key, all zeros between them too (``_new_scratch``).
        self._scratch: tuple[np.ndarray, np.ndarray] | None = None
        self._acc_lock = threading.Lock()
        self._df: _Recent[int] = _Recent(WORDS_KEPT)
        # Per token, (part number, lo, hi, term id) of each segment holding it: one key search per segment, again
        # only when the token has left the WORDS_KEPT most recently asked.
        self._span_cache: _Recent[list[tuple[int, int, int, int]]] = _Recent(WORDS_KEPT)
        # Per segment, each term's largest tf / (norm + tf) over its postings (``prepare_bounds``), or None.
        self._fractions: list[np.ndarray] | None = None

    def _token_spans(self, token: str) -> list[tuple[int, int, int, int]]:
        """Per segment holding ``token``: (part number, lo, hi, term id)."""
        spans = self._span_cache.get(token)
        if spans is None:
            spans = []
            for number, (postings, _) in enumerate(self._parts):
                tid = postings.term_id(token)
                if tid is not None:
                    spans.append((number, int(postings.term_ptr[tid]), int(postings.term_ptr[tid + 1]), tid))
            self._span_cache.put(token, spans)
        return spans

    @property
    def bounds_prepared(self) -> bool:
        """Whether ``prepare_bounds`` ran: pruned searches bound terms by each segment's largest share of the IDF."""
        return self._fractions is not None

    def prepare_bounds(self) -> None:
        """Find, per segment and term, the most one occurrence of the term adds to a chunk, as a share of its IDF:
        the largest ``tf / (norm + tf)`` over its posting list (0.4-0.85 on news, against the 1 the IDF bound
        assumes). Pruned searches then bound what a term not yet read can add by it, and read fewer lists.

        Reads every posting list once: a large index's background check calls it once the lists are hashed.
        Results do not change, only how much a search reads.
        """
        fractions = []
        for number, (postings, _) in enumerate(self._parts):
            ptr = np.asarray(postings.term_ptr, dtype=np.int64)
            out = np.zeros(len(ptr) - 1, dtype=np.float64)
            held = ptr[:-1] < ptr[1:]  # terms with postings; an empty term's bound stays 0
            if held.any():
                local = self._local_rows(postings, 0, int(ptr[-1]))
                tfs = np.asarray(postings.post_tfs[: ptr[-1]]).astype(np.float64)
                share = tfs / (self._norms[number][local] + tfs)
                out[held] = np.maximum.reduceat(share, ptr[:-1][held])
            fractions.append(out)
        self._fractions = fractions

    def _spans(self, token: str):
        """Per segment holding ``token``: its postings, row map, length norms, row offset and posting range."""
        for number, lo, hi, _ in self._token_spans(token):
            (postings, rows), norms, offset = self._parts[number], self._norms[number], self._offsets[number]
            yield postings, rows, norms, offset, lo, hi

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
            self._df.put(token, df)
        return df

    def idf(self, token: str) -> float:
        """Inverse document frequency of a (tokenized) term; unknown terms count as rare."""
        df = self.doc_freq(token)
        return float(np.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5)))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every live chunk (by global row) for ``query``; zeros when no term is known.

        A term that occurs twice in the query counts twice, as in bm25s. This is
        the reference that ``search`` equals: every chunk holding a query term is scored.
        """
        out = np.zeros(self.n_docs, dtype=np.float64)
        if self.n_docs == 0:
            return out.astype(np.float32)
        for token in tokenize(query):
            if not self.doc_freq(token):
                continue
            idf = self.idf(token)
            for found, tfs, norms in self._postings(token):
                out[found] += _impact(idf, tfs, norms)
        return out.astype(np.float32)

    def search_exhaustive(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``search`` by scoring every live chunk (``scores``): the reference the pruned ``search`` is tested against."""
        scores = self.scores(query)
        k = min(k, len(scores))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        # every row scoring at least the k-th score, ties included, so the lower rows win the last places
        top = np.flatnonzero((scores >= kth) & (scores > 0))
        top = top[np.lexsort((top, -scores[top]))][:k]
        return top.astype(np.int64), scores[top]

    def search(self, query: str, k: int, *, prune: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows and scores of the ``k`` best chunks, best first (ties: lower row); rows with score 0 are left out.

        Exactly ``search_exhaustive``'s result. When the query's terms hold
        ``PRUNE_MIN_POSTINGS`` postings or more (``prune=None``), without scoring
        every chunk that holds a common query word (MaxScore; the module's
        docstring says how); below that, scoring them all is faster.
        """
        empty = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if k <= 0 or self.n_docs == 0:
            return empty
        tokens = [t for t in tokenize(query) if self.doc_freq(t)]
        if not tokens:
            return empty
        if prune is None:
            prune = sum(self.doc_freq(t) for t in set(tokens)) >= PRUNE_MIN_POSTINGS
        if not prune:
            return self.search_exhaustive(query, k)
        if self._acc_lock.acquire(blocking=False):  # one search at a time uses the kept accumulator
            try:
                if self._scratch is None:
                    self._scratch = self._new_scratch()
                return _PrunedSearch(self, tokens, k, *self._scratch).run()
            finally:
                self._acc_lock.release()
        return _PrunedSearch(self, tokens, k, *self._new_scratch()).run()

    def _new_scratch(self) -> tuple[np.ndarray, np.ndarray]:
        """A pruned search's all-zeros accumulator (partial scores) and look-up positions, one slot per key."""
        size = int(self._bases[-1])
        return np.zeros(size, dtype=np.float64), np.zeros(size, dtype=np.int32)

    def _read_list(self, number: int, lo: int, hi: int, idf: float) -> tuple[np.ndarray, np.ndarray]:
        """A posting list read whole: its live chunks' keys (see ``_bases``) and one occurrence's impact on each."""
        (postings, rows), norms = self._parts[number], self._norms[number]
        local = self._local_rows(postings, lo, hi)
        tfs = np.asarray(postings.post_tfs[lo:hi])
        if self._offsets[number] is None:
            live = rows[local] >= 0
            local, tfs = local[live], tfs[live]
        return local + self._bases[number], _impact_into(idf, tfs, norms[local])

    def _lookup(self, number: int, lo: int, hi: int, idf: float, local: np.ndarray, marks: np.ndarray) -> np.ndarray:
        """One occurrence's impact of the term of posting range ``lo:hi`` on the chunks ``local`` (ascending, live),
        0 for those that do not hold it.

        A binary search per chunk in the sorted posting list, or, when the chunks
        outnumber a tenth of the list, the list read whole and each posting's
        chunk found in ``marks`` (the segment's part of an all-zeros array, handed
        back all zeros): only what is needed is read from a memory-mapped list.
        """
        postings, norms = self._parts[number][0], self._norms[number]
        out = np.zeros(len(local), dtype=np.float64)
        if not len(local):
            return out
        plist = postings.post_rows[lo:hi]
        if len(local) * 10 > hi - lo:
            posting_rows = self._local_rows(postings, lo, hi)
            marks[local] = np.arange(1, len(local) + 1, dtype=np.int32)  # candidate position + 1
            try:
                found = marks[posting_rows]
            finally:
                marks[local] = 0
            positions = np.flatnonzero(found)
            where = found[positions] - 1
        else:
            at = np.searchsorted(plist, local.astype(plist.dtype))
            inside = at < len(plist)
            hit = np.zeros(len(local), dtype=bool)
            hit[inside] = np.asarray(plist[at[inside]]) == local[inside]
            where, positions = np.flatnonzero(hit), at[hit]
        if len(where):
            out[where] = _impact(idf, np.asarray(postings.post_tfs[lo:hi][positions]), norms[local[where]])
        return out


class _PrunedSearch:
    """One MaxScore search over a ``Lexical``: candidates, their partial scores, the threshold, the look-ups.

    A chunk is named by a key, ``bases[segment] + local row``. ``read[s]``
    holds the terms whose postings were read whole in segment ``s``: every
    chunk of ``s`` that holds one of them is a candidate, and ``acc[key]`` sums
    what those terms add to it. A chunk of ``s`` that is not a candidate cannot
    score more than ``rest(s)``, the bounds of the terms ``s`` holds and has not
    read, so ``s`` is closed once that is below ``theta``, a score that k chunks
    scored in full reach.
    """

    def __init__(self, lexical: Lexical, tokens: list[str], k: int, acc: np.ndarray, marks: np.ndarray) -> None:
        self.lx, self.tokens, self.k, self.acc, self.marks = lexical, tokens, k, acc, marks
        self.counts = Counter(tokens)
        self.idf = {t: lexical.idf(t) for t in self.counts}
        # What the term can add to one chunk of a segment: each occurrence adds idf * tf / (norm + tf), less than
        # idf, and at most idf times the segment's largest tf / (norm + tf) for it when the index prepared those.
        spans = {t: [span for span in lexical._token_spans(t) if span[2] > span[1]] for t in self.counts}
        fractions = lexical._fractions
        self.bounds = {t: {n: self.counts[t] * self.idf[t] * (1.0 if fractions is None else float(fractions[n][tid]))
                           for n, _, _, tid in spans[t]} for t in self.counts}
        self.bound = {t: max(self.bounds[t].values(), default=0.0) for t in self.counts}
        self.terms = sorted(self.counts, key=lambda t: (-self.bound[t], t))  # largest bound (rarest) first
        self.spans = {t: [(n, lo, hi) for n, lo, hi, _ in spans[t]] for t in self.terms}
        self.span_of = {t: {n: (lo, hi) for n, lo, hi in spans} for t, spans in self.spans.items()}
        self.held: dict[int, set[str]] = {}
        for term, spans in self.spans.items():
            for number, _, _ in spans:
                self.held.setdefault(number, set()).add(term)
        self.read: dict[int, set[str]] = {n: set() for n in self.held}
        self.rests: dict[int, float] = {}  # rest(s), dropped when s reads a term
        self.closed: set[int] = set()
        self.read_lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # term -> (keys ascending, impacts)
        self.top_keys = np.zeros(0, dtype=np.int64)  # the k candidates with the largest partial scores
        self.scored: dict[int, float] = {}  # key -> its full score (float32), for the chunks scored in full
        self.theta = 0.0

    def rest(self, number: int) -> float:
        """The most the terms segment ``number`` holds and has not read can add to one of its chunks."""
        rest = self.rests.get(number)
        if rest is None:
            rest = self.rests[number] = sum(sorted(self.bounds[t][number] for t in self.held[number] - self.read[number]))
        return rest

    def closes(self, number: int) -> bool:
        """Whether no chunk of segment ``number`` outside the candidates can reach theta."""
        return self.theta > 0 and self.rest(number) * (1 + _MARGIN) < self.theta

    def below(self, bound):
        """Whether ``bound`` (a number or an array) is surely below theta, with a margin for the rounding of float64
        sums and of float32."""
        return np.asarray(bound) * (1 + _MARGIN) < self.theta if self.theta > 0 else np.zeros(np.shape(bound), bool)

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        try:
            return self._run()
        finally:  # the accumulator is handed back all zeros
            for keys, _ in self.read_lists.values():
                self.acc[keys] = 0.0

    def _run(self) -> tuple[np.ndarray, np.ndarray]:
        # Read the terms' postings whole, rarest first, until no chunk outside the candidates can reach theta.
        for term in self.terms:
            new_keys, new_impacts = [], []
            for number, lo, hi in self.spans[term]:
                if number in self.closed:
                    continue
                if self.closes(number):
                    self.closed.add(number)
                    continue
                keys, impacts = self.lx._read_list(number, lo, hi, self.idf[term])
                self.read[number].add(term)
                self.rests.pop(number, None)
                new_keys.append(keys)
                new_impacts.append(impacts)
            if not new_keys:
                continue
            keys, impacts = np.concatenate(new_keys), np.concatenate(new_impacts)  # ascending: segments in order
            self.read_lists[term] = (keys, impacts)
            np.add.at(self.acc, keys, self.counts[term] * impacts)  # 3x faster than acc[keys] += here
            self._raise_theta(keys)
            if all(n in self.closed or self.closes(n) for n in self.held):
                break
        return self._finish()

    def _raise_theta(self, keys: np.ndarray) -> None:
        """The k candidates with the largest partial scores (the last ones, or chunks this term was just added to),
        scored in full: theta is the k-th best full score known (0 while fewer than k are known)."""
        k = self.k
        keys = keys[_top(self.acc[keys], k)]
        pool = _sorted_unique(np.concatenate([self.top_keys, keys]))
        self.top_keys = pool = pool[np.sort(_top(self.acc[pool], k))]
        new = np.array([key for key in pool.tolist() if key not in self.scored], dtype=np.int64)
        if len(new):
            self.scored.update(zip(new.tolist(), self._exact(new).tolist()))
        if len(self.scored) >= k:
            best = np.fromiter(self.scored.values(), dtype=np.float64, count=len(self.scored))
            self.theta = max(self.theta, float(np.partition(best, len(best) - k)[len(best) - k]))

    def _segments_of(self, keys: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.lx._bases, keys, side="right") - 1

    def _impacts(self, term: str, keys: np.ndarray, segments: np.ndarray) -> np.ndarray:
        """One occurrence's impact of ``term`` on the chunks ``keys`` (ascending): from its postings read whole
        where it was, looked up in the posting lists elsewhere."""
        out = np.zeros(len(keys), dtype=np.float64)
        read = self.read_lists.get(term)
        if read is not None and len(read[0]):
            at = np.minimum(np.searchsorted(read[0], keys), len(read[0]) - 1)
            hit = read[0][at] == keys
            out[hit] = read[1][at[hit]]
        spans = self.span_of[term]
        for number, lo_i, hi_i in zip(*_runs(segments)):
            span = spans.get(number)
            if span is None or term in self.read[number]:
                continue
            local = keys[lo_i:hi_i] - self.lx._bases[number]
            marks = self.marks[self.lx._bases[number]:self.lx._bases[number + 1]]
            out[lo_i:hi_i] = self.lx._lookup(number, *span, self.idf[term], local, marks)
        return out

    def _exact(self, keys: np.ndarray, known: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The chunks' scores (float32), every term's impact summed in query order as ``Lexical.scores`` sums them."""
        segments = self._segments_of(keys)
        impacts = dict(known or {})
        for term in self.terms:
            if term not in impacts:
                impacts[term] = self._impacts(term, keys, segments)
        out = np.zeros(len(keys), dtype=np.float64)
        for token in self.tokens:
            out += impacts[token]
        return out.astype(np.float32)

    def _finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Look the terms not read up for the candidates that can still reach theta, dropping those that fall
        short after each; score the rest in full; the top k."""
        numbers = sorted(self.held)
        rest = np.zeros(len(self.lx._bases), dtype=np.float64)
        for number in numbers:
            rest[number] = self.rest(number)
        # The candidates that can reach theta, segment by segment from the accumulator: no sort of the postings read.
        found, found_in = [], []
        bases = self.lx._bases
        for number in numbers:
            if not self.read[number]:
                continue
            floor = self.theta / (1 + 2 * _MARGIN) - rest[number] if self.theta > 0 else 0.0
            floor = max(floor, np.finfo(np.float64).smallest_subnormal)  # and a candidate: more than 0
            found.append(np.flatnonzero(self.acc[bases[number]:bases[number + 1]] >= floor) + bases[number])
            found_in.append(np.full(len(found[-1]), number, dtype=np.int64))
        keys = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
        segments = np.concatenate(found_in) if found else np.zeros(0, dtype=np.int64)
        partial = self.acc[keys]
        known: dict[str, np.ndarray] = {}
        for term in self.terms:
            if all(term in self.read[n] for n in numbers if term in self.held[n]):
                continue
            reach = ~self.below(partial + rest[segments])
            if not reach.all():
                keys, partial, segments = keys[reach], partial[reach], segments[reach]
                known = {t: v[reach] for t, v in known.items()}
            impacts = self._impacts(term, keys, segments)
            known[term] = impacts
            unread = np.zeros(len(rest), dtype=bool)
            for number in numbers:
                if term in self.held[number] and term not in self.read[number]:
                    rest[number] -= self.bounds[term][number]
                    unread[number] = True
            partial = partial + np.where(unread[segments], self.counts[term] * impacts, 0.0)
        scores = self._exact(keys, known)
        positive = scores > 0
        keys, scores, segments = keys[positive], scores[positive], segments[positive]
        rows = np.empty(len(keys), dtype=np.int64)
        for number, lo_i, hi_i in zip(*_runs(segments)):
            local = keys[lo_i:hi_i] - self.lx._bases[number]
            offset = self.lx._offsets[number]
            rows[lo_i:hi_i] = local + offset if offset is not None else self.lx._parts[number][1][local]
        top = np.lexsort((rows, -scores))[: self.k]
        return rows[top], scores[top]
