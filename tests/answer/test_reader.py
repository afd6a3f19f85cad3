"""The reader: a cross-encoder shipped as int8 ONNX with a card; refused with one line when its files are wrong."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from qa.answer.reader import DEFAULT_READER, READER_FORMAT, TOKENIZER_MODEL, Reader, ReaderError, ReaderScorer, read_card

SHIPPED = DEFAULT_READER.is_file()
needs_model = pytest.mark.skipif(not SHIPPED, reason="qa/models/reader.json is not shipped in this checkout")


def write_card(folder: Path, onnx: bytes, **fields) -> Path:
    """A card beside an ONNX file holding ``onnx``; ``fields`` override the card's entries."""
    (folder / "reader-int8.onnx").write_bytes(onnx)
    card = {"format": READER_FORMAT, "version": 1, "file": "reader-int8.onnx", "sha256": hashlib.sha256(onnx).hexdigest(),
            "tokenizer": TOKENIZER_MODEL, "max_length": 128, "blend": {"reader_weight": 1.0},
            "calibrations": {"m": {"abstain_below": 0.5, "show_within": None}}}
    card.update(fields)
    path = folder / "reader.json"
    path.write_text(json.dumps(card))
    return path


def assert_one_line(err: pytest.ExceptionInfo, *words: str) -> None:
    message = str(err.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


def test_a_missing_card_says_how_to_rebuild(tmp_path):
    with pytest.raises(ReaderError) as err:
        Reader(tmp_path / "reader.json")
    assert_one_line(err, "missing", "python -m training.reader.train")


@pytest.mark.parametrize(
    "text, words",
    [("{not json", ("cannot be read",)), ('{"format": "qa-ranker/1"}', ("not a", READER_FORMAT)), ("[1, 2]", ("not a",))],
)
def test_a_broken_card_is_refused(tmp_path, text, words):
    path = tmp_path / "reader.json"
    path.write_text(text)
    with pytest.raises(ReaderError) as err:
        read_card(path)
    assert_one_line(err, *words, "training.reader")


def test_a_card_without_an_entry_is_refused(tmp_path):
    path = write_card(tmp_path, b"x")
    data = json.loads(path.read_text())
    del data["sha256"]
    path.write_text(json.dumps(data))
    with pytest.raises(ReaderError) as err:
        read_card(path)
    assert_one_line(err, "lacks", "sha256")


def test_a_reader_for_another_tokenizer_is_refused_by_name(tmp_path):
    path = write_card(tmp_path, b"x", tokenizer="bert-base-uncased")
    with pytest.raises(ReaderError) as err:
        read_card(path)
    assert_one_line(err, "bert-base-uncased", TOKENIZER_MODEL)


def test_a_damaged_model_file_is_refused(tmp_path):
    path = write_card(tmp_path, b"the model")
    (tmp_path / "reader-int8.onnx").write_bytes(b"the modem")  # one byte changed after the card was written
    with pytest.raises(ReaderError) as err:
        Reader(path)
    assert_one_line(err, "damaged", "training.reader")


def test_a_file_that_is_no_onnx_model_is_refused(tmp_path):
    path = write_card(tmp_path, b"not an onnx graph at all")  # the checksum matches: the file itself is wrong
    with pytest.raises(ReaderError) as err:
        Reader(path)
    assert_one_line(err, "cannot be loaded", "training.reader")


@needs_model
def test_an_uncalibrated_card_gives_no_scorer(tmp_path):
    card = json.loads(DEFAULT_READER.read_text())
    for name in ("blend", "calibrations", "calibration_report"):
        card.pop(name, None)
    shutil.copy(DEFAULT_READER.parent / card["file"], tmp_path / card["file"])
    (tmp_path / "reader.json").write_text(json.dumps(card))
    reader = Reader(tmp_path / "reader.json")
    with pytest.raises(ReaderError) as err:
        ReaderScorer(reader)
    assert_one_line(err, "training.reader.calibrate")


@needs_model
@pytest.mark.real
@pytest.mark.parametrize(
    "question, answer, others",
    [
        (
            "How many goals did the striker score in the final?",
            "The striker scored three goals in the final on Sunday.",
            ["The final was played in a stadium that holds 60,000 people.",
             "The striker joined the club from a rival team two years ago.",
             "Tickets for the final sold out within an hour."],
        ),
        (
            "Who was elected mayor of the city?",
            "Voters elected Maria Lopez as the city's new mayor on Tuesday.",
            ["The city council meets every second Monday.",
             "Turnout in the mayoral election was the lowest in a decade.",
             "The mayor's office is on the top floor of city hall."],
        ),
        (
            "When did the bridge reopen?",
            "The bridge reopened to traffic on March 3, after two years of repairs.",
            ["The bridge carries about 40,000 cars a day.",
             "Engineers found cracks in the bridge's steel supports.",
             "A ferry service ran while the bridge was closed."],
        ),
    ],
)
def test_the_reader_puts_the_answering_sentence_first(question, answer, others):
    reader = Reader()
    for at in range(len(others) + 1):  # wherever the answer stands, it scores highest
        sentences = [*others[:at], answer, *others[at:]]
        scores = reader.score(question, sentences)
        assert scores.shape == (len(sentences),) and scores.dtype == np.float32
        assert int(np.argmax(scores)) == at, (question, scores.tolist())
    assert reader.score(question, []).shape == (0,)


def test_a_question_longer_than_the_reader_reads_is_cut_not_an_error():
    reader = Reader()
    sentences = ["The bridge reopened to traffic on March 3.", "Engineers found cracks in the supports."]
    for question in ("bridge " * 2000, "? " * 300, "When did the bridge reopen? " + "x" * 5000):
        scores = reader.score(question, sentences)
        assert scores.shape == (2,) and np.isfinite(scores).all()


@needs_model
@pytest.mark.real
def test_the_reader_only_reorders_it_abstains_as_the_hand_score_does(real_index, real_embedder):
    """Abstention is decided on the hand-weighted score: the same questions are refused with either scorer."""
    from qa.answer.bot import Bot
    from qa.answer.evaluate import read_questions
    from qa.answer.quotes import AnswerSettings

    items, _ = read_questions(str(Path(__file__).resolve().parents[1] / "questions.jsonl"))
    hand = Bot.load(real_index, embedder=real_embedder, answer_settings=AnswerSettings(ranker="hand"))
    reader = Bot.load(real_index, embedder=real_embedder, answer_settings=AnswerSettings(ranker="reader"))
    assert reader.scorer.name == "reader"
    questions = [item.turns[0] for item in items if len(item.turns) == 1]
    assert len(questions) >= 10
    refused = [(hand.ask(q).abstained, reader.ask(q).abstained) for q in questions]
    assert all(h == r for h, r in refused), refused
    assert any(h for h, _ in refused) and not all(h for h, _ in refused), "both kinds of question are asked"


@needs_model
def test_the_blend_abstains_on_the_hand_threshold_and_shows_quotes_within_its_own_gap(tmp_path):
    """The gap is read on the scale quotes are ranked by (the blend's); abstention stays the hand score's."""
    from qa.answer.scorers import HandScorer
    from qa.settings import DEFAULT_MODEL

    card = json.loads(DEFAULT_READER.read_text())
    card["calibrations"] = {DEFAULT_MODEL: {"abstain_below": 9.0, "show_within": 0.77}}
    shutil.copy(DEFAULT_READER.parent / card["file"], tmp_path / card["file"])
    (tmp_path / "reader.json").write_text(json.dumps(card))
    scorer = ReaderScorer(Reader(tmp_path / "reader.json"))
    hand = HandScorer()
    own = scorer.calibration(DEFAULT_MODEL)
    assert own.show_within == 0.77 and own.abstain_below == hand.calibration(DEFAULT_MODEL).abstain_below != 9.0
    other = DEFAULT_MODEL + "@int8"  # no entry in this card: the hand score's thresholds, both
    assert scorer.calibration(other) == hand.calibration(other)
