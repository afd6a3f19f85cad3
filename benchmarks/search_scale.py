"""Search at scale: dense and BM25 query latency, recall and memory from 10,000 to 1,000,000 chunks.

    python -m benchmarks.search_scale                 # 10k, 100k, 1M chunks (about 20 minutes on 2 cores)
    python -m benchmarks.search_scale --quick         # 10k and 100k
    python -m benchmarks.search_scale --render benchmarks/results/search-latency-10k-100k-1m-chunks.json

The vectors of a built RealTime QA index (``--source``; by default the whole-corpus index that
``python -m benchmarks.compare`` caches, else its slice index) are replicated with Gaussian noise
(sigma 0.02 per dimension, renormalised) up to each size, and its chunk texts for BM25. Each size runs in its
own process: dense index built as the project builds it (flat, then calibrated IVF) and, from 100,000 chunks,
an exact flat index too; query p50/p95 over the first 200 RealTime QA questions (embedded once by the bundled
model), recall@10 against exact search for those questions and for mixed calibration queries, bytes per chunk
on disk, memory after opening and querying; then the same for BM25. Only the search side: ``scale_answer``
measures whole answers at 1M chunks. Results go to ``benchmarks/results/search-latency-SIZES-chunks.json``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import (
    finish,
    run_cli,
    DEFAULT_RTQA,
    DEFAULT_WORK,
    BenchError,
    command_line,
    count_label,
    disk_bytes,
    log,
    machine,
    percentiles,
    pin_threads,
    read_questions,
    result_path,
    rss_now_mb,
    run_worker,
    write_result,
)


def worker_scale(p: dict) -> dict:
    """Dense and BM25 search at ``p["size"]`` chunks made from a real index's vectors and texts."""
    import numpy as np

    from qa.index.dense import (
        build_dense,
        calibration_queries,
        exact_top,
        read_dense,
        recall_at,
        search_dense,
        write_dense,
    )
    from qa.index.lexical import Lexical, Postings, tokenize
    from qa.index.reader import load_index

    size, work = int(p["size"]), Path(p["work"])
    source = load_index(Path(p["source"]), check="quick")
    base = np.asarray(source.vectors, dtype=np.float32)
    rng = np.random.default_rng(0)
    reps = -(-size // len(base))
    rows = np.tile(np.arange(len(base)), reps)[:size]
    vectors = np.empty((size, base.shape[1]), dtype=np.float32)
    for lo in range(0, size, 100_000):  # replicate with noise in blocks, so memory stays ~ the result
        block = base[rows[lo : lo + 100_000]]
        if lo >= len(base) or reps > 1:
            noisy = block + rng.standard_normal(block.shape, dtype=np.float32) * p.get("noise", 0.02)
            block = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
        vectors[lo : lo + len(block)] = block
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"size": size}
    # Real questions as queries: embedded once by the parent and passed in.
    queries = np.asarray(p["query_vectors"], dtype=np.float32)
    for label, flat_max in (("auto", None), ("exact", size)) if p.get("exact") else (("auto", None),):
        started = time.perf_counter()
        index, info = build_dense(vectors, **({} if flat_max is None else {"flat_max": flat_max}))
        build_s = time.perf_counter() - started
        path = work / f"dense-{label}-{size}.faiss"
        write_dense(index, path)
        del index
        rss_before = rss_now_mb()
        started = time.perf_counter()
        index = read_dense(path)
        open_ms = (time.perf_counter() - started) * 1000
        times = []
        for q in queries:
            started = time.perf_counter()
            search_dense(index, q, 50)
            times.append(time.perf_counter() - started)
        _, found = index.search(queries, 10)
        exact = exact_top(vectors, queries, 10)
        synthetic = calibration_queries(vectors, 200, seed=7)
        _, found_syn = index.search(synthetic, 10)
        out[f"dense_{label}"] = {
            "kind": info.kind, "nlist": info.nlist, "nprobe": info.nprobe, "build_s": round(build_s, 1),
            "open_ms": round(open_ms, 1), "query": percentiles(times),
            "recall_at_10_questions": round(recall_at(found, exact), 4),
            "recall_at_10_mixed": round(recall_at(found_syn, exact_top(vectors, synthetic, 10)), 4),
            "file_bytes_per_chunk": round(path.stat().st_size / size, 1),
            "rss_after_open_and_queries_mb": round(rss_now_mb() - rss_before, 1),
        }
        del index
        path.unlink()
    del vectors
    # BM25 over the source's chunk texts, replicated (tokenized once; same text, same tokens).
    tokens = [tokenize(c.text) or [""] for c in source.chunks]
    started = time.perf_counter()
    postings = Postings.from_tokens([tokens[r] for r in rows.tolist()])
    lexical = Lexical([(postings, np.arange(postings.n_docs, dtype=np.int64))])
    build_s = time.perf_counter() - started
    folder = work / f"bm25-{size}"
    postings.save(folder)
    del lexical, postings
    rss_before = rss_now_mb()
    started = time.perf_counter()
    postings = Postings.load(folder, mmap=True)
    lexical = Lexical([(postings, np.arange(postings.n_docs, dtype=np.int64))])
    open_ms = (time.perf_counter() - started) * 1000
    times = []
    for q in p["questions"]:
        started = time.perf_counter()
        lexical.search(q, 50)
        times.append(time.perf_counter() - started)
    out["bm25"] = {"build_s": round(build_s, 1), "open_ms": round(open_ms, 1), "query": percentiles(times),
                   "disk_bytes_per_chunk": round(disk_bytes(folder) / size, 1),
                   "rss_after_open_and_queries_mb": round(rss_now_mb() - rss_before, 1)}
    shutil.rmtree(folder, ignore_errors=True)
    return out



