"""Answer sentence selection: rank each question's candidate sentences, report MAP, MRR and P@1.

    python -m benchmarks.sentence_select ../shared/qa-train/wikiqa/WikiQA-dev.tsv.gz --format wikiqa --json
    python -m benchmarks.sentence_select ../shared/qa-train/trecqa/DEV.tsv.gz --format trecqa --scorer hand

The standard way: only questions with at least one positive and one negative sentence count; average
precision over the ranked list, reciprocal rank of the first positive, whether the first is positive.
Ties keep the file's order. Scorers:

* ``default``: what ``Bot.ask`` scores candidates with by default (``qa.answer.scorers.scorer_for``);
* ``hand``: the hand-weighted score; ``blend``: the hand-weighted score plus the reader, as
  ``QA_RANKER=reader`` scores; ``reader``: the shipped reader's logit alone; ``bm25``: BM25 with the file's
  sentences as the collection.

Scorers that need retrieval features get the values a lone sentence would have: each sentence is its own
article and its own first-ranked chunk, with no neighbours, and IDF comes from the file's sentences.
The data is read where it lies and never copied. Formats: ``wikiqa`` (the official TSV with its header),
``trecqa`` (qid, question, sentence, label, with a header line), ``selqa`` (the JSON list).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCORERS = ("default", "hand", "blend", "reader", "bm25")
FORMATS = ("wikiqa", "trecqa", "selqa")


@dataclass(frozen=True)
class Question:
    """One question with its candidate sentences and their 0/1 labels, in file order."""

    id: str
    text: str
    sentences: tuple[str, ...]
    labels: tuple[int, ...]


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else path.open(encoding="utf-8")
    return raw


def _grouped(rows: Sequence[tuple[str, str, str, int]]) -> list[Question]:
    groups: dict[str, list[tuple[str, str, int]]] = {}
    for qid, question, sentence, label in rows:
        groups.setdefault(qid, []).append((question, sentence, label))
    return [
        Question(qid, items[0][0], tuple(s for _, s, _ in items), tuple(lab for _, _, lab in items))
        for qid, items in groups.items()
    ]


def read_questions(path: Path, fmt: str) -> list[Question]:
    """Every question of ``path`` in the given format, in file order."""
    with _open_text(path) as fh:
        if fmt == "selqa":
            data = json.load(fh)
            out = []
            for n, item in enumerate(data):
                raw = item.get("answers", [])  # a JSON list of indices, or the same as a string
                tokens = raw if isinstance(raw, list) else str(raw).replace(",", " ").strip("[]").split()
                answers = {int(a) for a in tokens if str(a).strip().isdigit()}
                cands = tuple(str(c) for c in item["candidates"])
                labels = tuple(int(i in answers) for i in range(len(cands)))
                out.append(Question(str(item.get("id", n)), str(item["question"]), cands, labels))
            return out
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        rows = []
        if fmt == "wikiqa":
            col = {name: i for i, name in enumerate(header)}
            for r in reader:
                rows.append((r[col["QuestionID"]], r[col["Question"]], r[col["Sentence"]], int(r[col["Label"]])))
        else:
            for r in reader:
                rows.append((r[0], r[1], r[2], int(r[3])))
        return _grouped(rows)


def metrics(ranked_labels: Sequence[Sequence[int]]) -> dict[str, float]:
    """MAP, MRR and P@1 of lists of labels in ranked order (each list has a positive and a negative)."""
    aps, rrs, p1 = [], [], []
    for labels in ranked_labels:
        hits, precisions = 0, []
        for i, lab in enumerate(labels, start=1):
            if lab:
                hits += 1
                precisions.append(hits / i)
        aps.append(sum(precisions) / hits)
        rrs.append(1.0 / (1 + list(labels).index(1)))
        p1.append(float(labels[0] == 1))
    n = len(ranked_labels)
    return {"map": round(sum(aps) / n, 4), "mrr": round(sum(rrs) / n, 4), "p_at_1": round(sum(p1) / n, 4)}


def _idf_of(questions: Sequence[Question]) -> Callable[[str], float]:
    from qa.index.lexical import tokenize

    df: Counter[str] = Counter()
    n = 0
    for q in questions:
        for s in q.sentences:
            df.update(set(tokenize(s)))
            n += 1
    return lambda t: math.log(1 + (n - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5))


def bm25_scorer(questions: Sequence[Question]) -> Callable[[Question], np.ndarray]:
    """BM25 (k1 1.5, b 0.75) with the file's sentences as the collection."""
    from qa.index.lexical import tokenize

    idf = _idf_of(questions)
    lengths = [len(tokenize(s)) for q in questions for s in q.sentences]
    avg = sum(lengths) / max(1, len(lengths))

    def score(q: Question) -> np.ndarray:
        terms = tokenize(q.text)
        out = []
        for s in q.sentences:
            tf = Counter(tokenize(s))
            norm = 1.5 * (0.25 + 0.75 * sum(tf.values()) / avg)
            out.append(sum(idf(t) * tf[t] * 2.5 / (tf[t] + norm) for t in terms if t in tf))
        return np.asarray(out, dtype=np.float32)

    return score


