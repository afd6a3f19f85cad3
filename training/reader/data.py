"""Readers for the reader's training and measuring data, each to small frozen dataclasses.

Training sets become :class:`Group` (one question, its candidate sentences, the index of the one positive or
``None`` when nothing in the list answers it). Measuring sets (WikiQA, TrecQA, SelQA) and SelQA's training file
are read by ``benchmarks.sentence_select.read_questions`` (a 0/1 label per sentence). Files are read from the shared data folder at run time; nothing is copied.
"""

from __future__ import annotations

import collections
import gzip
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from benchmarks.sentence_select import read_questions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    """One training question with its candidate sentences; ``positive`` is None for "no answer here"."""

    question: str
    sentences: tuple[str, ...]
    positive: int | None
    source: str


_ABBREV = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "no", "gov", "sen", "rep", "gen", "lt", "col",
           "inc", "co", "corp", "ltd", "prof", "mt", "ft", "fig", "est", "approx", "dept", "univ", "e.g", "i.e"}
_BOUNDARY = re.compile(r"[.!?][\"'”’)\]]*(\s+)(?=[\"'“‘(\[]?[A-Z0-9])")
_WORD = re.compile(r"\w+")
STOPWORDS = frozenset(
    "a an the of in on at to for from by with and or but is are was were be been being do does did has have had "
    "what which who whom whose when where why how that this these those it its as into than then there their they "
    "he she his her him i you we our your my me not no so if about after before over under up down out all any "
    "can could would should will shall may might must also s t following week this".split())


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Split ``text`` into sentence spans ``(start, end)`` on ``[.!?]`` + whitespace + capital/quote/digit.

    Newlines that separate paragraphs also end a sentence. A period after a single letter or a common
    abbreviation ("Mr.", "U.S.") does not split. Spans are stripped of surrounding whitespace.
    """
    cuts: list[tuple[int, int]] = []  # (end of sentence, start of next)
    for m in _BOUNDARY.finditer(text):
        word = text[:m.start() + 1].rsplit(None, 1)[-1].rstrip(".!?\"'”’)]").lower() if m.start() else ""
        if len(word) <= 1 or word in _ABBREV or re.fullmatch(r"(\w\.)+\w", word):
            continue
        cuts.append((m.start(1), m.end(1)))
    for m in re.finditer(r"\n\s*\n|\n", text):
        cuts.append((m.start(), m.end()))
    cuts.sort()
    spans: list[tuple[int, int]] = []
    start = 0
    for end, nxt in cuts + [(len(text), len(text))]:
        if end < start:
            continue
        a, b = start, end
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            spans.append((a, b))
        start = nxt
    return spans


def content_words(text: str) -> set[str]:
    """Lower-cased word set without stopwords, for overlap scores."""
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS}


def overlap(question: str, sentence: str) -> float:
    """Share of the question's content words found in the sentence (0..1)."""
    q = content_words(question)
    return len(q & content_words(sentence)) / len(q) if q else 0.0


def _group(question: str, texts: list[str], positive: int | None, drop: set[int], source: str) -> Group | None:
    """Build a Group from sentence texts, dropping empty and ``drop`` sentences (other positives)."""
    kept: list[str] = []
    pos: int | None = None
    for i, t in enumerate(texts):
        t = " ".join(t.split())
        if not t or (i in drop and i != positive):
            continue
        if i == positive:
            pos = len(kept)
        kept.append(t)
    if not kept or (positive is not None and pos is None):
        return None
    return Group(" ".join(question.split()), tuple(kept), pos, source)


def _index_of(spans: list[tuple[int, int]], offset: int) -> int | None:
    for i, (a, b) in enumerate(spans):
        if offset < b or (i + 1 < len(spans) and offset < spans[i + 1][0]):
            return i
    return len(spans) - 1 if spans else None


def read_squad(paths: Iterable[Path]) -> list[Group]:
    """SQuAD v1.1/v2.0 JSON; dedupe by question id; v2 unanswerables get ``positive=None``."""
    seen: set[str] = set()
    out: list[Group] = []
    for path in paths:
        data = json.loads(gzip.open(path, "rt", encoding="utf-8").read())
        tag = "squad2-unans" if "v2" in path.name else "squad"
        for art in data["data"]:
            for para in art["paragraphs"]:
                ctx = para["context"]
                spans = split_sentences(ctx)
                texts = [ctx[a:b] for a, b in spans]
                for qa in para["qas"]:
                    if qa["id"] in seen:
                        continue
                    seen.add(qa["id"])
                    if qa.get("is_impossible"):
                        g = _group(qa["question"], texts, None, set(), tag)
                    else:
                        idx = [_index_of(spans, a["answer_start"]) for a in qa["answers"]]
                        idx = [i for i in idx if i is not None]
                        if not idx:
                            continue
                        pos = collections.Counter(idx).most_common(1)[0][0]
                        g = _group(qa["question"], texts, pos, set(idx), "squad")
                    if g:
                        out.append(g)
    return out


