"""Build or update an index folder from article files; the work is proportional to what changed.

One build, in order:

1. scan (qa/index/scan.py): which articles the index should hold, reading only new or changed files;
2. plan: which indexed articles stay, which go (removed or changed), which are new;
3. add (qa/index/additions.py): chunk the new articles, reuse the vectors of an identical text
   already indexed, embed the rest, write them as new segments of about ``SEGMENT_FLUSH_CHUNKS``
   chunks (each with its own FAISS index and BM25 postings);
4. delete: a new deletion list for each segment that lost rows;
5. merge (qa/index/merge.py): by size tier, or as few as ``MAX_SEGMENT_CHUNKS`` allows with
   ``optimize``, never re-embedding;
6. commit (qa/index/writer.py): the manifest that names the result, atomically.

The embedder can be any ``Embedder``: where the vectors come from does not matter here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qa.embed.base import Embedder
from qa.embed.factory import get_embedder
from qa.errors import QAError
from qa.index.additions import chunk_batches, write_new
from qa.index.catalog import ArticleEntry, Catalog, read_catalog
from qa.index.lexical import tokenizer_tag
from qa.index.manifest import Manifest, SegmentEntry
from qa.index.merge import Moves, apply_merges, plan_merges
from qa.index.reader import IndexLoadError, IndexMissing, manifest_stamp, read_manifest, verify_deletions, verify_files
from qa.index.scan import Scan, scan
from qa.index.segment import read_deletions
from qa.index.writer import IndexWriter, remove_unreferenced, writer_lock
from qa.ingest.discover import discover_files
from qa.ingest.formats import LoadError
from qa.records import Article, BuildReport
from qa.settings import MAX_SEGMENT_CHUNKS, SEGMENT_FLUSH_CHUNKS, ChunkSettings
from qa.text import counted

log = logging.getLogger(__name__)

#: ``progress(stage, done, total)``; stages: "load", "chunk", "embed", "save".
BuildProgress = Callable[[str, int, int], None]


class BuildError(QAError):
    """The build could not run; the index folder is untouched. The message says what to do."""


@dataclass(frozen=True)
class Previous:
    """The committed index a build starts from: its manifest and its catalog (read once)."""

    manifest: Manifest
    catalog: Catalog


@dataclass(frozen=True)
class _Plan:
    """What this build changes, decided before anything is written."""

    previous: Previous | None
    scan: Scan
    old: dict[str, ArticleEntry]  # the previous catalog's articles, by id
    removed: list[ArticleEntry]  # indexed articles no longer wanted (their file removed or changed)
    new: list[Article]  # articles to add, read in this build
    kept: int  # chunks of indexed articles that stay as they are
    optimize: bool

    @property
    def changes(self) -> bool:
        """Whether anything is added, deleted or merged, or the index is in an older layout (else it is up to
        date)."""
        if self.previous is not None and self.previous.manifest.inline is not None:
            return True  # rewritten in this layout: a catalog file and a smaller manifest, the same segments
        segments = self.previous.manifest.segments if self.previous is not None else ()
        return bool(self.new or self.removed
                    or plan_merges(segments, self.removed, self.optimize, max_chunks=MAX_SEGMENT_CHUNKS))


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
    stamp = manifest_stamp(index_dir)
    previous = None if full else _usable_previous(index_dir, embedder.name, chunking, check=False)
    found = scan(files, previous.catalog if previous is not None else None, skipped)
    if not found.wanted:
        where = ", ".join(str(p) for p in paths) or "(no path)"
        raise BuildError(
            f"no readable articles in {where}: "
            "add .txt, .md, .html, .pdf, .docx or .jsonl files and run `qa build` again"
        )
    report("load", len(found.wanted), len(found.wanted))

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(writer_lock(index_dir))
        except OSError as exc:
            raise BuildError(
                f"cannot write to {index_dir}/ ({_reason(exc)}); check the folder and its permissions"
            ) from None
        if full:
            checked = None
        elif previous is not None and manifest_stamp(index_dir) == stamp:  # no commit since: check, do not re-parse
            checked = previous if _intact(index_dir, previous) else None
        else:
            checked = _usable_previous(index_dir, embedder.name, chunking, check=True)
        if _build_id(checked) != _build_id(previous):
            previous = checked
            found = scan(files, previous.catalog if previous is not None else None, skipped)
        previous_chunks = previous.manifest.counts["chunks"] if previous is not None else _committed_chunks(index_dir)
        plan = _plan(previous, found, optimize)
        if not plan.changes:
            if previous is not None:
                remove_unreferenced(index_dir, previous.manifest)
            log.info("index is up to date: %s", counted(len(found.wanted), "article"))
            return BuildReport(
                articles=len(found.wanted), chunks=plan.kept, embedded=0, reused=plan.kept, removed=0,
                seconds=time.perf_counter() - started, skipped=tuple(found.skipped), index_dir=str(index_dir),
                build_id=_build_id(previous), changed=False,
            )
        writer = IndexWriter(index_dir)
        try:
            manifest, added = _write(writer, plan, embedder, chunking, report)
        except BaseException as exc:
            writer.abort()
            if isinstance(exc, (OSError, RuntimeError)):  # faiss reports write failures as RuntimeError
                raise BuildError(
                    f"could not write the index to {index_dir}/ ({_reason(exc)}); the previous index is unchanged"
                ) from exc
            raise
    reused = plan.kept + added.reused
    return BuildReport(
        articles=len(found.wanted),
        chunks=manifest.counts["chunks"],
        embedded=added.embedded,
        reused=reused,
        removed=max(0, previous_chunks - reused),
        seconds=time.perf_counter() - started,
        skipped=tuple(found.skipped),
        index_dir=str(index_dir),
        build_id=manifest.build_id,
        changed=True,
    )


def _build_id(previous: Previous | None) -> str:
    return previous.manifest.build_id if previous is not None else ""


def _usable_previous(index_dir: Path, model: str, chunking: ChunkSettings, *, check: bool) -> Previous | None:
    """The current index if its segments can be reused by this build, else None (everything is rebuilt)."""
    try:
        manifest = read_manifest(index_dir)
    except IndexMissing:
        return None
    except IndexLoadError as exc:
        log.warning("rebuilding everything: %s", exc)
        return None
    if manifest.model != model or manifest.chunking != chunking:
        log.info("index was built with other settings (%s, %s): re-embedding everything",
                 manifest.model, manifest.chunking)
        return None
    if manifest.tokenizer != tokenizer_tag():
        log.info("index was built with another BM25 tokenizer: re-indexing everything")
        return None
    try:
        previous = Previous(manifest, read_catalog(index_dir, manifest))
    except IndexLoadError as exc:
        log.warning("rebuilding everything: %s", exc)
        return None
    if check and not _intact(index_dir, previous):
        return None
    return previous


def _intact(index_dir: Path, previous: Previous) -> bool:
    """Whether the segments can be reused: files there with their sizes (hashed if their mtime moved), deletion
    lists matching the catalog's live articles."""
    try:
        verify_files(index_dir, previous.manifest, checksums="changed")
        verify_deletions(index_dir, previous.manifest, previous.catalog)
    except IndexLoadError as exc:
        log.warning("ignoring the current index (%s)", exc)
        return False
    return True


