"""The sentences that might be quoted: those of the best retrieved chunks, each once.

``candidates`` turns hits into ``Candidate`` records (a span of an article, the
hit it came from and its neighbouring sentences). Scoring them
(``qa.answer.quotes.rank_candidates``) gives new ``ScoredCandidate`` records;
neither is ever changed after it is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

from qa.records import Article, Chunk, Hit
from qa.text import collapse_whitespace, sentence_spans


@dataclass(frozen=True)
class Candidate:
    """A sentence of a retrieved chunk that might be quoted, with what its features need."""

    article: Article
    start: int
    end: int
    hit: Hit
    prev: tuple[int, int] | None = None  # the sentence before it in the article, if any
    next: tuple[int, int] | None = None

    @property
    def text(self) -> str:
        return self.article.text[self.start : self.end]

    @property
    def key(self) -> str:
        """The sentence with its whitespace collapsed, lowercased: equal for a sentence several articles carry."""
        return collapse_whitespace(self.text).lower()


@dataclass(frozen=True, kw_only=True)
class ScoredCandidate(Candidate):
    """A candidate with its scorer's score, and whether it only restates the question (then it is never quoted)."""

    score: float
    echo: bool = False

    @classmethod
    def of(cls, cand: Candidate, score: float, echo: bool = False) -> ScoredCandidate:
        """``cand`` with its score (a new record: ``cand`` itself is left as it was)."""
        return cls(**{f.name: getattr(cand, f.name) for f in fields(Candidate)}, score=score, echo=echo)


def candidates(
    article_of: Callable[[Chunk], Article], hits: Sequence[Hit], passages: int, min_chars: int = 12
) -> list[Candidate]:
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
