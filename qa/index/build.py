"""Build or update an index folder from article files; the work is proportional to what changed.

* A source file whose size and mtime match the manifest's record is not read
  at all (nor one whose bytes hash the same): its articles are already indexed.
* New articles are chunked, embedded and written as one new segment (its own
  FAISS index and BM25 postings); nothing else is rewritten.
* Removed and changed articles are marked deleted: a small list of rows per
  segment, named by the manifest.
* Segments are merged by size tier (``MERGE_FACTOR`` in qa/settings.py) or all
  into one with ``optimize``; a merge reuses vectors and postings, it never
  re-embeds or re-tokenizes.

This module builds (FAISS via ``qa.dense``, BM25 postings via ``qa.lexical``);
``qa.store`` writes and reads the files. The embedder can be any ``Embedder``:
where the vectors come from does not matter here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.ingest.chunk import chunk_article, embedding_text
from qa.index.dense import DenseInfo, build_dense
from qa.embed.base import Embedder
from qa.embed.factory import get_embedder
from qa.errors import QAError
from qa.index.lexical import Postings, tokenizer_tag
from qa.ingest.discover import discover_files
from qa.ingest.formats import LoadError
from qa.ingest.load import load_file
from qa.records import Article, BuildReport, Chunk, chunk_id, sha256_file
from qa.settings import MERGE_FACTOR, PURGE_DELETED_SHARE, ChunkSettings
from qa.index.store import (
    MANIFEST,
    IndexLoadError,
    IndexWriter,
    Manifest,
    SegmentEntry,
    read_manifest,
    read_segment,
    remove_unreferenced,
    verify_deletions,
    verify_files,
    writer_lock,
)

log = logging.getLogger(__name__)

#: ``progress(stage, done, total)``; stages: "load", "chunk", "embed", "save".
BuildProgress = Callable[[str, int, int], None]

#: A file modified this close to (or after) the moment it was last read is hashed even if its size and
#: mtime match: a write within the same clock tick as that read would otherwise go unseen.
RACY_NS = 2_000_000_000


class BuildError(QAError):
    """The build could not run; the index folder is untouched. The message says what to do."""


@dataclass(frozen=True)
class _Wanted:
    """An article the index should hold: ``article`` is set when its file was read in this build."""

    id: str
    sha256: str
    source: str
    article: Article | None = None


@dataclass
class _Scan:
    wanted: list[_Wanted]
    sources: dict[str, dict[str, Any]]
    skipped: list[str]
    files_read: int


def build_index(
    paths: Sequence[str | os.PathLike],
    index_dir: str | os.PathLike,
    *,
    embedder: Embedder | None = None,
    model: str | None = None,
    full: bool = False,
    optimize: bool = False,
    chunking: ChunkSettings | None = None,
    progress: BuildProgress | None = None,
) -> BuildReport:
    """Build (incrementally unless ``full``) the index in ``index_dir`` from the articles under ``paths``.

    ``optimize`` merges every segment into one (dropping deleted rows), as a
    full build would lay it out, without embedding anything again.
    """
    started = time.perf_counter()
    index_dir = Path(index_dir)
    chunking = chunking or ChunkSettings()
    embedder = embedder or get_embedder(model)
    report = progress or (lambda stage, done, total: None)

    try:
        files, skipped = discover_files(paths)
    except LoadError as exc:
        raise BuildError(str(exc)) from None
    # Read the files before taking the lock (a folder with nothing readable is an error that must
    # leave the index folder untouched); if another build commits meanwhile, scan again under the lock.
    stamp = _manifest_stamp(index_dir)
    previous = None if full else _usable_previous(index_dir, embedder.name, chunking, check=False)
    scan = _scan(files, previous, skipped)
    if not scan.wanted:
        where = ", ".join(str(p) for p in paths) or "(no path)"
        raise BuildError(
            f"no readable articles in {where}: add .txt, .md, .html, .pdf, .docx or .jsonl files and run `qa build` again"
        )
    report("load", len(scan.wanted), len(scan.wanted))

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(writer_lock(index_dir))
        except OSError as exc:
            raise BuildError(
                f"cannot write to {index_dir}/ ({_reason(exc)}); check the folder and its permissions"
            ) from None
        if full:
            checked = None
        elif previous is not None and _manifest_stamp(index_dir) == stamp:  # no commit since: check, do not re-parse
            checked = previous if _intact(index_dir, previous) else None
        else:
            checked = _usable_previous(index_dir, embedder.name, chunking, check=True)
        if (checked and checked.build_id) != (previous and previous.build_id):
            previous = checked
            scan = _scan(files, previous, skipped)
        previous_chunks = previous.counts["chunks"] if previous is not None else _chunk_count(index_dir)
        writer = IndexWriter(index_dir)
        try:
            return _build(writer, previous, previous_chunks, scan, embedder, chunking, optimize, report, started)
        except BaseException as exc:
            writer.abort()
            if isinstance(exc, (OSError, RuntimeError)):  # faiss reports write failures as RuntimeError
                raise BuildError(
                    f"could not write the index to {index_dir}/ ({_reason(exc)}); the previous index is unchanged"
                ) from exc
            raise


def _usable_previous(index_dir: Path, model: str, chunking: ChunkSettings, *, check: bool) -> Manifest | None:
    """The current manifest if its segments can be reused by this build, else None (everything is rebuilt)."""
    try:
        manifest = read_manifest(index_dir)
    except IndexLoadError as exc:
        if (index_dir / MANIFEST).exists():
            log.warning("rebuilding everything: %s", exc)
        return None
    if manifest.model != model or manifest.chunking != chunking:
        log.info("index was built with other settings (%s, %s): re-embedding everything", manifest.model, manifest.chunking)
        return None
    if manifest.raw.get("lexical", {}).get("tokenizer") != tokenizer_tag():
        log.info("index was built with another BM25 tokenizer: re-indexing everything")
        return None
    if check and not _intact(index_dir, manifest):
        return None
    return manifest


def _intact(index_dir: Path, manifest: Manifest) -> bool:
    """Whether the segments can be reused: files there with their sizes (hashed if their mtime moved), deletion
    lists matching the live articles."""
    try:
        verify_files(index_dir, manifest, checksums="changed")
        verify_deletions(index_dir, manifest)
    except IndexLoadError as exc:
        log.warning("ignoring the current index (%s)", exc)
        return False
    return True


def _manifest_stamp(index_dir: Path) -> tuple[int, int, int] | None:
    """Identifies the committed manifest file: every commit replaces it with a new inode."""
    try:
        st = os.stat(index_dir / MANIFEST)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _chunk_count(index_dir: Path) -> int:
    try:
        raw = json.loads((index_dir / MANIFEST).read_text(encoding="utf-8"))
        return int(raw["counts"]["chunks"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _scan(files: list[str], previous: Manifest | None, skipped: list[str]) -> _Scan:
    """What the index should hold, reading only files that are new or changed since the manifest's record."""
    old_sources = previous.sources if previous is not None else {}
    old_articles = {a["id"]: a for a in previous.articles} if previous is not None else {}
    wanted: list[_Wanted] = []
    sources: dict[str, dict[str, Any]] = {}
    skipped = list(skipped)
    seen_sources: set[str] = set()
    read = 0
    for path in files:
        now = time.time_ns()
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            st = None  # a pipe or device: never opened here (it could block); load_file says why it is skipped
        key = _source_key(path)
        entry = old_sources.get(key)
        found: list[_Wanted] | None = None
        line_skips: list[str] = []
        if st is not None and isinstance(entry, dict) and entry.get("bytes") == st.st_size:
            ids = entry.get("articles") or []
            same = entry.get("mtime_ns") == st.st_mtime_ns and st.st_mtime_ns < int(entry.get("seen_ns", 0)) - RACY_NS
            if ids and all(i in old_articles for i in ids) and (same or _sha(path) == entry.get("sha256")):
                found = [_Wanted(i, old_articles[i]["sha256"], old_articles[i]["source"]) for i in ids]
                line_skips = list(entry.get("skipped") or [])
                sources[key] = {**entry, "mtime_ns": st.st_mtime_ns}
        if found is None:
            digest = _sha(path) if st is not None else ""  # before reading: if the file changes meanwhile, the next build reads it again
            try:
                loaded = load_file(path)
            except LoadError as exc:
                log.warning("skipped %s", exc)
                skipped.append(str(exc))
                continue
            articles, line_skips = loaded.articles, list(loaded.skipped)
            read += 1
            found = [_Wanted(a.id, a.sha256, a.source, a) for a in articles]
            if st is not None and digest:
                sources[key] = {
                    "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest, "seen_ns": now,
                    "articles": [a.id for a in articles], "skipped": [_printable(m) for m in line_skips],
                }
        for message in line_skips:
            log.warning("skipped %s", message)
            skipped.append(message)
        for item in found:
            if item.source in seen_sources:
                message = f"{path}: {item.source} was already loaded; duplicate skipped"
                log.warning("skipped %s", message)
                skipped.append(message)
                continue
            seen_sources.add(item.source)
            wanted.append(item)
    log.info("%d articles from %d files (%d read, %d unchanged)", len(wanted), len(files), read, len(files) - read)
    return _Scan(wanted, sources, skipped, read)


