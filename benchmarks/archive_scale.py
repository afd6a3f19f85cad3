"""An archive on one laptop (issue 21): cold start, memory, warm latency, dense recall and disk, 10k to 10M chunks.

    python -m benchmarks.archive_scale                        # 10k, 1M and 10M chunks, one run
    python -m benchmarks.archive_scale --sizes 10k,1M         # leave out 10M
    python -m benchmarks.archive_scale --render benchmarks/results/archive-scale-10k-1m-10m-chunks.json

* **10k, real**: the real index of ``benchmarks.scale_answer`` (whole RealTime QA
  2022 weeks, built with ``build_index`` and the default embedder), shared with
  it through ``--work``.
* **1M and 10M, synthetic**: that index replicated in the project's own segment
  format (``scale_answer.worker_replicate``: new ids, the same texts, the real
  vectors plus Gaussian noise), in the segments the merge policy leaves after
  one build per copy (``scale_answer.tiered_layout``, so no segment is over
  ``MAX_SEGMENT_CHUNKS``). Each size is built once into ``--work`` and reused.
* **Measured**, each in fresh processes: process start to first answer and the
  peak resident memory of that process (median of ``--cold-repeats``); warm
  ``Bot.ask`` p50/p95 after the background check ended (``worker_answer``);
  dense recall@10 of ``Index.dense_search`` against exact search over every
  vector; disk bytes per chunk; ``qa build --optimize``'s time and peak memory
  (``scale_answer.worker_optimize``) at the ``--optimize`` sizes, and then the optimized index like the others.

Writes ``benchmarks/results/archive-scale-<sizes>-chunks[-label].json`` and prints a table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import harness, scale_answer
from benchmarks.harness import BenchError, count_label, disk_bytes, run_worker
from benchmarks.systems import cold_start, worker_build

#: What issue 21 asks of each size: start to first answer (s), resident memory (MB), warm p50 against 10k.
TARGETS = {"1M": {"cold_s": 3.0, "rss_mb": 1024, "p50_ratio": 1.3, "optimize_peak_mb": 3072},
           "10M": {"cold_s": 5.0, "rss_mb": 4096, "p50_ratio": 2.0}}
RECALL_TARGET = 0.95


def parse_size(text: str) -> int:
    """``10k``, ``1M``, ``2.5M`` or a plain number of chunks."""
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def worker_recall(p: dict) -> dict:
    """Dense recall@10 of ``Index.dense_search`` against exact search over every live vector, per question."""
    import faiss
    import numpy as np

    from qa.embed.factory import get_embedder
    from qa.index.reader import load_index

    index = load_index(Path(p["index"]), check="quick")
    queries = np.asarray(get_embedder(index.manifest.model).encode(p["questions"]), dtype=np.float32)
    k = 10
    started = time.perf_counter()
    found = [set(index.dense_search(q, k)[0].tolist()) for q in queries]
    search_s = time.perf_counter() - started
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.full((len(queries), k), -1, dtype=np.int64)
    start = 0
    for seg in index.segments:
        if len(seg.deleted):
            raise BenchError("worker_recall reads indexes without deletions")
        for lo in range(0, seg.entry.chunks, 262_144):
            block = np.ascontiguousarray(seg.vectors[lo : lo + 262_144], dtype=np.float32)
            scores, rows = faiss.knn(queries, block, min(k, len(block)), metric=faiss.METRIC_INNER_PRODUCT)
            scores = np.concatenate([best_scores, scores], axis=1)
            rows = np.concatenate([best_rows, rows + start + lo], axis=1)
            top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            best_scores, best_rows = np.take_along_axis(scores, top, 1), np.take_along_axis(rows, top, 1)
        start += seg.entry.chunks
    hits = [len(f & set(e.tolist())) / k for f, e in zip(found, best_rows)]
    return {"recall_at_10": round(float(np.mean(hits)), 4), "questions": len(queries),
            "dense_search_ms_per_q": round(1000 * search_s / max(1, len(queries)), 2)}


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Build (or reuse) each size, measure it in fresh processes, write the result file."""
    harness.pin_threads(args.threads)
    work: Path = args.work
    root = harness.ROOT.resolve()
    if work.resolve() == root or root in work.resolve().parents:
        raise BenchError(f"--work {work} is inside the repository; indexes and data stay outside it")
    work.mkdir(parents=True, exist_ok=True)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    big_sizes = [s for s in sizes if s > 2 * args.chunks]
    optimize_at = {parse_size(s) for s in args.optimize.split(",") if s.strip()}
    out = harness.result_path("archive-scale", count_label(args.chunks), *(count_label(s) for s in big_sizes),
                              "chunks", f"threads{args.threads}" if args.threads else "", args.label, out=args.out)
    results: dict = {"machine": harness.machine(), "load_before": [round(x, 2) for x in os.getloadavg()],
                     "started": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": args.threads,
                     "command": harness.command_line("benchmarks.archive_scale", argv), "sizes": {}}
    started = time.perf_counter()

    rows, all_questions = harness.read_rtqa(args.rtqa)
    articles, weeks = scale_answer.chunk_slice(rows, args.chunks)
    items = harness.slice_questions(all_questions, articles, weeks)
    questions = [q["q"] for q in items][: args.questions]
    slice_key = {"articles": scale_answer.digest(sorted(a["id"] for a in articles))}
    slice_file = work / "corpus" / f"rtqa-slice-{slice_key['articles']}.jsonl.gz"
    if not slice_file.exists():
        harness.write_jsonl_gz(articles, slice_file)
    results["slice"] = {"articles": len(articles), "weeks": sorted(weeks), "questions_asked": len(questions)}
    model = run_worker(scale_answer.worker_prepare, {})["model"]

    real, real_stamp = work / "real-10k", work / "real-10k.json"
    key = {**slice_key, "model": model}
    build = scale_answer.reusable(real / "manifest.json", real_stamp, key, args.rebuild)
    if build is None:
        build = scale_answer.save_stamp(real_stamp, key, scale_answer.measured(
            "[10k] build the real index", run_worker, worker_build,
            {"system": "ours", "paths": [str(slice_file)], "index": str(real)}, timeout=4 * 3600))
    from qa.index.reader import read_manifest

    n_real = build["chunks"]
    indexes = {count_label(n_real): real}
    for size in big_sizes:
        copies = max(1, round(size / n_real))
        layout = scale_answer.tiered_layout(copies, n_real)
        folder, stamp = work / f"synthetic-{copies}x-tiered", work / f"synthetic-{copies}x-tiered.json"
        tkey = {"source": read_manifest(real).build_id, "copies": copies, "sigma": args.sigma, "layout": layout,
                "format": "tables+keys+sq8+catalog"}
        made = scale_answer.reusable(folder / "manifest.json", stamp, tkey, args.rebuild)
        if made is None:
            made = scale_answer.save_stamp(stamp, tkey, scale_answer.measured(
                f"[{count_label(size)}] replicate {n_real:,} chunks x {copies} into {len(layout)} segments",
                run_worker, scale_answer.worker_replicate,
                {"source": str(real), "index": str(folder), "layout": layout, "sigma": args.sigma},
                timeout=12 * 3600))
        label = count_label(copies * n_real)
        indexes[label] = folder
        results["sizes"][label] = {"build": made}
        if size in optimize_at:
            opt = work / f"synthetic-{copies}x-optimized"
            results["sizes"][label]["optimize"] = scale_answer.measured(
                f"[{label}] qa build --optimize (segments packed up to MAX_SEGMENT_CHUNKS)", run_worker,
                scale_answer.worker_optimize, {"source": str(folder), "index": str(opt)}, timeout=6 * 3600)
            indexes[f"{label} optimized"] = opt  # measured too: what --optimize leaves
            harness.write_result(out, results, partial=True)

    for label, folder in indexes.items():
        entry = results["sizes"].setdefault(label, {})
        chunks = read_manifest(folder).counts["chunks"]
        entry["chunks"] = chunks
        entry["disk_bytes_per_chunk"] = round(disk_bytes(folder) / max(1, chunks))
        entry["cold"] = scale_answer.measured(f"[{label}] cold start x{args.cold_repeats}", cold_start, "ours",
                                               folder, questions[0], args.cold_repeats)
        answers = scale_answer.measured(f"[{label}] warm answers over {len(questions)} questions", run_worker,
                                         scale_answer.worker_answer, {"index": str(folder), "questions": questions},
                                         timeout=4 * 3600)
        answers.pop("top_quotes", None)
        entry["answers"] = answers
        entry["recall"] = scale_answer.measured(f"[{label}] dense recall@10 against exact search", run_worker,
                                                 worker_recall, {"index": str(folder), "questions": questions},
                                                 timeout=4 * 3600)
        harness.write_result(out, results, partial=True)
    results["targets"] = targets(results, count_label(n_real))
    return harness.finish(out, results, started, render)


