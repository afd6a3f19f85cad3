"""Tests for qa.ingest (clean, the walker, load and the readers): files made under tmp_path, plus the two bundled articles."""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import os
import random
import re
import shutil
import string
import tracemalloc
from pathlib import Path

import pytest

from conftest import load_paths
from qa.ingest.clean import BOILERPLATE_PATTERNS, clean_text, is_boilerplate
from qa.ingest.formats import MAX_FILE_BYTES, SUPPORTED_SUFFIXES, LoadError
from qa.ingest.load import iter_articles, load_file
from qa.ingest.readers.text import decode_text

BODY = (
    "The city council voted on Tuesday to expand the tram network, adding twelve new stops "
    "along the river by the end of next year."
)
BODY2 = "Officials said construction would begin in the spring, and that fares would not rise."


def squash(text: str) -> str:
    return " ".join(text.split())


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def only(result_or_list):
    articles = result_or_list.articles if hasattr(result_or_list, "articles") else result_or_list
    assert len(articles) == 1, articles
    return articles[0]


# --- the bundled articles -------------------------------------------------------------------

BUNDLED = {
    "000_477d58a20c8c4005.txt": ("North Korea’s Warning To America", ""),
    "004_b620c456e68df0a2.txt": (
        "Kim Jong Un Projects Nuclear Strength While Monitoring Future United States Diplomatic Shifts",
        "Josh Weiner",
    ),
}
BUNDLED_BOILERPLATE = {"Sorting by", "×", "Advertisements", "4 hours ago", "2 mins read", "author avatar",
                       "Josh Weiner", "Don't Miss"}


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_article_title_author_and_clean_body(name: str, bundled_articles: Path) -> None:
    path = bundled_articles / name
    article = only(load_file(path))
    title, author = BUNDLED[name]
    assert article.title == title
    assert article.author == author
    assert article.source == str(path)
    lines = [line.strip() for line in article.text.split("\n") if line.strip()]
    assert not BUNDLED_BOILERPLATE & set(lines)
    assert title not in lines
    original = path.read_text(encoding="utf-8")
    original_lines = set(original.splitlines())
    for line in article.text.split("\n"):
        assert line == "" or line in original_lines
    assert "\n\n\n" not in article.text and article.text == article.text.strip()
    assert len(article.text) > 2000


def test_bundled_folder_loads_both_in_sorted_order(bundled_articles: Path) -> None:
    result = load_paths([bundled_articles])
    assert [Path(a.source).name for a in result.articles] == sorted(BUNDLED)
    assert result.skipped == ()


# --- boilerplate rules ----------------------------------------------------------------------

# (line, is boilerplate): at least one positive per rule, and near-miss negatives.
RULE_EXAMPLES = [
    ("Advertisement", True),
    ("ADVERTISEMENTS", True),
    ("Story continues below advertisement", True),
    ("The company spent heavily on advertisements aimed at young voters.", False),
    ("4 hours ago", True),
    ("5 minutes ago", True),
    ("Updated 2 days ago", True),
    ("an hour ago", True),
    ("Four hours ago the bridge was still standing.", False),
    ("2 mins read", True),
    ("5 min read", True),
    ("Reading time: 4 minutes", True),
    ("Read the report: it takes 5 min to read.", False),
    ("Share this article", True),
    ("Share", True),
    ("Facebook", True),
    ("Twitter", True),
    ("Share on WhatsApp", True),
    ("Facebook shares fell 5 percent on Monday.", False),
    ("Read more", True),
    ("READ MORE: The big numbers behind the moon mission", True),
    ("Read More »", True),
    ("Read more about the plan in the council's own report", False),
    ("Subscribe", True),
    ("Sign up for our newsletter", True),
    ("Subscribers to the service will pay more next year.", False),
    ("Click here to read more.", True),
    ("Click here for more photos from the ceremony.", True),
    ("Users who click on the link are asked for a password.", False),
    ("Related: Tram fares frozen for a third year", True),
    ("Don't Miss", True),
    ("Don’t Miss", True),
    ("You may also like", True),
    ("Related experiments have failed before.", False),
    ("We use cookies to improve your experience on our site.", True),
    ("Accept all cookies", True),
    ("Cookie policy", True),
    ("We bake cookies every Sunday for the neighbours.", False),
    ("Photo: AP", True),
    ("Image credit: Reuters", True),
    ("Image credit", True),
    ("(Photo by Jane Doe/Getty Images)", True),
    ("Photos show the damage to the station roof.", False),
    ("Sorting by", True),
    ("12 comments", True),
    ("Skip to main content", True),
    ("Sorting bins by colour is now the law.", False),
    ("×", True),
    ("***", True),
    ("—", True),
    ("- 5", False),
    ("```", False),
    ("   ", False),
]


