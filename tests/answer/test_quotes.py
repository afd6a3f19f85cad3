"""Quote selection and follow-ups, fast (hash embedder): offsets, merging, duplicates, abstention, rewriting."""

from __future__ import annotations

import pytest

from qa.answer.candidates import ScoredCandidate
from qa.answer.features import type_match
from qa.answer.quotes import ABSTAIN_TEXT, AnswerSettings, select_quotes
from qa.answer.followup import contextualize, needs_context, searched_history
from qa.records import Article, Chunk, Hit

QUESTIONS = [
    "How many troops has North Korea provided to Russia?",
    "What did Kim call the United States?",
    "Which countries blocked additional sanctions in the U.N. Security Council?",
    "What is Kim Jong Un focused on achieving?",
    "What does strategic patience allow Pyongyang to do?",
]


#: The hash fake has no trained ranker: the hand-weighted scorer answers, with a threshold for the fake's lower cosines.
HASH_SETTINGS = AnswerSettings(abstain_below=0.4)


@pytest.fixture
def hash_bot(hash_index, hash_embedder):
    from qa.answer.bot import Bot

    return Bot.load(hash_index, embedder=hash_embedder, answer_settings=HASH_SETTINGS)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_every_quote_is_an_exact_span_of_its_article(hash_bot, k):
    for question in QUESTIONS:
        answer = hash_bot.ask(question, k=k)
        assert not answer.abstained and 1 <= len(answer.quotes) <= k
        for q in answer.quotes:
            article = hash_bot.index.articles[q.article_id]
            assert article.text[q.start : q.end] == q.text
            assert q.text == q.text.strip() and q.source == article.source and q.title == article.title
            assert len(q.text) <= hash_bot.answer_settings.max_quote_chars
        scores = [q.score for q in answer.quotes]
        assert scores == sorted(scores, reverse=True)


def test_the_sentence_holding_the_answer_comes_first_with_exact_words(hash_bot):
    answer = hash_bot.ask("How many troops has North Korea provided to Russia?", k=3)
    assert "10,000 troops" in answer.quotes[0].text
    top = answer.quotes[0]
    text = hash_bot.index.articles[top.article_id].text
    assert top.context_before and text[: top.start].rstrip().endswith(top.context_before)  # the sentence before it
    assert not top.context_after or text[top.end :].lstrip().startswith(top.context_after)


def _article(text: str, source: str = "a.txt") -> Article:
    return Article.make(text=text, source=source, title="T")


def _cand(article: Article, sentence: str, score: float, rank: int = 0) -> ScoredCandidate:
    start = article.text.index(sentence)
    chunk = Chunk(id=f"c{rank}", article_id=article.id, start=0, end=len(article.text), text=article.text)
    return ScoredCandidate(article, start, start + len(sentence), Hit(chunk, 1.0, rank), score=score)


def test_adjacent_strong_sentences_merge_into_one_quote():
    text = "Alpha one here. Beta two here.\n\nGamma three here. Delta four here."
    art = _article(text)
    ranked = [
        _cand(art, "Beta two here.", 1.0),
        _cand(art, "Alpha one here.", 0.97),  # adjacent, strong: merged
        _cand(art, "Gamma three here.", 0.96),  # after a paragraph break: its own quote
        _cand(art, "Delta four here.", 0.5),  # adjacent to Gamma but weak: not merged, not a new quote
    ]
    quotes = select_quotes(ranked, k=3, settings=AnswerSettings(fill_to=0))
    assert [q.text for q in quotes] == ["Alpha one here. Beta two here.", "Gamma three here."]
    assert all(art.text[q.start : q.end] == q.text for q in quotes)


def test_quotes_grow_by_whole_neighbouring_sentences_up_to_the_limit():
    text = "Zero sentence here. One sentence here. Two sentence here. Three sentence here.\n\nNext paragraph here."
    art = _article(text)
    quotes = select_quotes([_cand(art, "One sentence here.", 1.0)], k=1,
                           settings=AnswerSettings(fill_to=60, lead_fill_to=None))
    assert quotes[0].text == "Zero sentence here. One sentence here. Two sentence here."  # next first, then previous
    whole = select_quotes([_cand(art, "Three sentence here.", 1.0)], k=1, settings=AnswerSettings(fill_to=500))
    assert whole[0].text == text  # across the paragraph break: news paragraphs are often one sentence
    within = select_quotes([_cand(art, "Three sentence here.", 1.0)], k=1,
                           settings=AnswerSettings(fill_to=500, fill_across_paragraphs=False))
    assert within[0].text == text.split("\n\n")[0]
    both = [_cand(art, "One sentence here.", 1.0), _cand(art, "Three sentence here.", 0.5)]
    joined = select_quotes(both, k=2, settings=AnswerSettings(fill_to=500))
    assert [q.text for q in joined] == [text]  # within one quote's reach: one quote
    other = select_quotes(both, k=2, settings=AnswerSettings(fill_to=500, bridge=False))
    assert other[0].end <= other[1].start  # quotes never overlap
    assert all(art.text[q.start : q.end] == q.text for q in whole + within + other)


