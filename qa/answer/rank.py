"""Score candidate sentences for quoting: the learned ranker, or an explicit fallback.

Candidates are the sentences of the best chunks (``candidates``). Each gets a
row of ``FEATURES`` (``features``): how close its embedding is to the
question's, how much of the question's rare vocabulary it holds, where its
chunk ranked, what its neighbours hold, whether it has the kind of thing the
question asks for, and so on.

``Ranker`` is a LightGBM LambdaRank model trained by
``benchmarks/train_ranker.py`` on RealTime QA 2024-2026 (docs/ranker.md). Its
trees are stored as plain JSON in ``qa/models/ranker.json`` and evaluated here
with numpy, so answering needs no LightGBM. The file names the embedding
models it was trained and calibrated for; it is refused for any other.

``FallbackScorer`` is the hand-weighted score of earlier versions (cosine +
IDF coverage + chunk rank + type cue). It is the default: trained on 670 quiz
questions of 33 weeks, the ranker beats it on held-out news quiz weeks but
loses to it on the bundled chat questions (docs/ranker.md), so ``scorer_for``
returns the ranker only when asked (``learned=True``,
``AnswerSettings.learned_ranker``).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from qa.errors import QAError
from qa.index.lexical import tokenize
from qa.records import Article, Hit
from qa.text import collapse_whitespace, sentence_spans
from qa.settings import DEFAULT_MODEL

log = logging.getLogger(__name__)

#: The ranker shipped in the package.
DEFAULT_RANKER = Path(__file__).resolve().parent.parent / "models" / "ranker.json"
RANKER_FORMAT = "qa-ranker/1"
REBUILD_HINT = "rebuild it with: python benchmarks/train_ranker.py --data <RealTime QA 2024-2026 folder>"

FEATURES = (
    "dense",  # cosine of the sentence's embedding and the question's
    "dense_gap",  # dense minus the best dense among the candidates
    "dense_rank",  # rank of dense among the candidates (0 best)
    "coverage",  # IDF-weighted share of the question's terms in the sentence
    "coverage_gap",  # coverage minus the best coverage among the candidates
    "coverage_rank",
    "matched_idf",  # sum of the IDF of the question terms the sentence holds (unnormalised)
    "chunk_rank",  # rank of the sentence's best chunk in retrieval
    "chunk_dense",  # cosine of that chunk
    "chunk_lexical",  # its BM25 score over the best BM25 score of the hits
    "article_chunks",  # how many of the hits come from the sentence's article
    "title_coverage",  # coverage of the question's terms by the article's title
    "position",  # where the sentence starts in its article (0 start, 1 end)
    "chars",
    "prev_coverage",  # coverage of the sentence before it, and after it
    "next_coverage",
    "prev_dense",  # cosine of the neighbouring sentences (0 when they are no candidates)
    "next_dense",
    "typed",  # holds the kind of thing the question asks for (a date, a number, a new name, a quote)
    "qtype",  # kind of question: 0 other, 1 who, 2 when, 3 how many/much, 4 where, 5 what/which, 6 why/how
    "new_names",  # capitalised words the question lacks
    "numbers",  # number words and digits
    "quoted",  # holds a quotation
    "novelty",  # rare vocabulary beyond the question, squashed into [0, 1)
    "echo",  # adds no word to the question
    "question_terms",
    "window_coverage",  # coverage by the sentence and its two neighbours together (what a quote shows)
    "window_typed",  # typed, for the sentence and its two neighbours together
)


class RankerError(QAError):
    """The ranker file is missing, unreadable or made for another model; the message says what to do."""


@dataclass
class Candidate:
    """A sentence of a retrieved chunk that might be quoted, with what its features need."""

    article: Article
    start: int
    end: int
    hit: Hit
    prev: tuple[int, int] | None = None  # the sentence before it in the article, if any
    next: tuple[int, int] | None = None
    score: float = 0.0
    dense: float = 0.0
    echo: bool = False
    key: str = ""

    @property
    def text(self) -> str:
        return self.article.text[self.start : self.end]


def candidates(article_of, hits: list[Hit], passages: int, min_chars: int = 12) -> list[Candidate]:
    """The sentences of the best ``passages`` chunks, each once (from its best chunk), in hit order."""
    seen: set[tuple[str, int, int]] = set()
    out: list[Candidate] = []
    for hit in hits[:passages]:
        article = article_of(hit.chunk)
        lo, hi = max(0, hit.chunk.start - 400), min(len(article.text), hit.chunk.end + 400)
        spans = sentence_spans(article.text, lo, hi)
        for i, (s, e) in enumerate(spans):
            if s < hit.chunk.start or e > hit.chunk.end or e - s < min_chars or (article.id, s, e) in seen:
                continue
            seen.add((article.id, s, e))
            prev = spans[i - 1] if i > 0 else None
            nxt = spans[i + 1] if i + 1 < len(spans) else None
            out.append(Candidate(article, s, e, hit, prev, nxt))
    return out


# ------------------------------------------------------------------ features

_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozen|hundred|thousand|million|billion|"
    r"trillion|half|twice|once)\b",
    re.I,
)
_NUMERIC_Q = re.compile(
    r"\b(how (many|much|long|old|far|big|tall|often)|what (year|percentage|percent|number|date|age|time|day|month)|"
    r"when|which (year|day|month|date))\b",
    re.I,
)
_DATE_Q = re.compile(r"\b(when|(what|which|in what) (year|day|month|date))\b", re.I)
_DATE = re.compile(
    r"\b(1[5-9]\d\d|20\d\d|\d{1,2}(st|nd|rd|th)|january|february|march|april|may|june|july|august|september|october|"
    r"november|december|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec|monday|tuesday|wednesday|thursday|friday|"
    r"saturday|sunday|today|yesterday|tomorrow|ago|last (week|month|year)|next (week|month|year))\b",
    re.I,
)
_QUOTED_Q = re.compile(r"\b(call|called|calls|describe[sd]?|label(l?ed)?|say|said|says|nickname[sd]?|term(ed)?|dub(bed)?|word)\b", re.I)
_QUOTE_MARK = re.compile(r"[“\"][^”\"]{3,}[”\"]")
_WHO_Q = re.compile(r"\b(who|whom|whose|which (company|country|team|city|state|person|nation|group|party|firm))\b", re.I)
_WHERE_Q = re.compile(r"\bwhere\b", re.I)
_WHAT_Q = re.compile(r"\b(what|which)\b", re.I)
_WHY_Q = re.compile(r"\b(why|how)\b", re.I)
_NAME = re.compile(r"\b[A-Z][a-z]+")
#: A capitalised word not at the start of a sentence (a name, most often).
_INNER_NAME = re.compile(r"(?<=[^.!?\s\"“]\s)[A-Z][a-z]+")


def question_type(question: str) -> int:
    """0 other, 1 who, 2 when, 3 how many/much, 4 where, 5 what/which, 6 why/how."""
    for code, pattern in ((1, _WHO_Q), (2, _DATE_Q), (3, _NUMERIC_Q), (4, _WHERE_Q), (5, _WHAT_Q), (6, _WHY_Q)):
        if pattern.search(question):
            return code
    return 0


def type_match(question: str, sentence: str) -> float:
    """1 when the sentence holds the kind of thing the question asks for, else 0."""
    if _DATE_Q.search(question):
        return 1.0 if _DATE.search(sentence) else 0.0
    if _NUMERIC_Q.search(question):
        return 1.0 if _NUMBER.search(sentence) else 0.0
    if _QUOTED_Q.search(question) and _QUOTE_MARK.search(sentence):
        return 1.0
    if _WHO_Q.search(question):
        asked = {w.lower() for w in re.findall(r"\w+", question)}
        return 1.0 if any(
            m.group(0).lower() not in asked and (m.start() > 0 or tokenize(m.group(0)))
            for m in _NAME.finditer(sentence)
        ) else 0.0
    return 0.0


def term_weights(question: str, searched: str, idf, context_term_weight: float = 0.5) -> dict[str, float]:
    """IDF weight of each searched term; terms only the follow-up rewriting added count ``context_term_weight``."""
    own = set(tokenize(question))
    return {t: idf(t) * (1.0 if t in own or not own else context_term_weight) for t in tokenize(searched)}


def coverage(weights: dict[str, float], tokens: set[str]) -> float:
    """Weighted share of the question's terms found among ``tokens``."""
    total = sum(weights.values())
    return sum(w for t, w in weights.items() if t in tokens) / total if total else 0.0


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float32)
    ranks[order] = np.arange(len(values), dtype=np.float32)
    return ranks