def targets(results: dict, small: str) -> dict:
    """Each size against issue 21's targets (the nearest named size: 1M or 10M)."""
    sizes = results["sizes"]
    if small not in sizes:
        return {}
    base = sizes[small]["answers"]["ask"]["p50"]
    out = {}
    for label, r in sizes.items():
        if label == small:
            continue
        name = "10M" if r["chunks"] >= 5_000_000 else "1M"
        t = TARGETS[name]
        got = {"cold_s": r["cold"]["seconds"], "rss_mb": r["cold"]["peak_rss_mb"],
               "p50_ratio": round(r["answers"]["ask"]["p50"] / base, 3), "recall_at_10": r["recall"]["recall_at_10"]}
        met = {"cold_s": got["cold_s"] <= t["cold_s"], "rss_mb": got["rss_mb"] <= t["rss_mb"],
               "p50_ratio": got["p50_ratio"] <= t["p50_ratio"], "recall_at_10": got["recall_at_10"] >= RECALL_TARGET}
        if "optimize" in r and "optimize_peak_mb" in t:
            got["optimize_peak_mb"] = r["optimize"]["peak_rss_mb"]
            met["optimize_peak_mb"] = got["optimize_peak_mb"] <= t["optimize_peak_mb"]
        out[label] = {"target": name, "figures": got, "met": met}
    return out


