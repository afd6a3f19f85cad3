"""Turn retrieved chunks into an answer made of exact quotes, or an honest abstention.

Inside the best chunks every sentence is scored against the question: cosine
similarity of the sentence's own embedding, the share of the question's
(IDF-weighted) terms it contains, and the rank of its chunk. The best
sentences become quotes, adjacent strong sentences merge into one quote, and a
sentence that several articles carry verbatim is shown once with its other
sources. When even the best sentence scores below a calibrated threshold, the
bot says the articles do not answer the question.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import numpy as np

from .embed import Embedder
from .lexical import tokenize
from .records import Answer, Article, Hit, Quote
from .sentences import collapse_whitespace, sentence_spans
from .store import Index

log = logging.getLogger(__name__)

ABSTAIN_TEXT = "The articles don't say. Nothing in them answers this question closely enough to quote."


@dataclass(frozen=True)
class AnswerSettings:
    """Weights and limits of quote selection; ``abstain_below`` is calibrated in docs/evaluation.md."""

    passages: int = 8
    w_dense: float = 1.0
    w_lexical: float = 0.5
    w_rank: float = 0.15
    abstain_below: float = 0.45
    merge_ratio: float = 0.92
    max_quote_chars: int = 700
    min_sentence_chars: int = 12


@dataclass
class _Candidate:
    article: Article
    start: int
    end: int
    chunk_rank: int
    order: int  # position among this article's candidate sentences
    score: float = 0.0
    dense: float = 0.0
    coverage: float = 0.0
    key: str = field(default="")


_NUMBERISH = re.compile(r"\d")
_NUMERIC_Q = re.compile(r"^\s*(how (many|much|long|old|far|big|tall)|what (year|percentage|percent|number|date|age|time)|when)\b", re.I)


def _candidates(index: Index, hits: list[Hit], settings: AnswerSettings) -> list[_Candidate]:
    seen: set[tuple[str, int, int]] = set()
    out: list[_Candidate] = []
    for hit in hits[: settings.passages]:
        article = index.article_of(hit.chunk)
        for order, (s, e) in enumerate(sentence_spans(article.text, hit.chunk.start, hit.chunk.end)):
            if (article.id, s, e) in seen or e - s < settings.min_sentence_chars:
                continue
            seen.add((article.id, s, e))
            out.append(_Candidate(article, s, e, hit.rank, order))
    return out


def _coverage(question_tokens: list[str], sentence: str, index: Index) -> float:
    """IDF-weighted share of the question's distinct terms found in ``sentence``."""
    terms = set(question_tokens)
    if not terms:
        return 0.0
    present = terms & set(tokenize(sentence))
    weights = {t: index.lexical.idf(t) for t in terms}
    total = sum(weights.values())
    return sum(weights[t] for t in present) / total if total else 0.0


def score_sentences(
    question: str, query_vector: np.ndarray, index: Index, hits: list[Hit], embedder: Embedder, settings: AnswerSettings
) -> list[_Candidate]:
    """Candidate sentences from the best chunks, scored and sorted best first."""
    cands = _candidates(index, hits, settings)
    if not cands:
        return []
    texts = [c.article.text[c.start : c.end] for c in cands]
    vectors = embedder.encode(texts)
    cos = vectors @ np.asarray(query_vector, dtype=np.float32).ravel()
    q_tokens = tokenize(question)
    numeric = bool(_NUMERIC_Q.search(question))
    for cand, text, c in zip(cands, texts, cos.tolist()):
        cand.dense = c
        cand.coverage = _coverage(q_tokens, text, index)
        cand.key = collapse_whitespace(text).lower()
        cand.score = (
            settings.w_dense * c
            + settings.w_lexical * cand.coverage
            + settings.w_rank / (1 + cand.chunk_rank)
            + (0.05 if numeric and _NUMBERISH.search(text) else 0.0)
        )
    return sorted(cands, key=lambda c: -c.score)


