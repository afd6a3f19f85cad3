"""Speed and scale, side by side: this project, the LangChain tutorial recipe and BM25 alone.

    python benchmarks/bench.py            # the full run (about 30 minutes on 2 cores; the first run also
                                          #   builds and caches the full RealTime QA index)
    python benchmarks/bench.py --quick    # bundled articles and a small RealTime QA slice (a few minutes)

One run, same corpus, same machine, for every system:

* **build**: full build time and chunks/s (reading the files, cleaning,
  chunking, embedding, indexing, saving);
* **incremental**: adding one article, then 1% more articles, to a built index;
* **warm query**: latency p50/p95/p99 of the full answer (ours: retrieval and
  quote selection; recipe: ``similarity_search``; BM25: top chunks);
* **cold start**: process start to first answer, in a fresh subprocess;
* **peak memory**: RSS of the build and of the query process, each system in
  its own subprocess so figures do not mix;
* **disk**: the index folder's size;
* **scale** (search side): the real RealTime QA vectors replicated with
  noise up to 1,000,000 chunks: dense query p50, recall@10 against exact
  search, BM25 query p50, full-answer p50, memory per chunk.

Results go to ``benchmarks/results/bench-*.json`` (machine-readable, with the
machine) and a table on stdout; ``benchmarks/plots.py`` draws the PNGs in
docs/. Nothing here is part of the tests.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "articles"
DEFAULT_RTQA = Path(os.environ.get("QA_RTQA") or ROOT.parent / "shared" / "rtqa-2022")
DEFAULT_WORK = Path(os.environ.get("QA_BENCH_WORK") or Path.home() / ".cache" / "qa" / "bench")
RESULTS = ROOT / "benchmarks" / "results"
SYSTEMS = ("ours", "recipe", "bm25")
RESULT_TAG = "BENCH-RESULT "
RTQA_HELP = (
    "RealTime QA 2022 is the public benchmark of github.com/realtimeqa/realtimeqa_public (folder past/2022), "
    "converted to articles.jsonl.gz + questions.jsonl as described in shared/rtqa-2022/README.md; "
    "pass its folder with --rtqa DIR (or $QA_RTQA), or leave it out with --corpora bundled"
)


class BenchError(Exception):
    """The benchmark cannot run as asked; the message says what to do."""


# --------------------------------------------------------------------------- machine and helpers


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
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gb": round(mem / 2**30, 1),
        "vnni": "avx512_vnni" in flags,
        "python": platform.python_version(),
        "load_before": os.getloadavg()[0],
        "versions": versions,
    }


def percentiles(values: Sequence[float]) -> dict[str, float]:
    import numpy as np

    arr = np.asarray(values, dtype=float) * 1000
    return {f"p{p}": round(float(np.percentile(arr, p)), 2) for p in (50, 95, 99)} | {"n": len(values)}


def disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def quiet() -> None:
    import logging
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING, format="bench: %(name)s: %(message)s")


def run_worker(name: str, params: dict, *, timeout: float = 3600, script: Path | None = None) -> dict:
    """Run one measurement in a fresh Python process; its peak RSS is its own.

    ``script`` is the benchmark whose ``--worker NAME`` runs it (default this one).
    """
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="qa-bench-", delete=False) as fh:
        json.dump(params, fh)  # a file, not argv: query vectors are too long for a command line
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(script or __file__).resolve()), "--worker", name, fh.name],
            capture_output=True, text=True, timeout=timeout, cwd=str(ROOT),
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
        )
    finally:
        os.unlink(fh.name)
    wall = time.perf_counter() - started
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
            result["process_seconds"] = round(wall, 2)
            return result
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
    raise BenchError(f"worker {name} failed (exit {proc.returncode}):\n{tail}")


def emit(result: dict) -> None:
    result["peak_rss_mb"] = peak_rss_mb()
    print(RESULT_TAG + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- the three systems


def _load_articles(paths: Sequence[str]):
    """Every readable article under ``paths`` (each source once), as a build reads them; bad files are left out."""
    from qa.ingest.discover import discover_files
    from qa.ingest.formats import LoadError
    from qa.ingest.load import load_file

    articles = {}
    for path in discover_files(paths)[0]:
        try:
            found = load_file(path).articles
        except LoadError:
            continue
        for article in found:
            articles.setdefault(article.source, article)
    return list(articles.values())


def _token_counter():
    from tokenizers import Tokenizer

    from qa.embed.names import bundled_model_path

    tok = Tokenizer.from_file(str(bundled_model_path() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def _recipe_embeddings():
    """``HuggingFaceEmbeddings`` on the bundled model, from langchain-huggingface or langchain-community."""
    from qa.embed.names import bundled_model_path

    try:
        from langchain_huggingface import HuggingFaceEmbeddings
    except ImportError:
        from langchain_community.embeddings import HuggingFaceEmbeddings
    return HuggingFaceEmbeddings(model_name=str(bundled_model_path()))


def _recipe_documents(paths: Sequence[str]):
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    articles = _load_articles(paths)
    return splitter.split_documents([Document(page_content=a.text, metadata={"source": a.source}) for a in articles])


def worker_build(p: dict) -> dict:
    """Full build of one system from ``p["paths"]`` into ``p["index"]``."""
    index = Path(p["index"])
    shutil.rmtree(index, ignore_errors=True)
    system = p["system"]
    started = time.perf_counter()
    if system == "ours":
        from qa.index.build import build_index
        from qa.embed.factory import get_embedder

        embedder = get_embedder(backend=p.get("backend"))
        extra = {"model": embedder.name}
        if p.get("ray_workers"):
            # A local Ray with this machine's CPUs, started inside the measured process (a cold cluster
            # start is part of what a one-off `qa build --ray` costs; on a standing cluster it is not).
            import ray

            from qa.embed.ray import RayEmbedder

            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False)
            extra |= {"ray_start_s": round(time.perf_counter() - started, 2), "ray_workers": p["ray_workers"]}
            embedder = RayEmbedder(embedder, workers=int(p["ray_workers"]), threads=1)
        stages: dict[str, float] = {}

        def progress(stage: str, done: int, total: int) -> None:
            now = time.perf_counter() - started
            stages.setdefault(stage + "_start", now)
            stages[stage + "_end"] = now

        report = build_index(p["paths"], index, embedder=embedder, full=True, progress=progress)
        chunks, articles = report.chunks, report.articles
        extra["embed_s"] = round(stages.get("embed_end", 0) - stages.get("chunk_end", 0), 2)
        if p.get("ray_workers"):
            import ray

            ray.shutdown()
    elif system == "recipe":
        from langchain_community.vectorstores import FAISS

        docs = _recipe_documents(p["paths"])
        store = FAISS.from_documents(docs, _recipe_embeddings())
        store.save_local(str(index))
        chunks, articles, extra = len(docs), len({d.metadata["source"] for d in docs}), {}
    else:
        from qa.ingest.chunk import chunk_article
        from qa.index.lexical import Postings
        from qa.settings import ChunkSettings

        count = _token_counter()
        texts, sources = [], []
        for article in _load_articles(p["paths"]):
            for chunk in chunk_article(article, ChunkSettings(), count):
                texts.append(chunk.text)
                sources.append(article.source)
        Postings.build(texts).save(index / "bm25")
        (index / "chunks.json").write_text(json.dumps({"texts": texts, "sources": sources}))
        chunks, articles, extra = len(texts), len(set(sources)), {}
    seconds = time.perf_counter() - started
    return {"system": system, "seconds": round(seconds, 2), "chunks": chunks, "articles": articles,
            "chunks_per_s": round(chunks / seconds, 1), "disk_mb": round(disk_bytes(index) / 1e6, 1), **extra}


def worker_increment(p: dict) -> dict:
    """Add the files in ``p["added"]`` to the index in ``p["index"]`` built from ``p["paths"]``."""
    index = Path(p["index"])
    system = p["system"]
    started = time.perf_counter()
    extra: dict = {}
    if system == "ours":
        import cProfile
        import pstats

        from qa.index.build import build_index
        from qa.index.reader import read_manifest

        from qa.embed.factory import get_embedder

        embedder = get_embedder(read_manifest(index).model)
        embedder.encode(["warm up"])  # model load is not part of the rebuild
        started = time.perf_counter()
        stages: dict[str, float] = {}

        def progress(stage: str, done: int, total: int) -> None:
            stages.setdefault(stage, time.perf_counter() - started)

        profile = cProfile.Profile() if p.get("profile") else None
        if profile:
            profile.enable()
        report = build_index([*p["paths"], *p["added"]], index, embedder=embedder, progress=progress)
        if profile:
            profile.disable()
            stats = pstats.Stats(profile)
            top = sorted(stats.stats.items(), key=lambda kv: -kv[1][3])  # cumulative time
            extra["profile"] = [
                {"function": f"{Path(fn[0]).name}:{fn[1]}:{fn[2]}", "cumulative_s": round(v[3], 3)}
                for fn, v in top[:40] if "site-packages" not in fn[0] or v[3] > 0.5
            ][:25]
        extra |= {"embedded": report.embedded, "reused": report.reused, "stage_start_s": {k: round(v, 2) for k, v in stages.items()}}
    elif system == "recipe":
        from langchain_community.vectorstores import FAISS

        embeddings = _recipe_embeddings()
        embeddings.embed_query("warm up")
        started = time.perf_counter()
        store = FAISS.load_local(str(index), embeddings, allow_dangerous_deserialization=True)
        docs = _recipe_documents(p["added"])
        store.add_documents(docs)
        store.save_local(str(index))
        extra = {"embedded": len(docs), "note": "load_local + add_documents + save_local (appends; no change detection)"}
    else:
        extra = {"note": "bm25s has no incremental update: full re-index"}
        result = worker_build({**p, "paths": [*p["paths"], *p["added"]]})
        return {"system": system, "seconds": result["seconds"], **extra}
    return {"system": system, "seconds": round(time.perf_counter() - started, 2), **extra}


class _Answerer:
    """One object per system with ``ask(question)``, loaded from its index folder."""

    def __init__(self, system: str, index: Path) -> None:
        self.system = system
        if system == "ours":
            from qa.answer.bot import Bot

            self.bot = Bot.load(index)
        elif system == "recipe":
            from langchain_community.vectorstores import FAISS

            self.store = FAISS.load_local(str(index), _recipe_embeddings(), allow_dangerous_deserialization=True)
        else:
            import numpy as np

            from qa.index.lexical import Lexical, Postings

            postings = Postings.load(index / "bm25", mmap=True)
            self.lexical = Lexical([(postings, np.arange(postings.n_docs, dtype=np.int64))])
            self.texts = json.loads((index / "chunks.json").read_text())["texts"]

    def ask(self, question: str, k: int = 3) -> list[str]:
        if self.system == "ours":
            return [q.text for q in self.bot.ask(question, k=k).quotes]
        if self.system == "recipe":
            return [d.page_content for d in self.store.similarity_search(question, k=k)]
        rows, _ = self.lexical.search(question, k)
        return [self.texts[r] for r in rows.tolist()]


def worker_query(p: dict) -> dict:
    """Warm latency of the full answer over ``p["questions"]`` (after ``p["warmup"]`` unmeasured ones)."""
    answerer = _Answerer(p["system"], Path(p["index"]))
    questions = p["questions"]
    for q in questions[: p.get("warmup", 3)]:
        answerer.ask(q)
    times = []
    for q in questions:
        started = time.perf_counter()
        answerer.ask(q)
        times.append(time.perf_counter() - started)
    return {"system": p["system"], **percentiles(times)}


def worker_recall(p: dict) -> dict:
    """Answer-recall@k: the share of questions with a gold answer (case-insensitive) in the top ``k`` texts shown."""
    answerer = _Answerer(p["system"], Path(p["index"]))
    k = p.get("k", 5)
    hits = {1: 0, 3: 0, 5: 0}
    for item in p["items"]:
        texts = [" ".join(t.split()).casefold() for t in answerer.ask(item["q"], k=k)]
        golds = [" ".join(g.split()).casefold() for g in item["answers"]]
        for cut in hits:
            hits[cut] += any(g in t for g in golds for t in texts[:cut])
    n = max(1, len(p["items"]))
    return {"system": p["system"], "questions": len(p["items"]), **{f"recall_at_{c}": round(h / n, 4) for c, h in hits.items()}}


def worker_cold(p: dict) -> dict:
    """Load and answer one question; the parent measures from process start."""
    answerer = _Answerer(p["system"], Path(p["index"]))
    answerer.ask(p["question"])
    return {"system": p["system"], "answered_at": time.time()}


def cold_start(system: str, index: Path, question: str, repeats: int) -> dict:
    """Process start to first answer (median of ``repeats`` fresh processes)."""
    times, rss = [], []
    for _ in range(repeats):
        started = time.time()
        result = run_worker("cold", {"system": system, "index": str(index), "question": question})
        times.append(result["answered_at"] - started)
        rss.append(result["peak_rss_mb"])
    times.sort()
    return {"seconds": round(times[len(times) // 2], 2), "all": [round(t, 2) for t in times], "peak_rss_mb": max(rss)}


# --------------------------------------------------------------------------- scale (search side)


def worker_scale(p: dict) -> dict:
    """Dense and BM25 search at ``p["size"]`` chunks made from a real index's vectors and texts."""
    import numpy as np

    from qa.index.dense import build_dense, calibration_queries, exact_top, read_dense, recall_at, search_dense, write_dense
    from qa.index.lexical import Lexical, Postings, tokenize
    from qa.index.reader import load_index

    size, work = int(p["size"]), Path(p["work"])
    source = load_index(Path(p["source"]), checksums=False)
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
        rss_before = _rss_now()
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
            "rss_after_open_and_queries_mb": round(_rss_now() - rss_before, 1),
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
    rss_before = _rss_now()
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
                   "rss_after_open_and_queries_mb": round(_rss_now() - rss_before, 1)}
    shutil.rmtree(folder, ignore_errors=True)
    return out


