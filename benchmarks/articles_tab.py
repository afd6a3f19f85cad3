"""How long the web chat's Articles tab takes to draw its table on a big index, one process, side by side.

    python -m benchmarks.articles_tab --index ~/.cache/qa/bench/scale/synthetic-109x-tiered --label paging

Opens the index as the web chat does (``qa.app.library.Library``, no rebuild) and times, in this order: the
table as it opens (no filter: only the first rows' records are read), a filter that matches few articles (the
first one reads every article's title), the same filter again and another one (served from the titles kept for
this index), a filter after the index is opened again (a new generation of the same segments, as after a
rebuild that changed none: titles are kept per segment), and, for comparison, reading every article's row,
which every drawing of the table did before.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import command_line, machine, memory, result_path, write_result


def _timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def run(index: Path, filters: Sequence[str]) -> dict:
    """Seconds of each drawing of the table, the resident memory after them, and the index's size."""
    from qa.app.articles import article_table
    from qa.app.library import Library

    with tempfile.TemporaryDirectory() as empty:
        library = Library(empty, index)
        opened, _ = _timed(lambda: library.start(update=False))
        if library.bot is None:
            raise SystemExit(f"articles_tab: no index could be opened in {index}")
        manifest = library.bot.index.manifest
        out: dict = {"index": str(index), "articles": manifest.counts.get("articles", 0),
                     "chunks": manifest.counts.get("chunks", 0), "open_s": round(opened, 3),
                     "memory_after_open": memory()}
        seconds, _ = _timed(lambda: article_table(library))
        out["table_s"] = round(seconds, 4)
        out["memory_after_table"] = memory()
        for n, needle in enumerate(filters):
            seconds, html = _timed(lambda: article_table(library, needle))
            out[f"filter_{n + 1}_s"] = round(seconds, 4)
            out[f"filter_{n + 1}_rows"] = html.count("<tr>") - 1 if "<tr>" in html else 0
        seconds, _ = _timed(lambda: article_table(library, filters[0]))
        out["filter_1_again_s"] = round(seconds, 4)
        out["memory_after_filters"] = memory()
        library.start(update=False)  # a new generation of the same segments, as a rebuild that changed none
        seconds, _ = _timed(lambda: article_table(library, filters[1 % len(filters)]))
        out["filter_after_reopen_s"] = round(seconds, 4)
        seconds, rows = _timed(library.articles)  # what every drawing of the table did before
        out["every_row_before_s"] = round(seconds, 3)
        out["every_row_count"] = len(rows)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.articles_tab", description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, required=True, help="an index folder (qa build's)")
    parser.add_argument("--filter", action="append", default=None,
                        help="a filter to time (repeatable; default: 'elsmere' then 'usatoday')")
    parser.add_argument("--label", default="", help="added to the results file's name")
    args = parser.parse_args(argv)
    filters = args.filter or ["elsmere", "usatoday"]
    result = {"command": command_line("benchmarks.articles_tab", sys.argv[1:] if argv is None else argv),
              "machine": machine(), **run(args.index, filters)}
    path = result_path("articles-tab", f"{result['articles']}-articles", args.label)
    write_result(path, result)
    for key, value in result.items():
        if key not in ("machine", "command"):
            print(f"{key:24} {value}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
