"""Turn retrieved chunks into an answer made of exact quotes, or an honest abstention.

The sentences of the best chunks are the candidates (``qa.answer.candidates``).
Each is embedded, described by ``qa.answer.features.FEATURES`` and scored
(``qa.answer.scorers.scorer_for``: the hand-weighted score by default, the learned
ranker or the reader with ``AnswerSettings.ranker``). When even the best one scores below the calibrated threshold, the bot
says the articles do not answer the question. Otherwise the best sentences
become quotes: a sentence within one quote's reach of a chosen one joins it, a
sentence several articles carry verbatim is shown once with its other sources,
a sentence that only restates the question is never quoted, and a sentence
scoring far below the best one is not shown at all (nearer the best for a follow-up,
whose borrowed words lift every sentence about the earlier topic). Each quote then grows by
whole neighbouring sentences (``grown_span``, across paragraph breaks) up to ``fill_to``
characters, the top quote up to ``lead_fill_to``. Figures for each choice:
docs/evaluation.md and docs/ranker.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from qa.embed.base import Embedder
from qa.answer.candidates import ScoredCandidate, candidates
from qa.answer.features import echoes, features
from qa.answer.factory import scorer_for
from qa.answer.scorers import Scorer, abstention_scores
from qa.records import Answer, Article, Hit, Quote
from qa.settings import DEFAULT_RANKER_NAME
from qa.index.searchable import Index
from qa.text import collapse_whitespace, sentence_spans

log = logging.getLogger(__name__)

ABSTAIN_TEXT = "The articles don't say. Nothing in them answers this question closely enough to quote."


@dataclass(frozen=True)
class AnswerSettings:
    """Limits of quote selection; the thresholds default to the scorer's calibration for the model."""

    #: Chunks whose sentences are candidates.
    passages: int = 8
    #: What scores candidates: "reader" (the default: the shipped cross-encoder blended with the hand score,
    #: qa/models/reader.json), "hand" (the hand-weighted score alone) or "learned" (the shipped ranker,
    #: qa/models/ranker.json); ``qa.settings.RANKERS``.
    ranker: str = DEFAULT_RANKER_NAME
    #: Weight of a term that only the follow-up rewriting added, relative to the user's own words.
    context_term_weight: float = 0.5
    #: Refuse when the best sentence scores below this; None: the scorer's value for the embedding model.
    abstain_below: float | None = None
    #: Show a quote only if it scores at least the best score minus this; None: the scorer's value.
    show_within: float | None = None
    #: For a question searched with borrowed words (a follow-up, an expanded abbreviation) the gap shrinks to this
    #: share of ``show_within``: those words lift every sentence about the earlier topic, the unrelated ones too.
    follow_up_gap: float = 0.5
    max_quote_chars: int = 700
    #: Grow each quote with whole neighbouring sentences up to this many characters; 0: off.
    fill_to: int = 400
    #: The top quote grows up to this many characters instead (None: ``fill_to``): the best match gets the
    #: most context, since the answer often sits next to the sentence that matched the question.
    lead_fill_to: int | None = 650
    #: Let that growth cross paragraph breaks (scraped news is mostly one-sentence paragraphs).
    fill_across_paragraphs: bool = True
    #: A candidate sentence that fits in one quote with an already chosen one (and the text between them)
    #: joins that quote instead of becoming its own.
    bridge: bool = True
    min_sentence_chars: int = 12


def rank_candidates(
    question: str,
    searched: str,
    query_vector: np.ndarray,
    index: Index,
    hits: list[Hit],
    embedder: Embedder,
    settings: AnswerSettings,
    scorer: Scorer,
) -> tuple[list[ScoredCandidate], np.ndarray]:
    """The candidate sentences, each with its score and echo flag, in hit order, with their feature rows.

    ``question`` is what the user typed, ``searched`` the self-contained form
    (the same unless the question leaned on earlier turns).
    """
    cands = candidates(index.article_of, hits, settings.passages, settings.min_sentence_chars)
    if not cands:
        return [], np.zeros((0, 0), dtype=np.float32)
    vectors = embedder.encode([c.text for c in cands])
    dense = vectors @ np.asarray(query_vector, dtype=np.float32).ravel()
    X = features(question, searched or question, cands, dense, index.lexical.idf, settings.context_term_weight)
    scores, echo = scorer.score(X, searched or question, [c.text for c in cands]).tolist(), echoes(X).tolist()
    return [ScoredCandidate.of(c, s, e) for c, s, e in zip(cands, scores, echo)], X