def _rss_now() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


# --------------------------------------------------------------------------- corpora


def rtqa_files(rtqa: Path) -> tuple[Path, Path]:
    articles, questions = rtqa / "articles.jsonl.gz", rtqa / "questions.jsonl"
    for path in (articles, questions):
        if not path.is_file():
            raise BenchError(f"{path} not found. {RTQA_HELP}")
    return articles, questions


def read_rtqa(rtqa: Path) -> tuple[list[dict], list[dict]]:
    articles_gz, questions_path = rtqa_files(rtqa)
    with gzip.open(articles_gz, "rt", encoding="utf-8") as fh:
        articles = [json.loads(line) for line in fh if line.strip()]
    questions = [json.loads(line) for line in questions_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return articles, questions


def write_jsonl_gz(rows: Sequence[dict], path: Path) -> Path:
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
    from datetime import date

    days = [date.fromisoformat(w) for w in weeks if w]
    text = "\n".join(" ".join(a["text"].split()).casefold() for a in articles)
    out = []
    for q in questions:
        stamp = q["id"].split("_")[0]
        asked = date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]))
        golds = [g for g in q.get("answers", []) if isinstance(g, str) and g.strip()]
        if any(0 <= (d - asked).days <= 10 for d in days) and any(" ".join(g.split()).casefold() in text for g in golds):
            out.append({"q": q["q"], "answers": golds})
    return out