@pytest.mark.parametrize(("line", "expected"), RULE_EXAMPLES)
def test_boilerplate_rule_examples(line: str, expected: bool) -> None:
    assert is_boilerplate(line) is expected
    cleaned = clean_text(f"{BODY}\n\n{line}\n\n{BODY2}")
    kept = line in cleaned.text.split("\n")
    assert kept is (not expected and bool(line.strip()))
    assert cleaned.text.startswith(BODY) and cleaned.text.endswith(BODY2)


def test_every_rule_has_a_positive_example() -> None:
    positives = [line for line, expected in RULE_EXAMPLES if expected]
    for pattern in BOILERPLATE_PATTERNS:
        assert any(pattern.fullmatch(line) for line in positives), pattern.pattern


def test_long_real_sentence_is_never_dropped_even_if_a_rule_matches() -> None:
    line = "We use cookies " + "and other crumbs to lure the birds back to the garden, said Ms. Smith. " * 4
    assert len(line) > 200
    assert not is_boilerplate(line)
    assert line.rstrip() in clean_text(f"{BODY}\n\n{line}").text


# --- title, byline, invisible characters, invariants ----------------------------------------


@pytest.mark.parametrize(
    ("byline", "author"),
    [
        ("By Jane Doe", "Jane Doe"),
        ("BY JANE DOE", "JANE DOE"),
        ("Written by Jane Doe and John Roe", "Jane Doe and John Roe"),
        ("Author: Maria de la Cruz", "Maria de la Cruz"),
        ("By Nadeen Ebrahim, CNN", "Nadeen Ebrahim, CNN"),
    ],
)
def test_byline_is_author_and_removed(byline: str, author: str) -> None:
    cleaned = clean_text(f"Trams Return To The River\n\n{byline}\n\n{BODY}")
    assert cleaned.author == author
    assert cleaned.title == "Trams Return To The River"
    assert cleaned.text == BODY


@pytest.mark.parametrize("line", ["By the end of the day, the trams were running again.", "BY THE NUMBERS"])
def test_sentence_starting_with_by_is_not_a_byline(line: str) -> None:
    cleaned = clean_text(f"Trams Return\n\n{line}\n\n{BODY}")
    assert cleaned.author == ""
    assert line in cleaned.text


def test_author_avatar_then_name_is_author() -> None:
    cleaned = clean_text(f"Trams Return\n\n{BODY}\n\nauthor avatar\nJosh Weiner\n\nDon't Miss")
    assert cleaned.author == "Josh Weiner"
    assert cleaned.text == BODY


def test_only_first_byline_is_taken_later_ones_are_content() -> None:
    cleaned = clean_text(f"By Jane Doe\n\n{BODY}\n\nBy Stephen King\n\n{BODY2}")
    assert cleaned.author == "Jane Doe"
    assert "By Stephen King" in cleaned.text


def test_no_title_when_text_starts_with_a_sentence() -> None:
    cleaned = clean_text(f"{BODY}\n\n{BODY2}")
    assert cleaned.title == ""
    assert cleaned.text == f"{BODY}\n\n{BODY2}"