def _context(article: Article, start: int, end: int) -> tuple[str, str]:
    spans = sentence_spans(article.text, max(0, start - 400), min(len(article.text), end + 400))
    before = [t for t in spans if t[1] <= start]
    after = [t for t in spans if t[0] >= end]
    b = article.text[before[-1][0] : before[-1][1]] if before else ""
    a = article.text[after[0][0] : after[0][1]] if after else ""
    return b, a


def select_quotes(ranked: list[_Candidate], k: int, settings: AnswerSettings) -> list[Quote]:
    """Up to ``k`` quotes: best sentences first, adjacent strong ones merged, duplicates folded."""
    if not ranked or k <= 0:
        return []
    top = ranked[0].score
    groups: list[dict] = []  # each: article, start, end, score, keys, also_in
    for cand in ranked[: max(20, 6 * k)]:
        dup = next((g for g in groups if cand.key in g["keys"] and g["article"].id != cand.article.id), None)
        if dup is not None:
            if cand.article.source not in dup["also_in"] and cand.article.source != dup["article"].source:
                dup["also_in"].append(cand.article.source)
            continue
        near = next(
            (
                g
                for g in groups
                if g["article"].id == cand.article.id
                and (cand.end <= g["start"] and _adjacent(cand.article.text, cand.end, g["start"])
                     or cand.start >= g["end"] and _adjacent(cand.article.text, g["end"], cand.start))
            ),
            None,
        )
        if near is not None:
            merged_len = max(near["end"], cand.end) - min(near["start"], cand.start)
            if cand.score >= settings.merge_ratio * top and merged_len <= settings.max_quote_chars:
                near["start"], near["end"] = min(near["start"], cand.start), max(near["end"], cand.end)
                near["keys"].add(cand.key)
            continue
        if len(groups) < k:
            groups.append(
                {"article": cand.article, "start": cand.start, "end": cand.end, "score": cand.score, "keys": {cand.key}, "also_in": []}
            )
    quotes = []
    for g in groups:
        article: Article = g["article"]
        before, after = _context(article, g["start"], g["end"])
        quotes.append(
            Quote(
                text=article.text[g["start"] : g["end"]],
                article_id=article.id,
                title=article.title,
                source=article.source,
                start=g["start"],
                end=g["end"],
                score=round(float(g["score"]), 4),
                published=article.published,
                author=article.author,
                context_before=before,
                context_after=after,
                also_in=tuple(g["also_in"]),
            )
        )
    return quotes


def _adjacent(text: str, left_end: int, right_start: int) -> bool:
    """Two spans touch when only whitespace (no paragraph break) lies between them."""
    gap = text[left_end:right_start]
    return not gap.strip() and "\n\n" not in gap


def format_answer(quotes: list[Quote]) -> str:
    """The answer as plain text: each quote in quotation marks with its citation number."""
    return "\n\n".join(f"“{collapse_whitespace(q.text)}” [{i}]" for i, q in enumerate(quotes, 1))


def compose(
    question: str,
    searched: str,
    query_vector: np.ndarray,
    index: Index,
    hits: list[Hit],
    embedder: Embedder,
    k: int,
    settings: AnswerSettings,
) -> tuple[list[Quote], bool]:
    """The quotes that answer ``searched`` and whether the bot abstains."""
    ranked = score_sentences(searched, query_vector, index, hits, embedder, settings)
    if not ranked or ranked[0].score < settings.abstain_below:
        best = ranked[0].score if ranked else float("nan")
        log.info("abstaining on %r: best sentence score %.3f < %.3f", question[:80], best, settings.abstain_below)
        return [], True
    return select_quotes(ranked, k, settings), False


def make_answer(question: str, searched: str, quotes: list[Quote], abstained: bool, notice: str, seconds: float) -> Answer:
    return Answer(
        question=question,
        text=ABSTAIN_TEXT if abstained else format_answer(quotes),
        quotes=tuple(quotes),
        abstained=abstained,
        searched=searched,
        notice=notice,
        seconds=seconds,
    )