def _source_key(path: str) -> str:
    """``path`` as a manifest key: itself, or its bytes in hex when the name is not valid UTF-8."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return "bytes:" + os.fsencode(path).hex()


def _printable(message: str) -> str:
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def _sha(path: str) -> str:
    try:
        return sha256_file(Path(path))
    except OSError:
        return ""


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


def _build(
    writer: IndexWriter,
    previous: Manifest | None,
    previous_chunks: int,
    scan: _Scan,
    embedder: Embedder,
    chunking: ChunkSettings,
    optimize: bool,
    report: BuildProgress,
    started: float,
) -> BuildReport:
    folder = writer.folder
    old = {a["id"]: a for a in previous.articles} if previous is not None else {}
    segments = {s.id: s for s in previous.segments} if previous is not None else {}
    wanted_ids = {w.id for w in scan.wanted}
    removed = [a for i, a in old.items() if i not in wanted_ids]
    new = [w.article for w in scan.wanted if w.id not in old]
    kept = sum(int(a["chunks"]) for i, a in old.items() if i in wanted_ids)
    order = list(segments)
    merges = _merge_plan([segments[i] for i in order], removed, optimize)
    if not new and not removed and not merges:
        remove_unreferenced(folder, previous.raw if previous is not None else None)
        log.info("index is up to date: %d articles", len(scan.wanted))
        return BuildReport(
            articles=len(scan.wanted), chunks=kept, embedded=0, reused=kept, removed=0,
            seconds=time.perf_counter() - started, skipped=tuple(scan.skipped), index_dir=str(folder),
            build_id=previous.build_id if previous is not None else "", changed=False,
        )

    # New articles: chunk, reuse the vectors of an identical text already indexed, embed the rest.
    by_sha = {a["sha256"]: a for a in old.values()}
    new_chunks: list[Chunk] = []
    new_vectors: list[np.ndarray | None] = []
    to_embed: list[str] = []
    reused_new = 0
    for i, article in enumerate(new):
        chunks = chunk_article(article, chunking, embedder.count_tokens)
        vectors = _vectors_of_twin(folder, segments, by_sha.get(article.sha256), len(chunks))
        if vectors is not None:
            reused_new += len(chunks)
        else:
            to_embed.extend(embedding_text(article, c, chunking, embedder.count_tokens) for c in chunks)
        new_chunks.extend(chunks)
        new_vectors.append(vectors)
        report("chunk", i + 1, len(new))
    if new:
        log.info("embedding %d new chunks, reusing %d", len(to_embed), kept + reused_new)
    embedded = embedder.encode(to_embed, progress=lambda done, total: report("embed", done, total)) if to_embed else None
    report("save", 0, 1)

    placed: dict[str, tuple[str, int]] = {}  # article id -> (segment id, first row) for articles that moved
    appended: list[SegmentEntry] = []
    if new:
        vectors = _assemble(new, new_chunks, new_vectors, embedded, embedder.dim)
        entry = _write_new_segment(writer, new, new_chunks, vectors)
        row = 0
        for article in new:
            count = sum(1 for c in new_chunks if c.article_id == article.id)
            placed[article.id] = (entry.id, row)
            row += count
        appended.append(entry)

    # Deletions: one new list per touched segment (all its deleted rows so far).
    deleted_now: dict[str, list[int]] = {}
    for a in removed:
        deleted_now.setdefault(a["segment"], []).extend(range(int(a["row"]), int(a["row"]) + int(a["chunks"])))
    current: list[SegmentEntry] = []
    for seg_id in order:
        seg = segments[seg_id]
        if seg_id in deleted_now:
            rows = deleted_now[seg_id]
            if seg.deletions:
                rows = [*np.load(folder / seg.deletions, allow_pickle=False).tolist(), *rows]
            seg = writer.write_deletions(seg, np.asarray(rows, dtype=np.int64))
        current.append(seg)
    current.extend(appended)

    # Merges: planned again on the new list (the new segment and the deletions count too).
    groups = _merge_plan(current, [], optimize)
    if groups:
        live_articles = {w.id for w in scan.wanted}
        for group in groups:
            merged, moves = _merge(writer, [s for s in current if s.id in group], live_articles)
            placed.update(moves)
            first = next(i for i, s in enumerate(current) if s.id in group)
            current = [s for s in current if s.id not in group]
            current.insert(first, merged)
    result = [s for s in current if s.chunks > 0 or s.articles > 0]

    articles = []
    for w in scan.wanted:
        seg_id, row = placed.get(w.id) or (old[w.id]["segment"], int(old[w.id]["row"]))
        chunks = old[w.id]["chunks"] if w.id in old else sum(1 for c in new_chunks if c.article_id == w.id)
        articles.append({"id": w.id, "sha256": w.sha256, "source": w.source, "chunks": int(chunks),
                         "segment": seg_id, "row": row})
    manifest = writer.commit(
        previous=previous, model=embedder.name, dim=embedder.dim if embedded is None else int(embedded.shape[1]),
        chunking=chunking, segments=result, articles=articles, sources=scan.sources,
    )
    report("save", 1, 1)
    reused = kept + reused_new
    return BuildReport(
        articles=len(scan.wanted),
        chunks=manifest.counts["chunks"],
        embedded=len(to_embed),
        reused=reused,
        removed=max(0, previous_chunks - reused),
        seconds=time.perf_counter() - started,
        skipped=tuple(scan.skipped),
        index_dir=str(folder),
        build_id=manifest.build_id,
        changed=True,
    )


def _vectors_of_twin(folder: Path, segments: dict[str, SegmentEntry], twin: dict | None, count: int) -> np.ndarray | None:
    """The vectors of an indexed article with the same text (a renamed or copied file), if it chunked alike."""
    if twin is None or int(twin["chunks"]) != count or twin["segment"] not in segments:
        return None
    seg = segments[twin["segment"]]
    vectors = np.load(folder / seg.folder / "vectors.npy", mmap_mode="r", allow_pickle=False)
    row = int(twin["row"])
    return np.array(vectors[row : row + count], dtype=np.float32)


def _assemble(new: list[Article], chunks: list[Chunk], parts: list[np.ndarray | None], embedded, dim: int) -> np.ndarray:
    """The new segment's vectors in chunk order, from reused blocks and freshly embedded ones."""
    dim = int(embedded.shape[1]) if embedded is not None and len(embedded) else dim
    out = np.zeros((len(chunks), dim), dtype=np.float32)
    row = cursor = 0
    for article, block in zip(new, parts):
        count = sum(1 for c in chunks[row:] if c.article_id == article.id) if block is None else len(block)
        if block is None:
            out[row : row + count] = embedded[cursor : cursor + count]
            cursor += count
        else:
            out[row : row + count] = block
        row += count
    return out