def test_lone_line_is_not_a_title() -> None:
    assert clean_text("Just a headline").title == ""
    assert clean_text("Just a headline").text == "Just a headline"


def test_title_hint_wins_and_drops_repeated_headline() -> None:
    cleaned = clean_text(f"Trams  return to the river\n\n{BODY}", title_hint="Trams return to the River")
    assert cleaned.title == "Trams return to the River"
    assert cleaned.text == BODY
    other = clean_text(f"A Different Heading\n\n{BODY}", title_hint="Given")
    assert other.title == "Given" and other.text.startswith("A Different Heading")


def test_invisible_characters_and_newlines() -> None:
    raw = "\ufeffTrams\u200b Return\r\n\r\n\r\n\r\nThe \u202eroute\u202c is \u2066new\u2069.\x00\x07\u200e  \r\n\n\n\nEnd\u2060 of story."
    cleaned = clean_text(raw)
    assert cleaned.title == "Trams Return"
    assert cleaned.text == "The route is new.\n\nEnd of story."
    assert not re.search("[\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff\x00-\x08]", cleaned.text)


def test_kept_lines_are_byte_for_byte_unchanged() -> None:
    line = "  “Smart quotes” — and café, ﬁ ligature,  double  spaces\tand tab stay.   "
    cleaned = clean_text(f"Headline Here\n{line}\nsecond line of the same paragraph.\n\n\n\n{BODY}")
    assert cleaned.text.split("\n")[0] == line.strip()
    assert "“Smart quotes” — and café, ﬁ ligature,  double  spaces\tand tab stay." in cleaned.text
    assert "\nsecond line of the same paragraph.\n\n" + BODY in cleaned.text


# --- formats ---------------------------------------------------------------------------------


def test_txt_source_is_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "news" / "a.txt", f"Trams Return\n\n{BODY}\n")
    monkeypatch.chdir(tmp_path)
    article = only(load_paths(["news"]))
    assert article.source == os.path.join("news", "a.txt")
    assert article.title == "Trams Return" and article.text == BODY
    assert len(article.id) == 16 and article.sha256


def test_markdown_heading_is_title(tmp_path: Path) -> None:
    path = write(tmp_path / "a.md", f"\n# Trams Return\n\n{BODY}\n\n## Next steps\n\n- **bold** item\n")
    article = only(load_file(path))
    assert article.title == "Trams Return"
    assert article.text == f"{BODY}\n\n## Next steps\n\n- **bold** item"


def test_html_extracts_text_title_author_date(tmp_path: Path) -> None:
    html = f"""<html><head><title>Trams Return - Daily News</title>
    <meta name="author" content="Jane Doe"><meta property="article:published_time" content="2024-03-05">
    </head><body><nav><a href="/">Home</a> | <a href="/w">World</a></nav>
    <article><h1>Trams Return</h1><p>Advertisement</p><p>{BODY}</p><p>{BODY2}</p></article>
    <footer>Copyright 2024 Daily News</footer></body></html>"""
    article = only(load_file(write(tmp_path / "page.html", html)))
    assert article.title == "Trams Return"
    assert article.author == "Jane Doe"
    assert article.published == "2024-03-05"
    assert article.text == f"{BODY}\n\n{BODY2}"