def features(question: str, searched: str, cands: list[Candidate], dense: np.ndarray, idf,
             context_term_weight: float = 0.5) -> np.ndarray:
    """One row of ``FEATURES`` per candidate; ``dense`` holds each candidate's cosine with the question.

    Also sets each candidate's ``dense``, ``echo`` and ``key`` (used to pick and fold quotes).
    """
    n = len(cands)
    X = np.zeros((n, len(FEATURES)), dtype=np.float32)
    if n == 0:
        return X
    asked = question if question.strip() else searched
    weights = term_weights(question, searched, idf, context_term_weight)
    asked_words = {w.lower() for w in re.findall(r"\w+", asked)}
    qtype = question_type(asked)
    by_span = {(c.article.id, c.start, c.end): float(d) for c, d in zip(cands, dense)}
    best_lexical = max((c.hit.lexical for c in cands), default=0.0) or 1.0
    per_article: dict[str, int] = {}
    for hit_id in {(c.article.id, c.hit.rank) for c in cands}:
        per_article[hit_id[0]] = per_article.get(hit_id[0], 0) + 1
    token_cache: dict[tuple[str, int, int], set[str]] = {}

    def tokens_of(article: Article, span: tuple[int, int] | None) -> set[str]:
        if span is None:
            return set()
        key = (article.id, *span)
        if key not in token_cache:
            token_cache[key] = set(tokenize(article.text[span[0] : span[1]]))
        return token_cache[key]

    cols = {name: i for i, name in enumerate(FEATURES)}
    for row, (cand, d) in enumerate(zip(cands, dense)):
        text = cand.text
        tokens = tokens_of(cand.article, (cand.start, cand.end))
        cand.dense = float(d)
        cand.echo = tokens <= weights.keys()
        cand.key = collapse_whitespace(text).lower()
        extra = sum(idf(t) for t in tokens if t not in weights)
        prev_tokens, next_tokens = tokens_of(cand.article, cand.prev), tokens_of(cand.article, cand.next)
        window_start = cand.prev[0] if cand.prev else cand.start
        window = cand.article.text[window_start : cand.next[1] if cand.next else cand.end]
        values = {
            "dense": float(d),
            "coverage": coverage(weights, tokens),
            "matched_idf": sum(w for t, w in weights.items() if t in tokens),
            "chunk_rank": cand.hit.rank,
            "chunk_dense": cand.hit.dense,
            "chunk_lexical": cand.hit.lexical / best_lexical,
            "article_chunks": per_article.get(cand.article.id, 0),
            "title_coverage": coverage(weights, set(tokenize(cand.article.title))),
            "position": cand.start / max(1, len(cand.article.text)),
            "chars": len(text),
            "prev_coverage": coverage(weights, prev_tokens),
            "next_coverage": coverage(weights, next_tokens),
            "prev_dense": by_span.get((cand.article.id, *cand.prev), 0.0) if cand.prev else 0.0,
            "next_dense": by_span.get((cand.article.id, *cand.next), 0.0) if cand.next else 0.0,
            "typed": type_match(asked, text),
            "qtype": qtype,
            "new_names": sum(m.group(0).lower() not in asked_words for m in _INNER_NAME.finditer(text)),
            "numbers": len(_NUMBER.findall(text)),
            "quoted": 1.0 if _QUOTE_MARK.search(text) else 0.0,
            "novelty": extra / (extra + 20.0),
            "echo": 1.0 if cand.echo else 0.0,
            "question_terms": len(weights),
            "window_coverage": coverage(weights, tokens | prev_tokens | next_tokens),
            "window_typed": type_match(asked, window),
        }
        for name, value in values.items():
            X[row, cols[name]] = value
    for name in ("dense", "coverage"):
        col = X[:, cols[name]]
        X[:, cols[name + "_gap"]] = col - col.max()
        X[:, cols[name + "_rank"]] = _ranks(col)
    return X


