"""Answer quality on the bundled articles with the real model: tests/questions.jsonl through `qa eval`'s engine.

The bar asserted (a regression guard at what the bot reaches today; the goal is
recall@1 >= 0.9 and recall@3 = 1): the top quote answers at least 78% of the
answerable questions, one of the top three at least 94% (34 of 36: the reader's
blend, which gained 8 of 121 held-out news questions in the top three, lost one
of these to the hand score; docs/reader.md), no answerable
question is refused, every unanswerable one is, and the three quotes together
show at most 1,000 characters (a third of three 1,000-character chunks).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.answer.evaluate import evaluate, read_questions

QUESTIONS = Path(__file__).resolve().parents[1] / "questions.jsonl"

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
    assert report.recall[3] >= 0.94, _misses(report, lambda r: 1 <= r.rank <= 3)


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


BRIDGE_STORY = """Riverside bridge opens after two years of work

The new Riverside footbridge opened to the public on Saturday morning.

Mayor Elena Brandt cut the ribbon at the east end of the bridge while a brass band played.

The 120-metre span links the old harbour to the railway station and cost 14 million euros.

Cyclists will have to dismount on the bridge until the ramps are finished in the spring.
"""


@pytest.fixture(scope="module")
def bridge_bot(tmp_path_factory, real_embedder, bundled_articles):
    """The bundled articles plus a short local story about a bridge opening, indexed with the real model."""
    import shutil

    from qa.answer.bot import Bot
    from qa.index.build import build_index

    folder = tmp_path_factory.mktemp("bridge") / "articles"
    shutil.copytree(bundled_articles, folder)
    (folder / "bridge.txt").write_text(BRIDGE_STORY, encoding="utf-8")
    build_index([folder], folder.parent / "index", embedder=real_embedder)
    return Bot.load(folder.parent / "index", embedder=real_embedder)


def test_an_unrelated_article_does_not_pad_the_answer(bridge_bot):
    answer = bridge_bot.ask("Who cut the ribbon?", k=3)
    assert not answer.abstained and "Elena Brandt" in answer.quotes[0].text
    assert [q.source for q in answer.quotes if not q.source.endswith("bridge.txt")] == [], answer.text
    assert bridge_bot.scorer.calibration(bridge_bot.embedder.name).show_within is not None  # the gap rule is on


def test_the_bridge_story_does_not_crowd_out_the_north_korea_answers(bridge_bot):
    answer = bridge_bot.ask("How many troops has North Korea provided to Russia?", k=3)
    assert "10,000" in answer.quotes[0].text and not any(q.source.endswith("bridge.txt") for q in answer.quotes)


def test_an_unrelated_quote_does_not_pad_a_follow_up(real_bot):
    first = real_bot.ask("How many troops did North Korea send to Russia?")
    follow = real_bot.ask("What might it get in return?", history=[first])
    assert "advanced weaponry" in follow.quotes[0].text
    assert not any("calling out the U.S." in q.text for q in follow.quotes), follow.text


def test_the_readme_quality_row_is_what_the_bot_scores(report):
    """The README's bundled-questions row (recall@1, recall@3) is the measured one, not an older run's."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    row = re.search(r"^\| bundled articles, 42 own questions .*?\| qa \| ([\d.]+) \| ([\d.]+) \|", readme, re.M)
    assert row, "README has no quality row for the bundled questions"
    assert (float(row.group(1)), float(row.group(2))) == (round(report.recall[1], 3), round(report.recall[3], 3))
