"""`qa eval` and its engine, fast: question files, scoring, the report, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from qa.answer.evaluate import (
    EvalItem,
    ItemResult,
    QuestionFileError,
    answer_rank,
    evaluate,
    format_misses,
    format_report,
    miss_kind,
    read_questions,
)
from qa.records import Answer, Quote


def _write(tmp_path: Path, lines: list[str], name: str = "q.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _quote(text: str) -> Quote:
    return Quote(text=text, article_id="a", title="t", source="s", start=0, end=len(text), score=1.0)


def _answer(question: str, texts: list[str], abstained: bool = False) -> Answer:
    return Answer(question=question, text="", quotes=tuple(_quote(t) for t in texts), abstained=abstained)


def test_reads_plain_turns_and_unanswerable_lines(tmp_path):
    path = _write(tmp_path, [
        json.dumps({"q": "How many troops?", "answers": ["10,000"]}),
        "",
        json.dumps({"turns": ["Who met Kim?", "How often?"], "answers": ["three times"], "id": "f1"}),
        json.dumps({"q": "Who won the World Cup?", "unanswerable": True}),
    ])
    items, problems = read_questions(path)
    assert problems == []
    assert [i.line for i in items] == [1, 3, 4]
    assert items[1].question == "How often?" and items[1].history == ("Who met Kim?",) and items[1].id == "f1"
    assert items[2].unanswerable and items[2].answers == ()


def test_malformed_lines_are_reported_with_their_number_and_skipped(tmp_path):
    path = _write(tmp_path, [
        json.dumps({"q": "ok?", "answers": ["x"]}),
        "{not json",
        json.dumps({"q": "no gold"}),
        json.dumps({"answers": ["x"]}),
        json.dumps({"q": "both", "answers": ["x"], "unanswerable": True}),
        json.dumps(["a", "list"]),
        json.dumps({"turns": [], "answers": ["x"]}),
        json.dumps({"q": "fine too", "answers": "single string"}),
    ])
    items, problems = read_questions(path)
    assert [i.line for i in items] == [1, 8]
    assert items[1].answers == ("single string",)
    assert [p.split(":")[0] for p in problems] == ["line 2", "line 3", "line 4", "line 5", "line 6", "line 7"]
    assert "not valid JSON" in problems[0]
    assert "answers" in problems[1]


@pytest.mark.parametrize(
    "lines, message",
    [([], "has no questions"), (["", "  "], "has no questions"), (['{"q": "no gold"}', "nope"], "no usable questions")],
)
def test_empty_or_useless_file_is_a_clear_error(tmp_path, lines, message):
    with pytest.raises(QuestionFileError, match=message):
        read_questions(_write(tmp_path, lines))


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(QuestionFileError, match="not found"):
        read_questions(tmp_path / "nope.jsonl")
    bad = tmp_path / "latin.jsonl"
    bad.write_bytes('{"q": "caf\xe9", "answers": ["x"]}\n'.encode("latin-1"))
    with pytest.raises(QuestionFileError, match="UTF-8"):
        read_questions(bad)


def test_answer_rank_is_case_and_whitespace_insensitive_and_limited_to_k():
    answer = _answer("q", ["Nothing here.", "Over 10,000\n  TROOPS were sent.", "troops again"])
    assert answer_rank(answer, ["10,000 troops"], k=3) == 2
    assert answer_rank(answer, ["10,000 troops"], k=1) == 0
    assert answer_rank(answer, ["missing", "troops again"], k=5) == 3
    assert answer_rank(answer, ["absent"], k=5) == 0


def test_scores_recall_mrr_abstention_chars_and_latency():
    replies = {
        "a1": _answer("a1", ["the gold answer", "other"]),           # rank 1
        "a2": _answer("a2", ["noise", "noise", "Gold here"]),         # rank 3
        "a3": _answer("a3", [], abstained=True),                      # refused answerable
        "u1": _answer("u1", [], abstained=True),                      # right refusal
        "u2": _answer("u2", ["confident noise"]),                     # answered unanswerable
    }
    calls = []

    def ask(question, history=(), *, k=5):
        calls.append((question, tuple(history), k))
        return replies[question]

    items = [
        EvalItem(1, ("a1",), ("gold",)),
        EvalItem(2, ("first turn", "a2"), ("gold",)),
        EvalItem(3, ("a3",), ("gold",)),
        EvalItem(4, ("u1",), unanswerable=True),
        EvalItem(5, ("u2",), unanswerable=True),
    ]
    report = evaluate(ask, items, k=5)
    assert calls[1] == ("a2", ("first turn",), 5)
    assert report.questions == 5 and report.answerable == 3 and report.unanswerable == 2
    assert report.recall == {1: pytest.approx(1 / 3), 3: pytest.approx(2 / 3), 5: pytest.approx(2 / 3)}
    assert report.mrr == pytest.approx((1 + 1 / 3) / 3)
    assert report.abstained == 2
    assert report.abstain_precision == pytest.approx(0.5)
    assert report.abstain_recall == pytest.approx(0.5)
    assert report.refused_answerable == 1 and report.answered_unanswerable == 1
    shown = [len("the gold answer") + 5, 5 + 5 + 9, len("confident noise")]
    assert report.chars_per_answer == pytest.approx(sum(shown) / 3)
    assert report.chars_at[1] == pytest.approx((len("the gold answer") + 5 + len("confident noise")) / 3)
    assert report.chars_at[5] == report.chars_per_answer
    assert 0 <= report.latency_p50 <= report.latency_p95
    data = report.to_json()
    assert {"recall@1", "recall@3", "recall@5", "mrr", "abstain_precision", "abstain_recall",
            "chars_per_answer", "chars@1", "chars@3", "latency_p50", "latency_p95"} <= set(data)
    assert "recall@1" in format_report(report).replace("answer-recall    @1", "recall@1")
    misses = format_misses(report).splitlines()
    assert misses == [
        "line 2: answer first in quote 3: a2",
        "line 3: refused, though the articles answer it: a3",
        "line 5: answered, though the articles do not hold the answer: u2",
    ]


def test_only_the_top_k_quotes_count():
    def ask(question, history=(), *, k=5):
        return _answer(question, ["a", "b", "gold", "d"])  # ignores k on purpose: the harness must cut

    report = evaluate(ask, [EvalItem(1, ("q",), ("gold",))], k=2)
    assert report.recall[3] == 0.0 and report.chars_per_answer == 2


def test_no_unanswerable_questions_gives_nan_abstention_recall():
    report = evaluate(lambda q, h=(), *, k=5: _answer(q, ["gold"]), [EvalItem(1, ("q",), ("gold",))], k=1)
    assert math.isnan(report.abstain_recall) and report.to_json()["abstain_recall"] is None
    assert "n/a" in format_report(report)


def test_evaluates_the_real_bot_on_the_hash_index(hash_index, hash_embedder):
    from qa.answer.bot import Bot

    bot = Bot.load(hash_index, embedder=hash_embedder)
    article = next(iter(bot.index.articles.values()))
    items = [
        EvalItem(1, ("How many troops has North Korea provided to Russia?",), ("10,000",)),
        EvalItem(2, ("How many troops did North Korea send?", "And in return?"), ("advanced weaponry",)),
    ]
    report = evaluate(bot.ask, items, k=3)
    assert report.questions == 2 and article.text
    assert report.items[0].rank >= 1  # the hash embedder still finds an exact-words question
    assert report.items[1].searched != "And in return?"  # the follow-up was made self-contained
    assert 0 < report.chars_per_answer <= 3 * bot.answer_settings.max_quote_chars


def test_cli_eval_reports_bad_lines_and_prints_json(tmp_path, hash_index, capsys, monkeypatch):
    from qa.app.cli import main

    monkeypatch.setenv("QA_MODEL", "hash-64")
    path = _write(tmp_path, [
        json.dumps({"q": "How many troops has North Korea provided to Russia?", "answers": ["10,000"]}),
        "{broken",
        json.dumps({"q": "Who won the World Cup?", "unanswerable": True}),
    ])
    assert main(["eval", str(path), "--index", str(hash_index), "--json", "-k", "3"]) == 0
    out, err = capsys.readouterr()
    assert "line 2" in err
    data = json.loads(out)
    assert data["questions"] == 2 and data["answerable"] == 1 and data["unanswerable"] == 1 and data["k"] == 3
    assert "items" not in data

    assert main(["eval", str(path), "--index", str(hash_index), "--json", "--misses"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert [i["line"] for i in items] == [1, 3] and items[1]["answerable"] is False
    assert main(["eval", str(path), "--index", str(hash_index), "--misses"]) == 0
    text = capsys.readouterr().out
    assert "answer-recall" in text
    kinds = {i["line"]: miss_kind(ItemResult(**i)) for i in items}
    for line, kind in kinds.items():
        assert (f"line {line}: {kind}:" in text) == (kind is not None)
    assert ("every question answered by its top quote" in text) == all(k is None for k in kinds.values())


def test_cli_eval_empty_file_is_one_clear_line(tmp_path, hash_index, capsys):
    from qa.app.cli import main

    path = _write(tmp_path, [])
    assert main(["eval", str(path), "--index", str(hash_index)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("qa: error:") and "has no questions" in err and "\n" not in err


@pytest.mark.slow
def test_rtqa_benchmark_names_a_missing_data_path(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    missing = tmp_path / "no-such-rtqa"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.rtqa", "--data", str(missing)],
                          check=False, capture_output=True, text=True, timeout=60, cwd=root)
    assert proc.returncode == 1
    assert str(missing) in proc.stderr and "Traceback" not in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.rtqa", "--data", str(empty)],
                          check=False, capture_output=True, text=True, timeout=60, cwd=root)
    assert proc.returncode == 1 and str(empty / "questions.jsonl") in proc.stderr
