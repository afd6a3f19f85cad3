"""Turn retrieved chunks into an answer made of exact quotes, or an honest abstention.

Inside the best chunks every sentence is scored against the question: cosine
similarity of the sentence's own embedding, the share of the question's
(IDF-weighted) terms it contains, and the rank of its chunk. The best
sentences become quotes, adjacent strong sentences merge into one quote, and a
sentence that several articles carry verbatim is shown once with its other
sources. Each quote then grows by whole neighbouring sentences (across paragraph
breaks) up to ``fill_to`` characters; a sentence that only restates the
question is never quoted. When even the best sentence scores below a calibrated
threshold, the bot says the articles do not answer the question.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
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
    """Weights and limits of quote selection, chosen on the RealTime QA tune part (docs/evaluation.md)."""

    passages: int = 8
    w_dense: float = 1.0
    w_lexical: float = 0.75
    w_rank: float = 0.15
    #: Bonus when the sentence holds what the question asks for (a number, a quoted phrase, a new name).
    w_type: float = 0.05
    #: Weight of the IDF-weighted terms the sentence adds beyond the question (penalises restating it).
    w_novel: float = 0.0
    #: Weight of the question terms found in the neighbouring sentences (context the sentence leans on).
    w_context: float = 0.0
    #: Weight of a term that only the follow-up rewriting added, relative to the user's own words.
    context_term_weight: float = 0.5
    #: Refuse when the best sentence scores below this; None: the value calibrated for the embedding
    #: model (``CALIBRATED_ABSTAIN_BELOW``), else ``UNCALIBRATED_ABSTAIN_BELOW`` (docs/evaluation.md).
    abstain_below: float | None = None
    #: Also abstain when no candidate sentence holds the question's rarest word and the best one's
    #: cosine is below this (0 turns the rule off): the passages are about something near, not this.
    abstain_unfocused_below: float = 0.0
    merge_ratio: float = 0.92
    max_quote_chars: int = 700
    #: Grow each quote with whole neighbouring sentences up to this many characters; 0: off.
    fill_to: int = 330
    #: Let that growth cross paragraph breaks. Scraped news is mostly one-sentence paragraphs, and the
    #: answer often sits in the paragraph after the one that echoes the question (RealTime QA tune part,
    #: 176 questions: recall@1 0.278 -> 0.312, recall@3 0.392 -> 0.415; docs/evaluation.md).
    fill_across_paragraphs: bool = True
    #: A candidate sentence that fits in one quote with an already chosen one (and the text between them)
    #: joins that quote instead of becoming its own.
    bridge: bool = True
    min_sentence_chars: int = 12


#: Abstention thresholds calibrated per embedding model (scores are on each model's own cosine scale).
CALIBRATED_ABSTAIN_BELOW = {
    "sentence-transformers/all-MiniLM-L6-v2": 0.67,
    # int8 vectors of the same model (the default backend): 0.67 keeps bundled abstention at 6 of 6 (docs/benchmarks.md)
    "sentence-transformers/all-MiniLM-L6-v2@int8": 0.67,
}
#: For a model nobody calibrated (including the hash fake used in fast tests).
UNCALIBRATED_ABSTAIN_BELOW = 0.45


def abstain_threshold(settings: AnswerSettings, model: str) -> float:
    """The abstention threshold in force for ``model``."""
    if settings.abstain_below is not None:
        return settings.abstain_below
    return CALIBRATED_ABSTAIN_BELOW.get(model, UNCALIBRATED_ABSTAIN_BELOW)


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
    novelty: float = 0.0
    typed: float = 0.0
    neighbours: float = 0.0
    #: The sentence adds no word to the question (a quiz page restating it, say): it cannot answer it.
    echo: bool = False
    key: str = field(default="")


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
_NAME = re.compile(r"\b[A-Z][a-z]+")


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


def term_weights(question: str, searched: str, index: Index, context_term_weight: float) -> dict[str, float]:
    """IDF weight of each searched term; terms only the follow-up rewriting added count ``context_term_weight``."""
    own = set(tokenize(question))
    weights = {}
    for term in tokenize(searched):
        weights[term] = index.lexical.idf(term) * (1.0 if term in own or not own else context_term_weight)
    return weights


def coverage(weights: dict[str, float], tokens: set[str]) -> float:
    """Weighted share of the question's terms found among ``tokens``."""
    total = sum(weights.values())
    return sum(w for t, w in weights.items() if t in tokens) / total if total else 0.0