def candidate_scorer(questions: Sequence[Question], name: str) -> Callable[[Question], np.ndarray]:
    """The product's scorer (``default``, ``hand`` or ``reader``) over lone-sentence candidates."""
    from qa.answer.candidates import Candidate
    from qa.answer.features import features
    from qa.answer.factory import scorer_for
    from qa.embed.factory import get_embedder
    from qa.records import Article, Chunk, Hit

    embedder = get_embedder()
    from qa.settings import DEFAULT_RANKER_NAME

    scorer = scorer_for(embedder.name, ranker={"default": DEFAULT_RANKER_NAME, "blend": "reader"}.get(name, name))
    idf = _idf_of(questions)

    def score(q: Question) -> np.ndarray:
        cands = []
        for i, s in enumerate(q.sentences):
            article = Article.make(s, f"{q.id}/{i}", title=" ")
            chunk = Chunk(f"{q.id}/{i}", article.id, 0, len(s), s)
            cands.append(Candidate(article, 0, len(s), Hit(chunk, 1.0, 0)))
        vectors = embedder.encode([q.text, *q.sentences])
        dense = vectors[1:] @ vectors[0]
        X = features(q.text, q.text, cands, dense, idf)
        return np.asarray(scorer.score(X, q.text, list(q.sentences)), dtype=np.float32)

    return score


def run(path: Path, fmt: str, scorer: str, limit: int | None = None) -> dict:
    """Score every counted question of ``path`` and return the figures."""
    questions = read_questions(path, fmt)
    counted = [q for q in questions if 0 < sum(q.labels) < len(q.labels)]
    if limit:
        counted = counted[:limit]
    if scorer == "bm25":
        score = bm25_scorer(questions)
    elif scorer == "reader":
        from qa.answer.reader import shared_reader

        reader = shared_reader()
        score = lambda q: reader.score(q.text, list(q.sentences))  # noqa: E731
    else:
        score = candidate_scorer(questions, scorer)
    started = time.perf_counter()
    ranked = []
    for q in counted:
        scores = score(q)
        order = sorted(range(len(q.labels)), key=lambda i: (-float(scores[i]), i))
        ranked.append([q.labels[i] for i in order])
    seconds = time.perf_counter() - started
    return {
        "file": str(path), "format": fmt, "scorer": scorer, **metrics(ranked), "questions": len(counted),
        "questions_in_file": len(questions), "seconds": round(seconds, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sentence_select", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="the data file (.gz or plain)")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--scorer", default="default", choices=SCORERS)
    parser.add_argument("--limit", type=int, default=None, help="only the first N counted questions")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of a sentence")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        parser.error(f"{args.file} is not a file")
    try:
        result = run(args.file, args.format, args.scorer, args.limit)
    except (KeyError, IndexError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        print(f"sentence_select: {args.file} is not a {args.format} file ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.scorer} on {args.file.name}: MAP {result['map']:.3f}, MRR {result['mrr']:.3f}, "
              f"P@1 {result['p_at_1']:.3f} over {result['questions']} questions ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
