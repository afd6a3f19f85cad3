"""What every benchmark shares: paths, the corpora, timing and memory, worker processes and result files.

Every script of this package runs from the repository root as ``python -m benchmarks.NAME``. The corpora are
read from where they lie (``--rtqa``/``--data``, or ``$QA_RTQA``) and never copied into the repository; scratch
files and indexes go to ``--work`` (default ``~/.cache/qa/bench`` or ``$QA_BENCH_WORK``). A measurement that
must own its process (peak memory, cold start) runs as a worker: ``run_worker(fn, params)`` starts
``python -m benchmarks.harness MODULE:FUNCTION PARAMS_FILE`` and reads back the dict ``fn(params)`` returned.
Results are JSON files in ``benchmarks/results/`` named by what they measured (``result_path``).
"""

from __future__ import annotations

import gzip
import importlib
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BUNDLED = ROOT / "articles"
DEFAULT_RTQA = Path(os.environ.get("QA_RTQA") or ROOT.parent / "shared" / "rtqa-2022")
DEFAULT_WORK = Path(os.environ.get("QA_BENCH_WORK") or Path.home() / ".cache" / "qa" / "bench")
RTQA_HELP = (
    "RealTime QA 2022 is the public benchmark of github.com/realtimeqa/realtimeqa_public (folder past/2022), "
    "converted to articles.jsonl.gz + questions.jsonl as described in shared/rtqa-2022/README.md; "
    "pass its folder with --rtqa DIR (or $QA_RTQA), or leave it out with --corpora bundled"
)
RESULT_TAG = "BENCH-RESULT "


class BenchError(Exception):
    """The benchmark cannot run as asked; the message says what to do."""


# --------------------------------------------------------------------------- the machine and the process


def machine() -> dict:
    """CPU model, cores, memory and versions, so every figure names where it was taken."""
    cpu = ""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        cpu = platform.processor()
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    versions = {}
    from importlib import metadata

    for dist in ("qa", "torch", "sentence-transformers", "onnxruntime", "faiss-cpu", "bm25s", "langchain-community",
                 "langchain-huggingface", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": cpu or "unknown",
        "cores": cores(),
        "ram_gb": round(mem / 2**30, 1),
        "vnni": "avx512_vnni" in flags,
        "python": platform.python_version(),
        "load_before": os.getloadavg()[0],
        "versions": versions,
    }


def cores() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def quiet() -> None:
    """Offline models, no tokenizer threads, warnings only: the settings every run and worker starts with."""
    import logging
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING, format="bench: %(name)s: %(message)s")


def pin_threads(threads: int | None) -> None:
    """Give torch, ONNX Runtime and FAISS ``threads`` threads in this process and the workers it starts."""
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "QA_THREADS"):
            os.environ[name] = str(threads)


def run_cli(name: str, args, argv: Sequence[str] | None, render: Callable[[dict], str],
            run: Callable[..., int]) -> int:
    """The shared end of a measurement's ``main``: ``--render FILE`` prints an earlier result's table, else
    ``run(args, argv)``; a ``BenchError`` is one line and exit status 2, Ctrl-C exits 130."""
    quiet()
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0
    try:
        return run(args, argv if argv is not None else sys.argv[1:])
    except BenchError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def finish(out: Path, results: dict, started: float, render: Callable[[dict], str]) -> int:
    """The end of a measurement: its time and the machine's load after it, the result file, the table printed."""
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["machine"]["load_after"] = os.getloadavg()[0]
    write_result(out, results)
    print(render(results))
    log(f"results in {out} ({results['seconds']:.0f}s)")
    return 0


def log(message: str) -> None:
    """Progress for the person running the benchmark (stderr; stdout keeps the table)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 in milliseconds of ``seconds``, and how many there were."""
    import numpy as np

    arr = np.asarray(seconds, dtype=float) * 1000
    return {f"p{p}": round(float(np.percentile(arr, p)), 2) for p in (50, 95, 99)} | {"n": len(seconds)}


def disk_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_now_mb() -> float:
    """This process's resident memory now (MB)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def memory() -> dict:
    """This process's resident memory (MB): all of it, anonymous (heap) and file-backed (mapped index files)."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return {"rss_mb": out.get("VmRSS"), "anon_mb": out.get("RssAnon"), "file_mb": out.get("RssFile"),
            "peak_mb": out.get("VmHWM")}


# --------------------------------------------------------------------------- workers: one measurement, one process


