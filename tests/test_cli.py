"""The ``qa`` command as a user runs it: JSON contracts, exit codes, one-line errors.

Runs the real console entry point in subprocesses, with the hash embedder so it is fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def qa(*args: str, cwd: Path, stdin: str | None = None, env: dict | None = None, timeout: int = 120):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    full_env.pop("QA_INDEX", None)
    full_env.pop("QA_MODEL", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "qa.cli", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def assert_one_line_error(proc, *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("qa: error")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture
def workdir(tmp_path: Path, corpus: Path) -> Path:
    """A folder laid out like the project: articles/ and (after build) index/."""
    return corpus.parent


@pytest.fixture
def built(workdir: Path) -> Path:
    proc = qa("build", "--model", "hash", "--json", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    return workdir


def test_build_json_contract_and_defaults(workdir: Path):
    proc = qa("build", "--model", "hash", "--json", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {"articles", "chunks", "embedded", "reused", "removed", "seconds"} <= set(report)
    assert report["articles"] == 2 and report["embedded"] == report["chunks"] > 0
    assert (workdir / "index" / "manifest.json").exists()
    again = json.loads(qa("build", "--model", "hash", "--json", cwd=workdir).stdout)
    assert (again["embedded"], again["reused"], again["removed"]) == (0, report["chunks"], 0)


def test_ask_json_contract(built: Path):
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


def test_chat_answers_each_line_in_one_conversation(built: Path):
    questions = "How many troops has North Korea provided to Russia?\n\nAnd what may it get in return?\n"
    proc = qa("chat", "--json", cwd=built, stdin=questions)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["question"] for a in lines] == ["How many troops has North Korea provided to Russia?", "And what may it get in return?"]
    # The follow-up was searched with the topic of the first question.
    assert "North Korea" in lines[1]["searched"] and lines[1]["searched"] != lines[1]["question"]


def test_info_shows_the_index(built: Path):
    proc = qa("info", cwd=built)
    assert proc.returncode == 0, proc.stderr
    assert "hash-128" in proc.stdout and "articles  2" in proc.stdout
    data = json.loads(qa("info", "--json", cwd=built).stdout)
    assert data["articles"] == 2 and data["model"] == "hash-128"


def test_env_vars_set_the_defaults(workdir: Path, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere-index"
    env = {"QA_INDEX": str(elsewhere), "QA_MODEL": "hash-32"}
    assert qa("build", "--json", cwd=workdir, env=env).returncode == 0
    assert json.loads((elsewhere / "manifest.json").read_text())["model"]["name"] == "hash-32"
    proc = qa("ask", "What did Kim Jong Un say?", "--json", cwd=workdir, env=env)
    assert proc.returncode == 0, proc.stderr


def test_abstention_threshold_from_the_environment(built: Path):
    question = ["ask", "How many troops has North Korea provided to Russia?", "--json"]
    answered = json.loads(qa(*question, cwd=built, env={"QA_ABSTAIN_BELOW": "-5"}).stdout)
    refused = json.loads(qa(*question, cwd=built, env={"QA_ABSTAIN_BELOW": "50"}).stdout)
    assert not answered["abstained"] and answered["quotes"]
    assert refused["abstained"] and not refused["quotes"]
    for bad in ("strict", "nan", "inf"):
        assert_one_line_error(qa(*question, cwd=built, env={"QA_ABSTAIN_BELOW": bad}), "QA_ABSTAIN_BELOW", repr(bad))


def test_empty_question(built: Path):
    assert_one_line_error(qa("ask", "   ", cwd=built), "empty")


def test_huge_question_is_cut_with_a_notice(built: Path):
    proc = qa("ask", "North Korea troops " * 6000, "--json", cwd=built)
    assert proc.returncode == 0, proc.stderr
    assert "only the first" in json.loads(proc.stdout)["notice"]


def test_missing_index(workdir: Path):
    assert_one_line_error(qa("ask", "anything?", cwd=workdir), "qa build")


def test_index_built_with_another_model(built: Path):
    assert_one_line_error(qa("ask", "anything?", cwd=built, env={"QA_MODEL": "hash-32"}), "qa build --full")


def test_missing_and_empty_articles_folder(tmp_path: Path):
    assert_one_line_error(qa("build", "nowhere", "--model", "hash", cwd=tmp_path), "does not exist")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(qa("build", "empty", "--model", "hash", cwd=tmp_path), "no readable articles")
    assert not (tmp_path / "index" / "manifest.json").exists()


def test_help_is_fast_and_does_not_import_torch(tmp_path: Path):
    code = "import sys; from qa.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules, 'faiss' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.stdout.strip().endswith("False False")
    for command in ("build", "ask", "chat", "info", "eval"):
        assert command in proc.stdout
