"""RealTime QA 2022: this project against two baselines, by the same harness (``qa.answer.evaluate``).

    python -m benchmarks.rtqa --data /work/shared/rtqa-2022
    # writes benchmarks/results/answer-quality-rtqa2022-4-week-slice-heldout[-LABEL][-SETTINGS].json

What it does, and why it is honest:

* **Index.** The scope's articles are indexed with the ``qa build`` code into
  ``--work`` (default ``/tmp/rtqa-index``, outside the repo), built once and
  reused: later runs only check that each index is up to date. The data is
  read from ``--data`` and never copied into the project.
* **Split.** The 28 quiz weeks, sorted, alternate: weeks 0, 2, 4, ... are
  the *tune* part (earlier versions chose settings on it; the ranker is trained on
  RealTime QA 2024-2026 instead, training/ranker/train.py), weeks 1, 3, 5, ...
  the *held-out* part (only reported). Settings are chosen on whole-part
  averages, never on single questions.
* **Scopes.** ``--scope slice`` (default, all three systems): the first four
  held-out weeks (2022-06-24, 07-08, 07-22, 08-05: 121 questions) over the
  687 articles their searches returned, like the 4-week slice of the
  reference figures; the tune slice is the first two tune weeks (2022-06-17,
  07-01) over their 387 articles, plus (for ``--part tune``)
  the answerable questions of four more tune weeks over their own 552 articles
  (``SLICE_TUNE_EXTRA_WEEKS``): 176 tune questions in all. ``--scope full``: every question of a part
  over all 4,712 articles (about 70,000 chunks: over an hour of embedding on
  two busy cores, and the LangChain baseline as much again).
* **Answerable.** Every question, asked of the scope's index, scored by
  answer-recall@1/3/5 over the quotes shown (gold string in a quote,
  case-insensitive). About 15% of gold answers occur in no article, so the
  ceiling is about 0.85.
* **Unanswerable.** The same questions asked of an archive without their
  week: for the slice, the other part's slice (held-out questions are asked of
  the tune weeks' articles and the other way round); for the full scope, the
  corpus cut in time at ``CUT`` (a question of the first half is asked of the
  second half's index and the other way round). A question counts as
  unanswerable there only if none of its gold strings occurs in any article of
  that index, so no answer leaks in.
* **Systems.** ``ours`` is ``qa.answer.bot.Bot`` exactly as the CLI and web chat use
  it. ``bm25`` and ``langchain`` are ``benchmarks/baselines.py``. The baselines
  never abstain, so the LangChain one is only asked the answerable questions
  (saving the embedding of a second archive); its abstention columns are n/a.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.harness import BenchError, has_gold, index_text, read_questions, result_path, write_result
from qa.answer.evaluate import EvalItem, EvalReport, ItemResult, format_report, run_item, score_results
from qa.text import collapse_whitespace

#: Articles published before this date form the first half of the archive, the rest the second.
CUT = "2022-09-22"
#: Question weeks (YYYYMMDD) before this belong to the first half.
CUT_WEEK = CUT.replace("-", "")
SYSTEMS = ("ours", "bm25", "langchain")
#: The slice: four held-out weeks and two tune weeks whose articles carry the week's own date.
SLICE_WEEKS = ("20220624", "20220708", "20220722", "20220805")
SLICE_OTHER_WEEKS = ("20220617", "20220701")
#: Four more tune weeks, asked only answerable questions over their own 552 articles: 176 tune questions
#: in all (with the two above), so a setting is chosen on more than a few dozen questions.
SLICE_TUNE_EXTRA_WEEKS = ("20220715", "20220729", "20220812", "20220826")


def _date(week: str) -> str:
    return f"{week[:4]}-{week[4:6]}-{week[6:]}"


def split_weeks(questions: Sequence[dict]) -> dict[str, str]:
    """Week id -> "tune" or "heldout": sorted weeks alternate, starting with tune."""
    weeks = sorted({q["id"].split("_")[0] for q in questions})
    return {w: ("tune" if i % 2 == 0 else "heldout") for i, w in enumerate(weeks)}


def _progress(label: str) -> Callable[[str, int, int], None]:
    last = [0.0]

    def report(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > 15 or done == total:
            last[0] = now
            print(f"  {label} {stage}: {done}/{total}", file=sys.stderr, flush=True)

    return report


def _subset_index(articles_gz: Path, folder: Path, keep: Callable[[str], bool], embedder, label: str,
                  seed: Path | None = None) -> None:
    """An index of the articles whose ``published`` date passes ``keep``; ``seed``'s vectors are reused if given."""
    from qa.index.build import build_index

    subset = folder.with_name(folder.name + ".jsonl.gz")
    if not subset.exists():
        tmp = subset.with_name(subset.name + ".tmp")
        with gzip.open(articles_gz, "rt", encoding="utf-8") as src, gzip.open(tmp, "wt", encoding="utf-8") as dst:
            for line in src:
                if keep(json.loads(line).get("published", "")):
                    dst.write(line)
        os.replace(tmp, subset)
    if seed is not None and not (folder / "manifest.json").exists():
        shutil.copytree(seed, folder, ignore=shutil.ignore_patterns(".lock"), dirs_exist_ok=True)
    started = time.perf_counter()
    report = build_index([subset], folder, embedder=embedder, progress=_progress(label))
    print(f"{label} index: {report.articles} articles, {report.chunks} chunks, {report.embedded} embedded "
          f"({time.perf_counter() - started:.0f}s)", file=sys.stderr)


