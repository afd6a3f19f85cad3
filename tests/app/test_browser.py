"""The web chat in a real headless Chromium (Debian's /usr/bin/chromium) against the real app.

One server per module (``qa.app.web.serve``, what ``python app.py`` runs) on a
free port, with a copy of the bundled articles, a fresh index and the real model.
``QA_SCREENSHOT=1`` saves docs/screenshot.png of a real answer with its source open.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect
from conftest import ROOT, TROOPS, free_port, writable_copy

from qa.app.web import serve

pytestmark = [pytest.mark.real, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT = 60_000  # ms

HOSTILE = """The Quorvath Lantern Festival <img src=y onerror="window.__qaPwned='title'">

The Quorvath lantern festival is held every November in the harbour town of Elsmere <script>window.__qaPwned = 'script'; alert('script')</script> and draws nine thousand visitors.

The organisers say the lanterns <img src=x onerror="window.__qaPwned='img'; alert('img')"> are folded from rice paper by local schoolchildren.

Tickets are sold at [the town hall](javascript:window.__qaPwned='link') or <a href="javascript:alert('a')">online</a> for twelve crowns each.

The poster ![tracker](http://example.invalid/x.png) shows a lantern over the harbour. <!-- window.__qaPwned = 'comment' -->
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, real_embedder):
    if not Path(CHROMIUM).exists():
        if os.environ.get("QA_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is not installed and QA_REQUIRE_BROWSER is set (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    root = tmp_path_factory.mktemp("web-browser")
    writable_copy(root / "articles")
    port = free_port()
    cwd = os.getcwd()
    os.chdir(root)  # relative folders, as with `python app.py`, so sources read "articles/..."
    try:
        demo, library = serve(
            Path("articles"),
            Path("index"),
            server_name="127.0.0.1",
            server_port=port,
            embedder=real_embedder,
            block=False,
        )
        try:
            status = library.wait(180)
            assert library.bot is not None, status.error
            yield {"url": f"http://127.0.0.1:{port}/", "library": library, "root": root}
        finally:
            demo.close()
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh page (own session) that records dialogs and every request it makes."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.dialogs, page.requests = [], []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: page.requests.append(r.url))
    page.set_default_timeout(WAIT)
    page.goto(server["url"])
    page.wait_for_selector("#qa-question textarea")
    yield page
    context.close()


def ask(page, question: str):
    """Type a question, send it, and return the locator of the newest answer's quotes."""
    before = page.locator("#qa-chat blockquote").count()
    page.fill("#qa-question textarea", question)
    page.keyboard.press("Enter")
    page.wait_for_function("n => document.querySelectorAll('#qa-chat blockquote').length > n", arg=before, timeout=WAIT)
    return page.locator("#qa-chat blockquote")


def upload_and_wait(page, path: Path, articles: int):
    """Upload a file from the Articles tab and wait until the index holds ``articles`` articles."""
    page.get_by_role("tab", name="Articles").click()
    page.set_input_files("#qa-upload input[type=file]", str(path))
    page.wait_for_function(
        "() => (document.querySelector('#qa-notice')?.innerText || '').includes('Added')", timeout=WAIT
    )
    page.wait_for_function(
        "n => (document.querySelector('#qa-status')?.innerText || '').includes(n + ' articles')",
        arg=articles,
        timeout=WAIT,
    )
    page.get_by_role("tab", name="Chat").click()


def test_example_question_shows_quotes_with_citations_and_sources(page, server):
    page.locator("#qa-examples").get_by_text(TROOPS).click()
    page.wait_for_selector("#qa-chat blockquote")
    quotes = page.locator("#qa-chat blockquote")
    expected = server["library"].bot.ask(TROOPS).quotes  # the page shows what Bot.ask says
    assert " ".join(expected[0].text.split()) in quotes.first.inner_text()
    assert quotes.count() == len(expected)
    assert any("10,000 troops" in t for t in quotes.all_inner_texts())
    assert re.search(r"\[1\]$", quotes.first.inner_text().strip())
    sources = page.locator("#qa-chat").get_by_text(re.compile(r"^Sources · \d article"))
    assert sources.count() == 1
    assert "North Korea’s Warning To America" in page.locator("#qa-chat").inner_text()
    # a follow-up goes to the bot with the history; the page shows what was searched when it differs
    follow = "What may it get in return?"
    ask(page, follow)
    assert page.locator("#qa-chat [data-testid=user]").count() == 2
    searched = server["library"].bot.ask(follow, [TROOPS]).searched
    text = page.locator("#qa-chat").inner_text()
    assert (f"Searched: {searched}" in text) == (searched != follow)


def test_citation_opens_the_article_with_the_quote_highlighted(page, server):
    quotes = ask(page, TROOPS)
    first = server["library"].bot.ask(TROOPS).quotes[0]
    quotes.first.locator("a[href^='#qa-src=']").click()
    mark = page.locator("#qa-viewer mark.qa-hit")
    mark.wait_for()
    assert " ".join(mark.inner_text().split()) == " ".join(first.text.split())
    assert page.locator("#qa-viewer .qa-doc-title").inner_text() == first.title
    body = page.locator("#qa-viewer .qa-doc-body").inner_text()
    article = server["library"].bot.index.articles[first.article_id]
    assert " ".join(body.split()) == " ".join(article.text.split())  # the whole cleaned article
    page.wait_for_function(  # scrolled into view inside the viewer's scroll box and the window
        """() => {
            const m = document.querySelector('#qa-viewer mark.qa-hit').getBoundingClientRect();
            let box = document.querySelector('#qa-viewer mark.qa-hit').parentElement;
            while (box && box.scrollHeight <= box.clientHeight) box = box.parentElement;
            const b = box ? box.getBoundingClientRect() : {top: 0, bottom: innerHeight};
            return m.top >= b.top && m.bottom <= b.bottom && m.top >= 0 && m.bottom <= innerHeight;
        }""",
        timeout=10_000,
    )
    scrolled = page.evaluate(
        """() => { let e = document.querySelector('#qa-viewer mark.qa-hit').parentElement;
                   while (e && e.scrollTop === 0) e = e.parentElement; return e ? e.scrollTop : 0; }"""
    )
    assert scrolled > 0, "the quote is below the fold, so the viewer must have scrolled"
    if os.environ.get("QA_SCREENSHOT") == "1":
        page.wait_for_timeout(300)
        page.screenshot(path=str(ROOT / "docs" / "screenshot.png"))


def test_upload_an_article_then_ask_about_it(page, server, tmp_path):
    note = tmp_path / "varnholt-lighthouse.txt"
    note.write_text(
        "Varnholt Lighthouse Repainted\n\nThe Varnholt lighthouse was painted teal in 1987 by the keeper Mira Oslund.\n\n"
        "It had been white for ninety years before that.\n",
        encoding="utf-8",
    )
    count = len(server["library"].bot.index.articles)
    upload_and_wait(page, note, count + 1)
    assert (server["library"].articles_dir / note.name).is_file()
    quotes = ask(page, "What colour was the Varnholt lighthouse painted?")
    assert any("painted teal in 1987" in t for t in quotes.all_inner_texts())
    page.get_by_role("tab", name="Articles").click()
    expect(page.locator("#qa-table")).to_contain_text("Varnholt Lighthouse Repainted")


def test_unsupported_upload_gives_a_message_and_changes_nothing(page, server, tmp_path):
    bad = tmp_path / "tool.exe"
    bad.write_bytes(b"MZ\x90\x00binary")
    before = server["library"].files()
    page.get_by_role("tab", name="Articles").click()
    page.set_input_files("#qa-upload input[type=file]", str(bad))
    page.wait_for_function(
        "() => (document.querySelector('#qa-notice')?.innerText || '').includes('not supported')", timeout=WAIT
    )
    assert server["library"].files() == before


def test_hostile_article_stays_text(page, server, tmp_path):
    evil = tmp_path / "quorvath.txt"
    evil.write_text(HOSTILE, encoding="utf-8")
    count = len(server["library"].bot.index.articles)
    upload_and_wait(page, evil, count + 1)
    ask(page, "When is the Quorvath lantern festival held?")
    chat = page.locator("#qa-chat")
    page.wait_for_function("() => document.querySelector('#qa-chat').innerText.includes('Quorvath')")
    text = chat.inner_text()
    assert "<script>window.__qaPwned = 'script'; alert('script')</script>" in text
    page.get_by_text("Sources ·").last.wait_for()
    assert "<img src=y onerror=" in text  # the hostile title, in the sources, as text
    # open the hostile article: everything shows literally in the viewer as well
    chat.locator("a[href^='#qa-src=']", has_text="Quorvath").last.click()
    page.locator("#qa-viewer mark.qa-hit").wait_for()
    viewer = page.locator("#qa-viewer").inner_text()
    for literal in (
        "<img src=x onerror=",
        "[the town hall](javascript:window.__qaPwned='link')",
        "<a href=\"javascript:alert('a')\">online</a>",
        "![tracker](http://example.invalid/x.png)",
        "<!-- window.__qaPwned = 'comment' -->",
    ):
        assert literal in viewer
    page.get_by_role("tab", name="Articles").click()
    expect(page.locator("#qa-table")).to_contain_text("<img src=y onerror=")  # rows render after the tab opens
    # click every link the article could have produced: none may navigate or run code
    for link in page.locator("#qa-chat a, #qa-viewer a").all():
        assert (link.get_attribute("href") or "").startswith("#qa-src=")
    page.wait_for_timeout(500)
    assert page.dialogs == []
    assert page.evaluate("window.__qaPwned") is None
    assert page.locator("#qa-chat img, #qa-viewer img, #qa-table img").count() == 0
    hosts = {urlparse(u).hostname for u in page.requests if not u.startswith(("data:", "blob:"))}
    assert hosts <= {"127.0.0.1"}, hosts


# -- what a new user hit (issue 12) ---------------------------------------------------------------


def _status(page) -> str:
    return page.locator("#qa-status").inner_text()


def test_narrow_screen_keeps_the_articles_tab_readable(browser, server):
    context = browser.new_context(viewport={"width": 400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT)
    try:
        page.goto(server["url"])
        page.wait_for_selector("#qa-question textarea")
        page.get_by_role("tab", name="Articles").click()
        page.wait_for_selector("#qa-table td.qa-col-passages")
        assert page.evaluate("document.documentElement.scrollWidth") <= 400  # nothing sticks out sideways
        line = page.evaluate("parseFloat(getComputedStyle(document.querySelector('#qa-table td')).lineHeight)")
        for cell in page.locator("#qa-table td.qa-col-date, #qa-table td.qa-col-passages").all():
            box = cell.bounding_box()
            assert box["height"] < 1.6 * line, f"{cell.inner_text()!r} wraps over {box['height']:.0f}px"
            assert box["x"] + box["width"] <= 400
        unit = page.evaluate(
            "getComputedStyle(document.querySelector('#qa-table td.qa-col-passages'), '::after').content"
        )
        assert unit in ('" passages"', '" passage"'), unit  # the unit shows where the header is hidden
        assert page.locator("#qa-files").bounding_box()["width"] >= 300  # the file list is not squeezed
        for name in ("Remove file", "Rebuild now"):
            assert page.get_by_role("button", name=name).bounding_box()["width"] >= 300
        if os.environ.get("QA_SCREENSHOT") == "1":
            page.screenshot(path=str(ROOT / "docs" / "screenshot-narrow.png"), full_page=True)
    finally:
        context.close()


def test_after_an_upload_the_status_follows_the_rebuild_to_its_end(page, server, tmp_path):
    story = tmp_path / "tram-depot.txt"
    story.write_text(
        "Tram Depot Reopens\n\nThe old tram depot in Varnholt reopened as a market hall on Saturday.\n",
        encoding="utf-8",
    )
    count = len(server["library"].bot.index.articles)
    seen = []
    page.get_by_role("tab", name="Articles").click()
    page.set_input_files("#qa-upload input[type=file]", str(story))
    page.wait_for_function("() => (document.querySelector('#qa-notice')?.innerText || '').includes('Added')")
    for _ in range(40):  # sample the status line while the rebuild runs
        seen.append(_status(page))
        if f"{count + 1} articles" in seen[-1]:
            break
        page.wait_for_timeout(250)
    page.wait_for_function(
        "n => document.querySelector('#qa-status').innerText.includes(n + ' articles')", arg=count + 1
    )
    page.wait_for_timeout(1500)  # a timer tick or two after the end
    assert "Updating" not in page.locator("#qa-notice").inner_text()
    assert "…" not in _status(page) and "Index updated" in _status(page)
    for text in [*seen, _status(page)]:
        assert not re.search(r"(^|\n)\s*\d+(\.\d+)?s\s*($|\n)", text), f"Gradio's timer in the status: {text!r}"
    # the same file again: said so, and nothing is rebuilt
    generation = server["library"].status().generation
    page.set_input_files("#qa-upload input[type=file]", str(story))
    page.wait_for_function(
        "() => (document.querySelector('#qa-notice')?.innerText || '').includes('already in the articles folder')"
    )
    assert "Added" not in page.locator("#qa-notice").inner_text()
    page.wait_for_timeout(1500)
    assert server["library"].status().generation == generation and not server["library"].status().running


def test_remove_asks_nothing_but_can_be_undone(page, server, tmp_path):
    note = tmp_path / "ferry-fares.txt"
    note.write_text("Ferry Fares\n\nThe Esk ferry fare rose to four crowns in March.\n", encoding="utf-8")
    count = len(server["library"].bot.index.articles)
    upload_and_wait(page, note, count + 1)
    page.get_by_role("tab", name="Articles").click()
    page.locator("#qa-files input").click()
    page.get_by_role("option", name=note.name).click()
    page.get_by_role("button", name="Remove file").click()
    page.wait_for_function("() => document.querySelector('#qa-notice').innerText.includes('Removed')")
    assert ".trash" in page.locator("#qa-notice").inner_text()
    assert not (server["library"].articles_dir / note.name).exists()
    page.wait_for_function("n => document.querySelector('#qa-status').innerText.includes(n + ' articles')", arg=count)
    page.get_by_role("button", name="Undo remove").click()
    page.wait_for_function("() => document.querySelector('#qa-notice').innerText.includes('Restored')")
    page.wait_for_function(
        "n => document.querySelector('#qa-status').innerText.includes(n + ' articles')", arg=count + 1
    )
    assert (server["library"].articles_dir / note.name).is_file()
    expect(page.get_by_role("button", name="Undo remove")).to_be_hidden()


def test_an_empty_question_is_answered_at_once(page, server):
    page.fill("#qa-question textarea", "   ")
    started = page.evaluate("performance.now()")
    page.keyboard.press("Enter")
    page.get_by_text("Type a question about the articles first.").wait_for()
    seconds = (page.evaluate("performance.now()") - started) / 1000
    print(f"empty question: message after {seconds:.2f}s")  # a figure for the report, not a timed assertion
    assert page.locator("#qa-chat [data-testid=user]").count() == 0  # nothing was sent to the bot


BRIDGE = """Harbour Bridge Opens in Elsmere

The new harbour bridge in Elsmere opened to traffic on Saturday after three years of work.

Mayor Ilse Varga cut the ribbon at the west end of the bridge while a brass band played.

The bridge carries two lanes of traffic and a cycle path, and replaces a ferry that ran for sixty years.
"""


def test_an_answer_does_not_pad_with_unrelated_articles(page, server, tmp_path):
    story = tmp_path / "elsmere-bridge.txt"
    story.write_text(BRIDGE, encoding="utf-8")
    upload_and_wait(page, story, len(server["library"].bot.index.articles) + 1)
    ask(page, "Who cut the ribbon?")
    page.get_by_text("Sources ·").last.wait_for()
    answer = page.locator("#qa-chat").inner_text().rsplit("Who cut the ribbon?", 1)[-1]
    assert "cut the ribbon" in answer
    # every quote shown comes from the bridge story: no North Korea (nor any other article) padding the answer
    assert "North Korea" not in answer and "Kim Jong Un" not in answer
    assert "Sources · 1 article" in answer, answer


# -- what a new user hit (issue 20) ---------------------------------------------------------------


def test_clearing_the_articles_filter_shows_every_article_again(page, server):
    page.get_by_role("tab", name="Articles").click()
    rows = len(server["library"].articles())
    expect(page.locator("#qa-table tbody tr")).to_have_count(rows)
    box = page.locator("#qa-table-filter textarea, #qa-table-filter input").first
    box.click()
    page.keyboard.type("zzz")
    expect(page.locator("#qa-table")).to_contain_text("No article matches")
    for _ in range(3):
        page.keyboard.press("Backspace")
    expect(page.locator("#qa-table tbody tr")).to_have_count(rows)  # no reload needed
    expect(page.locator("#qa-table")).not_to_contain_text("No article matches")


def test_a_follow_up_is_not_padded_with_an_unrelated_quote(page, server):
    ask(page, TROOPS)
    before = page.locator("#qa-chat blockquote").count()
    quotes = ask(page, "What might it get in return?")
    new = quotes.all_inner_texts()[before:]
    assert new and "advanced weaponry" in new[0]
    assert not any("calling out the U.S." in t for t in new), new


def test_the_chat_scrolls_to_the_end_of_the_last_answer(page, server):
    for question in (TROOPS, "Who blocked new sanctions at the U.N. Security Council?",
                     "How many times did Trump meet Kim?"):
        ask(page, question)
        page.get_by_text(re.compile(r"^Sources · ")).last.wait_for()
    page.wait_for_timeout(1000)  # let the autoscroll settle
    gap = page.evaluate(  # how far the chat's scroll box is from its end: the last Sources line must show
        """() => {
            const box = [...document.querySelectorAll('#qa-chat *')].find(e =>
                e.scrollHeight > e.clientHeight + 1 && ['auto', 'scroll'].includes(getComputedStyle(e).overflowY));
            return box.scrollHeight - box.scrollTop - box.clientHeight;
        }"""
    )
    assert gap <= 2, f"the chat stopped {gap:.0f}px short of the end of the last answer"