def read_nq(paths: Iterable[Path]) -> list[Group]:
    """NQ-QED jsonlines: passage split at ``sentence_starts``; positive holds the first answer span's start."""
    out: list[Group] = []
    skipped = 0
    for path in paths:
        for line in gzip.open(path, "rt", encoding="utf-8"):
            d = json.loads(line)
            text, starts = d["paragraph_text"], list(d["sentence_starts"])
            if not starts or not d["answer_spans"]:
                skipped += 1  # tables with no sentence offsets
                continue
            if starts[0] != 0:
                starts.insert(0, 0)
            spans = [(a, b) for a, b in zip(starts, starts[1:] + [len(text)])]
            texts = [text[a:b] for a, b in spans]
            pos = _index_of(spans, d["answer_spans"][0][0])
            drop = {i for i, (a, b) in enumerate(spans) for s, e in d["answer_spans"] if s < b and e > a}
            g = _group(d["question_text"], texts, pos, drop, "nq")
            if g:
                out.append(g)
    log.info("nq: %d groups, %d skipped (no sentence offsets)", len(out), skipped)
    return out


def read_selqa(paths: Iterable[Path]) -> list[Group]:
    """SelQA answer-sentence-selection JSON; first labelled answer is the positive, other answers dropped."""
    out: list[Group] = []
    for rg in (q for path in paths for q in read_questions(path, "selqa")):
        pos = [i for i, y in enumerate(rg.labels) if y]
        g = _group(rg.text, list(rg.sentences), pos[0] if pos else None, set(pos), "selqa")
        if g:
            out.append(g)
    return out


def _mentions(sentence: str, answers: list[str]) -> bool:
    s = sentence.lower()
    return any(a and a.lower() in s for a in answers)


def _answer_words(answers: list[str]) -> set[str]:
    return {w for a in answers for w in content_words(a) if len(w) >= 4}


def read_news(questions: Path, articles: Path | None, negatives: int = 5) -> list[Group]:
    """RealTime QA 2024-2026: evidence sentence holding a gold answer is the positive.

    Negatives: the evidence's other sentences, then (if ``articles`` is given) the week's article sentences
    with the most question-word overlap that hold neither the answer string nor any of its longer words.
    Questions whose evidence holds no answer string are skipped (paraphrased, not unanswerable).
    """
    items: dict[str, list[tuple[str, str, list[str], list[str]]]] = collections.defaultdict(list)
    for line in open(questions, encoding="utf-8"):
        q = json.loads(line)
        ev = q.get("evidence") or ""
        texts = [ev[a:b] for a, b in split_sentences(ev)]
        hit = [i for i, t in enumerate(texts) if _mentions(t, q["answers"])]
        if not hit:
            continue
        week = q["id"].split("_")[0]
        week = f"{week[:4]}-{week[4:6]}-{week[6:8]}"
        pos = texts[hit[0]]
        negs = [t for i, t in enumerate(texts) if i not in hit]
        items[week].append((q["q"], pos, negs, list(q["answers"])))
    pool: dict[str, list[tuple[str, set[str]]]] = collections.defaultdict(list)
    if articles is not None:
        for line in gzip.open(articles, "rt", encoding="utf-8"):
            a = json.loads(line)
            if a.get("published") in items:
                text = a.get("text") or ""
                for s, e in split_sentences(text)[:80]:
                    sent = " ".join(text[s:e].split())
                    if 40 <= len(sent) <= 600:
                        pool[a["published"]].append((sent, content_words(sent)))
    out: list[Group] = []
    for week, qs in sorted(items.items()):
        for question, pos, negs, answers in qs:
            if len(negs) < negatives and pool.get(week):
                qw, aw = content_words(question), _answer_words(answers)
                scored = sorted(((len(qw & w), s) for s, w in pool[week]
                                 if not (aw & w) and not _mentions(s, answers) and s != pos),
                                key=lambda x: -x[0])
                seen = set(negs)
                for score, s in scored:
                    if len(negs) >= negatives or score == 0:
                        break
                    if s not in seen:
                        seen.add(s)
                        negs.append(s)
            g = _group(question, [pos] + negs, 0, set(), "news")
            if g:
                out.append(g)
    return out


def training_groups(shared: Path, news_articles: bool = True) -> Iterator[Group]:
    """All training groups from the shared folder (never the measure-only sets, never rtqa-2022)."""
    qa = shared / "qa-train"
    yield from read_squad([qa / "squad/dev-v1.1.json.gz", qa / "squad/dev-v2.0.json.gz"])
    yield from read_nq(sorted((qa / "nq-qed").glob("nq-train-0*-qed.jsonlines.gz"))
                       + sorted((qa / "nq-qed").glob("nq-dev-0*-qed.jsonlines.gz")))
    yield from read_selqa([qa / "selqa/selqa-ass-dev.json.gz", qa / "selqa/selqa-ass-test.json.gz"])
    rt = shared / "rtqa-2024-2026"
    yield from read_news(rt / "questions.jsonl", rt / "articles.jsonl.gz" if news_articles else None)
