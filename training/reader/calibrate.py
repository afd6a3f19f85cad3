"""Choose how the reader's score joins the hand-weighted one, and its thresholds, on RealTime QA training weeks.

    python -m training.reader.calibrate --data ../shared/rtqa-2024-2026 --card qa/models/reader.json

The week indexes are the ranker training's (``python -m training.ranker.train --only-build``, same
``--work`` and ``--stride``). For every question of the chosen weeks (asked of its own week, and of another
week as unanswerable when no gold string occurs there) the bot's candidates are scored once by the
hand-weighted score and once by the reader. Then, with no model call:

* the blend weight ``w`` (score = hand + w x P(reader says it answers)) with the best recall@1 of the first
  quote on the answerable runs (ties: recall@3, then the smaller ``w``), at the bot's own 8 passages (12 are
  measured too and reported, not chosen: the bot takes no passage count from the card);
* the abstention threshold that refuses the most unanswerable runs while refusing at most 5% of the
  answerable runs whose candidates hold an answer, and the gap that keeps 99% of the answers found in the
  top three (``training.ranker.train.choose_abstain``/``choose_show_within``).

Both go into the card's ``blend`` and ``calibrations``; the figures into its ``calibration_report``. The bot uses
the blend weight and the gap (it ranks and shows quotes on the blend's scale); it abstains on the hand-weighted
score with that score's own threshold (the reader only reorders, ``qa.answer.reader.ReaderScorer``), so the
abstention threshold chosen here is a measurement, kept in the card. Never run on RealTime QA 2022: that is
where the project reports held-out figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.harness import (
    WEEK_STRIDE,
    chosen_weeks,
    has_gold,
    other_week,
    question_runs,
    read_questions,
    week_index_dir,
)

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
#: Candidate passages measured: the bot's own count (``AnswerSettings().passages``, what the blend is chosen at)
#: and more, reported for comparison only (the bot takes no passage count from the card).
PASSAGES = (8, 12)


def first_passages(run: dict, passages: int) -> dict:
    """The run as if only the best ``passages`` chunks had fed candidates (they come in hit order: a prefix)."""
    n = int((run["chunk_rank"] < passages).sum())
    return {**run, **{key: run[key][:n] for key in ("hand", "echo", "logit", "label", "chunk_rank")},
            "cands": run["cands"][:n]}


def collect(data: Path, work: Path, backend: str, weeks_count: int | None, stride: int) -> list[dict]:
    """One record per question run: its candidates with hand scores, echo flags, labels and chunk ranks."""
    from qa.answer.quotes import AnswerSettings, grown_span, rank_candidates
    from qa.answer.retrieve import RetrieveSettings, retrieve
    from qa.answer.scorers import HandScorer
    from qa.embed.factory import get_embedder
    from qa.index.reader import load_index

    questions = read_questions(data)
    weeks = chosen_weeks(questions, weeks_count, stride)
    settings = AnswerSettings(passages=max(PASSAGES))
    runs: list[dict] = []
    embedder = None
    started = time.perf_counter()
    for n, week in enumerate(weeks, 1):
        index = load_index(week_index_dir(work, backend, week), check="quick")
        embedder = embedder or get_embedder(index.manifest.model)
        other = load_index(week_index_dir(work, backend, other_week(week, weeks)), check="quick")
        for _, q, golds, asks in question_runs(questions, week, index, other):
            vector = embedder.encode([q["q"]])[0]
            for idx, answerable in asks:
                hits = retrieve(idx, q["q"], vector, settings.passages, RetrieveSettings())
                cands, _ = rank_candidates(q["q"], q["q"], vector, idx, hits, embedder, settings, HandScorer())
                if not cands:
                    continue
                shown = [c.article.text[slice(*grown_span(c.article.text, c.start, c.end, settings.fill_to,
                                                          settings.fill_across_paragraphs))] for c in cands]
                runs.append({
                    "question": q["q"], "golds": golds, "answerable": answerable, "cands": cands,
                    "hand": np.array([c.score for c in cands]), "echo": np.array([c.echo for c in cands]),
                    "label": np.array([answerable and has_gold(s, golds) for s in shown]),
                    "chunk_rank": np.array([c.hit.rank for c in cands]),
                })
        print(f"week {week} ({n}/{len(weeks)}): {len(runs)} runs so far, {time.perf_counter() - started:.0f}s",
              file=sys.stderr, flush=True)
    return runs


def read_all(runs: list[dict], card: Path) -> None:
    """Add the reader's logit of every candidate to each run."""
    from qa.answer.reader import Reader

    reader = Reader(card)
    for run in runs:
        run["logit"] = reader.score(run["question"], [c.text for c in run["cands"]]).astype(np.float64)


def blended(run: dict, weight: float) -> np.ndarray:
    """The scores of one run's candidates under blend ``weight``."""
    return run["hand"] + weight * (1.0 / (1.0 + np.exp(-run["logit"])))


