"""Speed side by side: this project, the LangChain tutorial recipe and BM25 alone, on the same corpus.

    python -m benchmarks.compare            # bundled articles, a RealTime QA slice and the whole RealTime QA
                                            #   corpus (about 30 minutes on 2 cores; the first run also builds
                                            #   and caches our index of the whole corpus)
    python -m benchmarks.compare --quick    # bundled articles and a small RealTime QA slice (a few minutes)
    python -m benchmarks.compare --quick --builds-only --corpora rtqa --slice 100   # build throughput alone

One run, same corpus, same machine, for every system (``benchmarks.systems``), each measurement in a fresh
process so the figures do not mix:

* **build**: full build time and chunks/s (reading the files, cleaning,
  chunking, embedding, indexing, saving), and our embedding step on 1, 2, ...
  Ray workers (``--ray-workers``);
* **incremental**: adding one article, then 1% more articles, to a built index;
* **warm query**: latency p50/p95/p99 of the full answer (ours: retrieval and
  quote selection; recipe: ``similarity_search``; BM25: top chunks);
* **answer recall**: whether a gold answer string is in what each system shows (a sanity check);
* **cold start**: process start to first answer;
* **peak memory**: RSS of the build and of the query process;
* **disk**: the index folder's size.

Search at up to a million chunks is ``benchmarks.search_scale``; whole answers at a million chunks
``benchmarks.scale_answer``. Results go to ``benchmarks/results/side-by-side-CORPORA.json`` (with ``--builds-only``:
``build-throughput-CORPORA.json``), with the machine, and a table on stdout; ``python -m benchmarks.plots`` draws
the PNGs in docs/. Nothing here is part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import (
    finish,
    run_cli,
    BUNDLED,
    DEFAULT_RTQA,
    DEFAULT_WORK,
    ROOT,
    BenchError,
    command_line,
    disk_bytes,
    edited,
    log,
    machine,
    pin_threads,
    read_rtqa,
    result_path,
    rtqa_files,
    run_worker,
    slice_questions,
    week_slice,
    write_jsonl_gz,
    write_result,
)
from benchmarks.systems import SYSTEMS, cold_start, worker_build, worker_increment, worker_query, worker_recall

#: The corpora of a side-by-side run: the bundled articles and a slice of RealTime QA 2022 (plus, in a full run,
#: our index of the whole corpus).
CORPORA = ("bundled", "rtqa")


# --------------------------------------------------------------------------- the run


def section_systems(label: str, paths: list[str], added_one: list[str], added_pct: list[str], questions: list[str],
                    work: Path, systems: Sequence[str], backends: Sequence[str], cold_repeats: int,
                    items: Sequence[dict] = (), ray_workers: Sequence[int] = (), builds_only: bool = False) -> dict:
    """Build, increment, query and cold start for each system on one corpus; then our default backend's build
    with its embedding on 1, 2, ... Ray workers (same texts, each build a whole process)."""
    out: dict = {}
    for system in systems:
        variants = [f"ours-{b}" for b in backends] if system == "ours" else [system]
        for variant in variants:
            backend = variant.split("-", 1)[1] if variant.startswith("ours-") else None
            index = work / label / variant
            log(f"[{label}] {variant}: build")
            build = run_worker(worker_build, {"system": system, "paths": paths, "index": str(index),
                                               "backend": backend})
            entry = {"build": build}
            if builds_only:
                out[variant] = entry
                continue
            if items:
                log(f"[{label}] {variant}: answer recall")
                entry["recall"] = run_worker(worker_recall, {"system": system, "index": str(index),
                                                            "items": list(items)})
            if variant == variants[0]:
                log(f"[{label}] {variant}: query")
                entry["query"] = run_worker(worker_query, {"system": system, "index": str(index),
                                                           "questions": questions})
                log(f"[{label}] {variant}: cold start")
                entry["cold"] = cold_start(system, index, questions[0], cold_repeats)
                if added_one:
                    log(f"[{label}] {variant}: add one article")
                    entry["add_one"] = run_worker(worker_increment, {"system": system, "index": str(index),
                                                                     "paths": paths, "added": added_one})
                if added_pct:
                    log(f"[{label}] {variant}: add 1% more articles")
                    entry["add_pct"] = run_worker(worker_increment, {"system": system, "index": str(index),
                                                                     "paths": [*paths, *added_one], "added": added_pct})
            out[variant] = entry
        if system == "ours":
            for n in ray_workers:
                variant = f"ours-{backends[0]}-ray{n}"
                log(f"[{label}] {variant}: build with {n} Ray worker(s), 1 CPU each")
                build = run_worker(worker_build, {"system": system, "paths": paths,
                                                  "index": str(work / label / variant), "backend": backends[0],
                                                  "ray_workers": n})
                out[variant] = {"build": build}
    return out


def full_rtqa_index(articles_gz: Path, work: Path, rebuild: bool) -> tuple[Path, dict]:
    """Our index of the whole RealTime QA corpus, built once and cached in ``work`` (with its build figures)."""
    index = work / "rtqa-full"
    stamp = work / "rtqa-full-build.json"
    if rebuild or not stamp.exists() or not (index / "manifest.json").exists():
        log(f"[rtqa-full] building our index of the whole corpus once (cached in {index}; tens of minutes)")
        result = run_worker(worker_build, {"system": "ours", "paths": [str(articles_gz)], "index": str(index)},
                            timeout=4 * 3600)
        result["measured"] = time.strftime("%Y-%m-%d %H:%M")
        result["load_during"] = os.getloadavg()[0]
        stamp.write_text(json.dumps(result))
    return index, json.loads(stamp.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: one side-by-side run, or ``--render`` an earlier result."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="bundled articles + a 40-article RealTime QA slice")
    parser.add_argument("--rtqa", type=Path, default=DEFAULT_RTQA,
                        help=f"RealTime QA 2022 folder (default {DEFAULT_RTQA})")
    parser.add_argument("--corpora", default="bundled,rtqa", help="comma-separated: " + ", ".join(CORPORA))
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated: " + ", ".join(SYSTEMS))
    parser.add_argument("--backends", default=None,
                        help="our embedding backends to build with, the first one measured in full "
                             "(default: the default backend, then the other ONNX one; quick: the default)")
    parser.add_argument("--builds-only", action="store_true",
                        help="only the full builds of each system (no recall, queries, cold starts or increments)")
    parser.add_argument("--ray-workers", default="1,2",
                        help="also build the RealTime QA slice with the first backend on these numbers of Ray "
                             "workers (comma-separated; '' for none; needs the ray extra)")
    parser.add_argument("--slice", type=int, default=None,
                        help="RealTime QA articles in the side-by-side slice, about (default 300; quick 40)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help=f"scratch and cache folder (default {DEFAULT_WORK})")
    parser.add_argument("--label", default="",
                        help="what sets this run apart (code version, machine): added to the --out name")
    parser.add_argument("--out", type=Path, default=None,
                        help="result JSON (default benchmarks/results/side-by-side-CORPORA[-LABEL].json, "
                             "build-throughput-... with --builds-only; -run2, -run3, ... when taken)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached full RealTime QA index")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every system (torch, ONNX Runtime, FAISS); default: each library's own. "
                             "On a busy machine 1 is fairer: multi-threaded small operations then mostly wait")
    parser.add_argument("--render", type=Path, default=None, help="print the table of an earlier result JSON and exit")
    args = parser.parse_args(argv)
    return run_cli("compare", args, argv, render, run)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Every asked corpus and system, each measurement in its own worker; write the result file, print the table."""
    pin_threads(args.threads)  # the workers inherit it
    corpora = [c.strip() for c in args.corpora.split(",") if c.strip()]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if "synthetic" in corpora:
        raise BenchError("search at up to a million chunks is its own benchmark now: python -m benchmarks.search_scale")
    unknown = sorted(set(corpora) - set(CORPORA)) + sorted(set(systems) - set(SYSTEMS))
    if unknown:
        raise BenchError(f"unknown corpus or system {', '.join(unknown)}: see --help")
    from qa.embed.factory import DEFAULT_BACKEND

    other = "onnx" if DEFAULT_BACKEND == "onnx-int8" else "onnx-int8"
    backends = (args.backends or (DEFAULT_BACKEND if args.quick else f"{DEFAULT_BACKEND},{other}")).split(",")
    ray_workers = [int(n) for n in args.ray_workers.split(",") if n.strip()]
    if "ours" not in systems or "rtqa" not in corpora:
        ray_workers = []  # Ray builds are rows of the RealTime QA slice only
    if ray_workers:
        try:
            import ray  # noqa: F401
        except ImportError:
            log("Ray rows skipped: ray is not installed (pip install -e '.[ray]')")
            ray_workers = []
    slice_n = args.slice or (40 if args.quick else 300)
    work = args.work / ("quick" if args.quick else "full")
    if "recipe" in systems:
        try:
            import langchain_community  # noqa: F401
        except ImportError:
            raise BenchError("the LangChain recipe needs langchain-community: pip install -e '.[bench]'") from None
    rtqa = "rtqa" in corpora
    rtqa_rows, rtqa_questions = read_rtqa(args.rtqa) if rtqa else ([], [])
    base, weeks = week_slice(rtqa_rows, slice_n) if rtqa else ([], set())
    whole = rtqa and not args.quick and not args.builds_only
    out = result_path("build-throughput" if args.builds_only else "side-by-side",
                      "bundled" if "bundled" in corpora else "",
                      f"rtqa-{len(base)}-articles" if rtqa else "",
                      "whole-rtqa" if whole else "",
                      f"threads{args.threads}" if args.threads else "",
                      "ray-workers-" + "-".join(map(str, ray_workers)) if ray_workers else "",
                      args.label, out=args.out)
    results: dict = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick,
                     "threads": args.threads, "command": command_line("benchmarks.compare", argv), "corpora": {}}
    started = time.perf_counter()
    n_questions = 20 if args.quick else 60
    repeats = 1 if args.quick else 3
    if "bundled" in corpora:
        rows = [json.loads(line) for line in (ROOT / "tests" / "questions.jsonl").read_text().splitlines()
                if line.strip()] if (ROOT / "tests" / "questions.jsonl").exists() else []
        questions = [r.get("q") or (r.get("turns") or [""])[0] for r in rows]
        questions = (questions or [a.stem for a in BUNDLED.iterdir()])[:n_questions]
        results["corpora"]["bundled"] = {
            "articles": len([p for p in BUNDLED.iterdir() if p.is_file()]),
            "systems": section_systems("bundled", [str(BUNDLED)], [], [], questions, work, systems, backends[:1],
                                       repeats),
        }
        write_result(out, results, partial=True)
    if rtqa:
        rest = [r for r in sorted(rtqa_rows, key=lambda r: r["id"]) if r["published"] not in weeks]
        random.Random(0).shuffle(rest)
        pct = max(1, slice_n // 100)
        one, more = [edited(rest[0], 0)], [edited(r, i + 1) for i, r in enumerate(rest[1 : 1 + pct])]
        files = work / "corpus"
        base_file = write_jsonl_gz(base, files / "rtqa-slice.jsonl.gz")
        one_file = write_jsonl_gz(one, files / "rtqa-add-one.jsonl.gz")
        more_file = write_jsonl_gz(more, files / "rtqa-add-pct.jsonl.gz")
        items = slice_questions(rtqa_questions, base, weeks)
        questions = [q["q"] for q in items][:n_questions] or [q["q"] for q in rtqa_questions[:n_questions]]
        results["corpora"]["rtqa_slice"] = {
            "articles": len(base), "weeks": sorted(weeks), "questions": len(items), "added_pct_articles": len(more),
            "systems": section_systems("rtqa", [str(base_file)], [str(one_file)], [str(more_file)], questions, work,
                                       systems, backends, repeats, items, ray_workers, args.builds_only),
        }
        write_result(out, results, partial=True)
        if whole:
            full_file = rtqa_files(args.rtqa)[0]
            index, build = full_rtqa_index(full_file, args.work, args.rebuild)
            probe = work / "rtqa-full-copy"
            shutil.rmtree(probe, ignore_errors=True)
            shutil.copytree(index, probe, ignore=shutil.ignore_patterns(".lock"))
            pct = len(rtqa_rows) // 100
            extra_one = write_jsonl_gz([edited(rest[0], 0)], files / "rtqa-full-add-one.jsonl.gz")
            extra_pct = write_jsonl_gz([edited(r, i + 1) for i, r in enumerate(rest[1 : 1 + pct])],
                                       files / "rtqa-full-add-pct.jsonl.gz")
            log("[rtqa-full] add one article, then 1% more, to the full index")
            full = {"build": build}
            full["add_one"] = run_worker(worker_increment, {"system": "ours", "index": str(probe),
                                                            "paths": [str(full_file)], "added": [str(extra_one)],
                                                            "profile": True})
            full["add_pct"] = run_worker(worker_increment, {"system": "ours", "index": str(probe),
                                                            "paths": [str(full_file), str(extra_one)],
                                                            "added": [str(extra_pct)]})
            full["query"] = run_worker(worker_query, {"system": "ours", "index": str(probe), "questions": questions})
            full["cold"] = cold_start("ours", probe, questions[0], repeats)
            full["disk_mb"] = round(disk_bytes(probe) / 1e6, 1)
            results["corpora"]["rtqa_full"] = full
            write_result(out, results, partial=True)
    return finish(out, results, started, render)


# --------------------------------------------------------------------------- the table


def _ratio(value: float | None, ref: float | None, better_high: bool) -> str:
    if not value or not ref:
        return ""
    ratio = value / ref if better_high else ref / value
    return f" ({ratio:.1f}x)"


def render(results: dict) -> str:
    """The side-by-side table (markdown), ratios against the recipe in brackets (>1 = better than the recipe)."""
    m = results["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; load average {m['load_before']:.1f} "
             f"before, {m.get('load_after', 0):.1f} after; threads per system: {results.get('threads') or 'library default'}. "
             f"Ratios in brackets are against the LangChain recipe (>1 = better)."]
    for corpus, data in results["corpora"].items():
        if "systems" not in data:
            continue
        systems = data["systems"]
        ref = systems.get("recipe", {})
        lines += ["", f"### {corpus} ({data['articles']} articles)", "",
                  "| system | build s | chunks | chunks/s | +1 article s | +1% s | query p50 ms | p95 | p99 | cold start s | build RSS MB | query RSS MB | disk MB | answer recall@1 / @5 |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, entry in systems.items():
            b, q, c = entry["build"], entry.get("query", {}), entry.get("cold", {})
            rb, rq, rc = ref.get("build", {}), ref.get("query", {}), ref.get("cold", {})
            cells = [
                name,
                f"{b['seconds']:.1f}{_ratio(b['seconds'], rb.get('seconds'), False)}",
                str(b["chunks"]),
                f"{b['chunks_per_s']:.1f}{_ratio(b['chunks_per_s'], rb.get('chunks_per_s'), True)}",
                f"{entry['add_one']['seconds']:.1f}{_ratio(entry['add_one']['seconds'], ref.get('add_one', {}).get('seconds'), False)}" if "add_one" in entry else "",
                f"{entry['add_pct']['seconds']:.1f}{_ratio(entry['add_pct']['seconds'], ref.get('add_pct', {}).get('seconds'), False)}" if "add_pct" in entry else "",
                f"{q['p50']:.1f}{_ratio(q['p50'], rq.get('p50'), False)}" if q else "",
                f"{q['p95']:.1f}" if q else "",
                f"{q['p99']:.1f}" if q else "",
                f"{c['seconds']:.2f}{_ratio(c['seconds'], rc.get('seconds'), False)}" if c else "",
                f"{b['peak_rss_mb']:.0f}",
                f"{c.get('peak_rss_mb', 0):.0f}" if c else "",
                f"{b['disk_mb']:.1f}",
                f"{entry['recall']['recall_at_1']:.3f} / {entry['recall']['recall_at_5']:.3f} (n={entry['recall']['questions']})"
                if "recall" in entry else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        timed = [(n, e["build"]) for n, e in systems.items() if e["build"].get("embed_s")]
        if any(b.get("ray_workers") for _, b in timed):
            lines += ["", "Embedding step alone (same texts; Ray workers have 1 CPU each, the local embedder all "
                      "cores; Ray's own start is in the build time, not here):", ""]
            for name, b in timed:
                start = f", Ray start {b['ray_start_s']:.1f} s" if b.get("ray_start_s") else ""
                lines.append(f"- {name}: {b['embed_s']:.1f} s, {b['chunks'] / b['embed_s']:.1f} chunks/s{start}")
    full = results["corpora"].get("rtqa_full")
    if full:
        b = full["build"]
        lines += ["", "### rtqa_full (ours, cached full build)", "",
                  f"- full build: {b['articles']} articles, {b['chunks']} chunks in {b['seconds']:.0f} s = "
                  f"{b['chunks_per_s']:.1f} chunks/s ({b.get('model', '')}; measured {b.get('measured', '?')}, "
                  f"load {b.get('load_during', 0):.1f})" + (f", peak RSS {b['peak_rss_mb']:.0f} MB" if b.get("peak_rss_mb") else ""),
                  f"- add one article: {full['add_one']['seconds']:.1f} s ({full['add_one'].get('embedded')} chunks embedded); "
                  f"add 1% more: {full['add_pct']['seconds']:.1f} s ({full['add_pct'].get('embedded')} embedded)",
                  f"- warm query p50/p95/p99: {full['query']['p50']:.1f} / {full['query']['p95']:.1f} / {full['query']['p99']:.1f} ms; "
                  f"cold start {full['cold']['seconds']:.2f} s; query RSS {full['cold']['peak_rss_mb']:.0f} MB; disk {full['disk_mb']:.0f} MB"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
