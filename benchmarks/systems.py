"""The three systems the speed benchmarks compare, each built, updated and asked the same way.

* ``ours``: this project (``qa.index.build.build_index``, ``Bot.ask``);
* ``recipe``: the LangChain tutorial recipe (``RecursiveCharacterTextSplitter(1000, 200)``,
  ``HuggingFaceEmbeddings`` with the bundled model, ``FAISS.from_documents``, ``similarity_search``);
* ``bm25``: our chunks searched by BM25 alone.

Each ``worker_*`` function is one measurement meant for its own process (``harness.run_worker``). The recipe's
index is saved as its FAISS file plus its documents as JSON (``save_recipe``/``load_recipe``), not with LangChain's
``save_local``/``load_local``, which pickle the document store: nothing in this project loads a pickle.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import cores, disk_bytes, percentiles, run_worker

SYSTEMS = ("ours", "recipe", "bm25")


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


def recipe_embeddings():
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


def save_recipe(store, folder: Path) -> None:
    """The recipe's FAISS index as ``index.faiss`` and its documents, in row order, as ``documents.json``."""
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    faiss.write_index(store.index, str(folder / "index.faiss"))
    rows = []
    for row in range(len(store.index_to_docstore_id)):
        doc_id = store.index_to_docstore_id[row]
        doc = store.docstore.search(doc_id)
        rows.append({"id": doc_id, "text": doc.page_content, "metadata": doc.metadata})
    tmp = folder / "documents.tmp.json"
    tmp.write_text(json.dumps(rows, ensure_ascii=False))
    os.replace(tmp, folder / "documents.json")


def load_recipe(folder: Path, embeddings):
    """The recipe's ``FAISS`` store as ``save_recipe`` left it, searching with ``embeddings``."""
    import faiss
    from langchain_community.docstore.in_memory import InMemoryDocstore
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document

    rows = json.loads((folder / "documents.json").read_text())
    docstore = InMemoryDocstore({r["id"]: Document(page_content=r["text"], metadata=r["metadata"]) for r in rows})
    return FAISS(embeddings, faiss.read_index(str(folder / "index.faiss")), docstore,
                 {row: r["id"] for row, r in enumerate(rows)})


def worker_build(p: dict) -> dict:
    """Full build of one system from ``p["paths"]`` into ``p["index"]``."""
    index = Path(p["index"])
    shutil.rmtree(index, ignore_errors=True)
    system = p["system"]
    started = time.perf_counter()
    if system == "ours":
        from qa.embed.factory import get_embedder
        from qa.index.build import build_index

        embedder = get_embedder(backend=p.get("backend"))
        extra = {"model": embedder.name}
        if p.get("ray_workers"):
            # A local Ray with this machine's CPUs, started inside the measured process (a cold cluster
            # start is part of what a one-off `qa build --ray` costs; on a standing cluster it is not).
            import ray

            from qa.embed.ray import RayEmbedder

            ray.init(address="local", num_cpus=cores(), include_dashboard=False, log_to_driver=False)
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
        store = FAISS.from_documents(docs, recipe_embeddings())
        save_recipe(store, index)
        chunks, articles, extra = len(docs), len({d.metadata["source"] for d in docs}), {}
    else:
        from qa.index.lexical import Lexical
        from qa.ingest.chunk import chunk_article
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

        from qa.embed.factory import get_embedder
        from qa.index.build import build_index
        from qa.index.reader import read_manifest

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
        extra |= {"embedded": report.embedded, "reused": report.reused,
                  "stage_start_s": {k: round(v, 2) for k, v in stages.items()}}
    elif system == "recipe":
        embeddings = recipe_embeddings()
        embeddings.embed_query("warm up")
        started = time.perf_counter()
        store = load_recipe(index, embeddings)
        docs = _recipe_documents(p["added"])
        store.add_documents(docs)
        save_recipe(store, index)
        extra = {"embedded": len(docs), "note": "load + add_documents + save (appends; no change detection)"}
    else:
        extra = {"note": "bm25s has no incremental update: full re-index"}
        result = worker_build({**p, "paths": [*p["paths"], *p["added"]]})
        return {"system": system, "seconds": result["seconds"], **extra}
    return {"system": system, "seconds": round(time.perf_counter() - started, 2), **extra}


class Answerer:
    """One object per system with ``ask(question)``, loaded from its index folder."""

    def __init__(self, system: str, index: Path) -> None:
        self.system = system
        if system == "ours":
            from qa.answer.bot import Bot

            self.bot = Bot.load(index)
        elif system == "recipe":
            self.store = load_recipe(index, recipe_embeddings())
        else:
            import numpy as np

            from qa.index.lexical import Lexical, Postings

            postings = Postings.load(index / "bm25", mmap=True)
            self.lexical = Lexical([(postings, np.arange(postings.n_docs, dtype=np.int64))])
            self.texts = json.loads((index / "chunks.json").read_text())["texts"]

    def ask(self, question: str, k: int = 3) -> list[str]:
        """The texts this system shows for ``question``: our quotes, the recipe's or BM25's top chunks."""
        if self.system == "ours":
            return [q.text for q in self.bot.ask(question, k=k).quotes]
        if self.system == "recipe":
            return [d.page_content for d in self.store.similarity_search(question, k=k)]
        rows, _ = self.lexical.search(question, k)
        return [self.texts[r] for r in rows.tolist()]


def worker_query(p: dict) -> dict:
    """Warm latency of the full answer over ``p["questions"]`` (after ``p["warmup"]`` unmeasured ones)."""
    answerer = Answerer(p["system"], Path(p["index"]))
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
    answerer = Answerer(p["system"], Path(p["index"]))
    k = p.get("k", 5)
    hits = {1: 0, 3: 0, 5: 0}
    for item in p["items"]:
        texts = [" ".join(t.split()).casefold() for t in answerer.ask(item["q"], k=k)]
        golds = [" ".join(g.split()).casefold() for g in item["answers"]]
        for cut in hits:
            hits[cut] += any(g in t for g in golds for t in texts[:cut])
    n = max(1, len(p["items"]))
    return {"system": p["system"], "questions": len(p["items"]),
            **{f"recall_at_{c}": round(h / n, 4) for c, h in hits.items()}}


def worker_cold(p: dict) -> dict:
    """Load and answer one question; the parent measures from process start."""
    answerer = Answerer(p["system"], Path(p["index"]))
    answerer.ask(p["question"])
    return {"system": p["system"], "answered_at": time.time()}


def cold_start(system: str, index: Path, question: str, repeats: int) -> dict:
    """Process start to first answer (median of ``repeats`` fresh processes)."""
    times, rss = [], []
    for _ in range(repeats):
        started = time.time()
        result = run_worker(worker_cold, {"system": system, "index": str(index), "question": question})
        times.append(result["answered_at"] - started)
        rss.append(result["peak_rss_mb"])
    times.sort()
    return {"seconds": round(times[len(times) // 2], 2), "all": [round(t, 2) for t in times], "peak_rss_mb": max(rss)}
