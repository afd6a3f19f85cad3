"""Cut an article into chunks measured in the embedding model's tokens.

Splitting uses langchain-text-splitters' ``RecursiveCharacterTextSplitter`` at
paragraphs, then lines, then sentence ends, then clauses and words, so a chunk
is usually a run of whole sentences. Offsets are computed here, not taken from
the splitter: each chunk is located in the article text after the previous
chunk's start, which stays right when a passage repeats.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from qa.records import Article, Chunk, chunk_id
from qa.settings import ChunkSettings

log = logging.getLogger(__name__)

# Sentence ends (fixed-width look-behinds), then weaker boundaries.
SEPARATORS = [
    r"\n\s*\n",
    r"\n",
    r"(?<=[.!?])\s+",
    r"(?<=[.!?][\"'”’)])\s+",
    r"(?<=[;:])\s+",
    r"(?<=,)\s+",
    r"\s+",
    r"",
]


class ChunkError(Exception):
    """A chunk could not be located in its article (a bug, never user error)."""


def _splitter(chunk_tokens: int, overlap_tokens: int, count_tokens: Callable[[str], int]):
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=min(overlap_tokens, max(0, chunk_tokens // 2)),
        length_function=count_tokens,
        separators=SEPARATORS,
        is_separator_regex=True,
        keep_separator="end",
        strip_whitespace=True,
    )


def split_text(text: str, settings: ChunkSettings, count_tokens: Callable[[str], int]) -> list[tuple[int, int]]:
    """Spans ``(start, end)`` of the chunks of ``text``; each at most ``settings.chunk_tokens`` tokens."""
    if not text.strip():
        return []
    pieces = _splitter(settings.chunk_tokens, settings.overlap_tokens, count_tokens).split_text(text)
    spans: list[tuple[int, int]] = []
    prev_start, prev_end = -1, 0
    for piece in pieces:
        # The next piece starts after the previous one's start and no later than its end (plus
        # whitespace); take the last such place, so periodic text ("xxxx", "ha ha ha") moves on.
        window_end = prev_end
        while window_end < len(text) and text[window_end].isspace():
            window_end += 1
        pos = text.rfind(piece, prev_start + 1, window_end + len(piece))
        if pos < 0:
            pos = text.find(piece, prev_start + 1)
        if pos < 0:  # periodic text ran ahead of the splitter: any exact place will do, gaps are filled below
            pos = text.find(piece)
        if pos < 0:  # the splitter returned something that is not a substring: never expected
            raise ChunkError(f"chunk not found in text after offset {prev_start}: {piece[:60]!r}")
        spans.extend(_enforce_limit(text, pos, pos + len(piece), settings.chunk_tokens, count_tokens))
        prev_start, prev_end = pos, pos + len(piece)
    return _fill_gaps(text, sorted(set(spans)), settings.chunk_tokens, count_tokens)


def _fill_gaps(
    text: str, spans: list[tuple[int, int]], limit: int, count_tokens: Callable[[str], int]
) -> list[tuple[int, int]]:
    """Add chunks for any text no span covers, so every word can be found."""
    out: list[tuple[int, int]] = []
    covered = 0
    for start, end in [*spans, (len(text), len(text))]:
        if start > covered and text[covered:start].strip():
            lo, hi = covered, start
            while text[lo].isspace():
                lo += 1
            while text[hi - 1].isspace():
                hi -= 1
            log.debug("chunk gap at %d-%d filled", lo, hi)
            out.extend(_enforce_limit(text, lo, hi, limit, count_tokens))
        if end > start:
            out.append((start, end))
        covered = max(covered, end)
    return sorted(set(out))


def _enforce_limit(
    text: str, start: int, end: int, limit: int, count_tokens: Callable[[str], int]
) -> list[tuple[int, int]]:
    """Token counts are not additive across merges; split any chunk still over the limit."""
    if count_tokens(text[start:end]) <= limit or end - start <= 1:
        return [(start, end)]
    cut = text.rfind(" ", start + 1, (start + end) // 2 + 1)
    if cut <= start:
        cut = (start + end) // 2
    left_end = cut
    right_start = cut
    while right_start < end and text[right_start].isspace():
        right_start += 1
    while left_end > start and text[left_end - 1].isspace():
        left_end -= 1
    return _enforce_limit(text, start, left_end, limit, count_tokens) + _enforce_limit(
        text, right_start, end, limit, count_tokens
    )


def chunk_article(article: Article, settings: ChunkSettings, count_tokens: Callable[[str], int]) -> list[Chunk]:
    """The chunks of one article, each with its exact span in ``article.text``."""
    chunks = []
    for start, end in split_text(article.text, settings, count_tokens):
        text = article.text[start:end]
        chunks.append(Chunk(id=chunk_id(article.id, start, end), article_id=article.id, start=start, end=end, text=text))
    return chunks


def embedding_text(article: Article, chunk: Chunk, settings: ChunkSettings, count_tokens: Callable[[str], int]) -> str:
    """What the model sees for a chunk: the (shortened) title, then the chunk."""
    title = article.title.strip()
    if not title or settings.title_tokens <= 0:
        return chunk.text
    title = title[: settings.title_tokens * 16]  # a token is rarely over 16 characters; keeps the loop short
    while title and count_tokens(title) > settings.title_tokens:
        title = title.rsplit(" ", 1)[0] if " " in title else title[: len(title) // 2]
    return f"{title}\n{chunk.text}" if title else chunk.text
