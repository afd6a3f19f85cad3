"""Score a question-answering function on a file of labelled questions (``qa eval``).

A question file is JSON Lines. Each line is ``{"q": "..."}`` or
``{"turns": ["q1", "q2", ...]}`` (earlier turns are the history, the last one
is scored), with ``"answers": ["gold", ...]`` or ``"unanswerable": true``.

A quote answers when a gold string occurs in it, case-insensitively and with
runs of whitespace collapsed. The report gives answer-recall@1/3/5 over the
quotes shown, MRR, both kinds of abstention error, the characters of quotes
shown per answer and latency. Anything with an ``ask(question, history, k=)``
that returns an :class:`~qa.records.Answer` can be scored, so baselines go
through the very same harness as the bot.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qa.errors import QAError
from qa.records import Answer
from qa.text import collapse_whitespace

log = logging.getLogger(__name__)

#: ``ask(question, history, k=...)`` as in :meth:`qa.answer.bot.Bot.ask`.
AskFn = Callable[..., Answer]
#: ``progress(done, total)``.
EvalProgress = Callable[[int, int], None]

RECALL_AT = (1, 3, 5)


class QuestionFileError(QAError):
    """The question file cannot be scored as given; the message says what to fix."""


@dataclass(frozen=True)
class EvalItem:
    """One labelled question: its turns (the last is scored) and gold answers, or unanswerable."""

    line: int
    turns: tuple[str, ...]
    answers: tuple[str, ...] = ()
    unanswerable: bool = False
    id: str = ""

    @property
    def question(self) -> str:
        return self.turns[-1]

    @property
    def history(self) -> tuple[str, ...]:
        return self.turns[:-1]


@dataclass(frozen=True)
class ItemResult:
    """What happened to one question; ``rank`` is the 1-based first quote holding a gold answer, 0 if none."""

    line: int
    id: str
    question: str
    searched: str
    answerable: bool
    abstained: bool
    rank: int
    chars: int
    quotes: int
    seconds: float
    quote_chars: tuple[int, ...] = ()


@dataclass(frozen=True)
class EvalReport:
    """Aggregate scores; recall and MRR are over answerable questions, chars over answers given."""

    k: int
    questions: int
    answerable: int
    unanswerable: int
    recall: dict[int, float]
    mrr: float
    abstained: int
    abstain_precision: float
    abstain_recall: float
    refused_answerable: int
    answered_unanswerable: int
    chars_per_answer: float
    chars_at: dict[int, float]
    latency_p50: float
    latency_p95: float
    items: tuple[ItemResult, ...] = field(default_factory=tuple, repr=False)

    def to_json(self, *, items: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "k": self.k,
            "questions": self.questions,
            "answerable": self.answerable,
            "unanswerable": self.unanswerable,
            **{f"recall@{n}": _round(v) for n, v in self.recall.items()},
            "mrr": _round(self.mrr),
            "abstained": self.abstained,
            "abstain_precision": _round(self.abstain_precision),
            "abstain_recall": _round(self.abstain_recall),
            "refused_answerable": self.refused_answerable,
            "answered_unanswerable": self.answered_unanswerable,
            "chars_per_answer": round(self.chars_per_answer, 1),
            **{f"chars@{n}": round(v, 1) for n, v in self.chars_at.items()},
            "latency_p50": round(self.latency_p50, 4),
            "latency_p95": round(self.latency_p95, 4),
        }
        if items:
            data["items"] = [asdict(r) for r in self.items]
        return data


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return [v for v in value if v.strip()]


def parse_item(data: Any, line: int) -> EvalItem:
    """One question-file line (already JSON-decoded) as an :class:`EvalItem`; ``ValueError`` says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if "turns" in data:
        turns = _strings(data["turns"])
        if not turns:
            raise ValueError('"turns" must be a non-empty list of questions')
    elif "q" in data:
        turns = _strings(data["q"])
        if not turns or len(turns) != 1:
            raise ValueError('"q" must be a non-empty string')
    else:
        raise ValueError('no "q" or "turns"')
    unanswerable = data.get("unanswerable", False)
    if not isinstance(unanswerable, bool):
        raise ValueError('"unanswerable" must be true or false')
    answers = _strings(data.get("answers", []))
    if answers is None:
        raise ValueError('"answers" must be a list of strings')
    if unanswerable and answers:
        raise ValueError('has both "answers" and "unanswerable": true')
    if not unanswerable and not answers:
        raise ValueError('needs "answers" (gold strings) or "unanswerable": true')
    item_id = data.get("id", "")
    return EvalItem(line=line, turns=tuple(t.strip() for t in turns), answers=tuple(answers),
                    unanswerable=unanswerable, id=str(item_id))


