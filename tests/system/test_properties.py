"""Properties over random text (hypothesis): clean-up, chunking, quoting and upload names.

* clean-up: no invisible, bidi or control character survives; kept lines are
  unchanged; the result encodes as UTF-8; titles and authors are one line.
* chunker: every chunk's offsets point at its exact text, chunks cover every
  non-whitespace character, none is over the token limit.
* quotes: on an index built from random articles, every quote is verbatim.
* upload names: whatever the name, the file lands inside the articles folder.

``QA_HYPOTHESIS_EXAMPLES`` scales the number of examples (default 1 = CI size).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from qa.answer.bot import AskError, Bot
from qa.index.build import BuildError, build_index
from qa.ingest.chunk import chunk_article, split_text
from qa.ingest.clean import clean_field, clean_text, strip_invisible
from qa.embed.hashing import HashEmbedder
from qa.records import Article
from qa.settings import ChunkSettings

SCALE = float(os.environ.get("QA_HYPOTHESIS_EXAMPLES", "1"))
TOKENS = HashEmbedder().count_tokens


def examples(n: int) -> settings:
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufeff\ufff9-\ufffb\ud800-\udfff\U000e0000-\U000e007f\r\x0b\x0c]"
)

WORDS = st.sampled_from(
    "the ferry of Esk crossed river in 1952 with 412 passengers Mr. Dr. U.S. officials said "
    "tolls rose 7 crowns harbour master signed log bridge opened café Zürich 北京 مرحبا "
    "Advertisement Share Read more: Photo: By Jane Doe".split()
)
SEPARATORS = st.sampled_from([" ", " ", " ", ". ", "! ", "? ", ", ", "; ", "\n", "\n\n", "\n \n", "\t", "  ", "\r\n", "\u2029"])
ODD = st.sampled_from(list("\u200b\u200d\u202e\u2066\ufeff\u00ad\x00\x1b\x7f\x85\ud800\U000e0041\u3000\xa0") + ["“", "”", "…"])


@st.composite
def article_text(draw, max_pieces: int = 120) -> str:
    """Text made of words, sentence ends, line and paragraph breaks, odd characters and repeats."""
    pieces = draw(st.lists(st.one_of(WORDS, WORDS, WORDS, SEPARATORS, SEPARATORS, ODD, st.text(max_size=8)), max_size=max_pieces))
    text = "".join(pieces)
    if draw(st.booleans()) and text:  # repeated passages must get their own offsets
        text = text + draw(SEPARATORS) + text
    if draw(st.integers(0, 9)) == 0:  # a long run without any separator
        text += "x" * draw(st.integers(50, 400))
    return text


# --- clean-up ----------------------------------------------------------------------------------


@examples(300)
@given(article_text(), st.text(max_size=40))
@example("Title\u202e\n\nBody\u200b line.\r\nSecond\x00 line\ud800.", "Hint\u2066")
def test_clean_text_removes_invisibles_and_keeps_lines_verbatim(raw: str, hint: str):
    cleaned = clean_text(raw, title_hint=clean_field(hint, 300))
    for value in (cleaned.text, cleaned.title, cleaned.author):
        assert not INVISIBLE.search(value), repr(value)
        value.encode("utf-8")
    assert "\n" not in cleaned.title and "\n" not in cleaned.author
    assert cleaned.text == cleaned.text.strip()
    assert "\n\n\n" not in cleaned.text
    source_lines = {line.rstrip() for line in strip_invisible(raw).split("\n")}
    stripped = {line.strip() for line in source_lines}
    for n, line in enumerate(cleaned.text.split("\n")):
        # only line ends are trimmed (and the indent of the very first line, by the final strip)
        assert not line or line in source_lines or (n == 0 and line in stripped), f"kept line was changed: {line!r}"


@examples(200)
@given(st.text(), st.integers(5, 400))
def test_clean_field_is_one_short_visible_line(value: str, limit: int):
    out = clean_field(value, limit)
    assert len(out) <= limit
    assert out == out.strip() and "\n" not in out and "  " not in out
    assert not INVISIBLE.search(out)
    out.encode("utf-8")


# --- chunker -----------------------------------------------------------------------------------


@examples(300)
@given(article_text(), st.integers(3, 60), st.integers(0, 30))
@example("aaa bbb ccc. aaa bbb ccc. aaa bbb ccc.", 3, 1)
@example("x" * 500, 4, 0)
def test_chunks_point_at_their_text_cover_the_article_and_respect_the_limit(text: str, limit: int, overlap: int):
    text = strip_invisible(text)  # what the loader hands on: no surrogates or control characters
    article = Article.make(text, "random.txt", title="Random")
    chunks = chunk_article(article, ChunkSettings(chunk_tokens=limit, overlap_tokens=overlap), TOKENS)
    covered = [False] * len(text)
    previous_start = -1
    for chunk in chunks:
        assert 0 <= chunk.start < chunk.end <= len(text)
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip()
        assert TOKENS(chunk.text) <= limit, (TOKENS(chunk.text), chunk.text)
        assert chunk.start >= previous_start, "chunks come in text order"
        previous_start = chunk.start
        for i in range(chunk.start, chunk.end):
            covered[i] = True
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing, f"not in any chunk: {[text[i] for i in missing[:10]]}"
    assert len({c.id for c in chunks}) == len(chunks)


@examples(100)
@given(st.text(min_size=1, max_size=300), st.integers(1, 20))
def test_split_text_on_any_unicode(text: str, limit: int):
    spans = split_text(text, ChunkSettings(chunk_tokens=limit, overlap_tokens=0), TOKENS)
    for start, end in spans:
        assert TOKENS(text[start:end]) <= limit
    covered = {i for start, end in spans for i in range(start, end)}
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


# --- quotes ------------------------------------------------------------------------------------

SENTENCE_WORDS = st.sampled_from(
    "ferry bridge harbour council Esk Varnholt crossed opened closed rebuilt 1952 412 passengers tolls "
    "crowns workers river storm mayor said on Monday after before the a of in with".split()
)


@st.composite
def news_article(draw) -> str:
    sentences = []
    for _ in range(draw(st.integers(1, 12))):
        words = draw(st.lists(SENTENCE_WORDS, min_size=3, max_size=18))
        noise = draw(st.sampled_from(["", "", "\u200b", " Mr. Doe", " (U.S.)", ", “quoted”", "\u202e", "…"]))
        sentences.append(" ".join(words).capitalize() + noise + draw(st.sampled_from([".", "!", "?", "."])))
    breaks = draw(st.lists(st.sampled_from([" ", " ", "\n", "\n\n"]), min_size=len(sentences), max_size=len(sentences)))
    return "".join(s + b for s, b in zip(sentences, breaks))


@examples(12)
@given(
    st.lists(news_article(), min_size=1, max_size=5),
    st.lists(st.one_of(st.lists(SENTENCE_WORDS, min_size=1, max_size=10).map(" ".join), st.text(max_size=30)), min_size=1, max_size=4),
    st.integers(8, 80),
)
def test_quotes_are_always_verbatim(texts: list[str], questions: list[str], chunk_tokens: int):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "articles"
        folder.mkdir()
        for i, text in enumerate(texts):
            (folder / f"a{i}.txt").write_text(f"Headline Number {i}\n\n{text}", encoding="utf-8")
        embedder = HashEmbedder(dim=32)
        chunking = ChunkSettings(chunk_tokens=chunk_tokens, overlap_tokens=chunk_tokens // 5, title_tokens=8)
        try:
            build_index([folder], Path(tmp) / "index", embedder=embedder, chunking=chunking)
        except BuildError:
            assume(False)  # nothing readable was generated
        bot = Bot.load(Path(tmp) / "index", embedder=embedder)
        for question in questions:
            try:
                answer = bot.ask(question, k=5)
            except AskError:
                continue
            for q in answer.quotes:
                article = bot.index.articles[q.article_id]
                assert article.text[q.start : q.end] == q.text
                assert q.text.strip() == q.text and q.text


# --- upload names --------------------------------------------------------------------------------


@examples(300)
@given(
    st.one_of(
        st.text(),
        st.lists(st.sampled_from(["..", ".", "/", "\\", "etc", "passwd", "~", "\x00", "\u202e", "C:", "ｆｕｌｌ", ".txt", "%2e%2e"]))
        .map("".join),
    )
)
@example("../../etc/passwd.txt")
@example("/etc/cron.d/evil.md")
@example("..\\..\\boot.html")
@example("\u2025/\ufe52\ufe52/x.txt")  # characters that NFKC turns into dots
def test_an_upload_name_never_leaves_the_articles_folder(name: str):
    from qa.app.folder import safe_name

    safe = safe_name(name)
    assert safe and "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert not safe.startswith(".") and safe not in (".", "..")
    assert len(safe) <= 100
    root = Path("/srv/articles")
    assert (root / safe).resolve().parent == root