def run_worker(fn: Callable[[dict], dict], params: dict, *, timeout: float = 3600) -> dict:
    """``fn(params)`` in a fresh Python process, so its peak RSS and start-up are its own.

    ``fn`` is a module-level function of ``benchmarks`` or ``training``; the result gains ``peak_rss_mb`` (the
    worker's) and ``process_seconds`` (the whole process, start to exit).
    """
    module = sys.modules[fn.__module__]
    spec = getattr(module, "__spec__", None)  # a script run with -m is __main__; its spec names the module
    target = f"{spec.name if spec else fn.__module__}:{fn.__name__}"
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="qa-bench-", delete=False) as fh:
        json.dump(params, fh)  # a file, not argv: query vectors are too long for a command line
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.harness", target, fh.name],
                              capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
    finally:
        os.unlink(fh.name)
    wall = time.perf_counter() - started
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
            result["process_seconds"] = round(wall, 2)
            return result
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
    raise BenchError(f"worker {target} failed (exit {proc.returncode}):\n{tail}")


def _worker_main(argv: Sequence[str]) -> int:
    """``MODULE:FUNCTION PARAMS_FILE``: run one worker and print its result on a tagged line."""
    if len(argv) != 2 or ":" not in argv[0]:
        print("usage: python -m benchmarks.harness MODULE:FUNCTION PARAMS_FILE", file=sys.stderr)
        return 2
    module_name, _, name = argv[0].partition(":")
    if module_name.split(".")[0] not in ("benchmarks", "training"):
        print(f"harness: {module_name} is not a module of benchmarks/ or training/", file=sys.stderr)
        return 2
    quiet()
    fn = getattr(importlib.import_module(module_name), name)
    result = fn(json.loads(Path(argv[1]).read_text()))
    result["peak_rss_mb"] = peak_rss_mb()
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- result files


def slug(part: object) -> str:
    """A piece of a result file name: lower case, runs of anything but letters, digits and dots become '-'."""
    return re.sub(r"[^a-z0-9.]+", "-", str(part).lower()).strip("-")


def count_label(n: int) -> str:
    """A size for a file name, three digits at most: 10000 -> "10k", 1003672 -> "1m", 500 -> "500"."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.3g}m"
    return f"{n / 1000:.3g}k" if n >= 1000 else str(n)


def result_path(*parts: object, out: Path | None = None) -> Path:
    """Where a run writes its figures: ``out`` when given, else ``benchmarks/results/PARTS.json``.

    ``parts`` name the measurement and its main parameters (empty ones are left out), e.g.
    ``("build-throughput", "rtqa-100-articles", "threads1")``. A name an earlier run holds gets ``-run2``,
    ``-run3``, ...: recorded figures are never overwritten unless ``--out`` says so.
    """
    if out is not None:
        return out
    stem = "-".join(s for s in (slug(p) for p in parts if p not in (None, "", False)) if s)
    path, n = RESULTS / f"{stem}.json", 2
    while path.exists():
        path, n = RESULTS / f"{stem}-run{n}.json", n + 1
    return path


def partial_path(path: Path) -> Path:
    """The file a long run keeps its figures so far in (removed when the result is written)."""
    return path.with_suffix(".partial.json")


def write_result(path: Path, results: dict | list, *, partial: bool = False) -> Path:
    """Write a result JSON (indented, one value a line); ``partial``: the run's figures so far, beside it."""
    target = partial_path(path) if partial else path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=1) + "\n")
    if not partial:
        partial_path(path).unlink(missing_ok=True)
    return target


def command_line(module: str, argv: Sequence[str]) -> str:
    """The command that reproduces this run, as recorded in its result file."""
    return " ".join(["python -m", module, *argv])


# --------------------------------------------------------------------------- RealTime QA 2022: the benchmark corpus


def rtqa_files(rtqa: Path) -> tuple[Path, Path]:
    """articles.jsonl.gz and questions.jsonl of a RealTime QA folder, or a BenchError naming the missing one."""
    articles, questions = rtqa / "articles.jsonl.gz", rtqa / "questions.jsonl"
    for path in (articles, questions):
        if not path.is_file():
            raise BenchError(f"{path} not found. {RTQA_HELP}")
    return articles, questions


def read_questions(folder: Path) -> list[dict]:
    """The questions.jsonl of a RealTime QA folder (2022 or 2024-2026), one dict a line."""
    path = folder / "questions.jsonl"
    if not path.is_file():
        raise BenchError(f"{path} not found: pass the folder that holds questions.jsonl and articles.jsonl.gz")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    raise BenchError(f"{path}: line {lineno} is not valid JSON") from None
    return rows


def read_rtqa(rtqa: Path) -> tuple[list[dict], list[dict]]:
    """Every article and every question of a RealTime QA folder."""
    articles_gz, _ = rtqa_files(rtqa)
    with gzip.open(articles_gz, "rt", encoding="utf-8") as fh:
        articles = [json.loads(line) for line in fh if line.strip()]
    return articles, read_questions(rtqa)