def default_source(work: Path) -> Path:
    """The RealTime QA index to replicate: the cached whole-corpus one, else a slice index of the side-by-side run."""
    from qa.embed.factory import DEFAULT_BACKEND

    for folder in (work / "rtqa-full", work / "full" / "rtqa" / f"ours-{DEFAULT_BACKEND}",
                   work / "quick" / "rtqa" / f"ours-{DEFAULT_BACKEND}"):
        if (folder / "manifest.json").exists():
            return folder
    raise BenchError("search_scale replicates a built RealTime QA index: run python -m benchmarks.compare "
                     "--corpora rtqa first, or pass --source DIR")


def embed_questions(questions: list[str]) -> list[list[float]]:
    """The questions' vectors under the default embedder, as lists (they go to each worker in its params file)."""
    from qa.embed.factory import get_embedder

    return get_embedder().encode(questions).tolist()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: measure every size, or ``--render`` an earlier result."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search_scale", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="sizes 10000,100000 only")
    parser.add_argument("--sizes", default=None, help="comma-separated chunk counts (default 10000,100000,1000000)")
    parser.add_argument("--rtqa", type=Path, default=DEFAULT_RTQA,
                        help=f"RealTime QA 2022 folder, for the questions (default {DEFAULT_RTQA})")
    parser.add_argument("--source", type=Path, default=None,
                        help="the built index to replicate (default: the whole-corpus index in --work, else a slice)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"scratch folder (default {DEFAULT_WORK})")
    parser.add_argument("--threads", type=int, default=None, help="threads for FAISS and the embedder")
    parser.add_argument("--label", default="",
                        help="what sets this run apart (code version, machine): added to the --out name")
    parser.add_argument("--out", type=Path, default=None,
                        help="result JSON (default benchmarks/results/search-latency-SIZES-chunks[-LABEL].json)")
    parser.add_argument("--render", type=Path, default=None, help="print the table of an earlier result JSON and exit")
    args = parser.parse_args(argv)
    return run_cli("search_scale", args, argv, render, run)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Replicate the source index to every size in its own worker; write the result file and print the table."""
    pin_threads(args.threads)
    sizes = [int(s) for s in (args.sizes or ("10000,100000" if args.quick else "10000,100000,1000000")).split(",")]
    source = args.source or default_source(args.work)
    if not (source / "manifest.json").exists():
        raise BenchError(f"{source} is not a built index (no manifest.json)")
    questions = [q["q"] for q in read_questions(args.rtqa)[:200]]
    out = result_path("search-latency", *(count_label(s) for s in sizes), "chunks", args.label, out=args.out)
    results: dict = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick,
                     "threads": args.threads, "command": command_line("benchmarks.search_scale", argv)}
    started = time.perf_counter()
    vectors = embed_questions(questions)
    scale = []
    for size in sizes:
        log(f"[synthetic] {size:,} chunks")
        params = {"size": size, "source": str(source), "work": str(args.work / "synthetic"), "questions": questions,
                  "query_vectors": vectors, "exact": size >= 100_000}
        scale.append(run_worker(worker_scale, params, timeout=3 * 3600))
        results["corpora"] = {"synthetic": {"source": str(source), "scale": scale}}
        write_result(out, results, partial=True)
    return finish(out, results, started, render)


def render(results: dict) -> str:
    """The search-side table (markdown) of a result file that has one."""
    syn = results.get("corpora", {}).get("synthetic")
    if not syn:
        return "(no synthetic rows in this file)"
    lines = ["### synthetic (search side)", "",
             "| chunks | dense kind | nprobe | dense p50 ms | p95 | recall@10 (questions) | recall@10 (mixed) | "
             "exact p50 ms | dense bytes/chunk | BM25 p50 ms | BM25 p95 | BM25 bytes/chunk |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in syn["scale"]:
        d, e, lex = row["dense_auto"], row.get("dense_exact") or row["dense_auto"], row["bm25"]
        mixed = d.get("recall_at_10_mixed", d.get("recall_at_10_near_data", float("nan")))
        lines.append(
            f"| {row['size']:,} | {d['kind']} | {d['nprobe'] or ''} | {d['query']['p50']:.2f} | "
            f"{d['query']['p95']:.2f} | {d['recall_at_10_questions']:.3f} | {mixed:.3f} | {e['query']['p50']:.2f} | "
            f"{d['file_bytes_per_chunk']:.0f} | "
            f"{lex['query']['p50']:.2f} | {lex['query']['p95']:.2f} | {lex['disk_bytes_per_chunk']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