def edited(row: dict, n: int) -> dict:
    """A new article made from a real one (new id and text, so it is embedded, not reused)."""
    return {**row, "id": f"{row['id']}-update-{n}", "url": row.get("url", "") + f"?update={n}",
            "title": "Update: " + row.get("title", ""), "text": row["text"] + f"\n\nThis article was updated ({n})."}


# --------------------------------------------------------------------------- the run


def section_systems(label: str, paths: list[str], added_one: list[str], added_pct: list[str], questions: list[str],
                    work: Path, systems: Sequence[str], backends: Sequence[str], cold_repeats: int,
                    items: Sequence[dict] = (), ray_workers: Sequence[int] = (), builds_only: bool = False) -> dict:
    """Build, increment, query and cold start for each system on one corpus; then our default backend's build
    with its embedding on 1, 2, ... Ray workers (same texts, each build a whole process)."""
    out: dict = {}
    if ray_workers and "ours" in systems:
        try:
            import ray  # noqa: F401
        except ImportError:
            log("Ray rows skipped: ray is not installed (pip install -e '.[ray]')")
            ray_workers = ()
    for system in systems:
        variants = [f"ours-{b}" for b in backends] if system == "ours" else [system]
        for variant in variants:
            backend = variant.split("-", 1)[1] if variant.startswith("ours-") else None
            index = work / label / variant
            log(f"[{label}] {variant}: build")
            build = run_worker("build", {"system": system, "paths": paths, "index": str(index), "backend": backend})
            entry = {"build": build}
            if builds_only:
                out[variant] = entry
                continue
            if items:
                log(f"[{label}] {variant}: answer recall")
                entry["recall"] = run_worker("recall", {"system": system, "index": str(index), "items": list(items)})
            if variant == variants[0]:
                log(f"[{label}] {variant}: query")
                entry["query"] = run_worker("query", {"system": system, "index": str(index), "questions": questions})
                log(f"[{label}] {variant}: cold start")
                entry["cold"] = cold_start(system, index, questions[0], cold_repeats)
                if added_one:
                    log(f"[{label}] {variant}: add one article")
                    entry["add_one"] = run_worker("increment", {"system": system, "index": str(index), "paths": paths,
                                                                "added": added_one})
                if added_pct:
                    log(f"[{label}] {variant}: add 1% more articles")
                    entry["add_pct"] = run_worker("increment", {"system": system, "index": str(index),
                                                                "paths": [*paths, *added_one], "added": added_pct})
            out[variant] = entry
        if system == "ours":
            for n in ray_workers:
                variant = f"ours-{backends[0]}-ray{n}"
                log(f"[{label}] {variant}: build with {n} Ray worker(s), 1 CPU each")
                build = run_worker("build", {"system": system, "paths": paths, "index": str(work / label / variant),
                                             "backend": backends[0], "ray_workers": n})
                out[variant] = {"build": build}
    return out


