"""Build or update an index folder from article files, re-embedding only what changed.

An article whose cleaned text hashes the same as one in the current index
keeps its chunks and vectors; new and changed articles are chunked and
embedded; chunks of removed or changed articles are dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .errors import QAError
from .chunk import chunk_article, embedding_text
from .embed import Embedder, get_embedder
from .load import LoadError, LoadResult, load_paths
from .records import Article, BuildReport, Chunk, chunk_id
from .settings import ChunkSettings
from .store import Index, IndexLoadError, load_index, read_manifest, remove_unreferenced, save_index, writer_lock

log = logging.getLogger(__name__)

#: ``progress(stage, done, total)``; stages: "load", "chunk", "embed", "save".
BuildProgress = Callable[[str, int, int], None]


class BuildError(QAError):
    """The build could not run; the index folder is untouched. The message says what to do."""


def _previous(
    index_dir: Path, model: str, chunking: ChunkSettings
) -> tuple[dict[str, tuple[list[Chunk], np.ndarray]], int, set[tuple[str, str]], Index | None]:
    """Chunks and vectors of the current index by article content hash, its chunk count, its (id, sha), itself."""
    try:
        manifest = read_manifest(index_dir)
    except IndexLoadError:
        return {}, 0, set(), None
    if manifest.model != model or manifest.chunking != chunking:
        log.info("index was built with other settings (%s, %s): re-embedding everything", manifest.model, manifest.chunking)
        return {}, manifest.counts.get("chunks", 0), set(), None
    try:
        index = load_index(index_dir, checksums=True)
    except IndexLoadError as exc:
        log.warning("ignoring the current index (%s)", exc)
        return {}, manifest.counts.get("chunks", 0), set(), None
    rows: dict[str, list[int]] = {}
    for row, chunk in enumerate(index.chunks):
        rows.setdefault(chunk.article_id, []).append(row)
    by_sha: dict[str, tuple[list[Chunk], np.ndarray]] = {}
    for article in index.articles.values():
        article_rows = rows.get(article.id, [])
        if article.sha256 not in by_sha:
            by_sha[article.sha256] = (
                [index.chunks[r] for r in article_rows],
                np.array(index.vectors[article_rows], dtype=np.float32).reshape(len(article_rows), -1),
            )
    ids = {(a.id, a.sha256) for a in index.articles.values()}
    return by_sha, len(index.chunks), ids, index


def _rebase(chunks: list[Chunk], article: Article) -> list[Chunk]:
    """The same spans, owned by ``article`` (ids depend on the article id)."""
    return [
        Chunk(
            id=chunk_id(article.id, c.start, c.end),
            article_id=article.id,
            start=c.start,
            end=c.end,
            text=article.text[c.start : c.end],
        )
        for c in chunks
    ]


def build_index(
    paths: Sequence[str | os.PathLike],
    index_dir: str | os.PathLike,
    *,
    embedder: Embedder | None = None,
    model: str | None = None,
    full: bool = False,
    chunking: ChunkSettings | None = None,
    progress: BuildProgress | None = None,
) -> BuildReport:
    """Build (incrementally unless ``full``) the index in ``index_dir`` from the articles under ``paths``."""
    started = time.perf_counter()
    index_dir = Path(index_dir)
    chunking = chunking or ChunkSettings()
    embedder = embedder or get_embedder(model)
    report = progress or (lambda stage, done, total: None)

    try:
        loaded: LoadResult = load_paths(paths)
    except LoadError as exc:
        raise BuildError(str(exc)) from None
    articles = list({a.id: a for a in loaded.articles}.values())
    if not articles:
        where = ", ".join(str(p) for p in paths) or "(no path)"
        raise BuildError(
            f"no readable articles in {where}: add .txt, .md, .html, .pdf, .docx or .jsonl files and run `qa build` again"
        )
    report("load", len(articles), len(articles))

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(writer_lock(index_dir))
        except OSError as exc:
            raise BuildError(
                f"cannot write to {index_dir}/ ({_reason(exc)}); check the folder and its permissions"
            ) from None
        if full:
            by_sha, previous_chunks, previous_ids, previous = {}, _chunk_count(index_dir), set(), None
        else:
            by_sha, previous_chunks, previous_ids, previous = _previous(index_dir, embedder.name, chunking)
        if previous_ids and previous_ids == {(a.id, a.sha256) for a in articles}:
            remove_unreferenced(index_dir)
            log.info("index is up to date: %d articles", len(articles))
            return BuildReport(
                articles=len(articles),
                chunks=previous_chunks,
                embedded=0,
                reused=previous_chunks,
                removed=0,
                seconds=time.perf_counter() - started,
                skipped=loaded.skipped,
                index_dir=str(index_dir),
                build_id=read_manifest(index_dir).build_id,
                changed=False,
            )
        return _build(index_dir, articles, by_sha, previous_chunks, embedder, chunking, report, loaded, started,
                      previous)


def _reason(exc: BaseException) -> str:
    """A one-line reason for an I/O failure: "No space left on device", "Read-only file system"."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())
    # faiss wraps the OS error in a long C++ message: "... write error in f: 49107 != 256000 (No space left on device)"
    os_error = re.search(r"\(([A-Z][^()]{3,80})\)$", text)
    if os_error:
        return os_error.group(1)
    return text[:200] or type(exc).__name__


