"""Answer quality on the bundled articles with the real model: tests/questions.jsonl through `qa eval`'s engine.

The bar asserted (a regression guard at what the bot reaches today; the goal is
recall@1 >= 0.9 and recall@3 = 1): the top quote answers at least 78% of the
answerable questions, one of the top three at least 95%, no answerable
question is refused, every unanswerable one is, and the three quotes together
show at most 1,000 characters (a third of three 1,000-character chunks).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.evaluate import evaluate, read_questions

QUESTIONS = Path(__file__).resolve().parent / "questions.jsonl"

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def answers(real_bot):
    """Every answer the bot gave while being scored, as (question, history, answer)."""
    return []


@pytest.fixture(scope="module")
def report(real_bot, answers):
    items, problems = read_questions(QUESTIONS)
    assert problems == []

    def ask(question, history=(), *, k):
        answer = real_bot.ask(question, history, k=k)
        answers.append(answer)
        return answer

    return evaluate(ask, items, k=3)


def test_the_question_file_covers_every_kind():
    items, _ = read_questions(QUESTIONS)
    kinds = {item.id.split("-")[0] for item in items}
    assert len(items) >= 30 and kinds == {"plain", "para", "both", "follow", "none"}
    assert sum(item.unanswerable for item in items) >= 5
    assert all(len(item.turns) >= 2 for item in items if item.id.startswith("follow"))


def _misses(report, wanted):
    return [f"line {r.line}: {r.question} (searched: {r.searched}, rank {r.rank}, abstained {r.abstained})"
            for r in report.items if r.answerable and not wanted(r)]


def test_top_quote_answers_most_answerable_questions(report):
    assert report.recall[1] >= 0.78, _misses(report, lambda r: r.rank == 1)


def test_one_of_the_top_three_answers_nearly_every_answerable_question(report):
    assert report.recall[3] >= 0.95, _misses(report, lambda r: 1 <= r.rank <= 3)


def test_no_answerable_question_is_refused(report):
    assert report.refused_answerable == 0, _misses(report, lambda r: not r.abstained)


def test_every_unanswerable_question_is_refused(report):
    answered = [r.question for r in report.items if not r.answerable and not r.abstained]
    assert answered == []


def test_quotes_are_exact_spans(real_bot, report, answers):
    assert len(answers) == report.questions
    for answer in answers:
        for q in answer.quotes:
            assert real_bot.index.articles[q.article_id].text[q.start : q.end] == q.text


def test_quotes_show_far_less_than_chunks(report):
    assert report.chars_per_answer <= 1000
