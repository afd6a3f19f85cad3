"""Warm ``Bot.ask`` latency of each quote scorer on one index, side by side in one process.

    python -m benchmarks.scorer_latency --index /tmp/rtqa-index/slice-heldout --questions 100

Every question is asked once per scorer before timing (warm-up), then the scorers take turns question by
question, so a busy moment of the machine hits them alike. Reports p50/p95 per scorer and the resident
memory each bot added when it was loaded (its own copy of the index, the embedder and the scorer's model).
Questions: RealTime QA 2022's (read where they lie) or any JSONL file with a ``q`` field per line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import DEFAULT_RTQA, machine, percentiles, result_path, rss_now_mb, write_result


def read_questions(path: Path, limit: int) -> list[str]:
    """The first ``limit`` questions (``q`` field) of a JSONL file."""
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line)["q"])
            if len(out) >= limit:
                break
    return out


def run(index: Path, questions: Sequence[str], scorers: Sequence[str], k: int = 3) -> dict:
    """Per scorer: warm latency percentiles over ``questions``, and the memory its bot's loading added."""
    from qa.answer.bot import Bot
    from qa.answer.quotes import AnswerSettings

    bots, added = {}, {}
    for name in scorers:
        before = rss_now_mb()
        bot = Bot.load(index, answer_settings=AnswerSettings(ranker=name))
        for q in questions:  # warm-up: models loaded, caches filled
            bot.ask(q, k=k)
        bots[name], added[name] = bot, round(rss_now_mb() - before, 1)
    times: dict[str, list[float]] = {name: [] for name in scorers}
    for q in questions:
        for name, bot in bots.items():
            started = time.perf_counter()
            bot.ask(q, k=k)
            times[name].append(time.perf_counter() - started)
    return {
        "index": str(index), "chunks": bots[scorers[0]].index.manifest.counts.get("chunks"),
        "questions": len(questions), "k": k,
        "scorers": {name: {**percentiles(times[name]), "rss_added_mb": added[name]} for name in scorers},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scorer_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--index", required=True, type=Path, help="an index folder built by qa build")
    parser.add_argument("--questions-file", type=Path, default=DEFAULT_RTQA / "questions.jsonl")
    parser.add_argument("--questions", type=int, default=100, help="how many questions (default 100)")
    parser.add_argument("--scorers", default="hand,reader", help="comma-separated QA_RANKER values")
    parser.add_argument("--label", default="", help="what sets this run apart: added to the --out name")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.questions_file.is_file():
        parser.error(f"{args.questions_file} is not a file")
    questions = read_questions(args.questions_file, args.questions)
    result = {"machine": machine(), **run(args.index, questions, args.scorers.split(","))}
    for name, row in result["scorers"].items():
        print(f"{name:8} p50 {row['p50']:.0f} ms  p95 {row['p95']:.0f} ms  "
              f"bot loaded in {row['rss_added_mb']:.0f} MB", file=sys.stderr)
    out = result_path("scorer-latency", f"{result['chunks']}-chunks", args.scorers.replace(",", "-"), args.label,
                      out=args.out)
    write_result(out, result)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