def build_indexes(data: Path, work: Path, embedder, scope: str, tune: bool = False,
                  other: Path | None = None) -> dict[str, Path]:
    """The indexes a scope asks questions of, by key.

    slice: "heldout" (the held-out weeks' articles) and "tune" (the tune weeks'); each part's
    questions are answerable in its own index and unanswerable in the other. With ``tune``, also
    "tune-extra" (``SLICE_TUNE_EXTRA_WEEKS``' articles), for more answerable tune questions.
    full: "main" (all articles), "first" and "second" (the archive cut in time at ``CUT``).
    ``other``: an existing index to ask the held-out questions of as unanswerable, instead of building "tune".
    """
    from qa.index.build import build_index

    articles_gz = data / "articles.jsonl.gz"
    if not articles_gz.is_file():
        raise BenchError(f"{articles_gz} not found: pass --data with the folder that holds RealTime QA 2022")
    work.mkdir(parents=True, exist_ok=True)
    if scope == "slice":
        plan = {"heldout": {_date(w) for w in SLICE_WEEKS}, "tune": {_date(w) for w in SLICE_OTHER_WEEKS}}
        if tune:
            plan["tune-extra"] = {_date(w) for w in SLICE_TUNE_EXTRA_WEEKS}
        if other is not None:
            del plan["tune"]
        dirs = {key: work / f"slice-{key}" for key in plan}
        for key, dates in plan.items():
            _subset_index(articles_gz, dirs[key], dates.__contains__, embedder, f"slice {key}")
        return dirs if other is None else {**dirs, "tune": other}
    full = work / "full"
    started = time.perf_counter()
    report = build_index([articles_gz], full, embedder=embedder, progress=_progress("full index"))
    print(f"full index: {report.articles} articles, {report.chunks} chunks, {report.embedded} embedded "
          f"({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    dirs = {"main": full, "first": work / "first-half", "second": work / "second-half"}
    _subset_index(articles_gz, dirs["first"], lambda d: d < CUT, embedder, "first half", seed=full)
    _subset_index(articles_gz, dirs["second"], lambda d: d >= CUT, embedder, "second half", seed=full)
    return dirs


def _corpus_text(index_dir: Path) -> str:
    from qa.index.reader import load_index

    return index_text(load_index(index_dir, check="quick"))


def make_items(questions: Sequence[dict], part: str, scope: str, dirs: dict[str, Path]) -> dict[str, list[EvalItem]]:
    """Index key -> the questions asked of it: answerable ones of their own index, unanswerable ones of another."""
    parts = split_weeks(questions)
    if scope == "slice":
        own, weeks = part, set(SLICE_WEEKS if part == "heldout" else SLICE_OTHER_WEEKS)
        other_of = lambda week: "tune" if part == "heldout" else "heldout"
    else:
        own, weeks = "main", {w for w, p in parts.items() if p == part}
        other_of = lambda week: "second" if week < CUT_WEEK else "first"
    corpora = {key: _corpus_text(folder) for key, folder in dirs.items() if key not in (own, "tune-extra")}
    out: dict[str, list[EvalItem]] = {own: [], **{key: [] for key in corpora}}
    extra = set(SLICE_TUNE_EXTRA_WEEKS) if scope == "slice" and part == "tune" and "tune-extra" in dirs else set()
    for n, q in enumerate(questions, 1):
        week = q["id"].split("_")[0]
        golds = tuple(a for a in q.get("answers", []) if isinstance(a, str) and a.strip())
        if week in extra and golds:
            out.setdefault("tune-extra", []).append(EvalItem(line=n, turns=(q["q"],), answers=golds, id=q["id"]))
        if week not in weeks or not golds:
            continue
        out[own].append(EvalItem(line=n, turns=(q["q"],), answers=golds, id=q["id"]))
        other = other_of(week)
        if not any(collapse_whitespace(g).casefold() in corpora[other] for g in golds):
            out[other].append(EvalItem(line=n, turns=(q["q"],), unanswerable=True, id=f"{q['id']}/without-week"))
    return out


def _counts(items: dict[str, list[EvalItem]]) -> tuple[int, int]:
    """(answerable, unanswerable) questions over all groups."""
    flat = [i for group in items.values() for i in group]
    return sum(not i.unanswerable for i in flat), sum(i.unanswerable for i in flat)


def run_system(name: str, ask_for: dict[str, Callable], items: dict[str, list[EvalItem]], k: int) -> EvalReport:
    """Ask every group of questions of its index; groups with no index for this system are left out."""
    results: list[ItemResult] = []
    total = sum(len(v) for key, v in items.items() if key in ask_for)
    started = time.monotonic()
    for key, group in items.items():
        if key not in ask_for:
            continue
        for item in group:
            results.append(run_item(ask_for[key], item, k))
            if len(results) % 100 == 0:
                print(f"  {name}: {len(results)}/{total} ({time.monotonic() - started:.0f}s)", file=sys.stderr, flush=True)
    return score_results(results, k)


def bot_settings(overrides: Sequence[str]) -> dict:
    """``AnswerSettings``/``RetrieveSettings`` from the defaults and ``name=value`` overrides."""
    from dataclasses import fields, replace

    from qa.answer.quotes import AnswerSettings
    from qa.answer.retrieve import RetrieveSettings

    answer, retrieve_ = AnswerSettings(), RetrieveSettings()
    for item in overrides:
        name, _, value = item.partition("=")
        for obj in (answer, retrieve_):
            kinds = {f.name: float if getattr(obj, f.name) is None else type(getattr(obj, f.name)) for f in fields(obj)}
            if name in kinds:
                kind = kinds[name]
                parsed = value.strip().lower() in ("1", "true", "yes", "on") if kind is bool else kind(value)
                new = replace(obj, **{name: parsed})
                answer, retrieve_ = (new, retrieve_) if obj is answer else (answer, new)
                break
        else:
            raise BenchError(f"--set {item}: no setting {name!r} in AnswerSettings or RetrieveSettings")
    return {"answer_settings": answer, "retrieve_settings": retrieve_}


def make_systems(names: Sequence[str], dirs: dict[str, Path], embedder, work: Path,
                 answer_key: str, overrides: Sequence[str] = ()) -> dict[str, dict[str, Callable]]:
    systems: dict[str, dict[str, Callable]] = {}
    if "ours" in names:
        from qa.answer.bot import Bot

        settings = bot_settings(overrides)
        systems["ours"] = {key: Bot.load(folder, embedder=embedder, **settings).ask for key, folder in dirs.items()}
    if "bm25" in names:
        from benchmarks.baselines import Bm25Baseline

        systems["bm25"] = {key: Bm25Baseline.load(folder).ask for key, folder in dirs.items()}
    if "langchain" in names:
        from benchmarks.baselines import LangChainBaseline

        from qa.index.reader import load_index

        systems["langchain"] = {}
        for key, folder in dirs.items():
            if key not in (answer_key, "tune-extra"):
                continue  # it never abstains: asking it of another archive would only cost an embedding pass
            articles = load_index(folder, check="quick").articles.values()
            started = time.monotonic()
            baseline = LangChainBaseline(articles, cache_dir=work / "langchain-vectors",
                                         progress=lambda d, t: _progress("langchain vectors")("embed", d, t))
            print(f"langchain {key}: {baseline.chunks} chunks ({time.monotonic() - started:.0f}s)", file=sys.stderr)
            systems["langchain"][key] = baseline.ask
    return systems


# ---------------------------------------------------------------- where the answers are

def ceiling(bot, items: Sequence[EvalItem]) -> dict:
    """How far any quote picker could get: where the gold strings of the answerable ``items`` are at all.

    Reported, never tuned on: the share of questions whose gold occurs in the scope's articles, in the
    articles behind the top 20 chunks, in the top 3/8/12/20 chunks, and in the best of all the quotes
    that could be made from the candidate sentences of the top ``passages`` chunks (each grown as it
    would be shown) and of the top 12.
    """
    from qa.answer.candidates import candidates
    from qa.answer.quotes import grown_span
    from qa.answer.retrieve import retrieve

    passages = bot.answer_settings.passages
    fill_to, across = bot.answer_settings.fill_to, bot.answer_settings.fill_across_paragraphs
    counts = {"in_articles": 0, "in_articles_of_top20": 0, "in_top3_chunks": 0, "in_top8_chunks": 0,
              "in_top12_chunks": 0, "in_top20_chunks": 0, f"best_possible_quote_top{passages}": 0,
              "best_possible_quote_top12": 0}
    answerable = [i for i in items if not i.unanswerable]
    corpus = index_text(bot.index)
    for item in answerable:
        vector = bot.embedder.encode([item.question])[0]
        hits = retrieve(bot.index, item.question, vector, 20, bot.retrieve_settings)
        gold = [has_gold(h.chunk.text, item.answers) for h in hits]
        counts["in_articles"] += any(collapse_whitespace(g).casefold() in corpus for g in item.answers)
        counts["in_articles_of_top20"] += any(has_gold(bot.index.article_of(h.chunk).text, item.answers) for h in hits)
        for n in (3, 8, 12, 20):
            counts[f"in_top{n}_chunks"] += any(gold[:n])
        for n in sorted({passages, 12}):
            counts[f"best_possible_quote_top{n}"] += any(
                has_gold(c.article.text[slice(*grown_span(c.article.text, c.start, c.end, fill_to, across))], item.answers)
                for c in candidates(bot.index.article_of, hits, n, bot.answer_settings.min_sentence_chars)
            )
    return {"answerable": len(answerable), **{k: round(v / len(answerable), 3) for k, v in counts.items()}}


def table(rows: dict[str, dict]) -> str:
    """The reports as a Markdown table (as pasted into docs/evaluation.md)."""
    def f(r: dict, key: str) -> str:
        v = r.get(key)
        return "n/a" if v is None else f"{v:.3f}"

    lines = [
        ("| system | answerable | R@1 | R@3 | R@5 | MRR | unanswerable | abstain P | abstain R | answerable refused "
         "| unanswerable answered | chars/answer | p50 ms | p95 ms |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        unanswered = str(r["answered_unanswerable"]) if r["unanswerable"] else "n/a"
        lines.append(
            f"| {name} | {r['answerable']} | {f(r, 'recall@1')} | {f(r, 'recall@3')} | {f(r, 'recall@5')} "
            f"| {f(r, 'mrr')} | {r['unanswerable']} | {f(r, 'abstain_precision')} | {f(r, 'abstain_recall')} "
            f"| {r['refused_answerable']} | {unanswered} | {r['chars_per_answer']:.0f} "
            f"| {r['latency_p50'] * 1000:.0f} | {r['latency_p95'] * 1000:.0f} |"
        )
    return "\n".join(lines)


def _narrow_slice(n: int) -> None:
    """Keep only the first ``n`` held-out and tune weeks of the slice (a quicker, noisier run)."""
    global SLICE_WEEKS, SLICE_OTHER_WEEKS
    SLICE_WEEKS, SLICE_OTHER_WEEKS = SLICE_WEEKS[:n], SLICE_OTHER_WEEKS[:n]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: build or reuse the scope's indexes, ask every system, write the reports."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rtqa", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="folder with questions.jsonl and articles.jsonl.gz")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("RTQA_WORK", "/tmp/rtqa-index")),
                        help="folder for the indexes and caches (default /tmp/rtqa-index)")
    parser.add_argument("--label", default="",
                        help="what sets this run apart (code version, machine): added to the --out name")
    parser.add_argument("--out", type=Path, default=None,
                        help="result JSON (default benchmarks/results/answer-quality-rtqa2022-SCOPE-PART"
                             "[-LABEL][-SETTINGS].json; -run2, -run3, ... when taken)")
    parser.add_argument("--part", choices=("heldout", "tune", "both"), default="heldout")
    parser.add_argument("--scope", choices=("slice", "full"), default="slice",
                        help="slice: 4 held-out weeks over their 687 articles (default); full: all 4,712 articles")
    parser.add_argument("--slice-weeks", type=int, default=4, choices=range(1, 5),
                        metavar="N", help="slice scope: only the first N held-out weeks, asked unanswerable of the first "
                                          "N tune weeks' articles (default 4: the whole slice; 1 when the CPU is short)")
    parser.add_argument("--unanswerable-index", type=Path, default=None, metavar="DIR",
                        help="slice scope, held-out part: ask the held-out questions as unanswerable of this existing "
                             "index (an archive without their week) instead of building the tune weeks' index")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated: " + ", ".join(SYSTEMS))
    parser.add_argument("-k", type=int, default=5, help="quotes shown per answer (recall@1/3/5 need k >= 5)")
    parser.add_argument("--items", action="store_true", help="include per-question results in --out")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override one of our AnswerSettings/RetrieveSettings (to compare choices on the tune part)")
    parser.add_argument("--ceiling", action="store_true",
                        help="also report where the gold answers are at all (in the articles, the top chunks, "
                             "the best possible quote) for our retrieval")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="rtqa: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    try:
        if not args.data.is_dir():
            raise BenchError(f"{args.data} is not a folder: pass --data with the folder that holds RealTime QA 2022")
        questions = read_questions(args.data)
        bot_settings(args.set)  # a bad --set fails before any work
        from qa.embed.factory import get_embedder

        embedder = get_embedder()  # the default backend, as users get it (QA_BACKEND chooses another)
    except BenchError as exc:
        print(f"rtqa: error: {exc}", file=sys.stderr)
        return 1
    scope = args.scope
    if args.slice_weeks < 4:
        _narrow_slice(args.slice_weeks)
        args.work = args.work.with_name(f"{args.work.name}-{args.slice_weeks}w")  # other articles: other indexes
    parts = ("tune", "heldout") if args.part == "both" else (args.part,)
    if args.unanswerable_index is not None and (scope != "slice" or parts != ("heldout",)):
        parser.error("--unanswerable-index needs --scope slice --part heldout")
    dirs = build_indexes(args.data, args.work, embedder, scope, tune="tune" in parts, other=args.unanswerable_index)
    results: dict = {"scope": scope, "k": args.k, "settings": args.set, "parts": {}}
    for part in parts:
        items = make_items(questions, part, scope, dirs)
        own = next(iter(items))
        systems = make_systems(names, dirs, embedder, args.work, own, args.set)
        answerable, unanswerable = _counts(items)
        print(f"\n== {scope} scope, {part} part: {answerable} answerable, {unanswerable} unanswerable",
              file=sys.stderr)
        rows = {}
        for name in names:
            report = run_system(name, systems[name], items, args.k)
            rows[name] = report.to_json(items=args.items)
            print(f"[{part}] {name}\n{format_report(report)}\n", file=sys.stderr, flush=True)
        results["parts"][part] = rows
        if args.ceiling:
            from qa.answer.bot import Bot

            bot = Bot.load(dirs[own], embedder=embedder, **bot_settings(args.set))
            results.setdefault("ceiling", {})[part] = reach = ceiling(bot, items[own])
            print(f"where the gold answers are ({part}): " + ", ".join(f"{k} {v}" for k, v in reach.items()))
        print(f"\n{scope} scope, {part} part: {answerable} answerable questions, "
              f"{unanswerable} unanswerable (asked of an archive without their week)")
        print(table(rows))
    scope_name = f"{args.slice_weeks}-week-slice" if scope == "slice" else "all-articles"
    out = result_path("answer-quality-rtqa2022", scope_name, args.part, args.label,
                      *(setting_slug(item) for item in args.set), out=args.out)
    write_result(out, results)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def setting_slug(item: str) -> str:
    """``ranker=learned`` -> "ranker-learned", ``bridge=1`` -> "bridge", ``abstain_below=0.9`` -> "abstain-below-0.9"."""
    name, _, value = item.partition("=")
    return name if value.strip().lower() in ("1", "true", "yes", "on") else f"{name}-{value}"


if __name__ == "__main__":
    sys.exit(main())
