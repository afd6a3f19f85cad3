"""The ``qa`` command: build, ask, chat, info, check, eval. It only parses and formats.

Heavy modules (torch, faiss, the model) are imported inside the commands, so
``qa --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from qa.app.logs import setup_logging
from qa.errors import QAError
from qa.records import Answer
from qa.settings import debug_from_env, default_articles_dir, default_index_dir, model_from_env, ray_address_from_env


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qa",
        description="Ask questions about a pile of news articles; answers are exact quotes with their sources.",
        epilog="Environment: QA_INDEX (index folder), QA_ARTICLES (articles folder), QA_MODEL (embedding model), "
        "QA_ABSTAIN_BELOW (refuse below this score; higher refuses more often), "
        "QA_RANKER (reader: the shipped reader, a cross-encoder that reads each sentence against the question, "
        "the default; hand: the hand-weighted score alone; learned: the shipped learned ranker).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def index_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--index", metavar="DIR", default=None, help="index folder (default: $QA_INDEX or index/)")

    p = sub.add_parser("build", help="build or update the index from article files (incremental)")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (default: $QA_ARTICLES or articles/)")
    index_opt(p)
    p.add_argument("--full", action="store_true", help="re-embed everything instead of only what changed")
    p.add_argument("--optimize", action="store_true",
                   help="merge segments into as few as 250,000 chunks each allows (nothing is re-embedded)")
    p.add_argument("--model", default=None, help="sentence-transformers model name or path (default: $QA_MODEL or the bundled all-MiniLM-L6-v2)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="embed on a Ray cluster (needs pip install '.[ray]'); ADDRESS as `ray start --head` prints it, "
                   "default $QA_RAY_ADDRESS or a local Ray")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser("ask", help="answer one question with quotes from the articles")
    p.add_argument("question", metavar="QUESTION")
    index_opt(p)
    p.add_argument("-k", type=int, default=3, metavar="N", help="at most N quotes (default 3)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")

    p = sub.add_parser("chat", help="answer questions from stdin, one per line, as one conversation")
    index_opt(p)
    p.add_argument("-k", type=int, default=3, metavar="N", help="at most N quotes (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")

    p = sub.add_parser("info", help="show what the index holds")
    index_opt(p)
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = sub.add_parser("check", help="check every file and record of the index against its manifest (a full pass)")
    index_opt(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("eval", help="score the bot on a file of questions with gold answers")
    p.add_argument("questions", metavar="QUESTIONS.jsonl")
    index_opt(p)
    p.add_argument("-k", type=int, default=5, metavar="N", help="quotes per answer to score (default 5)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--misses", action="store_true",
                   help="also list the questions the top quote does not answer (with --json: every question)")
    return parser


def _index_dir(args: argparse.Namespace):
    from pathlib import Path

    return Path(args.index) if args.index else default_index_dir()


def _emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def format_answer_text(answer: Answer) -> str:
    """An answer for the terminal: the quotes with citation numbers (one per article), then those articles."""
    from qa.app.render import cited_articles
    from qa.text import counted

    lines = []
    if answer.notice:
        lines.append(f"({answer.notice})")
    if answer.searched and answer.searched != answer.question:
        lines.append(f"Searched: {answer.searched}")
    lines.append(answer.text)
    if answer.quotes:
        lines.append("")
        for cited in cited_articles(answer.quotes):
            q = cited.quote
            extra = f", {q.published}" if q.published else ""
            more = f" (+{counted(len(q.also_in), 'more source')})" if q.also_in else ""
            lines.append(f"[{cited.number}] {q.title} — {q.source}{extra}{more}")
    return "\n".join(lines)


def cmd_build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from qa.text import counted
    from qa.index.build import build_index

    paths = args.paths or [str(default_articles_dir())]
    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            for bar in bars.values():
                bar.close()
            bars.clear()
            bars[stage] = tqdm(total=total, desc=stage, unit="", file=sys.stderr, leave=False, disable=None)
        bar = bars[stage]
        bar.total = total
        bar.n = done
        bar.refresh()

    embedder = None
    address = args.ray if args.ray is not None else ray_address_from_env()
    if address is not None:
        from qa.embed.ray import ray_embedder

        embedder = ray_embedder(args.model, address or ray_address_from_env())
    try:
        report = build_index(paths, _index_dir(args), embedder=embedder, model=args.model, full=args.full,
                             optimize=args.optimize, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
        if embedder is not None:
            embedder.close()
    if args.json:
        _emit(report.to_json())
    else:
        state = "updated" if report.changed else "already up to date"
        print(
            f"index {report.index_dir}/ {state}: {counted(report.articles, 'article')}, "
            f"{counted(report.chunks, 'chunk')} ({report.embedded} embedded, {report.reused} reused, "
            f"{report.removed} removed) in {report.seconds:.1f}s"
        )
        for line in report.skipped:
            print(f"qa: skipped {line}", file=sys.stderr)
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from qa.answer.bot import Bot

    bot = Bot.load(_index_dir(args), model=model_from_env())
    answer = bot.ask(args.question, k=args.k)
    if args.json:
        _emit(answer.to_json())
    else:
        print(format_answer_text(answer))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from qa.answer.bot import AskError, Bot

    bot = Bot.load(_index_dir(args), model=model_from_env())
    history: list[str] = []
    interactive = sys.stdin.isatty() and not args.json
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        if not line.strip():
            continue
        try:
            answer = bot.ask(line, history, k=args.k)
        except AskError as exc:
            if args.json:
                _emit({"question": line.strip(), "error": str(exc)})
            else:
                print(f"qa: {exc}", file=sys.stderr)
            continue
        if not answer.abstained:  # a follow-up borrows only from answered turns
            history.append(answer.question)
        if args.json:
            _emit(answer.to_json())
        else:
            print(format_answer_text(answer) + "\n", flush=True)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from qa.index.catalog import read_catalog
    from qa.index.reader import read_manifest, verify_files

    folder = _index_dir(args)
    manifest = read_manifest(folder)
    verify_files(folder, manifest, checksums=False)
    articles = read_catalog(folder, manifest).articles
    data = {
        "index": str(folder),
        "build_id": manifest.build_id,
        "created": manifest.created,
        "model": manifest.model,
        "dim": manifest.dim,
        "dense": manifest.dense_kind,
        "chunking": manifest.chunking.to_json(),
        "articles": manifest.counts.get("articles", 0),
        "chunks": manifest.counts.get("chunks", 0),
        "bytes": sum(e.size for e in manifest.files.values()),
        "sources": [a.source for a in articles],
    }
    if args.json:
        _emit(data)
        return 0
    print(f"index {folder}/ (build {manifest.build_id}, {manifest.created})")
    print(f"  model     {manifest.model} ({manifest.dim} dims), {manifest.dense_kind}")
    print(f"  chunks    {data['chunks']:,} of at most {manifest.chunking.chunk_tokens} tokens")
    print(f"  size      {data['bytes'] / 1e6:.1f} MB")
    print(f"  articles  {data['articles']}")
    for entry in articles[:20]:
        print(f"    {entry.chunks:4d} {'chunk ' if entry.chunks == 1 else 'chunks'}  {entry.source}")
    if len(articles) > 20:
        print(f"    ... and {len(articles) - 20} more")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import time

    from qa.index.reader import load_index

    folder = _index_dir(args)
    started = time.perf_counter()
    index = load_index(folder, check="full")  # raises IndexInvalid (one line, what to do) on the first mismatch
    manifest = index.manifest
    data = {
        "index": str(folder),
        "build_id": manifest.build_id,
        "ok": True,
        "files": len(manifest.files),
        "bytes": sum(e.size for e in manifest.files.values()),
        "articles": len(index.articles),
        "chunks": len(index.chunks),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if args.json:
        _emit(data)
    else:
        print(f"index {folder}/ (build {manifest.build_id}) is intact: {data['files']} files, "
              f"{data['bytes'] / 1e6:.1f} MB, {data['articles']:,} articles and {data['chunks']:,} chunks checked "
              f"in {data['seconds']:.1f} s")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from qa.answer.bot import Bot
    from qa.answer.evaluate import evaluate, format_misses, format_report, read_questions

    items, problems = read_questions(args.questions)
    for line in problems:
        print(f"qa: skipped {line}", file=sys.stderr)
    bot = Bot.load(_index_dir(args), model=model_from_env())
    report = evaluate(bot.ask, items, k=args.k)
    if args.json:
        _emit(report.to_json(items=args.misses))
    else:
        print(format_report(report))
        if args.misses:
            print("\n" + format_misses(report))
    return 0


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured in tests)
        pass


COMMANDS = {"build": cmd_build, "ask": cmd_ask, "chat": cmd_chat, "info": cmd_info, "check": cmd_check,
            "eval": cmd_eval}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failed, 2 usage)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    setup_logging(logging.INFO if args.verbose else logging.WARNING, "qa: %(levelname)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except QAError as exc:
        print(f"qa: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("qa: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`qa ask ... | head -1`): not an error
        _drop_stdout()
        return 0
    except Exception as exc:  # never a traceback to a user; QA_DEBUG=1 shows it
        if debug_from_env():
            raise
        print(f"qa: unexpected error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
              "rerun with QA_DEBUG=1 for details", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
