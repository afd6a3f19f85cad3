"""What describes a candidate sentence to a scorer: one row of ``FEATURES`` per candidate.

How close its embedding is to the question's, how much of the question's rare
vocabulary it holds, where its chunk ranked, what its neighbours hold, whether
it has the kind of thing the question asks for (the type cues below), and so
on. ``features`` only computes: the candidates it describes are left as they were.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from qa.answer.candidates import Candidate
from qa.index.lexical import tokenize
from qa.records import Article

#: The IDF of a (tokenized) term, e.g. ``Index.lexical.idf``.
IDF = Callable[[str], float]

#: The columns of a feature row, in order; a ranker file names them and is refused when they differ.
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
_QUOTED_Q = re.compile(
    r"\b(call|called|calls|describe[sd]?|label(l?ed)?|say|said|says|nickname[sd]?|term(ed)?|dub(bed)?|word)\b", re.I
)
_QUOTE_MARK = re.compile(r"[“\"][^”\"]{3,}[”\"]")
_WHO_Q = re.compile(
    r"\b(who|whom|whose|which (company|country|team|city|state|person|nation|group|party|firm))\b", re.I
)
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


def term_weights(question: str, searched: str, idf: IDF, context_term_weight: float = 0.5) -> dict[str, float]:
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


def features(question: str, searched: str, cands: Sequence[Candidate], dense: np.ndarray, idf: IDF,
             context_term_weight: float = 0.5) -> np.ndarray:
    """One row of ``FEATURES`` per candidate; ``dense`` holds each candidate's cosine with the question.

    ``question`` is what the user typed, ``searched`` its self-contained form. Whether a candidate only
    restates the question, which keeps it from being quoted, is its ``echo`` column (``echoes``).
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
        echo = tokens <= weights.keys()
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
            "echo": 1.0 if echo else 0.0,
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


def echoes(X: np.ndarray) -> np.ndarray:
    """Per row of ``features``: True where the candidate adds no word to the question."""
    return np.asarray(X[:, FEATURES.index("echo")] > 0.5, dtype=bool)
