"""Two baselines that answer like the bot does, so ``qa.answer.evaluate`` scores them identically.

Each baseline has ``ask(question, history=(), *, k=3) -> qa.records.Answer``:
the top ``k`` retrieved chunks become the quotes, shown as they are (no
sentence selection, no abstention, no follow-up handling: ``history`` is
ignored). Use them for quality (``python -m benchmarks.rtqa``) and speed figures::

    from benchmarks.baselines import Bm25Baseline, LangChainBaseline
    bm25 = Bm25Baseline.load("/tmp/rtqa-index/full")           # our chunks, our BM25, nothing else
    lc = LangChainBaseline(bm25.index.articles.values(),        # the LangChain tutorial recipe
                           cache_dir="/tmp/rtqa-index/langchain")
    answer = lc.ask("Who won the election?", k=3)

``LangChainBaseline`` is the recipe from the LangChain RAG tutorial:
``RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200,
add_start_index=True)``, ``HuggingFaceEmbeddings`` with the bundled MiniLM
model, ``FAISS.from_documents`` (flat index, LangChain's default L2 distance)
and ``similarity_search(question, k)``. It needs the optional ``bench`` extra
(langchain-community, langchain-huggingface). Embedding a large corpus takes
minutes, so document vectors can be cached in ``cache_dir`` as a ``.npy``
array plus a JSON list of text hashes (no pickle); the cached vectors are the
ones HuggingFaceEmbeddings produced, so the recipe's results are unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.records import Answer, Article, Quote, sha256_text

log = logging.getLogger(__name__)

#: ``progress(done, total)`` while document vectors are computed.
Progress = Callable[[int, int], None]


def _answer(question: str, quotes: list[Quote], started: float) -> Answer:
    return Answer(
        question=question,
        text="\n\n".join(f"[{i}] {q.text}" for i, q in enumerate(quotes, 1)),
        quotes=tuple(quotes),
        abstained=False,
        searched=question,
        seconds=time.perf_counter() - started,
    )


def _quote(article: Article, start: int, end: int, text: str, score: float) -> Quote:
    return Quote(
        text=text,
        article_id=article.id,
        title=article.title,
        source=article.source,
        start=start,
        end=end,
        score=round(float(score), 4),
        published=article.published,
        author=article.author,
    )


class Bm25Baseline:
    """BM25 alone over this project's chunks (the same index files the bot reads); top-k chunks as quotes."""

    name = "BM25 chunks"

    def __init__(self, index) -> None:
        self.index = index

    @classmethod
    def load(cls, index_dir: str | os.PathLike) -> Bm25Baseline:
        from qa.index.reader import load_index

        return cls(load_index(Path(index_dir), check="quick"))

    def ask(self, question: str, history: Sequence[Any] = (), *, k: int = 3) -> Answer:
        started = time.perf_counter()
        rows, scores = self.index.lexical.search(question, k)
        quotes = []
        for row, score in zip(rows.tolist(), scores.tolist()):
            chunk = self.index.chunks[row]
            quotes.append(_quote(self.index.article_of(chunk), chunk.start, chunk.end, chunk.text, score))
        return _answer(question, quotes, started)


class _VectorCache:
    """Document vectors of a LangChain ``Embeddings``, kept in a folder (npy + JSON, no pickle)."""

    def __init__(self, inner, cache_dir: Path | None, progress: Progress | None = None, batch: int = 512) -> None:
        self.inner = inner
        self.cache_dir = cache_dir
        self.progress = progress
        self.batch = batch
        self._cache: dict[str, np.ndarray] = {}
        if cache_dir is not None and (cache_dir / "keys.json").exists():
            keys = json.loads((cache_dir / "keys.json").read_text())
            vectors = np.load(cache_dir / "vectors.npy", allow_pickle=False)
            if len(keys) == len(vectors):
                self._cache = dict(zip(keys, vectors))

    def _save(self) -> None:
        if self.cache_dir is None or not self._cache:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        keys = list(self._cache)
        tmp_vectors = self.cache_dir / "vectors.tmp.npy"
        np.save(tmp_vectors, np.stack([self._cache[key] for key in keys]), allow_pickle=False)
        (self.cache_dir / "keys.tmp.json").write_text(json.dumps(keys))
        os.replace(tmp_vectors, self.cache_dir / "vectors.npy")
        os.replace(self.cache_dir / "keys.tmp.json", self.cache_dir / "keys.json")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        keys = [sha256_text(t) for t in texts]
        missing = sorted({key: i for key, i in zip(keys, range(len(texts))) if key not in self._cache}.items())
        for lo in range(0, len(missing), self.batch):
            part = missing[lo : lo + self.batch]
            vectors = self.inner.embed_documents([texts[i] for _, i in part])
            for (key, _), vector in zip(part, vectors):
                self._cache[key] = np.asarray(vector, dtype=np.float32)
            if self.progress is not None:
                self.progress(min(lo + self.batch, len(missing)), len(missing))
            if (lo // self.batch) % 4 == 3:
                self._save()
        if missing:
            self._save()
        return [self._cache[key].tolist() for key in keys]

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


class LangChainBaseline:
    """The LangChain RAG tutorial recipe over the same (cleaned) articles; top-k chunks as quotes."""

    name = "LangChain recipe"

    def __init__(
        self,
        articles: Iterable[Article],
        *,
        model: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        chunk_size: int = 1000,
        chunk_overlap: int = 200,
        progress: Progress | None = None,
    ) -> None:
        from langchain_community.vectorstores import FAISS
        from langchain_core.documents import Document
        try:
            from langchain_huggingface import HuggingFaceEmbeddings
        except ImportError:  # the bench extra installs langchain-community, which has it too
            from langchain_community.embeddings import HuggingFaceEmbeddings
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        from qa.embed.names import bundled_model_path

        self.articles = {a.id: a for a in articles}
        model_name = model or str(bundled_model_path() or "sentence-transformers/all-MiniLM-L6-v2")
        splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap, add_start_index=True)
        docs = splitter.split_documents(
            [Document(page_content=a.text, metadata={"article_id": a.id}) for a in self.articles.values()]
        )
        self.chunks = len(docs)
        from langchain_core.embeddings import Embeddings

        cache = _VectorCache(HuggingFaceEmbeddings(model_name=model_name), Path(cache_dir) if cache_dir else None, progress)

        class CachedEmbeddings(Embeddings):
            """The HuggingFaceEmbeddings vectors, from the cache when already computed."""

            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return cache.embed_documents(texts)

            def embed_query(self, text: str) -> list[float]:
                return cache.embed_query(text)

        embeddings = CachedEmbeddings()
        self.store = FAISS.from_documents(docs, embeddings)

    def ask(self, question: str, history: Sequence[Any] = (), *, k: int = 3) -> Answer:
        started = time.perf_counter()
        quotes = []
        for rank, doc in enumerate(self.store.similarity_search(question, k=k)):
            article = self.articles[doc.metadata["article_id"]]
            start = int(doc.metadata.get("start_index", -1))
            end = start + len(doc.page_content) if start >= 0 else -1
            quotes.append(_quote(article, start, end, doc.page_content, -rank))
        return _answer(question, quotes, started)
