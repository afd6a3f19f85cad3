"""The ``qa`` command as a user runs it: JSON contracts, exit codes, one-line errors, citations.

Most tests call ``qa.app.cli.main(argv)`` in-process with the hash embedder (fast);
the ``slow`` ones run the real console entry point in subprocesses: a smoke test,
``--help`` without torch, and a reader that leaves early (``| head -1``).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, TROOPS

from qa.app.cli import main


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def qa(monkeypatch, capsys):
    """``qa(*argv, cwd=..., stdin=..., env=...)``: run the CLI in-process and return its status and output."""

    def run(*args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None) -> Run:
        with monkeypatch.context() as m:
            for name in ("QA_INDEX", "QA_MODEL", "QA_ARTICLES", "QA_ABSTAIN_BELOW", "QA_RANKER"):
                m.delenv(name, raising=False)
            for name, value in (env or {}).items():
                m.setenv(name, value)
            m.chdir(cwd)
            m.setattr(sys, "stdin", io.StringIO(stdin))
            capsys.readouterr()
            code = main(list(args))
            out = capsys.readouterr()
        return Run(code, out.out, out.err)

    return run


def assert_one_line_error(proc: Run, *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("qa: error")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture
def workdir(corpus: Path) -> Path:
    """A folder laid out like the project: articles/ and (after build) index/."""
    return corpus.parent


@pytest.fixture
def built(workdir: Path, qa) -> Path:
    proc = qa("build", "--model", "hash", "--json", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    return workdir


def test_build_json_contract_and_defaults(workdir: Path, qa):
    proc = qa("build", "--model", "hash", "--json", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {"articles", "chunks", "embedded", "reused", "removed", "seconds"} <= set(report)
    assert report["articles"] == 2 and report["embedded"] == report["chunks"] > 0
    assert (workdir / "index" / "manifest.json").exists()
    again = json.loads(qa("build", "--model", "hash", "--json", cwd=workdir).stdout)
    assert (again["embedded"], again["reused"], again["removed"]) == (0, report["chunks"], 0)


def test_build_over_bad_files_names_each_skip_once(tmp_path: Path, qa):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "good.txt").write_text("Bridge Opens\n\nThe new bridge opened on Monday.\n", encoding="utf-8")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blob.bin").write_bytes(b"\x00\x01\x02")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    proc = qa("build", "bad", "--model", "hash", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.match(r"index index/ updated: 1 article, 1 chunk \(1 embedded", proc.stdout)
    lines = proc.stderr.splitlines()
    for name in ("empty.txt", "blob.bin", "broken.pdf"):
        assert sum(name in line for line in lines) == 1, proc.stderr  # once, naming the file
    assert all(line.startswith("qa: skipped bad/") for line in lines), proc.stderr


@pytest.fixture
def terminal_logging():
    """``with terminal_logging():`` the CLI's own logging set-up as in a terminal (pytest's handlers set aside)."""
    import contextlib
    import logging

    @contextlib.contextmanager
    def terminal():
        root = logging.getLogger()
        saved, level = root.handlers[:], root.level
        root.handlers = []
        try:
            yield
        finally:
            for handler in root.handlers:
                handler.close()
            root.handlers, root.level = saved, level

    return terminal


def test_build_reports_each_skipped_file_once_in_one_format(tmp_path: Path, qa, terminal_logging):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "good.txt").write_text("Bridge Opens\n\nThe new bridge opened on Monday.\n", encoding="utf-8")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blob.txt").write_bytes(b"\x00\x01\x02" * 50)
    (folder / "stray.bin").write_bytes(b"\x00\x01\x02")
    (folder / "feed.jsonl").write_text('{"text": "A ferry ran."}\nnot json\n', encoding="utf-8")
    with terminal_logging():
        proc = qa("build", "bad", "--model", "hash", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    for name in ("empty.txt", "blob.txt", "stray.bin", "feed.jsonl"):
        assert sum(name in line for line in lines) == 1, proc.stderr
    assert len(lines) == 4, proc.stderr
    for line in lines:  # "qa: skipped PATH: reason", the path then a colon, every time
        assert re.match(r"qa: skipped bad/[\w.]+(: line \d+)?: \w", line), line


def test_ask_json_contract(built: Path, qa):
    proc = qa("ask", "How many troops has North Korea provided to Russia?", "--json", "-k", "2", cwd=built)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert {"question", "answer", "abstained", "quotes"} <= set(answer)
    assert answer["abstained"] is False
    assert 1 <= len(answer["quotes"]) <= 2
    texts = {}
    for path in (built / "articles").iterdir():
        texts[str(Path("articles") / path.name)] = path.read_text(encoding="utf-8")
    for quote in answer["quotes"]:
        assert {"text", "title", "source", "start", "end", "score"} <= set(quote)
        assert quote["source"] in texts
        assert " ".join(quote["text"].split()) in " ".join(texts[quote["source"]].split())
    assert "10,000 troops" in answer["quotes"][0]["text"]


def test_ask_numbers_citations_per_article(built: Path, qa):
    data = json.loads(qa("ask", TROOPS, "--json", "-k", "5", cwd=built).stdout)
    text = qa("ask", TROOPS, "-k", "5", cwd=built).stdout
    order = list(dict.fromkeys(q["article_id"] for q in data["quotes"]))
    cited = [int(n) for n in re.findall(r"” \[(\d+)\]", text)]
    assert cited == [order.index(q["article_id"]) + 1 for q in data["quotes"]]
    footer = re.findall(r"^\[(\d+)\] (.+) — (\S+)", text, re.M)
    assert [int(n) for n, _, _ in footer] == list(range(1, len(order) + 1))  # each article listed once
    assert [src for _, _, src in footer] == list(dict.fromkeys(q["source"] for q in data["quotes"]))


def test_chat_answers_each_line_in_one_conversation(built: Path, qa):
    questions = "How many troops has North Korea provided to Russia?\n\nAnd what may it get in return?\n"
    proc = qa("chat", "--json", cwd=built, stdin=questions)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["question"] for a in lines] == [
        "How many troops has North Korea provided to Russia?",
        "And what may it get in return?",
    ]
    # The follow-up was searched with the topic of the first question.
    assert "North Korea" in lines[1]["searched"] and lines[1]["searched"] != lines[1]["question"]


def test_chat_follow_ups_borrow_only_from_the_last_answered_turn(built: Path, qa):
    questions = [TROOPS, "Who won the 2022 World Cup final in Qatar?", "xyzzy plugh frobnicate", "Tell me more"]
    proc = qa("chat", "--json", cwd=built, stdin="\n".join(questions) + "\n")
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["abstained"] for a in answers[:3]] == [False, True, True]
    assert answers[2]["searched"] == "xyzzy plugh frobnicate"  # stands on its own: nothing borrowed
    assert answers[3]["searched"] == "Tell me more (many troops North Korea send Russia)"


def test_info_counts_in_words(tmp_path: Path, qa):
    (tmp_path / "articles").mkdir()
    (tmp_path / "articles" / "note.txt").write_text("Ferry\n\nThe Esk ferry ran at dawn.\n", encoding="utf-8")
    assert qa("build", "--model", "hash", cwd=tmp_path).returncode == 0
    out = qa("info", cwd=tmp_path).stdout
    assert "1 chunks" not in out and "1 articles" not in out, out
    assert re.search(r"^ +1 chunk +articles/note\.txt$", out, re.M), out


def test_no_index_names_the_build_command_for_that_folder(tmp_path: Path, qa):
    assert_one_line_error(qa("ask", TROOPS, cwd=tmp_path), "no index in index/ yet: run `qa build` to build it")
    assert_one_line_error(qa("ask", TROOPS, "--index", "other", cwd=tmp_path), "run `qa build --index other/`")
    assert_one_line_error(qa("info", "--index", "other/", cwd=tmp_path), "run `qa build --index other/`")


def test_info_shows_the_index(built: Path, qa):
    proc = qa("info", cwd=built)
    assert proc.returncode == 0, proc.stderr
    assert "hash-128" in proc.stdout and "articles  2" in proc.stdout
    data = json.loads(qa("info", "--json", cwd=built).stdout)
    assert data["articles"] == 2 and data["model"] == "hash-128"


def test_check_passes_an_intact_index_and_names_a_changed_record(built: Path, qa):
    proc = qa("check", cwd=built)
    assert proc.returncode == 0, proc.stderr
    assert "is intact" in proc.stdout and "2 articles" in proc.stdout
    data = json.loads(qa("check", "--json", cwd=built).stdout)
    assert data["ok"] is True and data["articles"] == 2 and data["chunks"] >= 2 and data["files"] >= 11
    chunks = next((built / "index").glob("seg-*/chunks.jsonl"))
    raw = bytearray(chunks.read_bytes())
    raw[raw.index(b'"text": "') + 9] ^= 0x01
    chunks.write_bytes(bytes(raw))
    assert_one_line_error(qa("check", cwd=built), "chunks.jsonl", "checksum", "qa build --full")


def test_env_vars_set_the_defaults(workdir: Path, tmp_path: Path, qa):
    elsewhere = tmp_path / "elsewhere-index"
    env = {"QA_INDEX": str(elsewhere), "QA_MODEL": "hash-32"}
    assert qa("build", "--json", cwd=workdir, env=env).returncode == 0
    assert json.loads((elsewhere / "manifest.json").read_text())["model"]["name"] == "hash-32"
    proc = qa("ask", "What did Kim Jong Un say?", "--json", cwd=workdir, env=env)
    assert proc.returncode == 0, proc.stderr


def test_abstention_threshold_from_the_environment(built: Path, qa):
    question = ["ask", "How many troops has North Korea provided to Russia?", "--json"]
    answered = json.loads(qa(*question, cwd=built, env={"QA_ABSTAIN_BELOW": "-5"}).stdout)
    refused = json.loads(qa(*question, cwd=built, env={"QA_ABSTAIN_BELOW": "50"}).stdout)
    assert not answered["abstained"] and answered["quotes"]
    assert refused["abstained"] and not refused["quotes"]
    for bad in ("strict", "nan", "inf"):
        assert_one_line_error(qa(*question, cwd=built, env={"QA_ABSTAIN_BELOW": bad}), "QA_ABSTAIN_BELOW", repr(bad))


def test_ranker_from_the_environment(built: Path, qa):
    question = ["ask", "How many troops has North Korea provided to Russia?", "--json"]
    hand = qa(*question, cwd=built, env={"QA_RANKER": "hand"})
    assert hand.returncode == 0 and json.loads(hand.stdout)["quotes"]
    # the shipped ranker serves the bundled model only: asked for with this hash-embedder index, it is refused by name
    assert_one_line_error(qa(*question, cwd=built, env={"QA_RANKER": "learned"}), "serves", "hash")
    assert_one_line_error(qa(*question, cwd=built, env={"QA_RANKER": "trees"}), "QA_RANKER", "'trees'")


def test_empty_question(built: Path, qa):
    assert_one_line_error(qa("ask", "   ", cwd=built), "empty")


def test_huge_question_is_cut_with_a_notice(built: Path, qa):
    proc = qa("ask", "North Korea troops " * 6000, "--json", cwd=built)
    assert proc.returncode == 0, proc.stderr
    assert "only the first" in json.loads(proc.stdout)["notice"]


def test_missing_index(workdir: Path, qa):
    assert_one_line_error(qa("ask", "anything?", cwd=workdir), "qa build")


def test_index_built_with_another_model(built: Path, qa):
    assert_one_line_error(qa("ask", "anything?", cwd=built, env={"QA_MODEL": "hash-32"}), "qa build --full")


def test_missing_and_empty_articles_folder(tmp_path: Path, qa):
    assert_one_line_error(qa("build", "nowhere", "--model", "hash", cwd=tmp_path), "does not exist")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(qa("build", "empty", "--model", "hash", cwd=tmp_path), "no readable articles")
    assert not (tmp_path / "index" / "manifest.json").exists()


# -- the real entry point in subprocesses (slow) ---------------------------------------------------


def qa_process(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("QA_INDEX", "QA_MODEL")}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "qa.app.cli", *args], cwd=cwd, env=env, text=True, **kwargs)


@pytest.mark.slow
def test_smoke_the_console_entry_point(workdir: Path):
    proc = qa_process("build", "--model", "hash", cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "2 articles" in out, err
    proc = qa_process("ask", TROOPS, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "10,000 troops" in out and "[1] " in out, err


@pytest.mark.slow
@pytest.mark.parametrize("command", ["ask", "chat"])
def test_a_reader_that_leaves_early_is_not_an_error(built: Path, command: str):
    """``qa ask ... | head -1``: the pipe closes before qa writes; qa stops quietly with status 0."""
    args = ["ask", TROOPS] if command == "ask" else ["chat"]
    proc = qa_process(*args, cwd=built, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first answer is written
    if command == "chat":
        proc.stdin.write(f"{TROOPS}\nWhat may it get in return?\n")
    proc.stdin.close()
    started = time.monotonic()
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 0, err
    assert "error" not in err.lower() and "Exception ignored" not in err, err
    assert time.monotonic() - started < 120


@pytest.mark.slow
def test_help_is_fast_and_does_not_import_torch(tmp_path: Path):
    code = (
        "import sys; from qa.app.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'faiss' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.stdout.strip().endswith("False False")
    for command in ("build", "ask", "chat", "info", "eval"):
        assert command in proc.stdout