def _committed_chunks(index_dir: Path) -> int:
    """Live chunks of the committed index (0 without a readable one): what a rebuild of it removes."""
    try:
        return read_manifest(index_dir).counts.get("chunks", 0)
    except IndexLoadError:
        return 0


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


def _plan(previous: Previous | None, found: Scan, optimize: bool) -> _Plan:
    old = {a.id: a for a in previous.catalog.articles} if previous is not None else {}
    wanted_ids = {w.id for w in found.wanted}
    return _Plan(
        previous=previous,
        scan=found,
        old=old,
        removed=[a for i, a in old.items() if i not in wanted_ids],
        new=[w.article for w in found.wanted if w.id not in old],
        kept=sum(a.chunks for i, a in old.items() if i in wanted_ids),
        optimize=optimize,
    )


@dataclass
class _Added:
    """What the new segments hold: chunks per new article, how many were embedded and how many reused."""

    counts: Counter[str] = field(default_factory=Counter)
    embedded: int = 0
    reused: int = 0


def _write(
    writer: IndexWriter, plan: _Plan, embedder: Embedder, chunking: ChunkSettings, report: BuildProgress
) -> tuple[Manifest, _Added]:
    """Delete, add (a segment per ``SEGMENT_FLUSH_CHUNKS`` new chunks), merge and commit; the new manifest."""
    segments = _delete_removed(writer, plan)
    moves: Moves = {}
    added = _Added()
    dim = None
    previous = plan.previous.manifest if plan.previous is not None else None
    batches = chunk_batches(writer.folder, plan.new, list(plan.old.values()),
                            previous.segments if previous is not None else (), chunking, embedder.count_tokens,
                            lambda done, total: report("chunk", done, total), max_chunks=SEGMENT_FLUSH_CHUNKS)
    for new in batches:
        embedded = None
        if new.to_embed:
            log.info("embedding %d new chunks (reusing %d)", len(new.to_embed), new.reused_chunks)
            before = added.embedded
            embedded = embedder.encode(
                new.to_embed, progress=lambda done, total: report("embed", before + done, before + total))
            added.embedded += len(new.to_embed)
            new.to_embed.clear()  # the texts sent to the model are not needed any more (as large as the chunks)
            dim = int(embedded.shape[1])
        report("save", 0, 1)
        entry = write_new(writer, new, embedded, dim if dim is not None else embedder.dim)
        segments.append(entry)
        moves.update(new.first_rows(entry.id))
        added.counts.update(new.counts)
        added.reused += new.reused_chunks
    if dim is None:
        dim = embedder.dim if plan.new or previous is None else previous.dim
    report("save", 0, 1)
    # Merges: planned again on the new list (the new segments and the deletions count too).
    segments, merged = apply_merges(writer, segments, {w.id for w in plan.scan.wanted}, plan.optimize,
                                    max_chunks=MAX_SEGMENT_CHUNKS)
    moves.update(merged)
    manifest = writer.commit(
        previous=previous, model=embedder.name, dim=dim, chunking=chunking,
        segments=[s for s in segments if s.chunks > 0 or s.articles > 0],
        catalog=Catalog(tuple(_article_entries(plan, added, moves)), plan.scan.sources),
    )
    report("save", 1, 1)
    return manifest, added