def render(results: dict) -> str:
    """The table of a result file."""
    m = results["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; threads per process: "
             f"{results.get('threads') or 'library default'}. Started {results['started']}.", "",
             "| chunks | segments | disk bytes / chunk | cold start to first answer s | its peak RSS MB | warm p50 ms | "
             "p95 | dense | BM25 | background check s | dense recall@10 | optimize s (peak MB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in results["sizes"].items():
        a = r.get("answers", {})
        st = a.get("steps", {})
        opt = r.get("optimize")
        lines.append("| " + " | ".join([
            f"{label} ({r.get('chunks', 0):,})", str(len(a.get("segments", []))), f"{r.get('disk_bytes_per_chunk', 0):,}",
            f"{r['cold']['seconds']:.2f}" if "cold" in r else "", f"{r['cold']['peak_rss_mb']:.0f}" if "cold" in r else "",
            f"**{a['ask']['p50']:.0f}**" if a else "", f"{a['ask']['p95']:.0f}" if a else "",
            f"{st['dense_search']['p50']:.1f}" if st else "", f"{st['bm25_search']['p50']:.1f}" if st else "",
            f"{a.get('check_s', 0):.1f}" if a else "",
            f"{r['recall']['recall_at_10']:.3f}" if "recall" in r else "",
            f"{opt['seconds']:.0f} ({opt['peak_rss_mb']:.0f})" if opt else "",
        ]) + " |")
    for label, t in results.get("targets", {}).items():
        parts = [f"{k} {t['figures'][k]} ({'met' if ok else 'MISSED'})" for k, ok in t["met"].items()]
        lines.append(f"- {label} against the {t['target']} targets: " + ", ".join(parts))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: one run, or ``--render`` an earlier result."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.archive_scale", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtqa", type=Path, default=harness.DEFAULT_RTQA, help="RealTime QA 2022 folder")
    parser.add_argument("--work", type=Path, default=scale_answer.DEFAULT_WORK,
                        help=f"indexes and scratch, shared with scale_answer (default {scale_answer.DEFAULT_WORK})")
    parser.add_argument("--sizes", default="10k,1M,10M", help="index sizes in chunks (default 10k,1M,10M)")
    parser.add_argument("--optimize", default="1M", help="sizes at which to measure qa build --optimize (default 1M)")
    parser.add_argument("--chunks", type=int, default=10_000, help="chunks in the real index, about (default 10000)")
    parser.add_argument("--sigma", type=float, default=0.02, help="noise per dimension of a copy's vectors")
    parser.add_argument("--questions", type=int, default=60, help="questions asked at every size (default 60)")
    parser.add_argument("--cold-repeats", type=int, default=3, help="cold starts per size (median)")
    parser.add_argument("--threads", type=int, default=None, help="threads for every measured process")
    parser.add_argument("--label", default="", help="added to the --out name")
    parser.add_argument("--out", type=Path, default=None, help="result JSON")
    parser.add_argument("--render", type=Path, default=None, help="print the table of a result JSON and exit")
    parser.add_argument("--rebuild", action="store_true", help="build every index again")
    return harness.run_cli("archive_scale", parser.parse_args(argv), argv, render, run)


if __name__ == "__main__":
    sys.exit(main())