# ------------------------------------------------------------------ scorers

@dataclass(frozen=True)
class Calibration:
    """Thresholds on a scorer's scale for one embedding model, chosen on training data (docs/ranker.md)."""

    #: Refuse when the best candidate scores below this.
    abstain_below: float
    #: Show a quote only if it scores at least the best score minus this (None: show up to k).
    show_within: float | None = None


class Scorer(Protocol):
    """Scores feature rows (higher is better) and knows its thresholds per embedding model."""

    name: str

    def score(self, X: np.ndarray) -> np.ndarray: ...

    def calibration(self, model: str) -> Calibration: ...


class FallbackScorer:
    """The hand-weighted score (the default): cosine + 0.75 coverage + 0.15/(1+rank) + 0.05 typed.

    For the bundled model it refuses below 0.67 (chosen on the bundled questions in earlier versions) and
    hides a quote scoring more than 0.2 below the best (chosen on RealTime QA 2024-2026 out-of-fold scores,
    docs/ranker.md); for any other model it refuses below 0.45 and shows up to k quotes.
    """

    name = "fallback"
    weights = {"dense": 1.0, "coverage": 0.75, "typed": 0.05}
    w_rank = 0.15
    abstain_below = 0.45
    calibrations = {
        DEFAULT_MODEL: Calibration(abstain_below=0.67, show_within=0.2),
        DEFAULT_MODEL + "@int8": Calibration(abstain_below=0.67, show_within=0.2),
    }

    def score(self, X: np.ndarray) -> np.ndarray:
        cols = {name: i for i, name in enumerate(FEATURES)}
        out = sum(w * X[:, cols[n]] for n, w in self.weights.items())
        return np.asarray(out + self.w_rank / (1.0 + X[:, cols["chunk_rank"]]), dtype=np.float32)

    def calibration(self, model: str) -> Calibration:
        return self.calibrations.get(model, Calibration(abstain_below=self.abstain_below))