def _article_entries(plan: _Plan, new: _Added, moves: Moves) -> list[ArticleEntry]:
    """The catalog's articles, in scan order: where each starts now (moved, or where it was) and its chunk count.

    An article without a chunk is left out: nothing of it can be quoted, and an article is live only through
    its chunk rows (qa/index/live.py). (Cleaning never leaves a text without one: whitespace is not kept.)
    """
    articles = []
    for w in plan.scan.wanted:
        old = plan.old.get(w.id)
        segment, row = moves.get(w.id) or (old.segment, old.row)
        chunks = old.chunks if old is not None else new.counts[w.id]
        if chunks == 0:
            log.warning("%s has no text to index; left out", w.source)
            continue
        articles.append(ArticleEntry(w.id, w.sha256, w.source, chunks, segment, row))
    return articles


def _delete_removed(writer: IndexWriter, plan: _Plan) -> list[SegmentEntry]:
    """The previous segments, each that lost rows with a new deletion list (all its deleted rows so far)."""
    deleted_now: dict[str, list[int]] = {}
    for a in plan.removed:
        deleted_now.setdefault(a.segment, []).extend(range(a.row, a.row + a.chunks))
    current: list[SegmentEntry] = []
    for seg in plan.previous.manifest.segments if plan.previous is not None else ():
        if seg.id in deleted_now:
            rows = [*read_deletions(writer.folder, seg).tolist(), *deleted_now[seg.id]]
            seg = writer.write_deletions(seg, np.asarray(rows, dtype=np.int64))
        current.append(seg)
    return current
