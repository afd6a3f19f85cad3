"""Draw the benchmarks' figures from their JSON: query latency against index size, build throughput per system.

    python -m benchmarks.plots benchmarks/results/side-by-side-rtqa-300-articles.json \
        benchmarks/results/search-latency-10k-100k-1m-chunks.json --out docs

Reads result files of ``benchmarks.compare`` (build throughput, from its RealTime QA slice) and
``benchmarks.search_scale`` (latency against size); one file may hold both (the run of 2026-11-23 did).
Writes ``bench-latency.png`` and ``bench-throughput.png`` (needs matplotlib, in the ``bench`` extra).
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
    for path in (plot_latency(results, args.out), plot_throughput(results, args.out)):
        if path:
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
