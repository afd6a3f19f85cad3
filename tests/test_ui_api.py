"""The web chat's parts: safe uploads, escaping, background rebuilds, and the ``ask`` API over gradio_client.

The fast tests use the hash embedder; the ``real`` ones start one real server
(the same ``app.serve`` that ``python app.py`` runs) on a free port, with a
copy of the bundled articles and a fresh index.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import stat
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = ROOT / "articles"
TROOPS = "How many troops did North Korea send to Russia?"


def load_app():
    """The top-level ``app.py`` as a module (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("qa_web_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def writable_copy(dst: Path) -> Path:
    shutil.copytree(ARTICLES, dst)
    for path in dst.iterdir():
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return dst


@pytest.fixture
def library(tmp_path, hash_embedder):
    """A library over a copy of the bundled articles, indexed with the hash embedder."""
    from qa.manage import Library

    lib = Library(
        writable_copy(tmp_path / "articles"), tmp_path / "index", embedder=hash_embedder, max_upload_bytes=10_000
    )
    lib.start()
    status = lib.wait(60)
    assert status.state == "done" and lib.bot is not None, status.message
    return lib


# -- uploads and names (fast) -------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, expected",
    [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("/etc/cron.d/evil.md", "evil.md"),
        ("..\\..\\win\\boot.HTML", "boot.html"),
        (".hidden.txt", "hidden.txt"),
        ("..txt", "article.txt"),
        ("Ｆｕｌｌｗｉｄｔｈ　ｎａｍｅ.txt", "Fullwidth_name.txt"),
        ("a\u202eevil\u200b name?.pdf", "a_evil_name.pdf"),
        ("Café Été.docx", "Café_Été.docx"),
        ("news.JSONL.GZ", "news.jsonl.gz"),
    ],
)
def test_safe_name_keeps_uploads_inside_the_folder(given, expected):
    from qa.manage import safe_name

    assert safe_name(given) == expected


def _folder_state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("virus.exe", b"MZ\x90\x00", "not supported"),
        ("empty.txt", b"", "is empty"),
        ("blob.txt", b"\x00\x01\x02\x03" * 100, "looks binary"),
        ("huge.txt", b"word " * 5_000, "upload limit"),
        ("bad.jsonl", b"{not json}\n", "no article"),
    ],
)
def test_bad_upload_gives_a_message_and_changes_nothing(library, tmp_path, name, data, message):
    from qa.manage import ManageError

    upload = tmp_path / "incoming" / name
    upload.parent.mkdir()
    upload.write_bytes(data)
    before = _folder_state(library.articles_dir)
    with pytest.raises(ManageError, match=message) as info:
        library.save_upload(upload)
    assert str(tmp_path / "incoming") not in str(info.value)  # names the upload, not a temp path
    assert _folder_state(library.articles_dir) == before


def test_upload_never_overwrites_a_different_file(library, tmp_path):
    first = tmp_path / "a" / "000_477d58a20c8c4005.txt"
    first.parent.mkdir()
    first.write_text("A different article with the same file name.\n\nIt has a second paragraph.", encoding="utf-8")
    original = (library.articles_dir / first.name).read_bytes()
    saved = library.save_upload(first)
    assert saved.name == "000_477d58a20c8c4005-2.txt"
    assert (library.articles_dir / first.name).read_bytes() == original
    assert library.save_upload(first) == saved  # the same bytes again: kept once
    assert not [p for p in library.articles_dir.iterdir() if p.name.startswith(".")]  # no temp files left


def test_pasted_text_and_removal(library):
    from qa.manage import ManageError

    saved = library.save_text("Harbour notes", "The harbour of Elsmere froze over in 1911.")
    assert saved.name == "Harbour_notes.md" and saved.parent == library.articles_dir
    assert "Harbour_notes.md" in library.files()
    with pytest.raises(ManageError, match="empty"):
        library.save_text("title only", "   ")
    with pytest.raises(ManageError, match="not in the articles folder"):
        library.remove("../index/manifest.json")
    library.remove("Harbour_notes.md")
    assert not saved.exists()