def read_questions(path: str | Path) -> tuple[list[EvalItem], list[str]]:
    """The usable questions of a JSON Lines file and one message per skipped line.

    Raises :class:`QuestionFileError` when the file is missing, unreadable, empty, or has no usable question.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise QuestionFileError(f"question file {path} not found: pass a .jsonl file of questions") from None
    except OSError as exc:
        raise QuestionFileError(f"cannot read question file {path} ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise QuestionFileError(f"{path} is not UTF-8 text: save it as UTF-8 JSON Lines") from None
    items: list[EvalItem] = []
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            problems.append(f"line {lineno}: not valid JSON ({exc.msg})")
            continue
        try:
            items.append(parse_item(data, lineno))
        except ValueError as exc:
            problems.append(f"line {lineno}: {exc}")
    if not items:
        if not problems:
            raise QuestionFileError(
                f'{path} has no questions: write one JSON object per line, e.g. {{"q": "...", "answers": ["..."]}}'
            )
        raise QuestionFileError(
            f"{path} has no usable questions ({len(problems)} bad line(s), first: {problems[0]}); "
            'each line needs "q" or "turns" and "answers" or "unanswerable": true'
        )
    return items, problems


def answer_rank(answer: Answer, golds: Sequence[str], k: int) -> int:
    """1-based position of the first of the top ``k`` quotes that holds a gold string; 0 if none does."""
    needles = [collapse_whitespace(g).casefold() for g in golds if g.strip()]
    for i, quote in enumerate(answer.quotes[:k], 1):
        hay = collapse_whitespace(quote.text).casefold()
        if any(n in hay for n in needles):
            return i
    return 0


def _percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * p
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def score_results(results: Sequence[ItemResult], k: int) -> EvalReport:
    """Aggregate per-question results into a report (also used to score subsets)."""
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    abstained = [r for r in results if r.abstained]
    answered = [r for r in results if not r.abstained]
    correct_abstentions = sum(1 for r in abstained if not r.answerable)
    recall = {n: _ratio(sum(1 for r in answerable if 0 < r.rank <= n), len(answerable)) for n in RECALL_AT}
    mrr = sum(1.0 / r.rank for r in answerable if r.rank) / len(answerable) if answerable else float("nan")
    seconds = [r.seconds for r in results]
    return EvalReport(
        k=k,
        questions=len(results),
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        recall=recall,
        mrr=mrr,
        abstained=len(abstained),
        abstain_precision=_ratio(correct_abstentions, len(abstained)),
        abstain_recall=_ratio(correct_abstentions, len(unanswerable)),
        refused_answerable=sum(1 for r in answerable if r.abstained),
        answered_unanswerable=sum(1 for r in unanswerable if not r.abstained),
        chars_per_answer=sum(r.chars for r in answered) / len(answered) if answered else 0.0,
        chars_at={n: sum(sum(r.quote_chars[:n]) for r in answered) / len(answered) if answered else 0.0
                  for n in RECALL_AT if n <= k},
        latency_p50=_percentile(seconds, 0.50),
        latency_p95=_percentile(seconds, 0.95),
        items=tuple(results),
    )


def run_item(ask: AskFn, item: EvalItem, k: int) -> ItemResult:
    """Ask one question (with its earlier turns as history) and score the answer."""
    started = time.perf_counter()
    answer = ask(item.question, list(item.history), k=k)
    seconds = time.perf_counter() - started
    shown = answer.quotes[:k]
    return ItemResult(
        line=item.line,
        id=item.id,
        question=item.question,
        searched=answer.searched or item.question,
        answerable=not item.unanswerable,
        abstained=bool(answer.abstained),
        rank=0 if item.unanswerable else answer_rank(answer, item.answers, k),
        chars=sum(len(q.text) for q in shown),
        quotes=len(shown),
        seconds=seconds,
        quote_chars=tuple(len(q.text) for q in shown),
    )


def evaluate(ask: AskFn, items: Sequence[EvalItem], k: int = 5, *, progress: EvalProgress | None = None) -> EvalReport:
    """Ask every question through ``ask`` and score the quotes it shows (at most ``k`` each)."""
    if k < 1:
        raise QuestionFileError("k must be at least 1")
    if not items:
        raise QuestionFileError("no questions to score")
    results = []
    for i, item in enumerate(items, 1):
        results.append(run_item(ask, item, k))
        if progress is not None:
            progress(i, len(items))
    return score_results(results, k)


def _fmt(x: float) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    return f"{x:.3f}"


def miss_kind(result: ItemResult) -> str | None:
    """Why a question counts against the bot, in a few words; None when its top quote answers it."""
    if not result.answerable:
        return "answered, though the articles do not hold the answer" if not result.abstained else None
    if result.abstained:
        return "refused, though the articles answer it"
    if result.rank == 1:
        return None
    return f"answer first in quote {result.rank}" if result.rank else f"answer in none of the {result.quotes} quotes"


def format_misses(report: EvalReport) -> str:
    """One line per question whose top quote does not answer it (or that was wrongly refused or answered)."""
    lines = []
    for r in report.items:
        kind = miss_kind(r)
        if kind is None:
            continue
        searched = f" (searched: {r.searched})" if r.searched != r.question else ""
        lines.append(f"line {r.line}: {kind}: {r.question}{searched}")
    return "\n".join(lines) if lines else "every question answered by its top quote"


def format_report(report: EvalReport) -> str:
    """The report as a few aligned lines for the terminal."""
    recalls = "  ".join(
        f"@{n} {_fmt(v)}" + (" (= @k)" if n > report.k else "") for n, v in report.recall.items()
    )
    lines = [
        f"questions        {report.questions} ({report.answerable} answerable, {report.unanswerable} unanswerable), k={report.k}",
        f"answer-recall    {recalls}",
        f"MRR              {_fmt(report.mrr)}",
        (f"abstained        {report.abstained}: precision {_fmt(report.abstain_precision)}, "
         f"recall {_fmt(report.abstain_recall)}"),
        (f"errors           {report.refused_answerable} answerable refused, "
         f"{report.answered_unanswerable} unanswerable answered"),
        f"chars shown      {report.chars_per_answer:.0f} per answer"
        + "".join(f", {v:.0f} in the top {n}" for n, v in report.chars_at.items() if n < report.k),
        f"latency          p50 {report.latency_p50 * 1000:.0f} ms, p95 {report.latency_p95 * 1000:.0f} ms",
    ]
    return "\n".join(lines)