def test_the_top_quote_grows_further_than_the_others():
    text = "Zero sentence here. One sentence here. Two sentence here. Three sentence here. Four sentence here."
    art = _article(text)
    ranked = [_cand(art, "One sentence here.", 1.0), _cand(art, "Four sentence here.", 0.9)]
    quotes = select_quotes(ranked, k=2, settings=AnswerSettings(fill_to=20, lead_fill_to=60, bridge=False))
    assert [q.text for q in quotes] == ["Zero sentence here. One sentence here. Two sentence here.",
                                       "Four sentence here."]
    same = select_quotes(ranked, k=2, settings=AnswerSettings(fill_to=20, lead_fill_to=None, bridge=False))
    assert [q.text for q in same] == ["One sentence here.", "Four sentence here."]


def test_a_weak_sentence_in_the_next_paragraph_is_taken_into_the_quote_not_shown_twice():
    text = "These actions serve a dual purpose.\n\nDomestically, they reinforce the ruling family."
    art = _article(text)
    ranked = [_cand(art, "These actions serve a dual purpose.", 1.0),
              _cand(art, "Domestically, they reinforce the ruling family.", 0.5)]
    quotes = select_quotes(ranked, k=3, settings=AnswerSettings(fill_to=200))
    assert [q.text for q in quotes] == [text]
    apart = select_quotes(ranked, k=3, settings=AnswerSettings(fill_to=200, fill_across_paragraphs=False))
    assert [q.text for q in apart] == text.split("\n\n")  # without crossing, the weak one stands alone


def test_a_sentence_within_reach_of_a_quote_joins_it_with_the_text_between():
    lead, answer = "The leadership accelerated its tests.", "At home, they reinforce the family."
    text = f"{lead} These actions serve a dual purpose.\n\n{answer}"
    art = _article(text)
    ranked = [_cand(art, lead, 1.0), _cand(art, answer, 0.5)]
    quotes = select_quotes(ranked, k=3, settings=AnswerSettings(fill_to=len(text)))
    assert [q.text for q in quotes] == [text]
    apart = select_quotes(ranked, k=3, settings=AnswerSettings(fill_to=len(text), bridge=False))
    assert [q.text for q in apart] == ["The leadership accelerated its tests. These actions serve a dual purpose.",
                                       "At home, they reinforce the family."]  # the fill could not reach past it
    far = select_quotes(ranked, k=3, settings=AnswerSettings(fill_to=60, lead_fill_to=None))
    assert len(far) == 2 and all(len(q.text) <= 60 for q in far)  # out of reach: two quotes, each within the limit


def test_a_sentence_that_only_restates_the_question_is_never_quoted(tmp_path, hash_embedder):
    from qa.answer.bot import Bot
    from qa.index.build import build_index

    (tmp_path / "quiz.txt").write_text(
        "Weekly quiz\n\nWhich wildly popular show was green lit for a new season?\n\n"
        "Netflix said the wildly popular show Squid Game was green lit for a second season.\n"
    )
    build_index([tmp_path / "quiz.txt"], tmp_path / "index", embedder=hash_embedder)
    bot = Bot.load(tmp_path / "index", embedder=hash_embedder,
                   answer_settings=AnswerSettings(abstain_below=0.0, fill_to=0))
    answer = bot.ask("Which wildly popular show was green lit for a new season?", k=3)
    assert answer.quotes and "Squid Game" in answer.quotes[0].text
    assert all("Which wildly" not in q.text for q in answer.quotes)


def test_merging_stops_at_the_quote_length_limit():
    first, second = "A" * 50 + " first.", "B" * 50 + " second."
    art = _article(f"{first} {second}")
    quotes = select_quotes([_cand(art, first, 1.0), _cand(art, second, 0.99)], k=3,
                           settings=AnswerSettings(max_quote_chars=80, fill_to=0))
    assert [q.text for q in quotes] == [first, second]