def test_rebuild_switches_the_bot_and_a_failed_one_keeps_serving(library):
    old_build = library.bot.index.build_id
    library.save_text("Lighthouse", "The Varnholt lighthouse was painted teal in 1987 by Mira Oslund.")
    assert library.rebuild()
    assert library.wait(60).state == "done"
    assert library.bot.index.build_id != old_build
    answer = library.ask("What colour was the Varnholt lighthouse painted?")
    assert any("teal" in q.text for q in answer.quotes)

    serving = library.bot.index.build_id
    for path in library.articles_dir.iterdir():  # nothing readable left: the build must fail
        path.unlink()
    library.rebuild()
    status = library.wait(60)
    assert status.state == "failed" and "no readable articles" in status.message
    assert "keeps answering" in status.message
    assert library.bot.index.build_id == serving
    assert library.ask(TROOPS).quotes


def test_no_index_says_how_to_build_it(tmp_path, hash_embedder):
    from qa.manage import Library, NoIndex

    lib = Library(tmp_path / "nothing", tmp_path / "index", embedder=hash_embedder)
    lib.start()
    assert lib.wait(30).state == "idle"
    with pytest.raises(NoIndex, match="No index yet.*Articles tab.*qa build"):
        lib.ask(TROOPS)
    lib.articles_dir.mkdir()
    (lib.articles_dir / "blank.txt").write_text("\n\n", encoding="utf-8")
    lib.rebuild()
    assert lib.wait(30).state == "failed"
    with pytest.raises(NoIndex, match="Last attempt: The rebuild failed: no readable articles"):
        lib.ask(TROOPS)
    (lib.articles_dir / "note.txt").write_text("The Elsmere harbour froze over in 1911.", encoding="utf-8")
    lib.rebuild()
    assert lib.wait(30).state == "done"
    assert "froze over in 1911" in lib.ask("When did the Elsmere harbour freeze?").quotes[0].text


# -- formatting (fast) ------------------------------------------------------------------------


HOSTILE = (
    "<script>alert(1)</script> <img src=x onerror=alert(2)> [t](javascript:alert(3)) "
    "![i](http://example.invalid/x.png) <!-- c --> http://example.invalid/y www.example.invalid a@b.invalid *e* `c` $$x$$"
)


def test_markdown_escaping_leaves_no_markup():
    from qa.ui import md_text

    out = md_text(HOSTILE)
    assert "<" not in out and ">" not in out
    assert not re.search(r"(?<!\\)[\[\]`*]", out)  # no link, image, code or emphasis syntax
    assert "http://" not in out and "www." not in out and "a@" not in out  # no autolinks


def test_article_view_escapes_and_marks_the_span(library):
    from qa.ui import article_html, source_ref

    article = next(iter(library.bot.index.articles.values()))
    start = article.text.index("North Korea")
    ref = source_ref(article.id, start, start + 11)[len("#qa-src=") :]
    page = article_html(library, ref)
    assert '<mark class="qa-hit">North Korea</mark>' in page
    assert "no longer in the index" in article_html(library, "0000000000000000:0:1")
    assert "cannot be opened" in article_html(library, "<script>")


def test_answer_messages_number_citations_by_article(library):
    from qa.ui import answer_messages

    answer = library.ask(TROOPS)
    messages = answer_messages(answer)
    assert len(messages) == 2 and messages[1].metadata["title"].startswith("Sources")
    cited = re.findall(r"\[\\\[(\d)\\\]\]\(#qa-src=([0-9a-f]+):(\d+):(\d+)\)", messages[0].content)
    assert len(cited) == len(answer.quotes)
    for (n, article_id, start, end), q in zip(cited, answer.quotes):
        assert (article_id, int(start), int(end)) == (q.article_id, q.start, q.end)


def test_app_settings_from_the_environment():
    app = load_app()
    assert app.parse_auth(None) is None and app.parse_auth("") is None
    assert app.parse_auth("ann:s3cret,bob:pa:ss") == [("ann", "s3cret"), ("bob", "pa:ss")]
    with pytest.raises(app.SetupError):
        app.parse_auth("nopassword")
    assert app.upload_limit_bytes(None) == 20_000_000 and app.upload_limit_bytes("1.5") == 1_500_000
    with pytest.raises(app.SetupError):
        app.upload_limit_bytes("lots")


