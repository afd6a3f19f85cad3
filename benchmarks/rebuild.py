"""What adding or removing one article costs on the whole RealTime QA 2022 corpus (4,712 articles).

    python -m benchmarks.rebuild --data ../shared/rtqa-2022 [--work /tmp/qa-rebuild] [--repeat 5]

The corpus is split into one file per article (one-line .jsonl files, so ids,
titles and sources are those of the original file), as a user's folder of
articles would be; the benchmark data is read from where it lies and copied
only into ``--work`` (under /tmp), never into the repository.

Building the whole corpus with the real model takes about 50 minutes on two
cores, so the index is built with the hash embedder (``hash-384``: vectors of
the real model's width, so the files weigh the same) and the two costs are
measured apart:

* the build's own overhead for adding one article, and for removing it (stat
  every file, read the manifest, chunk, write the segment or deletion list,
  commit), with the hash embedder, whose embedding time is negligible;
* the time the real bundled model takes to embed that article's chunks.

Add one article costs about their sum. Also measured: a build with nothing
to do, ``--optimize`` (merge every segment into one) and, for comparison, the
same corpus as one .jsonl.gz file, where changing one line means reading
the whole file again. Results go to ``benchmarks/results/rebuild-cost-N-files[-MODEL][-LABEL].json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import DEFAULT_RTQA, result_path, write_result
from qa.embed.factory import get_embedder
from qa.index.build import build_index
from qa.index.reader import read_manifest

#: The article added and removed: a typical one (near the corpus's median length), fixed for reruns.
PROBE_LINE = 2345


def split_corpus(source: Path, folder: Path) -> list[Path]:
    """One one-line .jsonl file per article, in the corpus's order (kept if already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with gzip.open(source, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if not line.strip():
                continue
            path = folder / f"{n:05d}.jsonl"
            if not path.exists():
                path.write_text(line if line.endswith("\n") else line + "\n", encoding="utf-8")
            paths.append(path)
    return paths