def recall(runs: Sequence[dict], weight: float, k: int = 3) -> tuple[float, float, float]:
    """Recall@1 and @3 of the quotes the bot would show (nothing refused), and their mean characters."""
    from qa.answer.candidates import ScoredCandidate
    from qa.answer.evaluate import answer_rank
    from qa.answer.quotes import AnswerSettings, select_quotes
    from qa.records import Answer

    settings = AnswerSettings()
    at1 = at3 = chars = 0
    answerable = [r for r in runs if r["answerable"]]
    for run in answerable:
        scores = blended(run, weight)
        ranked = sorted((ScoredCandidate.of(c, float(s), bool(e)) for c, s, e in zip(run["cands"], scores, run["echo"])
                         if not e), key=lambda c: -c.score)
        quotes = select_quotes(ranked, k, settings, None)
        answer = Answer(question=run["question"], text="", quotes=tuple(quotes), abstained=False,
                        searched=run["question"], notice="", seconds=0.0)
        rank = answer_rank(answer, run["golds"], k)
        at1 += rank == 1
        at3 += 0 < rank <= 3
        chars += sum(len(x.text) for x in quotes)
    n = max(1, len(answerable))
    return at1 / n, at3 / n, chars / n


def thresholds(runs: Sequence[dict], weight: float) -> dict:
    """Abstention threshold and gap rule on the blended scale, chosen as the ranker's training does."""
    from training.ranker.train import choose_abstain, choose_show_within, per_question

    scores = np.concatenate([blended(r, weight) for r in runs])
    label = np.concatenate([r["label"] for r in runs])
    echo = np.concatenate([r["echo"] for r in runs])
    group = np.concatenate([np.full(len(r["hand"]), g) for g, r in enumerate(runs)])
    answerable = np.array([r["answerable"] for r in runs])
    top, at1, at3, gap3, reach = per_question(scores, label, echo, group, len(runs))
    chosen = choose_abstain(top, answerable, reach)
    if chosen is None:
        raise SystemExit("calibrate: no threshold refuses at most 5% of the reachable answerable runs")
    abstain, caught, refused_reachable, refused_all = chosen
    return {"abstain_below": round(abstain, 3), "show_within": choose_show_within(gap3, at3),
            "unanswerable_refused": round(caught, 3), "reachable_answerable_refused": round(refused_reachable, 3),
            "answerable_refused": round(refused_all, 3)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.reader.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="folder with RealTime QA 2024-2026")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rtqa-train"), help="the week indexes' folder")
    parser.add_argument("--card", type=Path, required=True, help="the reader's card (rewritten in place)")
    parser.add_argument("--backend", default="onnx-int8", choices=("onnx-int8", "onnx", "torch"))
    parser.add_argument("--weeks", type=int, default=None, help="only the first N of the chosen weeks")
    parser.add_argument("--stride", type=int, default=WEEK_STRIDE, help="every N-th week, as the week indexes were built")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    runs = collect(args.data, args.work, args.backend, args.weeks, args.stride)
    read_all(runs, args.card)
    weeks = chosen_weeks(read_questions(args.data), args.weeks, args.stride)
    command = f"python -m training.reader.calibrate --data DATA --card {args.card} --stride {args.stride}"
    calibrate(runs, args.card, weeks, command, started)
    return 0


def calibrate(runs: list[dict], card_path: Path, weeks: Sequence[str], command: str, started: float) -> dict:
    """Choose passages, blend weight and thresholds on ``runs`` and write them into the card at ``card_path``."""
    grid = []
    for passages in PASSAGES:
        sub = [first_passages(r, passages) for r in runs]
        for w in WEIGHTS:
            r1, r3, chars = recall(sub, w)
            grid.append({"passages": passages, "reader_weight": w, "recall@1": round(r1, 3), "recall@3": round(r3, 3),
                         "chars": round(chars)})
            print(f"passages {passages} w={w:<5} recall@1 {r1:.3f} recall@3 {r3:.3f} chars {chars:.0f}",
                  file=sys.stderr, flush=True)
    # chosen at the passage count the bot answers from; the other counts are in the report for comparison
    from qa.answer.quotes import AnswerSettings

    served = AnswerSettings().passages
    best = max((g for g in grid if g["passages"] == served),
               key=lambda g: (g["recall@1"], g["recall@3"], -g["reader_weight"]))
    chosen = thresholds([first_passages(r, best["passages"]) for r in runs], best["reader_weight"])
    from qa.settings import DEFAULT_MODEL

    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["blend"] = {"reader_weight": best["reader_weight"], "hand_weight": 1.0}
    calibration = {"abstain_below": chosen["abstain_below"], "show_within": chosen["show_within"]}
    card["calibrations"] = {DEFAULT_MODEL: calibration, DEFAULT_MODEL + "@int8": calibration}
    card["calibration_report"] = {
        "data": "RealTime QA 2024-2026", "weeks": weeks, "runs": len(runs),
        "answerable_runs": sum(r["answerable"] for r in runs), "grid": grid, "chosen": {**best, **chosen},
        "seconds": round(time.perf_counter() - started),
        "command": command,
    }
    tmp = card_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, card_path)
    print(json.dumps(card["calibration_report"]["chosen"]), flush=True)
    print(f"calibrated in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return card


if __name__ == "__main__":
    sys.exit(main())
