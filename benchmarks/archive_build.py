"""A news archive given as one big .jsonl.gz (issue 21): build time and peak memory, then a cold `qa ask`.

    python -m benchmarks.archive_build --data ../shared/rtqa-2022 [--copies 5] [--work DIR]

The RealTime QA 2022 corpus is written ``--copies`` times into one gzipped
JSONL file in ``--work`` (each copy's ``url`` and ``id`` made unique, so it is
a new article; the text is the same), as an archive dump would come. Then, each
as a whole ``qa`` process whose peak resident memory is its own (``wait4``):

* ``qa build FILE --index DIR --model hash-384 --json``: the hash embedder
  gives vectors of the real model's width, so the files weigh what they would,
  and no model time counts;
* ``qa ask QUESTION --index DIR --json`` from cold (median of ``--repeats``);
* ``qa build --optimize`` on the result.

Results go to ``benchmarks/results/archive-build-N-articles[-LABEL].json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import BenchError, count_label, disk_bytes, log

#: What issue 21 asks of the five-fold RealTime QA 2022 archive.
TARGETS = {"build_peak_mb": 1536, "ask_s": 2.0, "ask_peak_mb": 600}
QUESTION = "How many troops did North Korea send to Russia?"


def write_archive(rows: Sequence[dict], copies: int, path: Path) -> int:
    """``copies`` of ``rows`` as one .jsonl.gz (kept if already there); returns the number of articles."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) as fh:
            for copy in range(copies):
                for row in rows:
                    url = row.get("url") or row.get("id") or ""
                    fh.write(json.dumps({**row, "url": f"{url}#copy{copy}", "id": f"{row.get('id', '')}-{copy}"},
                                        ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    return copies * len(rows)


def run_qa(*args: str, timeout: float = 4 * 3600) -> dict:
    """One ``qa`` process: its wall time, peak resident memory (its own, from ``wait4``), exit status and stdout."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "qa.app.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(harness.ROOT))
    deadline = started + timeout
    while True:  # wait4 gives this child's own rusage (RUSAGE_CHILDREN would keep the largest child's peak)
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            raise BenchError(f"qa {' '.join(args)} took over {timeout:.0f} s")
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    out, err = proc.stdout.read(), proc.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise BenchError(f"qa {' '.join(args)} failed ({code}): {err.strip()[-500:]}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "stdout": out}


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Write the archive, build it, ask from cold, optimize; write the result file."""
    work: Path = args.work
    root = harness.ROOT.resolve()
    if work.resolve() == root or root in work.resolve().parents:
        raise BenchError(f"--work {work} is inside the repository; data stays outside it")
    rows, _ = harness.read_rtqa(args.data)
    archive = work / f"rtqa2022-x{args.copies}.jsonl.gz"
    articles = write_archive(rows, args.copies, archive)
    out = harness.result_path("archive-build", count_label(articles), "articles", args.label, out=args.out)
    results: dict = {"machine": harness.machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "command": harness.command_line("benchmarks.archive_build", argv),
                     "archive": {"articles": articles, "copies": args.copies, "bytes": archive.stat().st_size}}
    started = time.perf_counter()
    index = work / f"index-x{args.copies}"
    if index.exists():
        import shutil

        shutil.rmtree(index)
    log(f"building {articles:,} articles from one {archive.stat().st_size / 1e6:.0f} MB .jsonl.gz")
    build = run_qa("build", str(archive), "--index", str(index), "--model", args.model, "--json")
    report = json.loads(build.pop("stdout"))
    results["build"] = {**build, "chunks": report["chunks"], "articles": report["articles"],
                        "skipped": len(report.get("skipped", [])), "disk_mb": round(disk_bytes(index) / 1e6, 1)}
    manifest = json.loads((index / "manifest.json").read_text())
    results["build"]["segments"] = [{"chunks": s["chunks"], "kind": s["dense"]["kind"]} for s in manifest["segments"]]
    results["build"]["manifest_mb"] = round((index / "manifest.json").stat().st_size / 1e6, 1)
    log(f"built {report['chunks']:,} chunks in {build['seconds']:.0f} s at {build['peak_rss_mb']:.0f} MB peak")
    asks = []
    for _ in range(args.repeats):
        asks.append(run_qa("ask", QUESTION, "--index", str(index), "--json"))
        asks[-1]["quotes"] = len(json.loads(asks[-1].pop("stdout"))["quotes"])
    results["ask"] = {"seconds": statistics.median(a["seconds"] for a in asks),
                      "peak_rss_mb": max(a["peak_rss_mb"] for a in asks), "all": asks}
    log(f"cold qa ask: {results['ask']['seconds']:.2f} s at {results['ask']['peak_rss_mb']:.0f} MB peak")
    optimize = run_qa("build", str(archive), "--index", str(index), "--model", args.model, "--optimize", "--json")
    optimize.pop("stdout")
    results["optimize"] = optimize
    results["targets"] = {
        "build_peak_mb": {"figure": build["peak_rss_mb"], "met": build["peak_rss_mb"] <= TARGETS["build_peak_mb"]},
        "ask_s": {"figure": results["ask"]["seconds"], "met": results["ask"]["seconds"] <= TARGETS["ask_s"]},
        "ask_peak_mb": {"figure": results["ask"]["peak_rss_mb"],
                        "met": results["ask"]["peak_rss_mb"] <= TARGETS["ask_peak_mb"]},
    }
    return harness.finish(out, results, started, render)


def render(results: dict) -> str:
    """The summary of a result file."""
    b, a, o, t = results["build"], results["ask"], results["optimize"], results["targets"]
    met = lambda k: "met" if t[k]["met"] else "MISSED"  # noqa: E731
    return "\n".join([
        f"Archive: {results['archive']['articles']:,} articles in one {results['archive']['bytes'] / 1e6:.0f} MB "
        f".jsonl.gz -> {b['chunks']:,} chunks in {len(b['segments'])} segments, {b['disk_mb']:,.0f} MB on disk "
        f"(manifest {b['manifest_mb']} MB).",
        f"- qa build: {b['seconds']:.0f} s, peak {b['peak_rss_mb']:.0f} MB (target <= {TARGETS['build_peak_mb']} MB: "
        f"{met('build_peak_mb')})",
        f"- cold qa ask: {a['seconds']:.2f} s (target <= {TARGETS['ask_s']} s: {met('ask_s')}), peak "
        f"{a['peak_rss_mb']:.0f} MB (target <= {TARGETS['ask_peak_mb']} MB: {met('ask_peak_mb')})",
        f"- qa build --optimize: {o['seconds']:.0f} s, peak {o['peak_rss_mb']:.0f} MB",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: one run, or ``--render`` an earlier result."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.archive_build", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=harness.DEFAULT_RTQA, help="RealTime QA 2022 folder")
    parser.add_argument("--copies", type=int, default=5, help="copies of the corpus in the archive (default 5)")
    parser.add_argument("--model", default="hash-384", help="embedding model for the build (default hash-384)")
    parser.add_argument("--repeats", type=int, default=3, help="cold asks (median)")
    parser.add_argument("--work", type=Path, default=harness.DEFAULT_WORK / "archive", help="scratch folder")
    parser.add_argument("--label", default="", help="added to the --out name")
    parser.add_argument("--out", type=Path, default=None, help="result JSON")
    parser.add_argument("--render", type=Path, default=None, help="print the summary of a result JSON and exit")
    return harness.run_cli("archive_build", parser.parse_args(argv), argv, render, run)


if __name__ == "__main__":
    sys.exit(main())