@dataclass
class _Group:
    """A quote being assembled: a span of one article, its best score, the sentences it holds."""

    article: Article
    start: int
    end: int
    score: float
    keys: set[str]
    also_in: list[str] = field(default_factory=list)

    def overlaps(self, article_id: str, lo: int, hi: int) -> bool:
        return self.article.id == article_id and self.start < hi and lo < self.end


def _context(article: Article, start: int, end: int) -> tuple[str, str]:
    spans = sentence_spans(article.text, max(0, start - 400), min(len(article.text), end + 400))
    before = [t for t in spans if t[1] <= start]
    after = [t for t in spans if t[0] >= end]
    b = article.text[before[-1][0] : before[-1][1]] if before else ""
    a = article.text[after[0][0] : after[0][1]] if after else ""
    return b, a


def select_quotes(
    ranked: Sequence[ScoredCandidate], k: int, settings: AnswerSettings, show_within: float | None = None
) -> list[Quote]:
    """Up to ``k`` quotes from candidates sorted best first: close ones joined, duplicates folded.

    A candidate scoring more than ``show_within`` below the best is not shown.
    """
    if not ranked or k <= 0:
        return []
    top = ranked[0].score
    across = settings.fill_across_paragraphs and settings.fill_to > 0
    groups: list[_Group] = []
    for position, cand in enumerate(ranked[: max(20, 6 * k)]):
        if show_within is not None and cand.score < top - show_within:
            break  # sorted: every later one is further below
        dup = next((g for g in groups if cand.key in g.keys and g.article.id != cand.article.id), None)
        if dup is not None:
            if cand.article.source not in dup.also_in and cand.article.source != dup.article.source:
                dup.also_in.append(cand.article.source)
            continue
        text = cand.article.text
        if settings.bridge and settings.fill_to:
            close = next((g for g in groups if _bridgeable(g, cand, groups, settings.fill_to, across)), None)
            if close is not None:  # within one quote's reach: show it with the text between, not on its own
                close.start, close.end = min(close.start, cand.start), max(close.end, cand.end)
                close.keys.add(cand.key)
                continue
        near = next(
            (
                g
                for g in groups
                if g.article.id == cand.article.id
                and (cand.end <= g.start and _touching(text, cand.end, g.start, across)
                     or cand.start >= g.end and _touching(text, g.end, cand.start, across))
            ),
            None,
        )
        if near is not None:
            if position >= k:
                continue  # a weaker neighbour than the k best sentences: the context fields already hold it
            if max(near.end, cand.end) - min(near.start, cand.start) <= settings.max_quote_chars:
                near.start, near.end = min(near.start, cand.start), max(near.end, cand.end)
                near.keys.add(cand.key)
                continue
            # too long to merge: a strong sentence becomes its own quote
        if len(groups) < k:
            groups.append(_Group(cand.article, cand.start, cand.end, cand.score, {cand.key}))
    if settings.fill_to:
        for n, g in enumerate(groups):
            limit = settings.lead_fill_to if n == 0 and settings.lead_fill_to else settings.fill_to
            taken = [(o.start, o.end) for o in groups if o is not g and o.article.id == g.article.id]
            g.start, g.end = grown_span(g.article.text, g.start, g.end, limit, settings.fill_across_paragraphs, taken)
    quotes = []
    for g in groups:
        before, after = _context(g.article, g.start, g.end)
        quotes.append(
            Quote(
                text=g.article.text[g.start : g.end],
                article_id=g.article.id,
                title=g.article.title,
                source=g.article.source,
                start=g.start,
                end=g.end,
                score=round(float(g.score), 4),
                published=g.article.published,
                author=g.article.author,
                context_before=before,
                context_after=after,
                also_in=tuple(g.also_in),
            )
        )
    return quotes


