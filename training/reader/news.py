"""News training groups from the bot's own candidates: each RealTime QA 2024-2026 question asked of its week.

    python -m training.reader.news --data /work/shared/rtqa-2024-2026 --work /tmp/rtqa-news

For every quiz week a lexical index of that week's articles is built with the ``qa build`` code (the hash
embedder: only BM25 is used, so no model time is spent), each question is searched in it as the bot searches
(``qa.answer.retrieve``, lexical mode) and the sentences of its 8 best chunks become the candidates exactly as
``qa.answer.candidates`` makes them. A candidate is positive when its sentence holds a gold answer string;
one whose quote (grown to 400 characters) holds one while the sentence does not is left out (it is neither);
the rest are hard negatives, ordered by retrieval rank. A question asked of another week's index that holds
none of its gold strings becomes an unanswerable group (its target is "no answer").

The calibration weeks (every 4th by default, the 33 weeks ``training.reader.calibrate`` reads:
``held_out_weeks``) are left out, so the blend can be chosen on weeks this stage never read. The groups are cached
per week as JSON lines under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import WEEK_STRIDE, chosen_weeks, has_gold, other_week, question_runs, read_questions, week_of
from qa.answer.candidates import candidates
from qa.answer.quotes import grown_span

log = logging.getLogger("training.reader.news")

#: Candidate chunks per question (the bot's ``AnswerSettings.passages``).
PASSAGES = 8
#: Negatives kept per group, the best-ranked first.
NEGATIVES = 12


@dataclass(frozen=True)
class NewsGroup:
    """One question run: its candidate sentences, which of them hold a gold answer (empty: unanswerable)."""

    question: str
    sentences: tuple[str, ...]
    positives: tuple[int, ...]
    answerable: bool
    week: str

    def to_json(self) -> dict:
        return {"q": self.question, "sentences": list(self.sentences), "positives": list(self.positives),
                "answerable": self.answerable, "week": self.week}

    @staticmethod
    def from_json(raw: dict) -> NewsGroup:
        return NewsGroup(raw["q"], tuple(raw["sentences"]), tuple(raw["positives"]), bool(raw["answerable"]),
                         raw["week"])


def held_out_weeks(questions: list[dict], stride: int = WEEK_STRIDE) -> set[str]:
    """The weeks the blend is chosen on (never trained on here): every ``stride``-th quiz week."""
    return set(chosen_weeks(questions, stride=stride))


def week_group(question: str, golds: list[str], answerable: bool, index, week: str) -> NewsGroup | None:
    """The candidates of ``question`` in ``index`` labelled by the gold strings; None when nothing is usable."""
    import numpy as np

    from qa.answer.retrieve import RetrieveSettings, retrieve

    hits = retrieve(index, question, np.zeros(index.manifest.dim, dtype=np.float32), PASSAGES, RetrieveSettings(mode="lexical"))
    cands = candidates(index.article_of, hits, PASSAGES)
    pos, neg = [], []
    for c in cands:
        if answerable and has_gold(c.text, golds):
            pos.append(c.text)
            continue
        text = c.article.text
        if answerable and has_gold(text[slice(*grown_span(text, c.start, c.end, 400, True))], golds):
            continue  # the answer is next to it: neither a positive nor a clean negative
        neg.append(c.text)
    if (answerable and not pos) or not neg:
        return None
    neg = neg[:NEGATIVES]
    return NewsGroup(question, tuple(pos + neg), tuple(range(len(pos))), answerable, week)


def build_groups(data: Path, work: Path, hold_out: set[str]) -> list[NewsGroup]:
    """Every training week's groups (cached per week under ``work``)."""
    from qa.embed.hashing import HashEmbedder
    from qa.index.build import build_index
    from qa.index.reader import load_index
    from training.ranker.train import split_articles

    questions = read_questions(data)
    weeks = [w for w in sorted({week_of(q) for q in questions}) if w not in hold_out]
    paths = split_articles(data, weeks, work)
    embedder = HashEmbedder()
    out: list[NewsGroup] = []
    for n, week in enumerate(weeks, 1):
        cache = work / f"groups-{week}.jsonl"
        if not cache.exists():
            started = time.perf_counter()
            folders = {}
            for w in (week, other_week(week, weeks)):
                folders[w] = work / f"lexical-{w}"
                build_index([paths[w]], folders[w], embedder=embedder)
            index = load_index(folders[week], check="quick")
            other = load_index(folders[other_week(week, weeks)], check="quick")
            groups = []
            for _, q, golds, asks in question_runs(questions, week, index, other):
                for idx, answerable in asks:
                    g = week_group(q["q"], golds, answerable, idx, week)
                    if g is not None:
                        groups.append(g)
            tmp = cache.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(g.to_json()) + "\n" for g in groups), encoding="utf-8")
            os.replace(tmp, cache)
            log.info("week %s (%d/%d): %d groups (%.0fs)", week, n, len(weeks), len(groups),
                     time.perf_counter() - started)
        out.extend(NewsGroup.from_json(json.loads(line)) for line in cache.open(encoding="utf-8"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/rtqa-2024-2026"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/rtqa-news"))
    parser.add_argument("--hold-out-stride", type=int, default=WEEK_STRIDE,
                        help=f"leave out every N-th week, calibrate's (default {WEEK_STRIDE})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    groups = build_groups(args.data, args.work, held_out_weeks(read_questions(args.data), args.hold_out_stride))
    answerable = sum(g.answerable for g in groups)
    print(json.dumps({"groups": len(groups), "answerable": answerable, "unanswerable": len(groups) - answerable,
                      "positives": sum(len(g.positives) for g in groups)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