class Ranker:
    """A tree ensemble (LightGBM's, flattened to arrays) over ``FEATURES``, for the embedding models it names."""

    name = "ranker"

    def __init__(self, meta: dict, nodes: dict[str, np.ndarray], roots: np.ndarray, leaves: np.ndarray,
                 calibrations: dict[str, Calibration], path: Path) -> None:
        self.meta = meta
        self.version = str(meta.get("version", ""))
        self._feature = nodes["feature"]
        self._threshold = nodes["threshold"]
        self._left = nodes["left"]
        self._right = nodes["right"]
        self._default_left = nodes["default_left"]
        self._missing = nodes["missing"]  # 0 none, 1 zero, 2 nan
        self._roots = roots
        self._leaves = leaves
        self.calibrations = calibrations
        self.path = path
        #: The trees learn a correction to ``base_weight`` times the fallback score (0: trees alone).
        self.base_weight = float(meta.get("base_weight", 0.0))

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.calibrations)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_RANKER, *, model: str | None = None) -> Ranker:
        """Read a ranker file; ``RankerError`` if it is missing, corrupt, or not made for ``model``."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RankerError(f"ranker file {path} is missing: {REBUILD_HINT}") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RankerError(f"ranker file {path} cannot be read ({type(exc).__name__}): {REBUILD_HINT}") from None
        try:
            ranker = cls._parse(raw, path)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RankerError(f"ranker file {path} is corrupt ({exc!s:.80}): {REBUILD_HINT}") from None
        if model is not None and model not in ranker.calibrations:
            raise RankerError(
                f"ranker file {path} was trained for {', '.join(ranker.models)}, not for {model!r}: "
                f"train one for it with benchmarks/train_ranker.py, or use the fallback scorer"
            )
        return ranker

    @classmethod
    def _parse(cls, raw: dict, path: Path) -> Ranker:
        if raw.get("format") != RANKER_FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {RANKER_FORMAT!r}")
        if list(raw["features"]) != list(FEATURES):
            raise ValueError("its feature list differs from this version's")
        feature, threshold, left, right, default_left, missing, roots, leaves = [], [], [], [], [], [], [], []
        for tree in raw["trees"]:
            base_node, base_leaf = len(feature), len(leaves)
            n_nodes = len(tree["feature"])
            for key in ("threshold", "left", "right", "default_left", "missing"):
                if len(tree[key]) != n_nodes:
                    raise ValueError(f"tree arrays of unequal length ({key})")
            n_leaves = len(tree["leaves"])

            def child(c: int) -> int:
                if c >= 0:
                    if c >= n_nodes:
                        raise ValueError("a child points past its tree")
                    return base_node + c
                if ~c >= n_leaves:
                    raise ValueError("a leaf index points past its tree")
                return ~(base_leaf + ~c)

            feature += [int(f) for f in tree["feature"]]
            threshold += [float(t) for t in tree["threshold"]]
            left += [child(int(c)) for c in tree["left"]]
            right += [child(int(c)) for c in tree["right"]]
            default_left += [bool(d) for d in tree["default_left"]]
            missing += [int(m) for m in tree["missing"]]
            roots.append(base_node if n_nodes else ~base_leaf)
            leaves += [float(v) for v in tree["leaves"]]
        if feature and (min(feature) < 0 or max(feature) >= len(FEATURES)):
            raise ValueError("a split names an unknown feature")
        if not all(math.isfinite(v) for v in leaves + threshold + [float(raw.get("base_weight", 0.0))]):
            raise ValueError("non-finite numbers")
        nodes = {
            "feature": np.array(feature, dtype=np.int64),
            "threshold": np.array(threshold, dtype=np.float64),
            "left": np.array(left, dtype=np.int64),
            "right": np.array(right, dtype=np.int64),
            "default_left": np.array(default_left, dtype=bool),
            "missing": np.array(missing, dtype=np.int64),
        }
        calibrations = {
            str(m): Calibration(abstain_below=float(c["abstain_below"]),
                                show_within=None if c.get("show_within") is None else float(c["show_within"]))
            for m, c in raw["calibration"].items()
        }
        if not calibrations:
            raise ValueError("it names no embedding model")
        meta = {k: v for k, v in raw.items() if k != "trees"}
        return cls(meta, nodes, np.array(roots, dtype=np.int64), np.array(leaves, dtype=np.float64), calibrations, path)

    def score(self, X: np.ndarray) -> np.ndarray:
        """``base_weight`` times the fallback score plus the trees' leaf values for each row of ``X``."""
        base = self.base_weight * FallbackScorer().score(X) if self.base_weight else 0.0
        return (base + self.trees(X)).astype(np.float32)

    def trees(self, X: np.ndarray) -> np.ndarray:
        """The sum of the trees' leaf values for each row of ``X`` (LightGBM's raw score)."""
        X = np.asarray(X, dtype=np.float64)
        n = X.shape[0]
        if n == 0 or not len(self._roots):
            return np.zeros(n, dtype=np.float32)
        cur = np.repeat(self._roots[:, None], n, axis=1)  # (trees, rows): node index, or ~leaf when done
        rows = np.broadcast_to(np.arange(n), cur.shape)
        active = cur >= 0
        while active.any():
            node = cur[active]
            x = X[rows[active], self._feature[node]]
            missing = self._missing[node]
            nan = np.isnan(x)
            x = np.where(nan & (missing != 2), 0.0, x)  # NaN is zero unless the split learned a NaN branch
            is_missing = ((missing == 2) & nan) | ((missing == 1) & (np.abs(x) <= 1e-35))
            go_left = np.where(is_missing, self._default_left[node], x <= self._threshold[node])
            cur[active] = np.where(go_left, self._left[node], self._right[node])
            active = cur >= 0
        return self._leaves[~cur].sum(axis=0).astype(np.float32)

    def calibration(self, model: str) -> Calibration:
        try:
            return self.calibrations[model]
        except KeyError:
            raise RankerError(f"ranker {self.path} was not calibrated for {model!r}") from None


