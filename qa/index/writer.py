"""Write an index folder: the writer lock, new segments and deletion lists, the atomic commit, clean-up.

A build writes only new files (a segment, deletion lists, its catalog), fsyncs
them, then replaces ``manifest.json`` (temp file, fsync, ``os.replace``, fsync of the
folder); files no manifest names are removed after that. A reader opens the
manifest first and only the files it names, so it sees the old index or the
new one, never a mix. Builds take ``.lock`` (``flock``); a second build stops
with ``IndexBusy``.

This module only writes: qa/index/build.py builds the FAISS indexes and the
BM25 postings and decides what goes into which segment. Why each step is
there, and the tests that kill builds to prove it: docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from qa.errors import QAError
from qa.index.dense import DenseInfo, write_dense
from qa.index.format import (
    LOCK,
    MANIFEST,
    SEGMENT_FILES,
    WRITTEN_KINDS,
    build_command,
    catalog_name,
    deletions_name,
    is_own_file,
    manifest_temp_name,
    new_id,
    segment_folder,
)
from qa.index.lexical import Postings, tokenizer_tag
from qa.index.catalog import Catalog, encode_catalog
from qa.index.manifest import FileEntry, Manifest, SegmentEntry, encode_manifest
from qa.index.records import id_key, write_records
from qa.records import Article, Chunk, sha256_file
from qa.settings import ChunkSettings
from qa.text import counted

log = logging.getLogger(__name__)


class IndexBusy(QAError):
    """Another build holds the folder's writer lock."""


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_entry(path: Path) -> FileEntry:
    st = path.stat()
    return FileEntry(st.st_size, sha256_file(path), st.st_mtime_ns)


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    """Versions of the libraries that write index files (0.2 s the first time: metadata is read from disk)."""
    from importlib import metadata

    out = {}
    dists = ("qa", "faiss-cpu", "numpy", "bm25s", "PyStemmer", "sentence-transformers", "torch", "langchain-text-splitters")
    for dist in dists:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