def test_deeply_nested_html_does_not_crash(tmp_path: Path) -> None:
    html = "<html><body>" + "<div>" * 5000 + f"<p>{BODY}</p>" + "</div>" * 5000 + "</body></html>"
    path = write(tmp_path / "deep.htm", html)
    result = load_paths([path])
    if result.articles:
        assert BODY in result.articles[0].text
    else:
        assert len(result.skipped) == 1 and "deep.htm" in result.skipped[0]


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def make_pdf(pages: list[list[str]], title: str = "") -> bytes:
    """A minimal valid PDF with one Helvetica text line per entry, correct xref offsets."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", ""]
    kids = []
    for lines in pages:
        ops = "BT /F1 12 Tf 14 TL 50 750 Td " + " ".join(f"{_pdf_string(line)} Tj T*" for line in lines) + " ET"
        stream = ops.encode("latin-1")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{ops}\nendstream")
        content = len(objects)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R "
            "/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>"
        )
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    objects.append(f"<< /Title {_pdf_string(title)} >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {len(objects)} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_pdf_pages_joined_and_title_from_metadata(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(make_pdf([["Trams return to the river."], ["Fares will not rise this year."]], title="Tram Report"))
    article = only(load_file(path))
    assert article.title == "Tram Report"
    assert "Trams return to the river." in article.text
    assert "\n\n" in article.text and article.text.index("Trams") < article.text.index("Fares")


def test_corrupt_pdf_is_skipped_with_message(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R\n%%garbage\x00\xff" * 3)
    with pytest.raises(LoadError, match="broken.pdf"):
        load_file(path)
    result = load_paths([tmp_path])
    assert result.articles == ()
    assert len(result.skipped) == 1 and "broken.pdf" in result.skipped[0] and "PDF" in result.skipped[0]


def test_pdf_library_warnings_name_the_file(tmp_path: Path, caplog) -> None:
    path = tmp_path / "shifted.pdf"
    data = make_pdf([["Trams return to the river."]], title="Tram Report")
    path.write_bytes(re.sub(rb"startxref\n(\d+)", lambda m: b"startxref\n%d" % (int(m.group(1)) + 7), data))
    with caplog.at_level(logging.WARNING):
        assert only(load_file(path)).title == "Tram Report"  # pypdf recovers, and says so
    pypdf_lines = [r for r in caplog.records if "pypdf" in r.getMessage()]
    assert pypdf_lines and all(r.getMessage().startswith(f"{path}: pypdf: ") for r in pypdf_lines)
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]  # none without the file's name


def test_docx_paragraphs_and_title_style(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.core_properties.author = "Jane Doe"
    document.add_heading("Trams Return", 0)
    document.add_paragraph(BODY)
    document.add_paragraph(BODY2)
    path = tmp_path / "story.docx"
    document.save(path)
    article = only(load_file(path))
    assert article.title == "Trams Return"
    assert article.author == "Jane Doe"
    assert article.text == f"{BODY}\n\n{BODY2}"


def test_docx_core_title_wins(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.core_properties.title = "Core Title"
    document.add_paragraph(BODY)
    path = tmp_path / "story.docx"
    document.save(path)
    assert only(load_file(path)).title == "Core Title"


def test_bad_docx_is_load_error(tmp_path: Path) -> None:
    path = write(tmp_path / "fake.docx", "PK not really a zip file at all")
    with pytest.raises(LoadError, match=r"fake\.docx.*docx"):
        load_file(path)


def _jsonl(rows: list) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"


def test_jsonl_fields_and_sources(tmp_path: Path) -> None:
    rows = [
        {"text": BODY, "title": "Given Title", "url": "https://example.com/a", "published": "2024-01-02",
         "author": "Jane Doe", "id": "x1"},
        {"text": f"Detected Headline\n\n{BODY2}", "id": 7},
        {"text": BODY2 + " Again."},
    ]
    path = write(tmp_path / "feed.jsonl", _jsonl(rows))
    articles = load_file(path).articles
    assert [a.source for a in articles] == ["https://example.com/a", "7", f"{path}#L3"]
    first, second, _ = articles
    assert (first.title, first.author, first.published, first.text) == ("Given Title", "Jane Doe", "2024-01-02", BODY)
    assert second.title == "Detected Headline" and second.text == BODY2


def test_jsonl_gz(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(_jsonl([{"text": BODY, "id": "a"}, {"text": BODY2, "id": "b"}]))
    assert ".jsonl.gz" in SUPPORTED_SUFFIXES
    result = load_paths([tmp_path])
    assert [a.source for a in result.articles] == ["a", "b"]
    assert result.articles[1].text == BODY2


def test_jsonl_bad_lines_reported_with_line_numbers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [
        {"text": BODY, "id": "good1"},
        "{not json",
        "[1, 2]",
        {"title": "no text"},
        {"text": "   ", "id": "blank"},
        {"text": 42, "id": "number"},
        "",
        {"text": BODY2, "id": "good2"},
        {"text": BODY2, "id": "good2"},
    ]
    path = write(tmp_path / "feed.jsonl", _jsonl(rows))
    with caplog.at_level(logging.WARNING, logger="qa.ingest.load"):
        result = load_paths([path])
    assert [a.source for a in result.articles] == ["good1", "good2"]
    numbers = sorted(int(re.search(r"line (\d+)", m).group(1)) for m in result.skipped)
    assert numbers == [2, 3, 4, 5, 6, 9]
    assert all("feed.jsonl" in m for m in result.skipped)
    # the caller (qa build, the web chat) shows result.skipped; a warning log as well would show each twice
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_jsonl_huge_line_skipped_rest_loaded(tmp_path: Path) -> None:
    rows = [{"text": "word " * 300_000, "id": "huge"}, {"text": BODY, "id": "small"}]
    path = write(tmp_path / "feed.jsonl", _jsonl(rows))
    result = load_paths([path], max_article_chars=10_000)
    assert [a.source for a in result.articles] == ["small"]
    assert len(result.skipped) == 1 and "line 1" in result.skipped[0] and "10,000" in result.skipped[0]


def test_iter_articles_yields_what_load_file_returns_as_it_reads(tmp_path: Path) -> None:
    rows = [{"text": BODY, "id": "a"}, "{not json", {"text": BODY2, "id": "b"}, {"text": BODY2, "id": "b"}]
    path = write(tmp_path / "feed.jsonl", _jsonl(rows))
    loaded = load_file(path)
    assert [a.source for a in loaded.articles] == ["a", "b"] and len(loaded.skipped) == 2
    skipped: list[str] = []
    articles = iter_articles(path, skip=skipped.append)
    assert next(articles) == loaded.articles[0] and skipped == []  # line 2 is not read yet
    assert next(articles) == loaded.articles[1] and skipped == [loaded.skipped[0]]
    assert list(articles) == [] and tuple(skipped) == loaded.skipped
    story = write(tmp_path / "story.txt", f"Trams Return\n\n{BODY}")
    assert list(iter_articles(story, skip=skipped.append)) == list(load_file(story).articles)


# --- archives over the file size limit -------------------------------------------------------

ARCHIVE_LINES = 6_000


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """6,000 articles of about 10,000 characters of varied words: a 61 MB .jsonl, and the same as a .jsonl.gz."""
    rng = random.Random(21)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10))) for _ in range(5_000)]
    folder = tmp_path_factory.mktemp("archive")
    plain = folder / "archive.jsonl"
    with plain.open("w", encoding="utf-8") as fh:
        for i in range(ARCHIVE_LINES):
            text = " ".join(" ".join(rng.choices(words, k=12)).capitalize() + "." for _ in range(120))
            fh.write(json.dumps({"id": f"a{i}", "title": f"Report {i}", "text": text}) + "\n")
    packed = folder / "archive.jsonl.gz"
    # Stored, not compressed, so the .gz is as large on disk as the text without writing 150 MB of it.
    with plain.open("rb") as src, gzip.open(packed, "wb", compresslevel=0) as dst:
        shutil.copyfileobj(src, dst)
    return {".jsonl": plain, ".jsonl.gz": packed}


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_jsonl_archive_over_the_file_size_limit_loads_whole(archive: dict[str, Path], suffix: str) -> None:
    path = archive[suffix]
    assert path.stat().st_size > MAX_FILE_BYTES
    result = load_file(path)
    assert result.skipped == ()
    assert [a.source for a in result.articles] == [f"a{i}" for i in range(ARCHIVE_LINES)]
    assert result.articles[-1].title == f"Report {ARCHIVE_LINES - 1}" and len(result.articles[-1].text) > 9_000


def test_a_limit_the_caller_sets_still_refuses_a_big_jsonl(archive: dict[str, Path]) -> None:
    for path in archive.values():  # as the web chat's uploads check theirs
        with pytest.raises(LoadError, match=rf"{re.escape(path.name)}: 6[\d.]+ MB, over the 20 MB limit; split it"):
            load_file(path, max_file_bytes=20_000_000)


def test_iter_articles_reads_an_archive_in_little_memory(archive: dict[str, Path]) -> None:
    skipped: list[str] = []
    articles = iter_articles(archive[".jsonl.gz"], skip=skipped.append)
    tracemalloc.start()
    try:
        sources = [a.source for a in itertools.islice(articles, 2_000)]  # 20 MB of text, a third of the file
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        articles.close()
    assert sources == [f"a{i}" for i in range(2_000)] and skipped == []
    assert peak < 5_000_000, f"{peak:,} bytes held at once while reading 2,000 articles"


# --- decoding --------------------------------------------------------------------------------

ACCENTED = "Trams Return\n\nThe café owner said “we are open” – prices rose to €5 in Zürich this week.\n"


def test_cp1252_text_decodes(tmp_path: Path) -> None:
    article = only(load_file(write(tmp_path / "a.txt", ACCENTED, "cp1252")))
    assert article.text == ACCENTED.split("\n\n")[1].strip()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_bom_text_decodes(tmp_path: Path, encoding: str) -> None:
    article = only(load_file(write(tmp_path / "a.txt", ACCENTED, encoding)))
    assert article.title == "Trams Return"
    assert "“we are open”" in article.text and "\ufeff" not in article.text


def test_decode_text_falls_back_for_undecodable_bytes() -> None:
    assert "Caf" in decode_text(b"Caf\xe9 \x81\x8d\x8f\x90\x9d ok")


# --- bad files -------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.txt", "")
    with pytest.raises(LoadError, match=r"empty\.txt: empty file"):
        load_file(path)


def test_only_boilerplate_is_nothing_left(tmp_path: Path) -> None:
    path = write(tmp_path / "ads.txt", "Advertisement\n\nShare\n\n4 hours ago\n \n")
    with pytest.raises(LoadError, match="no text left"):
        load_file(path)


def test_binary_file_with_txt_extension(tmp_path: Path) -> None:
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    with pytest.raises(LoadError, match=r"image\.txt: looks binary"):
        load_file(path)


def test_oversized_file(tmp_path: Path) -> None:
    path = write(tmp_path / "big.txt", BODY * 50)
    with pytest.raises(LoadError, match=r"big\.txt: .* MB, over the 0\.001 MB limit"):
        load_file(path, max_file_bytes=1000)
    result = load_paths([path], max_file_bytes=1000)
    assert result.articles == () and "big.txt" in result.skipped[0]


def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="does not exist"):
        load_paths([tmp_path / "nope"])


def test_unsupported_suffix_named_vs_in_folder(tmp_path: Path) -> None:
    csv = write(tmp_path / "data.csv", "a,b\n1,2\n")
    write(tmp_path / "story.txt", f"Trams Return\n\n{BODY}")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01")
    folder = load_paths([tmp_path])
    assert len(folder.articles) == 1  # a stray file in a folder is skipped with a message naming it
    assert sorted(m.split(":")[0] for m in folder.skipped) == [str(tmp_path / "blob.bin"), str(csv)]
    assert all("unsupported file type" in m for m in folder.skipped)
    named = load_paths([csv])
    assert named.articles == () and len(named.skipped) == 1 and "data.csv" in named.skipped[0]
    with pytest.raises(LoadError, match="unsupported"):
        load_file(csv)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "secret.txt", BODY)
    path.chmod(0)
    with pytest.raises(LoadError, match=r"secret\.txt.*permission"):
        load_file(path)


# --- folders ---------------------------------------------------------------------------------


def test_folder_recursive_sorted_hidden_ignored(tmp_path: Path) -> None:
    write(tmp_path / "b" / "2.txt", f"Second\n\n{BODY}")
    write(tmp_path / "a" / "1.md", f"# First\n\n{BODY}")
    write(tmp_path / "c.txt", f"Third\n\n{BODY}")
    write(tmp_path / ".hidden.txt", f"Hidden\n\n{BODY}")
    write(tmp_path / ".git" / "x.txt", f"Hidden too\n\n{BODY}")
    result = load_paths([tmp_path])
    assert [a.title for a in result.articles] == ["First", "Second", "Third"]
    assert result.skipped == ()


def test_same_file_twice_loaded_once(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", f"Trams Return\n\n{BODY}")
    result = load_paths([tmp_path, path])
    assert len(result.articles) == 1 and result.skipped == ()


def test_symlink_outside_folder_not_followed(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside" / "secret.txt", f"Secret\n\n{BODY}")
    folder = tmp_path / "corpus"
    write(folder / "inside.txt", f"Inside\n\n{BODY}")
    (folder / "link.txt").symlink_to(outside)
    (folder / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    (folder / "alias.txt").symlink_to(folder / "inside.txt")
    result = load_paths([folder])
    assert [a.title for a in result.articles] == ["Inside"]
    assert len(result.skipped) == 2
    assert all("not followed" in m for m in result.skipped)
    assert any("link.txt" in m for m in result.skipped) and any("linkdir" in m for m in result.skipped)


# --- clean-up of uploads: the shapes the README promises -------------------------------------


@pytest.mark.parametrize("byline", ["*By Tomas Ilves*", "_By Tomas Ilves_", "**By Tomas Ilves**", "*by* Tomas Ilves"])
def test_a_markdown_emphasised_byline_is_the_author(tmp_path: Path, byline: str) -> None:
    article = only(load_file(write(tmp_path / "ferry.md", f"# Ferry Returns\n\n{byline}\n\n{BODY}\n\n{BODY2}\n")))
    assert article.author == "Tomas Ilves"
    assert "Ilves" not in article.text and "*" not in article.text and article.text.startswith("The city council")


@pytest.mark.parametrize("line, date", [
    ("March 3, 2026", "March 3, 2026"), ("Tuesday, March 3, 2026", "Tuesday, March 3, 2026"),
    ("3 March 2026", "3 March 2026"), ("2026-03-03", "2026-03-03"), ("Published: Mar. 3, 2026", "Mar. 3, 2026"),
    ("Updated March 3, 2026 10:42 a.m.", "March 3, 2026 10:42 a.m."),
])
def test_a_lone_date_line_at_the_top_is_the_published_date(tmp_path: Path, line: str, date: str) -> None:
    article = only(load_file(write(tmp_path / "trams.txt", f"Trams Return\n{line}\n\n{BODY}\n\n{BODY2}\n")))
    assert article.title == "Trams Return" and article.published == date
    assert article.text == f"{BODY}\n\n{BODY2}"


def test_a_date_inside_the_body_stays(tmp_path: Path) -> None:
    text = f"Trams Return\n\n{BODY}\n\nMarch 3, 2026\n\n{BODY2}\n"
    article = only(load_file(write(tmp_path / "trams.txt", text)))
    assert article.published == "" and "March 3, 2026" in article.text


def test_an_html_newsletter_prompt_is_dropped(tmp_path: Path) -> None:
    html = f"""<html><head><title>Ferry Returns</title></head><body><article><h1>Ferry Returns</h1>
    <p>{BODY}</p><p>Newsletter: sign up for our daily briefing</p><p>{BODY2}</p>
    <p>Sign up for our morning briefing</p></article></body></html>"""
    article = only(load_file(write(tmp_path / "ferry.html", html)))
    assert "briefing" not in article.text.lower() and BODY2 in article.text