def test_a_quote_scoring_far_below_the_best_is_not_shown():
    a, b = _article("The mayor cut the ribbon on the new bridge.", "bridge.txt"), _article("Kim visited Moscow.", "nk.txt")
    ranked = [_cand(a, "The mayor cut the ribbon on the new bridge.", 3.0), _cand(b, "Kim visited Moscow.", 0.2, 1)]
    shown = select_quotes(ranked, k=3, settings=AnswerSettings(fill_to=0), show_within=2.0)
    assert [q.source for q in shown] == ["bridge.txt"]
    padded = select_quotes(ranked, k=3, settings=AnswerSettings(fill_to=0), show_within=None)
    assert [q.source for q in padded] == ["bridge.txt", "nk.txt"]
    close = select_quotes(ranked, k=3, settings=AnswerSettings(fill_to=0), show_within=2.9)
    assert len(close) == 2


def test_the_same_sentence_in_several_articles_is_shown_once_with_its_sources():
    sentence = "The ministry confirmed 10,000 troops were sent."
    a = _article(f"Intro one. {sentence} Outro one.", "wire/a.txt")
    b = _article(f"Another intro. {sentence}  Other end.", "mirror/b.txt")
    c = _article(f"Third copy. {sentence}", "mirror/c.txt")
    other = "A different sentence entirely."
    d = _article(other, "d.txt")
    ranked = [_cand(a, sentence, 0.9), _cand(b, sentence, 0.9, 1), _cand(c, sentence, 0.88, 2), _cand(d, other, 0.5, 3)]
    quotes = select_quotes(ranked, k=3, settings=AnswerSettings(fill_to=0))
    assert [q.source for q in quotes] == ["wire/a.txt", "d.txt"]
    assert quotes[0].also_in == ("mirror/b.txt", "mirror/c.txt")
    assert quotes[0].to_json()["sources"] == 3


def test_duplicates_fold_through_the_whole_bot(tmp_path, hash_embedder):
    from qa.answer.bot import Bot
    from qa.index.build import build_index

    story = ("Officials said the bridge over the Elbe river will reopen on Monday after repairs. "
             "Traffic was diverted for six weeks.\n")
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "one.txt").write_text("Bridge news\n\n" + story)
    (folder / "two.txt").write_text("Bridge reopens\n\nLocal desk report.\n\n" + story)
    (folder / "other.txt").write_text("Weather\n\nRain is expected over the weekend in the north.\n")
    build_index([folder], tmp_path / "index", embedder=hash_embedder)
    bot = Bot.load(tmp_path / "index", embedder=hash_embedder, answer_settings=HASH_SETTINGS)
    answer = bot.ask("When will the bridge over the Elbe reopen?", k=3)
    texts = [q.text for q in answer.quotes]
    assert len(texts) == len(set(texts))
    top = answer.quotes[0]
    assert "reopen on Monday" in top.text and len(top.also_in) == 1


def test_abstention_is_all_or_nothing(hash_index, hash_embedder):
    from qa.answer.bot import Bot

    never = Bot.load(hash_index, embedder=hash_embedder, answer_settings=AnswerSettings(abstain_below=-1e9))
    always = Bot.load(hash_index, embedder=hash_embedder, answer_settings=AnswerSettings(abstain_below=1e9))
    question = "How many troops has North Korea provided to Russia?"
    answered, refused = never.ask(question), always.ask(question)
    assert not answered.abstained and answered.quotes
    assert refused.abstained and refused.quotes == () and refused.text == ABSTAIN_TEXT
    assert refused.to_json()["abstained"] is True and refused.to_json()["quotes"] == []


def test_unrelated_question_is_refused(hash_bot):
    answer = hash_bot.ask("Recipe for sourdough bread with rye flour?")
    assert answer.abstained and not answer.quotes


@pytest.mark.parametrize(
    "question, sentence, expected",
    [
        ("How many troops were sent?", "Over 10,000 troops went.", 1.0),
        ("How many troops were sent?", "Troops went.", 0.0),
        ("In what year did the war end?", "The war ended in 1953.", 1.0),
        ("What did Kim call the U.S.?", "He called it the “most reactionary state.”", 1.0),
        ("Who met Kim three times?", "Trump met Kim three times.", 1.0),
        ("Who met Kim three times?", "they met him three times.", 0.0),
    ],
)
def test_answer_type_cues(question, sentence, expected):
    assert type_match(question, sentence) == expected