def _write_new_segment(writer: IndexWriter, articles: list[Article], chunks: list[Chunk], vectors: np.ndarray) -> SegmentEntry:
    dense, info = build_dense(vectors)
    postings = Postings.build([c.text for c in chunks])
    return writer.write_segment(articles=articles, chunks=chunks, vectors=vectors, dense=dense, dense_info=info,
                                postings=postings)


def _tier(live: int) -> int:
    return int(math.log(max(live, 1), MERGE_FACTOR))


def _merge_plan(segments: list[SegmentEntry], removed: list[dict], optimize: bool) -> list[set[str]]:
    """Which segments to merge: all of them (``optimize``), any ``MERGE_FACTOR`` of one size tier, and
    any segment at least ``PURGE_DELETED_SHARE`` deleted (rewritten alone, without its deleted rows).

    ``removed`` (articles about to be deleted) counts toward the deleted share.
    """
    deleted = {s.id: s.deleted for s in segments}
    for a in removed:
        deleted[a["segment"]] = deleted.get(a["segment"], 0) + int(a["chunks"])
    if optimize:
        if len(segments) > 1 or any(deleted.get(s.id) for s in segments):
            return [{s.id for s in segments}]
        return []
    groups: list[set[str]] = []
    tiers: dict[int, list[str]] = {}
    for s in segments:
        live = s.chunks - deleted.get(s.id, 0)
        if s.chunks and deleted.get(s.id, 0) >= PURGE_DELETED_SHARE * s.chunks:
            groups.append({s.id})
        else:
            tiers.setdefault(_tier(live), []).append(s.id)
    for ids in tiers.values():
        if len(ids) >= MERGE_FACTOR:
            groups.append(set(ids))
    return groups


