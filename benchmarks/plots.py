"""Draw the benchmarks' figures from their JSON: query latency against index size, build throughput per system,
a whole answer against archive size.

    python -m benchmarks.plots benchmarks/results/side-by-side-rtqa-300-articles.json \
        benchmarks/results/search-latency-10k-100k-1m-chunks.json --out docs
    python -m benchmarks.plots benchmarks/results/archive-scale-10k-1m-10m-chunks-bounds-s5.json --out docs

Reads result files of ``benchmarks.compare`` (build throughput, from its RealTime QA slice),
``benchmarks.search_scale`` (latency against size; one file may hold both, as the run of 2026-11-23 did) and
``benchmarks.archive_scale`` (a whole answer, cold start and memory at 10k, 1M and 10M chunks). Writes
``bench-latency.png``, ``bench-throughput.png`` and ``bench-archive.png`` for the data given (needs matplotlib,
in the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: The run of 2026-11-23, both measurements in one file (docs/benchmarks.md's figures).
DEFAULT_RESULTS = Path("benchmarks/results/"
                       "side-by-side-bundled-rtqa-172-articles-whole-rtqa-search-latency-to-1m-chunks.json")


def plot_latency(results: dict, out: Path) -> Path | None:
    """Dense (auto and exact) and BM25 query p50 against the number of chunks, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = results["corpora"].get("synthetic", {}).get("scale")
    if not scale:
        return None
    sizes = [row["size"] for row in scale]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot(sizes, [row["dense_auto"]["query"]["p50"] for row in scale], "o-", label="dense, as built (flat, then IVF)")
    exact = [(row["size"], row["dense_exact"]["query"]["p50"]) for row in scale if row.get("dense_exact")]
    if exact:
        ax.plot(*zip(*exact), "s--", label="dense, exact flat scan")
    ax.plot(sizes, [row["bm25"]["query"]["p50"] for row in scale], "^-", label="BM25 (bm25s, memory-mapped)")
    for row in scale:
        if row["dense_auto"]["kind"] != "IndexFlatIP":
            ax.annotate(f"recall@10 {row['dense_auto']['recall_at_10_questions']:.2f}",
                        (row["size"], row["dense_auto"]["query"]["p50"]), textcoords="offset points", xytext=(-40, 8),
                        fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chunks in the index")
    ax.set_ylabel("query p50 (ms), top 50")
    ax.set_title("Search latency against index size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, results, out / "bench-latency.png")


def plot_throughput(results: dict, out: Path) -> Path | None:
    """Build throughput (chunks/s) of every embedding system and backend on the RealTime QA slice (BM25 has no model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = results["corpora"].get("rtqa_slice", {}).get("systems")
    if not systems:
        return None
    names = [n for n in systems if n != "bm25"]
    rates = [systems[n]["build"]["chunks_per_s"] for n in names]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    bars = ax.barh(names, rates, color=["#2b7bba" if n.startswith("ours") else "#999999" for n in names])
    ref = systems.get("recipe", {}).get("build", {}).get("chunks_per_s")
    for bar, rate in zip(bars, rates):
        label = f"{rate:.0f}/s" + (f"  ({rate / ref:.1f}x recipe)" if ref else "")
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + label, va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("chunks per second, full build (load, chunk, embed, index, save)")
    ax.set_title(f"Build throughput, RealTime QA slice ({results['corpora']['rtqa_slice']['articles']} articles)")
    ax.set_xlim(0, max(rates) * 1.45)
    return _save(fig, results, out / "bench-throughput.png")


def plot_archive(results: dict, out: Path) -> Path | None:
    """A warm answer (p50, p95, and its BM25 and dense steps) against chunks, with the 2x-the-smallest target; cold
    start to first answer beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted((v for v in results.get("sizes", {}).values() if v.get("answers")), key=lambda v: v["chunks"])
    if len(rows) < 2:
        return None
    chunks = [r["chunks"] for r in rows]
    step = lambda name: [r["answers"]["steps"][name]["p50"] for r in rows]  # noqa: E731
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 4.0), dpi=120, gridspec_kw={"width_ratios": [3, 2]})
    left.plot(chunks, [r["answers"]["ask"]["p50"] for r in rows], "o-", label="whole answer, p50")
    left.plot(chunks, [r["answers"]["ask"]["p95"] for r in rows], "o:", label="whole answer, p95")
    left.plot(chunks, step("bm25_search"), "^-", label="BM25 search, p50")
    left.plot(chunks, step("dense_search"), "s-", label="dense search, p50")
    left.plot(chunks, step("compose"), "d--", label="composing the answer (reader), p50")
    left.axhline(2 * rows[0]["answers"]["ask"]["p50"], color="grey", lw=0.8, ls="--")
    left.text(chunks[0], 2 * rows[0]["answers"]["ask"]["p50"] * 1.06, "target at 10M: 2x the smallest's p50",
              fontsize=7, color="grey")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("chunks in the index")
    left.set_ylabel("ms, warm, 60 questions")
    left.set_title("A warm answer against archive size")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7, loc="lower right")
    right.plot(chunks, [r["cold"]["seconds"] for r in rows], "o-", color="#2b7bba")
    for r in rows:
        right.annotate(f"{r['cold']['peak_rss_mb']:,.0f} MB peak", (r["chunks"], r["cold"]["seconds"]),
                       textcoords="offset points", xytext=(-30, 8), fontsize=7)
    right.set_xscale("log")
    right.set_ylim(0, max(5.5, max(r["cold"]["seconds"] for r in rows) * 1.3))
    right.axhline(5, color="grey", lw=0.8, ls="--")
    right.text(chunks[0], 5.1, "target at 10M: 5 s (1M: 3 s)", fontsize=7, color="grey")
    right.set_xlabel("chunks in the index")
    right.set_ylabel("seconds, median of fresh processes")
    right.set_title("Process start to first answer")
    right.grid(True, which="both", alpha=0.3)
    return _save(fig, results, out / "bench-archive.png")


def _save(fig, results: dict, path: Path) -> Path:
    """Add the machine footer, write ``fig`` to ``path`` and free it."""
    import matplotlib.pyplot as plt

    _footer(fig, results)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _footer(fig, results: dict) -> None:
    m = results["machine"]
    fig.text(0.01, 0.005, f"{m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB; {results['started']}", fontsize=6, alpha=0.7)


def merged(paths: list[Path]) -> dict:
    """One result dict from several files: their corpora together, the machine and start of the first."""
    results: dict = {}
    for path in paths:
        data = json.loads(path.read_text())
        corpora = {**results.get("corpora", {}), **data.get("corpora", {})}
        results = {**data, **results, "corpora": corpora}
    return results


def main(argv: list[str] | None = None) -> int:
    """The command line: draw every figure the given result files have data for."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plots", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="*", default=[DEFAULT_RESULTS],
                        help=f"result JSON files (default {DEFAULT_RESULTS})")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    for path in args.results:
        if not path.is_file():
            print(f"plots: {path} not found: run python -m benchmarks.compare (and benchmarks.search_scale) first",
                  file=sys.stderr)
            return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plots: matplotlib is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    results = merged(args.results)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in (plot_latency(results, args.out), plot_throughput(results, args.out), plot_archive(results, args.out)):
        if path:
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