def _chunk_count(index_dir: Path) -> int:
    try:
        return read_manifest(index_dir).counts.get("chunks", 0)
    except IndexLoadError:
        return 0


def _build(
    index_dir: Path,
    articles: list[Article],
    by_sha: dict[str, tuple[list[Chunk], np.ndarray]],
    previous_chunks: int,
    embedder: Embedder,
    chunking: ChunkSettings,
    report: BuildProgress,
    loaded: LoadResult,
    started: float,
    previous: Index | None = None,
) -> BuildReport:
    parts: list[tuple[list[Chunk], np.ndarray | None]] = []
    to_embed: list[str] = []
    reused = 0
    for i, article in enumerate(articles):
        if article.sha256 in by_sha:
            old_chunks, old_vectors = by_sha[article.sha256]
            parts.append((_rebase(old_chunks, article), old_vectors))
            reused += len(old_chunks)
        else:
            chunks = chunk_article(article, chunking, embedder.count_tokens)
            parts.append((chunks, None))
            to_embed.extend(embedding_text(article, c, chunking, embedder.count_tokens) for c in chunks)
        report("chunk", i + 1, len(articles))
    log.info("embedding %d new chunks, reusing %d", len(to_embed), reused)
    new_vectors = embedder.encode(to_embed, progress=lambda done, total: report("embed", done, total))
    if len(new_vectors) == 0:
        new_vectors = np.zeros((0, embedder.dim), dtype=np.float32)
    chunks: list[Chunk] = []
    blocks: list[np.ndarray] = []
    cursor = 0
    for part_chunks, part_vectors in parts:
        chunks.extend(part_chunks)
        if part_vectors is None:
            part_vectors = new_vectors[cursor : cursor + len(part_chunks)]
            cursor += len(part_chunks)
        blocks.append(part_vectors.reshape(len(part_chunks), -1))
    dim = new_vectors.shape[1] if len(new_vectors) else blocks[0].shape[1] if blocks else embedder.dim
    vectors = np.concatenate(blocks, axis=0) if blocks else np.zeros((0, dim), dtype=np.float32)
    report("save", 0, 1)
    try:
        manifest = save_index(
            index_dir, articles=articles, chunks=chunks, vectors=vectors, model=embedder.name, chunking=chunking,
            previous=previous,
        )
    except (OSError, RuntimeError) as exc:  # faiss reports write failures as RuntimeError
        raise BuildError(
            f"could not write the index to {index_dir}/ ({_reason(exc)}); the previous index is unchanged"
        ) from None
    report("save", 1, 1)
    return BuildReport(
        articles=len(articles),
        chunks=len(chunks),
        embedded=len(to_embed),
        reused=reused,
        removed=max(0, previous_chunks - reused),
        seconds=time.perf_counter() - started,
        skipped=loaded.skipped,
        index_dir=str(index_dir),
        build_id=manifest.build_id,
        changed=True,
    )