def _merge(
    writer: IndexWriter, members: list[SegmentEntry], live_articles: set[str]
) -> tuple[SegmentEntry, dict[str, tuple[str, int]]]:
    """One segment from the live rows of ``members``: vectors and postings are copied, not recomputed."""
    articles: list[Article] = []
    chunks: list[Chunk] = []
    blocks, parts = [], []
    largest = None
    for entry in members:
        seg = read_segment(writer.folder, entry)
        live = np.ones(entry.chunks, dtype=bool)
        live[np.asarray(seg.deleted, dtype=np.int64)] = False
        keep = np.flatnonzero(live)
        kept_ids = {seg.chunks[i].article_id for i in keep.tolist()}
        with_rows = {c.article_id for c in seg.chunks}
        # Live articles: those with kept rows, and live ones that never had a chunk (an empty text).
        articles.extend(a for a in seg.articles if a.id in kept_ids or (a.id in live_articles and a.id not in with_rows))
        chunks.extend(seg.chunks[i] for i in keep.tolist())
        blocks.append(np.asarray(seg.vectors[keep], dtype=np.float32))
        parts.append((seg.postings, keep))
        if largest is None or entry.live > largest[0]:
            largest = (entry.live, seg.dense)
    articles = [a for a in articles if a.id in live_articles]
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, 0), dtype=np.float32)
    dense, info = build_dense(vectors, previous=largest[1] if largest else None)
    postings = Postings.merge(parts)
    entry = writer.write_segment(articles=articles, chunks=chunks, vectors=vectors, dense=dense, dense_info=info,
                                 postings=postings)
    moves: dict[str, tuple[str, int]] = {}
    for row, chunk in enumerate(chunks):
        moves.setdefault(chunk.article_id, (entry.id, row))
    for a in articles:
        moves.setdefault(a.id, (entry.id, len(chunks)))  # an article without chunks
    log.info("merged %d segments into %s: %d chunks", len(members), entry.id, len(chunks))
    return entry, moves