def full_rtqa_index(articles_gz: Path, work: Path, rebuild: bool) -> tuple[Path, dict]:
    """Our index of the whole RealTime QA corpus, built once and cached in ``work`` (with its build figures)."""
    index = work / "rtqa-full"
    stamp = work / "rtqa-full-build.json"
    if rebuild or not stamp.exists() or not (index / "manifest.json").exists():
        log(f"[rtqa-full] building our index of the whole corpus once (cached in {index}; tens of minutes)")
        result = run_worker("build", {"system": "ours", "paths": [str(articles_gz)], "index": str(index)}, timeout=4 * 3600)
        result["measured"] = time.strftime("%Y-%m-%d %H:%M")
        result["load_during"] = os.getloadavg()[0]
        stamp.write_text(json.dumps(result))
    return index, json.loads(stamp.read_text())


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def embed_questions(questions: list[str]) -> list[list[float]]:
    from qa.embed.factory import get_embedder

    return get_embedder().encode(questions).tolist()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="bundled articles + a small RealTime QA slice, sizes up to 100k")
    parser.add_argument("--rtqa", type=Path, default=DEFAULT_RTQA, help=f"RealTime QA 2022 folder (default {DEFAULT_RTQA})")
    parser.add_argument("--corpora", default="bundled,rtqa,synthetic", help="comma-separated: bundled, rtqa, synthetic")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated: " + ", ".join(SYSTEMS))
    parser.add_argument("--backends", default=None,
                        help="our embedding backends to build with, the first one measured in full "
                             "(default: the default backend, then the other ONNX one; quick: the default)")
    parser.add_argument("--builds-only", action="store_true",
                        help="only the full builds of each system (no recall, queries, cold starts or increments)")
    parser.add_argument("--ray-workers", default="1,2",
                        help="also build the RealTime QA slice with the first backend on these numbers of Ray "
                             "workers (comma-separated; '' for none; needs the ray extra)")
    parser.add_argument("--slice", type=int, default=None, help="RealTime QA articles in the side-by-side slice (default 300; quick 40)")
    parser.add_argument("--sizes", default=None, help="synthetic sizes (default 10000,100000,1000000; quick 10000,100000)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"scratch and cache folder (default {DEFAULT_WORK})")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/bench[-quick].json)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached full RealTime QA index")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every system (torch, ONNX Runtime, FAISS); default: each library's own. "
                             "On a busy machine 1 is fairer: multi-threaded small operations then mostly wait")
    parser.add_argument("--render", type=Path, default=None, help="print the table of an earlier result JSON and exit")
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "PARAMS_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quiet()
    if args.worker:
        name, params = args.worker
        emit(WORKERS[name](json.loads(Path(params).read_text())))
        return 0
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0
    try:
        return run(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run(args) -> int:
    if args.threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "QA_THREADS"):
            os.environ[name] = str(args.threads)  # the workers inherit it
    corpora = [c.strip() for c in args.corpora.split(",") if c.strip()]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(corpora) - {"bundled", "rtqa", "synthetic"}) + sorted(set(systems) - set(SYSTEMS))
    if unknown:
        raise BenchError(f"unknown corpus or system {', '.join(unknown)}: see --help")
    from qa.embed.factory import DEFAULT_BACKEND

    other = "onnx" if DEFAULT_BACKEND == "onnx-int8" else "onnx-int8"
    backends = (args.backends or (DEFAULT_BACKEND if args.quick else f"{DEFAULT_BACKEND},{other}")).split(",")
    ray_workers = [int(n) for n in args.ray_workers.split(",") if n.strip()]
    slice_n = args.slice or (40 if args.quick else 300)
    sizes = [int(s) for s in (args.sizes or ("10000,100000" if args.quick else "10000,100000,1000000")).split(",")]
    work = args.work / ("quick" if args.quick else "full")
    if "recipe" in systems:
        try:
            import langchain_community  # noqa: F401
        except ImportError:
            raise BenchError("the LangChain recipe needs langchain-community: pip install -e '.[bench]'") from None
    need_rtqa = "rtqa" in corpora or "synthetic" in corpora
    rtqa_rows, rtqa_questions = read_rtqa(args.rtqa) if need_rtqa else ([], [])
    command = "python benchmarks/bench.py" + (" --quick" if args.quick else "") + (f" --threads {args.threads}" if args.threads else "")
    results: dict = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick,
                     "threads": args.threads, "command": command, "corpora": {}}
    started = time.perf_counter()
    out = args.out or RESULTS / ("bench-quick.json" if args.quick else "bench.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial.json")
    n_questions = 20 if args.quick else 60
    repeats = 1 if args.quick else 3
    if "bundled" in corpora:
        rows = [json.loads(line) for line in (ROOT / "tests" / "questions.jsonl").read_text().splitlines()
                if line.strip()] if (ROOT / "tests" / "questions.jsonl").exists() else []
        questions = [r.get("q") or (r.get("turns") or [""])[0] for r in rows]
        questions = (questions or [a.stem for a in BUNDLED.iterdir()])[:n_questions]
        results["corpora"]["bundled"] = {
            "articles": len([p for p in BUNDLED.iterdir() if p.is_file()]),
            "systems": section_systems("bundled", [str(BUNDLED)], [], [], questions, work, systems, backends[:1], repeats),
        }
        partial.write_text(json.dumps(results, indent=1))
    if "rtqa" in corpora:
        base, weeks = week_slice(rtqa_rows, slice_n)
        rest = [r for r in sorted(rtqa_rows, key=lambda r: r["id"]) if r["published"] not in weeks]
        random.Random(0).shuffle(rest)
        pct = max(1, slice_n // 100)
        one, more = [edited(rest[0], 0)], [edited(r, i + 1) for i, r in enumerate(rest[1 : 1 + pct])]
        rows = rest
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
        partial.write_text(json.dumps(results, indent=1))
        if not args.quick and not args.builds_only:
            full_file = rtqa_files(args.rtqa)[0]
            index, build = full_rtqa_index(full_file, args.work, args.rebuild)
            probe = work / "rtqa-full-copy"
            shutil.rmtree(probe, ignore_errors=True)
            shutil.copytree(index, probe, ignore=shutil.ignore_patterns(".lock"))
            pct = len(rtqa_rows) // 100
            extra_one = write_jsonl_gz([edited(rows[0], 0)], files / "rtqa-full-add-one.jsonl.gz")
            extra_pct = write_jsonl_gz([edited(r, i + 1) for i, r in enumerate(rows[1 : 1 + pct])],
                                       files / "rtqa-full-add-pct.jsonl.gz")
            log("[rtqa-full] add one article, then 1% more, to the full index")
            full = {"build": build}
            full["add_one"] = run_worker("increment", {"system": "ours", "index": str(probe), "paths": [str(full_file)],
                                                       "added": [str(extra_one)], "profile": True})
            full["add_pct"] = run_worker("increment", {"system": "ours", "index": str(probe),
                                                       "paths": [str(full_file), str(extra_one)], "added": [str(extra_pct)]})
            full["query"] = run_worker("query", {"system": "ours", "index": str(probe), "questions": questions})
            full["cold"] = cold_start("ours", probe, questions[0], repeats)
            full["disk_mb"] = round(disk_bytes(probe) / 1e6, 1)
            results["corpora"]["rtqa_full"] = full
            partial.write_text(json.dumps(results, indent=1))
    if "synthetic" in corpora:
        source = args.work / "rtqa-full"
        if not (source / "manifest.json").exists():
            source = work / "rtqa" / f"ours-{backends[0]}"
        if not (source / "manifest.json").exists():
            raise BenchError("the synthetic corpus replicates a built RealTime QA index: run with --corpora rtqa,synthetic")
        questions = [q["q"] for q in rtqa_questions[:200]]
        vectors = embed_questions(questions)
        scale = []
        for size in sizes:
            log(f"[synthetic] {size:,} chunks")
            scale.append(run_worker("scale", {"size": size, "source": str(source), "work": str(work / "synthetic"),
                                              "questions": questions, "query_vectors": vectors,
                                              "exact": size >= 100_000}, timeout=3 * 3600))
        results["corpora"]["synthetic"] = {"source": str(source), "scale": scale}
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["machine"]["load_after"] = os.getloadavg()[0]
    out.write_text(json.dumps(results, indent=1))
    partial.unlink(missing_ok=True)
    print(render(results))
    log(f"results in {out} ({results['seconds']:.0f}s)")
    return 0


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
    syn = results["corpora"].get("synthetic")
    if syn:
        lines += ["", "### synthetic (search side)", "",
                  "| chunks | dense kind | nprobe | dense p50 ms | p95 | recall@10 (questions) | recall@10 (mixed) | exact p50 ms | dense bytes/chunk | BM25 p50 ms | BM25 p95 | BM25 bytes/chunk |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in syn["scale"]:
            d, e, lex = row["dense_auto"], row.get("dense_exact") or row["dense_auto"], row["bm25"]
            mixed = d.get("recall_at_10_mixed", d.get("recall_at_10_near_data", float("nan")))
            lines.append(
                f"| {row['size']:,} | {d['kind']} | {d['nprobe'] or ''} | {d['query']['p50']:.2f} | {d['query']['p95']:.2f} | "
                f"{d['recall_at_10_questions']:.3f} | {mixed:.3f} | {e['query']['p50']:.2f} | {d['file_bytes_per_chunk']:.0f} | "
                f"{lex['query']['p50']:.2f} | {lex['query']['p95']:.2f} | {lex['disk_bytes_per_chunk']:.0f} |"
            )
    return "\n".join(lines)


WORKERS = {"recall": worker_recall, "build": worker_build, "increment": worker_increment, "query": worker_query, "cold": worker_cold,
           "scale": worker_scale}

if __name__ == "__main__":
    sys.exit(main())