def test_app_refuses_to_start_with_a_bad_abstention_threshold(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "QA_ABSTAIN_BELOW": "strict", "QA_INDEX": str(tmp_path / "index"),
           "QA_ARTICLES": str(tmp_path / "articles"), "GRADIO_SERVER_PORT": "1"}
    proc = subprocess.run([sys.executable, str(root / "app.py")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("app: error: QA_ABSTAIN_BELOW") and "Traceback" not in proc.stderr
    assert not (tmp_path / "index").exists()  # nothing was started, nothing written


# -- the real server and gradio_client ----------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory, real_embedder):
    root = tmp_path_factory.mktemp("web-api")
    port = free_port()
    demo, library = load_app().serve(
        writable_copy(root / "articles"),
        root / "index",
        server_name="127.0.0.1",
        server_port=port,
        embedder=real_embedder,
        block=False,
    )
    try:
        status = library.wait(180)
        assert library.bot is not None, status.message
        yield {"url": f"http://127.0.0.1:{port}/", "library": library}
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server["url"], verbose=False)


@pytest.mark.real
def test_api_ask_returns_the_cli_json(server, client):
    library = server["library"]
    data = client.predict(TROOPS, [], 3, api_name="/ask")
    assert set(data) >= {"question", "answer", "abstained", "quotes"}
    assert data["question"] == TROOPS and not data["abstained"]
    assert "10,000 troops" in data["quotes"][0]["text"]
    for q in data["quotes"]:
        assert set(q) >= {"text", "title", "source", "start", "end", "score"}
        assert library.bot.index.articles[q["article_id"]].text[q["start"] : q["end"]] == q["text"]
    same = library.bot.ask(TROOPS, k=3).to_json()  # the one code path: identical apart from the timing
    assert {k: v for k, v in data.items() if k != "seconds"} == {k: v for k, v in same.items() if k != "seconds"}


@pytest.mark.real
def test_api_follow_up_uses_the_history(server, client):
    follow = "And what may it get in return?"
    data = client.predict(follow, [TROOPS], 3, api_name="/ask")
    expected = server["library"].bot.ask(follow, [TROOPS]).to_json()
    assert data["searched"] == expected["searched"]
    assert [q["text"] for q in data["quotes"]] == [q["text"] for q in expected["quotes"]]


@pytest.mark.real
def test_api_empty_question_is_a_clear_message(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="question is empty"):
        client.predict("   ", [], 3, api_name="/ask")


@pytest.mark.real
def test_questions_keep_working_during_a_rebuild(server, client):
    library = server["library"]
    fact = "The Quillon ferry between Varnholt and Esk was rebuilt from oak planks in 1952."
    filler = " ".join(
        f"Harbour log entry {i} notes {i * 7} crates of salted fish landed at pier {i % 9}." for i in range(120)
    )
    library.save_text("Ferry history", f"{fact}\n\n{filler}")  # long enough that questions overlap the rebuild
    before = library.bot.index.build_id
    answers, errors, during = [], [], []

    def keep_asking():
        while library.status().running or not answers:
            during.append(library.status().running)
            try:
                answers.append(client.predict(TROOPS, [], 3, api_name="/ask"))
            except Exception as exc:  # noqa: BLE001 - any failure fails the test below
                errors.append(exc)

    assert library.rebuild()
    asker = threading.Thread(target=keep_asking)
    asker.start()
    status = library.wait(120)
    asker.join(60)
    assert status.state == "done", status.message
    assert not errors and any(during), "no question was asked while the rebuild ran"
    assert all("10,000 troops" in a["quotes"][0]["text"] for a in answers)
    assert library.bot.index.build_id != before
    data = client.predict("What was the Quillon ferry rebuilt from?", [], 3, api_name="/ask")
    assert any("oak planks" in q["text"] for q in data["quotes"])