class Stages:
    """Times between the build's progress callbacks, to say where the seconds go."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.marks: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        key = f"{stage} {'start' if done == 0 else 'end' if done == total else 'mid'}"
        self.marks.setdefault(key, time.perf_counter() - self.start)
        self.marks[f"{stage} last"] = time.perf_counter() - self.start


def timed_build(articles: Path, index: Path, embedder, **kwargs) -> dict:
    """One ``build_index`` of the folder ``articles`` into ``index``: wall and CPU seconds, and what it did."""
    stages = Stages()
    started, cpu = time.perf_counter(), time.process_time()
    report = build_index([articles], index, embedder=embedder, progress=stages, **kwargs)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    manifest = read_manifest(index)
    return {
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 3),  # this process's CPU time: what the build costs when it does not wait for the CPU
        "embedded": report.embedded,
        "removed": report.removed,
        "chunks": report.chunks,
        "articles": report.articles,
        "segments": len(manifest.segments),
        "load_s": round(stages.marks.get("load end", 0.0), 3),
        "save_s": round(seconds - stages.marks.get("save start", seconds), 3),
        "changed": report.changed,
    }


def real_embed_seconds(probe: Path, repeat: int) -> dict:
    """Chunk and embed the probe article with the bundled model (loaded and warmed up first)."""
    from qa.ingest.chunk import chunk_article, embedding_text
    from qa.ingest.load import load_file
    from qa.settings import ChunkSettings

    embedder = get_embedder(None)
    embedder.encode(["warm up the model"])
    (article,) = load_file(probe).articles
    settings = ChunkSettings()
    times, chunk_times = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        chunks = chunk_article(article, settings, embedder.count_tokens)
        texts = [embedding_text(article, c, settings, embedder.count_tokens) for c in chunks]
        chunked = time.perf_counter()
        embedder.encode(texts)
        times.append(time.perf_counter() - chunked)
        chunk_times.append(chunked - started)
    return {"model": embedder.name, "chunks": len(chunks), "chars": len(article.text),
            "embed_s": round(statistics.median(times), 3), "chunk_s": round(statistics.median(chunk_times), 3)}


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: build once, then add and remove the probe article ``--repeat`` times; write the result."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rebuild", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_RTQA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qa-rebuild"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--probe", type=int, default=PROBE_LINE,
                        help=f"line of the corpus file holding the article added and removed (default {PROBE_LINE})")
    parser.add_argument("--model", default="hash-384", help="embedder for the index (default hash-384)")
    parser.add_argument("--skip-real", action="store_true", help="do not time the real model")
    parser.add_argument("--keep-index", action="store_true",
                        help="start from the index already in --work (brought up to date first) instead of a full build")
    parser.add_argument("--skip-jsonl", action="store_true", help="do not measure the single-file corpus")
    parser.add_argument("--label", default="",
                        help="what sets this run apart (code version, machine): added to the --out name")
    parser.add_argument("--out", type=Path, default=None,
                        help="result JSON (default benchmarks/results/rebuild-cost-N-files[-MODEL][-LABEL].json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    source = args.data / "articles.jsonl.gz"
    articles = args.work / "articles"
    parked = args.work / "parked"
    index = args.work / "index"
    paths = split_corpus(source, articles)
    if not 0 <= args.probe < len(paths):
        parser.error(f"--probe {args.probe}: the corpus has {len(paths)} articles")
    probe = articles / f"{args.probe:05d}.jsonl"
    held = parked / probe.name
    parked.mkdir(parents=True, exist_ok=True)
    if not probe.exists() and held.exists():
        shutil.move(held, probe)
    embedder = get_embedder(args.model)
    out: dict = {"corpus": str(source), "files": len(paths), "model": embedder.name, "probe": probe.name}

    if index.exists() and not args.keep_index:
        shutil.rmtree(index)
    shutil.move(probe, held)
    out["full_build" if not args.keep_index else "catch_up"] = timed_build(articles, index, embedder)
    print("build without the probe:", out.get("full_build") or out.get("catch_up"), flush=True)
    out["no_op"] = [timed_build(articles, index, embedder) for _ in range(args.repeat)]
    adds, removes = [], []
    for _ in range(args.repeat):
        shutil.move(held, probe)
        adds.append(timed_build(articles, index, embedder))
        shutil.move(probe, held)
        removes.append(timed_build(articles, index, embedder))
    out["add_one"], out["remove_one"] = adds, removes
    print("add one:", adds, "\nremove one:", removes, flush=True)
    shutil.move(held, probe)
    timed_build(articles, index, embedder)
    out["optimize"] = timed_build(articles, index, embedder, optimize=True)
    print("optimize:", out["optimize"], flush=True)

    if not args.skip_jsonl:  # the same corpus as one file: a changed line means reading the whole file again
        single = args.work / "single"
        single.mkdir(exist_ok=True)
        lines = [p.read_text(encoding="utf-8") for p in paths]
        probe_at = paths.index(probe)
        (single / "corpus.jsonl").write_text("".join(lines[:probe_at] + lines[probe_at + 1 :]), encoding="utf-8")
        single_index = args.work / "single-index"
        if single_index.exists():
            shutil.rmtree(single_index)
        out["jsonl_full_build"] = timed_build(single, single_index, embedder)
        (single / "corpus.jsonl").write_text("".join(lines), encoding="utf-8")
        out["jsonl_add_one"] = timed_build(single, single_index, embedder)
        print("one .jsonl file, add one line:", out["jsonl_add_one"], flush=True)

    if not args.skip_real:
        out["real_embed"] = real_embed_seconds(probe, args.repeat)
        print("real model:", out["real_embed"], flush=True)

    med = lambda rows, key="seconds": statistics.median(r[key] for r in rows)  # noqa: E731
    out["summary"] = {
        "add_one_overhead_s": round(med(adds), 3),
        "add_one_overhead_cpu_s": round(med(adds, "cpu_s"), 3),
        "remove_one_s": round(med(removes), 3),
        "remove_one_cpu_s": round(med(removes, "cpu_s"), 3),
        "no_op_s": round(med(out["no_op"]), 3),
        "no_op_cpu_s": round(med(out["no_op"], "cpu_s"), 3),
        "real_embed_s": out.get("real_embed", {}).get("embed_s"),
    }
    print(json.dumps(out["summary"]))
    path = result_path("rebuild-cost", f"{len(paths)}-files", "" if args.model == "hash-384" else args.model,
                       args.label, out=args.out)
    write_result(path, out)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