@contextlib.contextmanager
def writer_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's writer lock; raise ``IndexBusy`` at once if another build has it.

    A second build stops rather than waits: the first one may take minutes, and its
    result may make the second unnecessary. The lock is ``flock`` on ``.lock``, so the
    kernel releases it when its holder dies, even by SIGKILL.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fh = (folder / LOCK).open("a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                fh.seek(0)
                holder = fh.read(32).strip()
                who = f" (process {holder})" if holder.isdigit() else ""
                raise IndexBusy(
                    f"another build{who} is writing {folder}/ right now: "
                    f"wait for it to finish, then run `{build_command(folder)}` again"
                ) from None
            raise
        with contextlib.suppress(OSError):  # who holds it, for the message above; not needed for safety
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
        yield
    finally:
        fh.close()


class IndexWriter:
    """One build's writes: new segments and deletion lists first, then the manifest that names them.

    The caller holds ``writer_lock(folder)``. Until ``commit`` the old manifest
    rules and readers never look at the new files; ``abort`` (or a failed
    commit) removes them so a full disk gets its space back.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.build_id = new_id()
        self._new: list[str] = []
        self._entries: dict[str, FileEntry] = {}
        self._wrote_segment = False
        folder.mkdir(parents=True, exist_ok=True)

    def write_segment(
        self,
        *,
        articles: Sequence[Article],
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        dense,
        dense_info: DenseInfo,
        postings: Postings,
    ) -> SegmentEntry:
        """Write one segment's files (built by the caller) and fsync them; return its manifest entry."""
        if len(chunks) != len(vectors) or postings.n_docs != len(chunks) or dense.ntotal != len(chunks):
            raise ValueError(f"{len(chunks)} chunks, {len(vectors)} vectors, {postings.n_docs} postings rows")
        seg_id = new_id()
        folder = self.folder / segment_folder(seg_id)
        self._new.append(folder.name)
        self._wrote_segment = True
        folder.mkdir()
        position = {a.id: i for i, a in enumerate(articles)}
        if len(position) != len(articles) or any(c.article_id not in position for c in chunks):
            raise ValueError("every chunk's article is one of the segment's articles, once")
        tables = {
            "article_table": write_records(folder / SEGMENT_FILES["articles"], (a.to_json() for a in articles),
                                           [id_key(a.id) for a in articles]),
            "chunk_table": write_records(folder / SEGMENT_FILES["chunks"], (c.to_json() for c in chunks),
                                         [position[c.article_id] for c in chunks]),
        }
        keys = postings.key_table()
        if keys is not None:  # None: two terms share a 64-bit key (never seen); the segment is read by a dict
            tables["term_keys"] = keys
        for kind, table in tables.items():
            np.save(folder / SEGMENT_FILES[kind], table, allow_pickle=False)
        titles = [[a.id, a.title, a.source] for a in articles]
        (folder / SEGMENT_FILES["titles"]).write_text(json.dumps(titles, ensure_ascii=False), encoding="utf-8")
        np.save(folder / SEGMENT_FILES["vectors"], np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
        write_dense(dense, folder / SEGMENT_FILES["dense"])
        postings.save(folder)
        for path in sorted(folder.iterdir()):
            _fsync_path(path)
            self._entries[f"{folder.name}/{path.name}"] = _file_entry(path)
        _fsync_path(folder)
        kinds = tuple(k for k in WRITTEN_KINDS if k != "term_keys" or keys is not None)
        return SegmentEntry(seg_id, len(articles), len(chunks), 0, "", dense_info.to_json(), kinds)

    def write_deletions(self, segment: SegmentEntry, rows: np.ndarray) -> SegmentEntry:
        """Record that ``rows`` (local, sorted, all deleted so far) of ``segment`` are gone; a new file each time."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        if not len(rows):
            return segment.with_deletions(0, "")
        name = deletions_name(segment.id, self.build_id)
        self._new.append(name)
        np.save(self.folder / name, rows, allow_pickle=False)
        _fsync_path(self.folder / name)
        self._entries[name] = _file_entry(self.folder / name)
        return segment.with_deletions(len(rows), name)

    def commit(
        self,
        *,
        previous: Manifest | None,
        model: str,
        dim: int,
        chunking: ChunkSettings,
        segments: Sequence[SegmentEntry],
        catalog: Catalog,
    ) -> Manifest:
        """Write the catalog, then replace the manifest with one naming it and ``segments``: the commit point. Then
        remove unreferenced files."""
        known = {**(previous.files if previous is not None else {}), **self._entries}
        files: dict[str, FileEntry] = {}
        for segment in segments:
            for rel, entry in known.items():
                if rel.startswith(segment.folder + "/") or rel == segment.deletions:
                    files[rel] = entry
        files[catalog_name(self.build_id)] = self._write_catalog(catalog)
        manifest = Manifest(
            build_id=self.build_id,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            model=model,
            dim=int(dim),
            chunking=chunking,
            tokenizer=tokenizer_tag(),
            segments=tuple(segments),
            catalog=catalog_name(self.build_id),
            files=files,
            counts={
                "articles": len(catalog.articles),
                "chunks": sum(s.live for s in segments),
                "segments": len(segments),
                "deleted_chunks": sum(s.deleted for s in segments),
            },
            # Who wrote the segments: measured when this build wrote one, else the previous manifest's.
            versions=dict(_versions()) if self._wrote_segment or previous is None else dict(previous.versions),
        )
        tmp = self.folder / manifest_temp_name(self.build_id)
        try:
            _fsync_path(self.folder)  # the new names are durable before a manifest can point at them
            text = encode_manifest(manifest)
            with tmp.open("w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.folder / MANIFEST)  # the commit point: atomic, so it happened or it did not
        except BaseException:
            _remove_paths(self.folder, [tmp.name])
            raise
        self._new = []
        try:
            _fsync_path(self.folder)
        except OSError as exc:  # committed already; only durability across a power cut is in doubt
            log.warning("could not fsync %s after the commit: %s", self.folder, exc)
        log.info("committed index %s: %s, %s, %s", self.build_id, counted(len(segments), "segment"),
                 counted(len(catalog.articles), "article"), counted(manifest.counts["chunks"], "chunk"))
        remove_unreferenced(self.folder, manifest)
        return manifest

    def _write_catalog(self, catalog: Catalog) -> FileEntry:
        """Write and fsync this build's catalog file (before the manifest that names it); its file entry."""
        path = self.folder / catalog_name(self.build_id)
        self._new.append(path.name)
        data = encode_catalog(catalog, self.build_id).encode("utf-8")
        with path.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return FileEntry(len(data), hashlib.sha256(data).hexdigest(), path.stat().st_mtime_ns)

    def abort(self) -> None:
        """Remove what this build wrote (nothing names it); the old manifest still rules."""
        _remove_paths(self.folder, self._new)
        self._new = []


def _remove_paths(folder: Path, names: list[str]) -> None:
    for name in names:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()


def remove_unreferenced(folder: Path, manifest: Manifest) -> list[str]:
    """Delete data files of older or torn builds that ``manifest`` (the committed one) does not name.

    Only names this package writes are removed; foreign files (``.gitignore``, notes) stay.
    """
    keep = {s.folder for s in manifest.segments} | {s.deletions for s in manifest.segments if s.deletions}
    keep.add(manifest.catalog)
    removed = sorted(p.name for p in folder.iterdir() if p.name not in keep and is_own_file(p.name))
    _remove_paths(folder, removed)
    if removed:
        log.info("removed %d leftover file(s) from %s", len(removed), folder)
    return removed
