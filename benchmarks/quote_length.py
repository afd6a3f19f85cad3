"""How long quotes should be: recall and characters shown for several ``fill_to`` / ``lead_fill_to`` / gap settings.

    python -m benchmarks.quote_length --data /work/shared/rtqa-2024-2026

Runs on the training weeks of ``python -m training.ranker.train`` (build them first with its ``--only-build``), never
on the 2022 benchmark. Each question is retrieved and its candidates scored once; then every setting picks and
grows its three quotes from the same ranked candidates, so the rows differ only in quote length and in the gap
rule (``show_within``: the calibrated gap, another, or none, showing three quotes whenever there are). Answerable
questions are asked of their own week, unanswerable ones of another week (as in training). Prints one row per
setting, for the hand-weighted scorer (the learned ranker was trained on these weeks): recall@1 and @3 of the
quotes shown (a refusal counts as a miss), mean characters of the three quotes and of the top one, and the share
of each kind of question refused; the summary goes to
``benchmarks/results/quote-length-N-training-weeks[-LABEL].json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import (
    WEEK_STRIDE,
    BenchError,
    chosen_weeks,
    other_week,
    question_runs,
    read_questions,
    result_path,
    week_index_dir,
    write_result,
)

#: The scorer's own gap rule (``Calibration.show_within``).
CALIBRATED = "calibrated"
#: (fill_to, lead_fill_to, show_within) settings compared; the first is an earlier default, the shipped one is
#: marked in docs.
SETTINGS = ((330, None, CALIBRATED), (400, None, CALIBRATED), (450, None, CALIBRATED), (400, 550, CALIBRATED),
            (350, 600, CALIBRATED), (400, 650, CALIBRATED), (400, 800, CALIBRATED), (400, 650, 0.3), (400, 650, None))


def run(data: Path, work: Path, backend: str, weeks_count: int | None, k: int = 3,
        stride: int = WEEK_STRIDE) -> list[dict]:
    """One row per question run and setting: rank of the first quote holding a gold string, characters."""
    from qa.answer.quotes import AnswerSettings, rank_candidates, select_quotes
    from qa.embed.factory import get_embedder
    from qa.answer.evaluate import answer_rank
    from qa.answer.factory import scorer_for
    from qa.records import Answer
    from qa.answer.retrieve import RetrieveSettings, retrieve
    from qa.index.reader import load_index

    questions = read_questions(data)
    weeks = chosen_weeks(questions, weeks_count, stride)
    rows: list[dict] = []
    embedder = scorer = None
    started = time.perf_counter()
    for n, week in enumerate(weeks, 1):
        index = load_index(week_index_dir(work, backend, week), check="quick")
        if embedder is None:
            embedder = get_embedder(index.manifest.model)
            # the hand-weighted scorer only: the learned ranker was trained on these weeks and would look better here
            scorer = scorer_for(embedder.name)
        calibration = scorer.calibration(embedder.name)
        other = load_index(week_index_dir(work, backend, other_week(week, weeks)), check="quick")
        for _, q, golds, asks in question_runs(questions, week, index, other):
            vector = embedder.encode([q["q"]])[0]
            for idx, answerable in asks:
                base = AnswerSettings()
                hits = retrieve(idx, q["q"], vector, base.passages, RetrieveSettings())
                cands, _ = rank_candidates(q["q"], q["q"], vector, idx, hits, embedder, base, scorer)
                ranked = sorted((c for c in cands if not c.echo), key=lambda c: -c.score)
                refused = not ranked or ranked[0].score < calibration.abstain_below
                for fill_to, lead, gap in SETTINGS:
                    settings = AnswerSettings(fill_to=fill_to, lead_fill_to=lead)
                    within = calibration.show_within if gap == CALIBRATED else gap
                    quotes = [] if refused else select_quotes(ranked, k, settings, within)
                    answer = Answer(question=q["q"], text="", quotes=tuple(quotes), abstained=refused,
                                    searched=q["q"], notice="", seconds=0.0)
                    rows.append({"fill_to": fill_to, "lead_fill_to": lead, "show_within": gap, "answerable": answerable,
                                 "refused": refused, "rank": answer_rank(answer, golds, k) if answerable else 0,
                                 "chars": [len(x.text) for x in quotes]})
        print(f"week {week} ({n}/{len(weeks)}, {time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True)
    return rows


def summarize(rows: Sequence[dict]) -> list[dict]:
    """Recall, characters and refusals per setting, in the order of ``SETTINGS``."""
    out = []
    for fill_to, lead, gap in SETTINGS:
        mine = [r for r in rows if (r["fill_to"], r["lead_fill_to"], r["show_within"]) == (fill_to, lead, gap)]
        ans = [r for r in mine if r["answerable"]]
        unans = [r for r in mine if not r["answerable"]]
        shown = [r for r in mine if not r["refused"]]
        out.append({
            "scorer": "hand-weighted", "fill_to": fill_to, "lead_fill_to": lead, "show_within": gap,
            "recall@1": round(sum(r["rank"] == 1 for r in ans) / max(1, len(ans)), 3),
            "recall@3": round(sum(0 < r["rank"] <= 3 for r in ans) / max(1, len(ans)), 3),
            "chars_top3": round(sum(sum(r["chars"]) for r in shown) / max(1, len(shown))),
            "chars_top1": round(sum(r["chars"][0] for r in shown if r["chars"]) / max(1, len(shown))),
            "answerable_refused": round(sum(r["refused"] for r in ans) / max(1, len(ans)), 3),
            "unanswerable_refused": round(sum(r["refused"] for r in unans) / max(1, len(unans)), 3),
            "questions": len(ans), "unanswerable": len(unans),
        })
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: every setting on the chosen training weeks, one printed row each, and the result file."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quote_length", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="folder with RealTime QA 2024-2026")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rtqa-train"),
                        help="the ranker training's cache folder (its --work)")
    parser.add_argument("--backend", default=None, choices=("onnx-int8", "onnx", "torch"))
    parser.add_argument("--weeks", type=int, default=None, help="only the first N of the chosen weeks")
    parser.add_argument("--stride", type=int, default=WEEK_STRIDE,
                        help=f"every N-th week of the data, as the training's --stride (default {WEEK_STRIDE})")
    parser.add_argument("--label", default="",
                        help="what sets this run apart (code version, machine): added to the --out name")
    parser.add_argument("--out", type=Path, default=None,
                        help="result JSON (default benchmarks/results/quote-length-N-training-weeks[-LABEL].json)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from qa.embed.factory import DEFAULT_BACKEND

    try:
        weeks = chosen_weeks(read_questions(args.data), args.weeks, args.stride)
    except BenchError as exc:
        print(f"quote_length: error: {exc}", file=sys.stderr)
        return 1
    if len(weeks) < 2:
        parser.error("the unanswerable questions need at least two chosen weeks")
    out = result_path("quote-length", f"{len(weeks)}-training-weeks", args.label, out=args.out)
    summary = summarize(run(args.data, args.work, args.backend or DEFAULT_BACKEND, args.weeks, stride=args.stride))
    for s in summary:
        lead = s["lead_fill_to"] or "-"
        print(f"fill_to {s['fill_to']:3d} lead {lead!s:>4} gap {s['show_within']!s:>10}  "
              f"R@1 {s['recall@1']:.3f}  R@3 {s['recall@3']:.3f}  "
              f"chars {s['chars_top3']:4d} (top {s['chars_top1']:3d})  "
              f"refused {s['answerable_refused']:.3f} / {s['unanswerable_refused']:.3f}")
    write_result(out, summary)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
