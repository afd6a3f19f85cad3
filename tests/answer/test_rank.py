"""Scoring quotes: the shipped ranker, its numpy trees, refusals of bad or foreign files, the hand scorer, features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qa.answer.candidates import Candidate
from qa.answer.features import FEATURES, echoes, features
from qa.answer.factory import scorer_for
from qa.answer.scorers import DEFAULT_RANKER, RANKER_FORMAT, HandScorer, Ranker, RankerError
from qa.records import Article, Chunk, Hit
from qa.settings import DEFAULT_MODEL
from training.ranker.trees import trees_from_lightgbm


def _tiny(model: str = "m") -> dict:
    """A valid ranker file: one tree, dense <= 0.5 -> -1 else +1."""
    tree = {"feature": [0], "threshold": [0.5], "left": [-1], "right": [-2], "default_left": [True],
            "missing": [0], "leaves": [-1.0, 1.0]}
    return {"format": RANKER_FORMAT, "version": "t", "features": list(FEATURES),
            "calibration": {model: {"abstain_below": 0.0, "show_within": 1.5}}, "trees": [tree]}


def _write(tmp_path, data) -> object:
    path = tmp_path / "ranker.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_the_shipped_ranker_serves_the_bundled_model_fp32_and_int8():
    ranker = Ranker.load(DEFAULT_RANKER, model=DEFAULT_MODEL)
    assert set(ranker.models) == {DEFAULT_MODEL, DEFAULT_MODEL + "@int8"}
    assert ranker.meta["features"] == list(FEATURES) and ranker.version
    assert DEFAULT_RANKER.stat().st_size <= 32 * 2**20
    for model in ranker.models:
        cal = ranker.calibration(model)
        assert np.isfinite(cal.abstain_below) and cal.show_within is not None and cal.show_within > 0
    assert scorer_for(DEFAULT_MODEL, ranker="learned") is scorer_for(DEFAULT_MODEL + "@int8", ranker="learned")  # read once


def test_the_ranker_prefers_a_sentence_that_holds_the_question_and_its_answer_type():
    """Two candidates alike but for coverage, cosine and type cue: the ranker scores the better one higher."""
    ranker = scorer_for(DEFAULT_MODEL, ranker="learned")
    X = np.zeros((2, len(FEATURES)), dtype=np.float32)
    col = {n: i for i, n in enumerate(FEATURES)}
    X[:, col["question_terms"]] = 5
    X[:, col["chars"]] = 150
    X[0, [col["dense"], col["coverage"], col["typed"], col["chunk_dense"]]] = [0.75, 1.0, 1.0, 0.7]
    X[1, [col["dense"], col["coverage"], col["typed"], col["chunk_dense"]]] = [0.15, 0.0, 0.0, 0.2]
    X[1, [col["dense_gap"], col["coverage_gap"]]] = [-0.6, -1.0]
    X[1, [col["dense_rank"], col["coverage_rank"], col["chunk_rank"]]] = [1, 1, 7]
    scores = ranker.score(X)
    assert scores[0] > scores[1]


def test_numpy_trees_give_lightgbms_raw_scores(tmp_path):
    lgb = pytest.importorskip("lightgbm")  # a training-only dependency (the "train" extra)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, len(FEATURES))).astype(np.float32)
    X[rng.random(1500) < 0.3, 3] = 0.0  # zeros and NaNs exercise the missing-value branches
    X[rng.random(1500) < 0.05, 4] = np.nan
    y = (X[:, 0] + 0.5 * np.nan_to_num(X[:, 3]) + 0.3 * rng.normal(size=1500) > 0).astype(int)
    params = {"objective": "lambdarank", "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(X, y, group=[15] * 100), num_boost_round=25)
    data = _tiny()
    data["trees"] = trees_from_lightgbm(booster.dump_model())
    ranker = Ranker.load(_write(tmp_path, data))
    test = rng.normal(size=(300, len(FEATURES))).astype(np.float32)
    test[:40, 3] = 0.0
    test[40:70, 4] = np.nan
    assert np.allclose(ranker.score(test), booster.predict(test, raw_score=True), atol=1e-5)


def test_a_missing_ranker_file_says_how_to_rebuild_it(tmp_path):
    with pytest.raises(RankerError) as err:
        Ranker.load(tmp_path / "nope.json")
    message = str(err.value)
    assert "missing" in message and "python -m training.ranker.train" in message and "\n" not in message


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: "{not json",
        lambda d: json.dumps(d)[: len(json.dumps(d)) // 2],
        lambda d: {**d, "format": "qa-ranker/0"},
        lambda d: {**d, "features": list(reversed(FEATURES))},
        lambda d: {**d, "trees": [{**d["trees"][0], "left": [5]}]},  # points past its tree
        lambda d: {**d, "trees": [{**d["trees"][0], "feature": [999]}]},
        lambda d: {**d, "trees": [{**d["trees"][0], "threshold": []}]},
        lambda d: {**d, "trees": [{**d["trees"][0], "leaves": [1.0, float("nan")]}]},
        lambda d: {**d, "calibration": {}},
        lambda d: {k: v for k, v in d.items() if k != "trees"},
    ],
)
def test_a_corrupt_ranker_file_is_one_clear_error(tmp_path, damage):
    path = tmp_path / "ranker.json"
    damaged = damage(_tiny())
    path.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged, allow_nan=True))
    with pytest.raises(RankerError) as err:
        Ranker.load(path)
    assert "training.ranker.train" in str(err.value) and "\n" not in str(err.value)


def test_a_ranker_for_another_model_is_refused_by_name(tmp_path):
    path = _write(tmp_path, _tiny("sentence-transformers/all-MiniLM-L6-v2"))
    with pytest.raises(RankerError) as err:
        Ranker.load(path, model="hash-128")
    assert "hash-128" in str(err.value) and "all-MiniLM-L6-v2" in str(err.value)
    with pytest.raises(RankerError):
        scorer_for("hash-128", path)
    assert Ranker.load(path, model=DEFAULT_MODEL).score(np.array([[0.9] + [0] * (len(FEATURES) - 1)])) == 1.0


def test_the_reader_is_the_default_and_the_learned_ranker_opt_in(hash_index, hash_embedder):
    from qa.answer.quotes import AnswerSettings
    from qa.answer.bot import Bot
    from qa.answer.reader import ReaderScorer

    assert isinstance(scorer_for("hash-128"), ReaderScorer)
    assert isinstance(scorer_for(DEFAULT_MODEL), ReaderScorer)
    assert isinstance(scorer_for(DEFAULT_MODEL, ranker="hand"), HandScorer)
    bot = Bot.load(hash_index, embedder=hash_embedder)
    assert bot.scorer.name == "reader"
    assert bot.scorer.calibration(hash_embedder.name).abstain_below == HandScorer.abstain_below
    assert bot.scorer.calibration(hash_embedder.name).show_within is None  # no gap chosen on the fake's scale
    assert HandScorer().calibration(DEFAULT_MODEL).show_within == 0.2
    with pytest.raises(RankerError) as err:  # the shipped ranker was not trained for the hash fake: refused
        Bot.load(hash_index, embedder=hash_embedder, answer_settings=AnswerSettings(ranker="learned"))
    assert hash_embedder.name in str(err.value)


def _cands(text: str, sentences: list[str]) -> list[Candidate]:
    article = Article.make(text=text, source="a.txt", title="Seoul summit news")
    chunk = Chunk(id="c0", article_id=article.id, start=0, end=len(text), text=text)
    hit = Hit(chunk, 1.0, 0, dense=0.5, lexical=3.0)
    out = []
    for i, s in enumerate(sentences):
        start = text.index(s)
        prev = (text.index(sentences[i - 1]), text.index(sentences[i - 1]) + len(sentences[i - 1])) if i else None
        out.append(Candidate(article, start, start + len(s), hit, prev=prev))
    return out


def test_features_describe_each_candidate():
    sentences = ["The summit was held in Seoul.", "Officials said 300 delegates from Japan attended.",
                 "How many delegates attended the summit?"]
    cands = _cands(" ".join(sentences), sentences)
    idf = lambda term: 2.0
    X = features("How many delegates attended the summit?", "How many delegates attended the summit?",
                 cands, np.array([0.2, 0.8, 0.9], dtype=np.float32), idf)
    col = {n: i for i, n in enumerate(FEATURES)}
    assert X.shape == (3, len(FEATURES)) and X.dtype == np.float32
    assert X[1, col["typed"]] == 1.0 and X[0, col["typed"]] == 0.0  # "how many" asks for a number
    assert X[1, col["numbers"]] >= 1 and X[1, col["new_names"]] == 1  # "Japan"; "Officials" starts the sentence
    assert X[2, col["coverage"]] == 1.0 and X[2, col["echo"]] == 1.0  # it restates the question
    assert list(echoes(X)) == [False, False, True]  # returned as a column: the (frozen) candidates stay as they were
    assert X[1, col["prev_dense"]] == pytest.approx(0.2) and X[0, col["prev_dense"]] == 0.0
    assert list(X[:, col["dense_rank"]]) == [2, 1, 0] and X[2, col["dense_gap"]] == 0.0
    assert X[0, col["title_coverage"]] > 0 and X[1, col["position"]] > X[0, col["position"]]
    assert X[0, col["qtype"]] == 3
    assert X[1, col["window_coverage"]] > X[1, col["coverage"]]  # the sentence before it names the summit
    assert X[2, col["window_typed"]] == 1.0 and X[0, col["window_typed"]] == 0.0  # the number is next to it
    assert HandScorer().score(X).shape == (3,)


def test_training_takes_every_stride_th_week_and_refuses_a_stride_below_one(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from benchmarks.harness import chosen_weeks

    root = Path(__file__).resolve().parents[2]
    questions = [{"id": f"2024{month:02d}01_{n}"} for month in range(8, 0, -1) for n in range(2)]
    assert chosen_weeks(questions) == ["20240101", "20240501"]  # every fourth week, in date order
    assert chosen_weeks(questions, stride=2) == ["20240101", "20240301", "20240501", "20240701"]
    assert chosen_weeks(questions, 3, stride=1) == ["20240101", "20240201", "20240301"]
    command = [sys.executable, "-m", "training.ranker.train", "--data", str(tmp_path), "--stride", "0"]
    proc = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60, cwd=root)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("--stride must be 1 or more, not 0")