def write_jsonl_gz(rows: Sequence[dict], path: Path) -> Path:
    """``rows`` as a gzipped JSONL file (a corpus slice under ``--work``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def shuffled_weeks(rows: Sequence[dict]) -> tuple[dict[str, list[dict]], list[str]]:
    """The articles of each quiz week (by search date, sorted by id) and the weeks in a fixed shuffled order."""
    by_week: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["id"]):
        by_week.setdefault(row.get("published", ""), []).append(row)
    order = sorted(by_week)
    random.Random(1).shuffle(order)
    return by_week, order


def week_slice(rows: Sequence[dict], size: int) -> tuple[list[dict], set[str]]:
    """About ``size`` articles made of whole quiz weeks (so that week's questions can be answered from them).

    Weeks are taken in a fixed shuffled order; when one week is already more
    than ``size``, a fixed random part of it.
    """
    by_week, order = shuffled_weeks(rows)
    chosen: list[dict] = []
    weeks: set[str] = set()
    for week in order:
        if chosen and len(chosen) + len(by_week[week]) > size * 1.25:
            continue
        chosen += by_week[week]
        weeks.add(week)
        if len(chosen) >= size * 0.8:
            break
    if len(chosen) > size * 1.25:
        chosen = random.Random(2).sample(chosen, size)
    return chosen, weeks


def slice_questions(questions: Sequence[dict], articles: Sequence[dict], weeks: set[str]) -> list[dict]:
    """Questions asked up to 10 days before a chosen week's search date whose gold answer occurs in the slice."""
    days = [date.fromisoformat(w) for w in weeks if w]
    text = "\n".join(" ".join(a["text"].split()).casefold() for a in articles)
    out = []
    for q in questions:
        stamp = q["id"].split("_")[0]
        asked = date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]))
        golds = [g for g in q.get("answers", []) if isinstance(g, str) and g.strip()]
        recent = any(0 <= (d - asked).days <= 10 for d in days)
        if recent and any(" ".join(g.split()).casefold() in text for g in golds):
            out.append({"q": q["q"], "answers": golds})
    return out


def edited(row: dict, n: int) -> dict:
    """A new article made from a real one (new id and text, so it is embedded, not reused)."""
    return {**row, "id": f"{row['id']}-update-{n}", "url": row.get("url", "") + f"?update={n}",
            "title": "Update: " + row.get("title", ""), "text": row["text"] + f"\n\nThis article was updated ({n})."}


# --------------------------------------------------------------------------- gold strings


def has_gold(text: str, golds: Sequence[str]) -> bool:
    """Whether any gold answer string occurs in ``text`` (case-insensitive, whitespace collapsed)."""
    from qa.text import collapse_whitespace

    hay = collapse_whitespace(text).casefold()
    return any(collapse_whitespace(g).casefold() in hay for g in golds)


def index_text(index) -> str:
    """All of an index's article texts, whitespace collapsed and case-folded, for gold-string lookups."""
    from qa.text import collapse_whitespace

    return "\n".join(collapse_whitespace(a.text).casefold() for a in index.articles.values())


# --------------------------------------------------------------------------- RealTime QA 2024-2026: the training weeks

#: Every ``WEEK_STRIDE``-th week of the data (sorted by date, from the first): 33 of the 131 weeks, spread
#: evenly over 2024-2026. Embedding their 70,880 chunks is the cost (about 10 minutes at 120 chunks/s, quiet).
WEEK_STRIDE = 4


def week_of(question: dict) -> str:
    """The quiz week (YYYYMMDD) a question was asked in."""
    return question["id"].split("_")[0]


def chosen_weeks(questions: Sequence[dict], count: int | None = None, stride: int = WEEK_STRIDE) -> list[str]:
    """Every ``stride``-th week of the questions' weeks; the first ``count`` of them when given."""
    weeks = sorted({week_of(q) for q in questions})[::stride]
    return weeks[:count] if count else weeks


def other_week(week: str, weeks: Sequence[str]) -> str:
    """The week whose index a question is asked of as unanswerable: the first chosen week (its own: the second)."""
    return weeks[1] if week == weeks[0] else weeks[0]


def week_index_dir(work: Path, backend: str, week: str) -> Path:
    """Where the ranker's training builds one week's index (``python -m training.ranker.train``)."""
    return work / backend / f"week-{week}"


def question_runs(questions: Sequence[dict], week: str, index, other_index) -> Iterator[tuple[int, dict, list, list]]:
    """Each question of ``week`` that has gold strings: (its number in the file, the question, its gold strings,
    the indexes it is asked of with whether it is answerable there). It is asked of its own week's ``index``, and of
    ``other_index`` as unanswerable when none of its gold strings occurs in any article there."""
    from qa.text import collapse_whitespace

    other_text = index_text(other_index)
    for q_i, q in enumerate(questions):
        golds = [a for a in q.get("answers", []) if isinstance(a, str) and a.strip()]
        if week_of(q) != week or not golds:
            continue
        asks = [(index, True)]
        if not any(collapse_whitespace(g).casefold() in other_text for g in golds):
            asks.append((other_index, False))
        yield q_i, q, golds, asks


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
