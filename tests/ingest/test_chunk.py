"""Chunk offsets, token limits and sentence spans (fast: no torch)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.ingest.chunk import chunk_article, embedding_text, split_text
from qa.embed.torch import SentenceTransformerEmbedder
from qa.records import Article
from qa.text import sentence_spans
from qa.settings import ChunkSettings



@pytest.fixture(scope="module")
def real_tokens():
    """The bundled model's own tokenizer (loads tokenizers only, not torch)."""
    return SentenceTransformerEmbedder().count_tokens


def test_bundled_articles_chunk_into_exact_spans_within_the_token_limit(real_tokens, bundled_articles):
    settings = ChunkSettings()
    for path in sorted(bundled_articles.iterdir()):
        article = Article.make(path.read_text(encoding="utf-8"), str(path))
        chunks = chunk_article(article, settings, real_tokens)
        assert len(chunks) >= 3
        for chunk in chunks:
            assert article.text[chunk.start : chunk.end] == chunk.text
            assert chunk.text == chunk.text.strip()
            assert real_tokens(chunk.text) <= settings.chunk_tokens
            # The title plus the chunk still fits the encoder, so nothing is cut off.
            assert real_tokens(embedding_text(article, chunk, settings, real_tokens)) + 2 <= 256
        starts = [c.start for c in chunks]
        assert starts == sorted(starts)


def test_repeated_passages_get_their_own_offsets(real_tokens):
    para = "The same wire paragraph appears again and again in this story about markets."
    text = "\n\n".join([para] * 12)
    spans = split_text(text, ChunkSettings(chunk_tokens=20, overlap_tokens=0), real_tokens)
    assert len(spans) == 12
    assert [s for s, _ in spans] == [i * (len(para) + 2) for i in range(12)]
    assert all(text[s:e] == para for s, e in spans)


def test_text_without_separators_is_cut_under_the_limit(real_tokens):
    text = "x" * 5000
    spans = split_text(text, ChunkSettings(chunk_tokens=50, overlap_tokens=0), real_tokens)
    assert spans and all(real_tokens(text[s:e]) <= 50 for s, e in spans)
    assert "".join(text[s:e] for s, e in spans) == text


def test_chunks_prefer_sentence_ends(real_tokens):
    sentences = [f"Sentence number {i} says something about the economy of Ruritania." for i in range(30)]
    text = " ".join(sentences)
    for s, e in split_text(text, ChunkSettings(chunk_tokens=60, overlap_tokens=0), real_tokens):
        assert text[s:e].endswith(".")


def test_empty_text_has_no_chunks(real_tokens):
    assert split_text("   \n\n  ", ChunkSettings(), real_tokens) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Mr. Smith arrived. He left.", ["Mr. Smith arrived.", "He left."]),
        ("Kim smeared the U.S. as a foe. Then he left.", ["Kim smeared the U.S. as a foe.", "Then he left."]),
        ("Trump hit the U.S. The end.", ["Trump hit the U.S.", "The end."]),
        ("“We will win,” he said. Really? Yes!", ["“We will win,” he said.", "Really?", "Yes!"]),
        ("Headline\n\nBody starts here without a period", ["Headline", "Body starts here without a period"]),
        ("Prices rose 3.5 percent. Sales fell.", ["Prices rose 3.5 percent.", "Sales fell."]),
    ],
)
def test_sentence_spans(text, expected):
    assert [text[s:e] for s, e in sentence_spans(text)] == expected


@given(st.text(alphabet=st.sampled_from([*" \t\n\r\f\v\x1c\x1f\x85\xa0\u2028\u3000\u200b", "a", "é", "中", "."]),
               max_size=40))
@settings(max_examples=300, deadline=None)
def test_collapse_whitespace_is_the_regex_it_replaced(text):
    """``" ".join(text.split())`` against what it replaced, a run of ``\\s`` made one space and stripped: Unicode
    separators, non-breaking and ideographic spaces included (the zero-width space is not whitespace to either)."""
    import re

    from qa.text import collapse_whitespace

    assert collapse_whitespace(text) == re.sub(r"\s+", " ", text).strip()