def _bridgeable(group: _Group, cand: ScoredCandidate, groups: list[_Group], limit: int, across: bool) -> bool:
    """True when ``cand`` and ``group`` fit in one quote of ``limit`` characters with the text between them."""
    if group.article.id != cand.article.id:
        return False
    lo, hi = min(group.start, cand.start), max(group.end, cand.end)
    if hi - lo > limit or (not across and "\n\n" in cand.article.text[lo:hi]):
        return False
    return not any(g is not group and g.overlaps(cand.article.id, lo, hi) for g in groups)


def grown_span(
    text: str,
    start: int,
    end: int,
    limit: int,
    across_paragraphs: bool = True,
    taken: Sequence[tuple[int, int]] = (),
) -> tuple[int, int]:
    """``start:end`` grown by whole adjacent sentences of ``text``, next and previous in turn, within ``limit``.

    Only whitespace may lie between the span and a sentence it takes in; a paragraph break counts as such
    unless ``across_paragraphs`` is false. The span never grows into a ``taken`` span (another quote's).
    This is how every quote grows; alone (no ``taken``), it is the span a lone sentence's quote shows.
    """
    grown, forward = True, True
    while grown:
        grown = False
        spans = sentence_spans(text, max(0, start - 600), min(len(text), end + 600))
        after = next(((s, e) for s, e in spans if s >= end), None)
        before = next(((s, e) for s, e in reversed(spans) if e <= start), None)
        for side in ((after, before) if forward else (before, after)):
            if side is None:
                continue
            s, e = side
            lo, hi = min(s, start), max(e, end)
            gap = (end, s) if s >= end else (e, start)
            if (hi - lo > limit or not _touching(text, *gap, across_paragraphs)
                    or any(a < hi and lo < b for a, b in taken)):
                continue
            start, end = lo, hi
            grown, forward = True, not forward
            break
    return start, end


def _touching(text: str, left_end: int, right_start: int, across_paragraphs: bool) -> bool:
    """Two spans touch when only whitespace lies between them (and no paragraph break, unless allowed)."""
    gap = text[left_end:right_start]
    return not gap.strip() and (across_paragraphs or "\n\n" not in gap)


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
    scorer: Scorer | None = None,
) -> tuple[list[Quote], bool]:
    """The quotes that answer ``searched`` and whether the bot abstains.

    ``scorer`` defaults to ``scorer_for(embedder.name, ranker=settings.ranker)``.
    """
    scorer = scorer or scorer_for(embedder.name, ranker=settings.ranker)
    cands, X = rank_candidates(question, searched, query_vector, index, hits, embedder, settings, scorer)
    shown = [i for i, c in enumerate(cands) if not c.echo]
    ranked = sorted((cands[i] for i in shown), key=lambda c: -c.score)
    calibration = scorer.calibration(embedder.name)
    threshold = settings.abstain_below if settings.abstain_below is not None else calibration.abstain_below
    gate = abstention_scores(scorer, X, np.array([c.score for c in cands]))[shown] if shown else np.zeros(0)
    if not ranked or float(gate.max()) < threshold:
        best = float(gate.max()) if len(gate) else float("nan")
        log.info("abstaining on %r: best sentence score %.3f < %.3f (%s)", question[:80], best, threshold, scorer.name)
        return [], True
    show_within = settings.show_within if settings.show_within is not None else calibration.show_within
    if show_within is not None and searched and searched != question:
        show_within *= settings.follow_up_gap
    return select_quotes(ranked, k, settings, show_within), False


def make_answer(
    question: str, searched: str, quotes: list[Quote], abstained: bool, notice: str, seconds: float
) -> Answer:
    """The ``Answer`` record: the quotes as plain text with citation numbers, or the abstention text."""
    return Answer(
        question=question,
        text=ABSTAIN_TEXT if abstained else format_answer(quotes),
        quotes=tuple(quotes),
        abstained=abstained,
        searched=searched,
        notice=notice,
        seconds=seconds,
    )