@functools.lru_cache(maxsize=8)
def _shipped(path: str) -> Ranker:
    return Ranker.load(path)


def scorer_for(model: str, path: str | Path | None = None, *, learned: bool = False) -> Scorer:
    """The scorer for an embedding model: the hand-weighted ``FallbackScorer`` unless ``learned`` or ``path``.

    ``learned``: the shipped ranker, which must serve ``model``; ``path``: the ranker in that file, likewise.
    A missing, corrupt or foreign ranker is a ``RankerError`` then, never a silent fallback. The learned
    ranker is opt-in until it beats the hand-weighted score (docs/ranker.md has the figures).
    """
    if path is not None:
        return Ranker.load(path, model=model)
    if learned:
        ranker = _shipped(str(DEFAULT_RANKER))
        if model not in ranker.calibrations:
            raise RankerError(f"the shipped ranker serves {', '.join(ranker.models)}, not {model!r}: "
                              "train one with benchmarks/train_ranker.py, or leave the learned ranker off")
        return ranker
    return FallbackScorer()


def trees_from_lightgbm(dump: dict) -> list[dict]:
    """The trees of a LightGBM ``Booster.dump_model()`` in this module's flat JSON form (training side)."""
    missing_codes = {"None": 0, "Zero": 1, "NaN": 2}
    out = []
    for info in dump["tree_info"]:
        root = info["tree_structure"]
        nodes: dict[int, dict] = {}
        leaves: dict[int, float] = {}

        def ref(node: dict) -> int:
            if "split_index" in node:
                if node.get("decision_type", "<=") != "<=":
                    raise ValueError("categorical splits are not supported")
                nodes[node["split_index"]] = node
                ref(node["left_child"]), ref(node["right_child"])
                return int(node["split_index"])
            index = int(node.get("leaf_index", 0))
            leaves[index] = float(node["leaf_value"])
            return ~index

        ref(root)
        order = sorted(nodes)
        if order != list(range(len(order))) or sorted(leaves) != list(range(len(leaves))):
            raise ValueError("unexpected node numbering in the LightGBM dump")
        child = lambda node: int(node["split_index"]) if "split_index" in node else ~int(node.get("leaf_index", 0))
        out.append({
            "feature": [int(nodes[i]["split_feature"]) for i in order],
            "threshold": [float(nodes[i]["threshold"]) for i in order],
            "left": [child(nodes[i]["left_child"]) for i in order],
            "right": [child(nodes[i]["right_child"]) for i in order],
            "default_left": [bool(nodes[i]["default_left"]) for i in order],
            "missing": [missing_codes[nodes[i].get("missing_type", "None")] for i in order],
            "leaves": [leaves[i] for i in range(len(leaves))],
        })
    return out