@pytest.mark.parametrize(
    "history, question, searched",
    [
        (["How many troops did North Korea send to Russia?"], "What about China?",
         "How many troops did North Korea send to China?"),
        (["What did the North Korean leader say about the United States?"], "What about Japan?",
         "What did the North Korean leader say about Japan?"),
        (["What did Kim say about the U.S.?"], "And China?", "What did Kim say about China?"),
        (["How many times did Trump meet Kim?"], "What did he say after the summit?",
         "What did Trump say after the summit?"),
        (["How many troops did North Korea send to Russia?"], "And what might it get in return?",
         "And what might North Korea get in return? (many troops send Russia)"),
        (["What did Kim Jong Un call the United States?"], "How did he describe its alliance with Japan?",
         "How did Kim Jong Un describe United States’s alliance with Japan?"),
        (["How many troops did North Korea send?"], "and in return?", "and in return? (many troops North Korea send)"),
        (["Which countries blocked new sanctions?"], "Where did they block them?",
         "Where did they block them? (countries blocked new sanctions)"),
    ],
)
def test_follow_ups_become_self_contained(history, question, searched):
    assert contextualize(question, history) == searched


def test_self_contained_questions_are_left_alone():
    history = ["How many troops did North Korea send to Russia?"]
    for question in ["What did Kim Jong Un say about Japan's military alliance?", "Who won the 2022 World Cup final?"]:
        assert not needs_context(question)
        assert contextualize(question, history) == question
    assert contextualize("What about China?", []) == "What about China?"


def test_a_conversation_chains_its_searched_questions():
    searched = searched_history(["How many troops did North Korea send to Russia?", "What about China?", "And Iran?"])
    assert searched[1:] == ["How many troops did North Korea send to China?", "How many troops did North Korea send to Iran?"]


def test_the_bot_shows_what_it_searched(hash_bot):
    answer = hash_bot.ask("What about China?", history=["How many troops did North Korea send to Russia?"])
    assert answer.searched == "How many troops did North Korea send to China?"
    assert answer.to_json()["searched"] == answer.searched
    plain = hash_bot.ask("How many troops did North Korea send to Russia?")
    assert plain.to_json()["searched"] == plain.question


@pytest.mark.parametrize("question", ["x" * 2_000, "xxxxxxxxxxxx troops", "banana", "weather Paris banana asdfgh qwerty"])
def test_a_question_that_stands_on_its_own_borrows_nothing(question):
    history = ["How many troops did North Korea send to Russia?"]
    assert not needs_context(question)
    assert contextualize(question, history) == question


def test_vague_follow_ups_still_borrow():
    history = ["How many troops did North Korea send to Russia?"]
    for question in ("Tell me more", "Why?", "Details?", "And then?"):
        assert contextualize(question, history) == f"{question} (many troops North Korea send Russia)"


def test_a_follow_up_borrows_only_from_the_last_answered_turn(hash_bot):
    from qa.records import Answer

    answered = hash_bot.ask("How many troops did North Korea send to Russia?")
    assert not answered.abstained
    nonsense = Answer("weather Paris banana asdfgh qwerty", ABSTAIN_TEXT, (), abstained=True)
    follow = hash_bot.ask("Tell me more", history=[answered, nonsense, nonsense])
    assert follow.searched == "Tell me more (many troops North Korea send Russia)"


class _FixedScorer:
    """Scores two known sentences of the bundled articles, 0.15 apart, and nothing else."""

    name = "fixed"

    def score(self, X, question="", texts=()):
        import numpy as np

        return np.array([0.9 if "10,000 troops" in t else 0.75 if "calling out the U.S." in t else 0.0 for t in texts])

    def calibration(self, model):
        from qa.answer.scorers import Calibration

        return Calibration(abstain_below=0.5, show_within=0.2)


def test_the_gap_rule_holds_for_follow_ups(hash_index, hash_embedder):
    """Borrowed words lift every sentence about the earlier topic, so a follow-up's quotes must be closer to the best."""
    from qa.answer.bot import Bot

    bot = Bot.load(hash_index, embedder=hash_embedder, answer_settings=AnswerSettings(passages=50))
    bot.scorer = _FixedScorer()
    plain = bot.ask("How many troops did North Korea send to Russia?")
    assert [("10,000 troops" in q.text, "calling out" in q.text) for q in plain.quotes] == [(True, False), (False, True)]
    follow = bot.ask("What might it get in return?", history=[plain])
    assert follow.searched != follow.question
    assert len(follow.quotes) == 1 and "10,000 troops" in follow.quotes[0].text, follow.text
