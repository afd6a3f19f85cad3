"""End to end with the real bundled model: build, ask, chat, rebuild, through the CLI and the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qa.answer.bot import Bot
from qa.index.build import build_index
from qa.text import collapse_whitespace
from qa.index.reader import load_index

pytestmark = pytest.mark.real


def run_qa(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("QA_INDEX", "QA_MODEL")}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "qa.app.cli", *args], cwd=cwd, input=stdin, capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow
def test_cli_build_ask_and_chat_with_the_real_model(corpus: Path):
    work = corpus.parent
    build = run_qa("build", "--json", cwd=work)
    assert build.returncode == 0, build.stderr
    report = json.loads(build.stdout)
    assert report["articles"] == 2 and report["embedded"] == report["chunks"] >= 8

    ask = run_qa("ask", "How many soldiers did Pyongyang send to help Russia?", "--json", cwd=work)
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    assert not answer["abstained"]
    top = answer["quotes"][0]
    assert "10,000 troops" in top["text"]
    source_text = (work / top["source"]).read_text(encoding="utf-8")
    assert collapse_whitespace(top["text"]) in collapse_whitespace(source_text)

    chat = run_qa(
        "chat", "--json", cwd=work,
        stdin="How many soldiers did Pyongyang send to help Russia?\nWhat might it get in return?\nWho won the World Cup?\n",
    )
    assert chat.returncode == 0, chat.stderr
    first, follow, unrelated = (json.loads(line) for line in chat.stdout.splitlines())
    assert "10,000 troops" in first["quotes"][0]["text"]
    assert any("advanced weaponry" in q["text"] for q in follow["quotes"][:2])
    assert unrelated["abstained"] and unrelated["quotes"] == []


def test_quotes_are_exact_spans_of_the_cleaned_articles(real_bot: Bot):
    for question in (
        "What did Kim call the United States?",
        "How many times did Trump meet Kim during his first term?",
        "Which countries block new sanctions at the UN Security Council?",
    ):
        answer = real_bot.ask(question)
        assert answer.quotes, question
        for quote in answer.quotes:
            article = real_bot.index.articles[quote.article_id]
            assert article.text[quote.start : quote.end] == quote.text
            assert quote.title == article.title and quote.source == article.source


def test_adding_an_article_embeds_only_it_and_it_is_answerable(tmp_path: Path, corpus: Path, real_embedder):
    index_dir = tmp_path / "index"
    first = build_index([corpus], index_dir, embedder=real_embedder)
    (corpus / "lighthouse.md").write_text(
        "# Harbour Lighthouse Reopens\n\n"
        "The Vardø harbour lighthouse reopened on Monday after a restoration that cost 12 million kroner.\n\n"
        "Its new lamp can be seen from 40 kilometres out at sea, the harbour master said.\n",
        encoding="utf-8",
    )
    second = build_index([corpus], index_dir, embedder=real_embedder)
    assert second.reused == first.chunks
    assert second.embedded == second.chunks - first.chunks >= 1
    bot = Bot(load_index(index_dir), real_embedder)
    answer = bot.ask("How far away can the light of the restored lighthouse be seen?")
    assert not answer.abstained
    assert "40 kilometres" in answer.quotes[0].text
    assert answer.quotes[0].title == "Harbour Lighthouse Reopens"