def novelty(weights: dict[str, float], tokens: set[str], index: Index) -> float:
    """How much rare vocabulary a sentence adds beyond the question, squashed into [0, 1)."""
    extra = sum(index.lexical.idf(t) for t in tokens if t not in weights)
    return extra / (extra + 20.0)


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


def _neighbour_tokens(article: Article, start: int, end: int) -> set[str]:
    spans = sentence_spans(article.text, max(0, start - 300), min(len(article.text), end + 300))
    before = [t for t in spans if t[1] <= start][-1:]
    after = [t for t in spans if t[0] >= end][:1]
    return {tok for s, e in before + after for tok in tokenize(article.text[s:e])}


def score_sentences(
    question: str,
    query_vector: np.ndarray,
    index: Index,
    hits: list[Hit],
    embedder: Embedder,
    settings: AnswerSettings,
    searched: str | None = None,
) -> list[_Candidate]:
    """Candidate sentences from the best chunks, scored and sorted best first.

    ``question`` is what the user typed, ``searched`` the self-contained form
    (the same unless the question leaned on earlier turns).
    """
    searched = searched or question
    cands = _candidates(index, hits, settings)
    if not cands:
        return []
    texts = [c.article.text[c.start : c.end] for c in cands]
    vectors = embedder.encode(texts)
    cos = vectors @ np.asarray(query_vector, dtype=np.float32).ravel()
    weights = term_weights(question, searched, index, settings.context_term_weight)
    for cand, text, c in zip(cands, texts, cos.tolist()):
        tokens = set(tokenize(text))
        cand.dense = c
        cand.coverage = coverage(weights, tokens)
        cand.novelty = novelty(weights, tokens, index)
        cand.echo = tokens <= weights.keys()
        cand.typed = type_match(question if question.strip() else searched, text)
        if settings.w_context:
            cand.neighbours = coverage(weights, _neighbour_tokens(cand.article, cand.start, cand.end) - tokens)
        cand.key = collapse_whitespace(text).lower()
        cand.score = (
            settings.w_dense * c
            + settings.w_lexical * cand.coverage
            + settings.w_rank / (1 + cand.chunk_rank)
            + settings.w_type * cand.typed
            + settings.w_novel * cand.novelty
            + settings.w_context * cand.neighbours
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
    across = settings.fill_across_paragraphs and settings.fill_to > 0
    groups: list[dict] = []  # each: article, start, end, score, keys, also_in
    for cand in ranked[: max(20, 6 * k)]:
        dup = next((g for g in groups if cand.key in g["keys"] and g["article"].id != cand.article.id), None)
        if dup is not None:
            if cand.article.source not in dup["also_in"] and cand.article.source != dup["article"].source:
                dup["also_in"].append(cand.article.source)
            continue
        text = cand.article.text
        if settings.bridge and settings.fill_to:
            close = next((g for g in groups if _bridgeable(g, cand, groups, settings.fill_to, across)), None)
            if close is not None:  # within one quote's reach: show it with the text between, not on its own
                close["start"], close["end"] = min(close["start"], cand.start), max(close["end"], cand.end)
                close["keys"].add(cand.key)
                continue
        near = next(
            (
                g
                for g in groups
                if g["article"].id == cand.article.id
                and (cand.end <= g["start"] and _touching(text, cand.end, g["start"], across)
                     or cand.start >= g["end"] and _touching(text, g["end"], cand.start, across))
            ),
            None,
        )
        if near is not None:
            if cand.score < settings.merge_ratio * top:
                continue  # a weak neighbour: the context fields already hold it
            merged_len = max(near["end"], cand.end) - min(near["start"], cand.start)
            if merged_len <= settings.max_quote_chars:
                near["start"], near["end"] = min(near["start"], cand.start), max(near["end"], cand.end)
                near["keys"].add(cand.key)
                continue
            # too long to merge: a strong sentence becomes its own quote
        if len(groups) < k:
            groups.append(
                {"article": cand.article, "start": cand.start, "end": cand.end, "score": cand.score, "keys": {cand.key}, "also_in": []}
            )
    if settings.fill_to:
        for g in groups:
            _fill(g, groups, settings.fill_to, settings.fill_across_paragraphs)
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


def _bridgeable(group: dict, cand: _Candidate, groups: list[dict], limit: int, across: bool) -> bool:
    """True when ``cand`` and ``group`` fit in one quote of ``limit`` characters with the text between them."""
    if group["article"].id != cand.article.id:
        return False
    lo, hi = min(group["start"], cand.start), max(group["end"], cand.end)
    if hi - lo > limit or (not across and "\n\n" in cand.article.text[lo:hi]):
        return False
    return not any(g is not group and g["article"].id == cand.article.id and g["start"] < hi and lo < g["end"]
                   for g in groups)


def _fill(group: dict, groups: list[dict], limit: int, across_paragraphs: bool = True) -> None:
    """Grow ``group`` by whole adjacent sentences, next and previous in turn, within ``limit`` characters.

    Only whitespace may lie between a quote and a sentence it takes in; a paragraph break counts as
    such unless ``across_paragraphs`` is false.
    """
    text: str = group["article"].text
    taken = [(g["start"], g["end"]) for g in groups if g is not group and g["article"].id == group["article"].id]
    grown, forward = True, True
    while grown:
        grown = False
        spans = sentence_spans(text, max(0, group["start"] - 600), min(len(text), group["end"] + 600))
        after = next(((s, e) for s, e in spans if s >= group["end"]), None)
        before = next(((s, e) for s, e in reversed(spans) if e <= group["start"]), None)
        for side in ((after, before) if forward else (before, after)):
            if side is None:
                continue
            s, e = side
            lo, hi = min(s, group["start"]), max(e, group["end"])
            gap = (group["end"], s) if s >= group["end"] else (e, group["start"])
            if (hi - lo > limit or not _touching(text, *gap, across_paragraphs)
                    or any(a < hi and lo < b for a, b in taken)):
                continue
            group["start"], group["end"] = lo, hi
            grown, forward = True, not forward
            break


def _touching(text: str, left_end: int, right_start: int, across_paragraphs: bool) -> bool:
    """Two spans touch when only whitespace lies between them (and no paragraph break, unless allowed)."""
    return not text[left_end:right_start].strip() if across_paragraphs else _adjacent(text, left_end, right_start)


def _adjacent(text: str, left_end: int, right_start: int) -> bool:
    """Two spans touch when only whitespace (no paragraph break) lies between them."""
    gap = text[left_end:right_start]
    return not gap.strip() and "\n\n" not in gap


def citation_numbers(quotes: Sequence[Quote]) -> list[int]:
    """Each quote's citation number: one number per article, in the order articles are first quoted."""
    numbers: dict[str, int] = {}
    return [numbers.setdefault(q.article_id, len(numbers) + 1) for q in quotes]


def format_answer(quotes: Sequence[Quote]) -> str:
    """The answer as plain text: each quote in quotation marks with its article's citation number."""
    return "\n\n".join(
        f"“{collapse_whitespace(q.text)}” [{n}]" for q, n in zip(quotes, citation_numbers(quotes))
    )


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
    scored = score_sentences(question, query_vector, index, hits, embedder, settings, searched)
    ranked = [c for c in scored if not c.echo]
    threshold = abstain_threshold(settings, embedder.name)
    if not ranked or ranked[0].score < threshold:
        best = ranked[0].score if ranked else float("nan")
        log.info("abstaining on %r: best sentence score %.3f < %.3f", question[:80], best, threshold)
        return [], True
    if ranked[0].dense < settings.abstain_unfocused_below and not focus_found(question, searched, index, ranked):
        log.info("abstaining on %r: no sentence holds its rarest word, best cosine %.3f", question[:80], ranked[0].dense)
        return [], True
    return select_quotes(ranked, k, settings), False


def focus_term(question: str, searched: str, index: Index) -> str | None:
    """The user's own question word that is rarest in the index (its most specific word)."""
    own = tokenize(question) or tokenize(searched)
    return max(own, key=lambda t: (index.lexical.idf(t), t)) if own else None


def focus_found(question: str, searched: str, index: Index, ranked: list[_Candidate]) -> bool:
    """True when some candidate sentence holds the question's rarest word."""
    term = focus_term(question, searched, index)
    if term is None:
        return True
    return any(term in tokenize(c.article.text[c.start : c.end]) for c in ranked)


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
