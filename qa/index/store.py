"""The index folder: write segments and commit them atomically; load them with checks.

Layout (names carry ids, so two builds never write the same name)::

    index/
      manifest.json                 written last, atomically; names everything below
      seg-<segment>/                one immutable segment, written once by the build that made it
        articles.jsonl              its articles (cleaned text, metadata)
        chunks.jsonl                its chunks, in vector order (local rows)
        vectors.npy                 float32 [chunks, dim], L2-normalised (allow_pickle=False)
        dense.faiss                 FAISS inner-product index over those vectors
        terms.json, term_ptr.npy, post_rows.npy, post_tfs.npy, lengths.npy
                                    BM25 postings (counts only; see qa/lexical.py)
      deleted-<segment>-<build>.npy local rows of that segment whose articles were removed or changed

The manifest lists the segments in order, each with its counts, the dense
index's parameters (kind, nlist, nprobe, measured recall) and its deletion file;
every live article with its segment and first row; every source file read,
with its size, mtime_ns and sha256 (so a build skips unchanged files without
reading them); and every data file's size and sha256. A build writes only new
files (a segment, deletion lists), fsyncs them, then replaces ``manifest.json``
(temp file, fsync, ``os.replace``, fsync of the folder); files no manifest
names are removed after that. A reader opens the manifest first and only the
files it names, so it sees the old index or the new one, never a mix; one that
loses the race with a commit starts again on the new manifest. Builds take
``.lock`` (``flock``); a second build stops with ``IndexBusy``.

This module only writes and reads: ``qa.build`` builds the FAISS indexes and the
BM25 postings and decides what goes into which segment. Why each step is there,
and the tests that kill builds to prove it: docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.index.dense import DenseInfo, read_dense, search_segments, write_dense
from qa.errors import QAError
from qa.index.lexical import B, K1, Lexical, Postings, tokenizer_tag
from qa.records import Article, Chunk, sha256_file
from qa.settings import INDEX_FORMAT, OLD_INDEX_FORMATS, ChunkSettings

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK = ".lock"
_ID = "[0-9a-f]{12}"
#: Names this package writes at the top of an index folder (older layouts' names included, so a
#: rebuild removes them); nothing else there is ever deleted.
_OWN_FILE = re.compile(
    rf"^seg-{_ID}$|^deleted-{_ID}-{_ID}\.npy$|^manifest\.json\..*\.tmp$"
    rf"|^(articles|chunks|vectors|dense|bm25)-{_ID}(\.jsonl|\.npy|\.faiss)?$"
)
_SEGMENT = re.compile(rf"^seg-({_ID})$")
#: The files of one segment, by what they hold.
SEGMENT_FILES = {
    "articles": "articles.jsonl",
    "chunks": "chunks.jsonl",
    "vectors": "vectors.npy",
    "dense": "dense.faiss",
    "postings": "terms.json",  # and the arrays Postings.file_names() lists
}
#: How often ``load_index`` starts again when a build commits while it reads.
LOAD_ATTEMPTS = 5


class IndexLoadError(QAError):
    """The index cannot be used; the message says what to do."""


class IndexMissing(IndexLoadError):
    """There is no index in the folder yet."""


class IndexInvalid(IndexLoadError):
    """The folder holds an index that does not match its manifest, this version, or the model."""


class IndexBusy(QAError):
    """Another build holds the folder's writer lock."""


@dataclass(frozen=True)
class SegmentEntry:
    """One segment as the manifest names it."""

    id: str
    articles: int
    chunks: int
    deleted: int
    deletions: str
    dense: dict[str, Any]

    @property
    def folder(self) -> str:
        return f"seg-{self.id}"

    @property
    def live(self) -> int:
        return self.chunks - self.deleted

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "folder": self.folder,
            "articles": self.articles,
            "chunks": self.chunks,
            "deleted": self.deleted,
            "deletions": self.deletions or None,
            # What the segment holds, so a later version can add kinds (sentence vectors, say) beside them.
            "holds": {**SEGMENT_FILES, "postings": Postings([], *[np.zeros(0)] * 4).file_names()},
            "dense": self.dense,
        }


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json``."""

    build_id: str
    created: str
    model: str
    dim: int
    chunking: ChunkSettings
    dense_kind: str
    articles: tuple[dict[str, Any], ...]
    files: dict[str, dict[str, Any]]
    counts: dict[str, int]
    versions: dict[str, str]
    segments: tuple[SegmentEntry, ...]
    sources: dict[str, dict[str, Any]]
    raw: dict[str, Any]


def new_id() -> str:
    """A fresh 12-hex-digit id for a segment or a build."""
    return uuid.uuid4().hex[:12]


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_entry(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"bytes": st.st_size, "sha256": sha256_file(path), "mtime_ns": st.st_mtime_ns}


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    """Versions of the libraries that write index files (0.2 s the first time: metadata is read from disk)."""
    from importlib import metadata

    out = {}
    for dist in ("qa", "faiss-cpu", "numpy", "bm25s", "PyStemmer", "sentence-transformers", "torch", "langchain-text-splitters"):
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
                    f"another build{who} is writing {folder}/ right now: wait for it to finish, then run `qa build` again"
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


def _write_jsonl(path: Path, rows) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False))
            fh.write("\n")


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
        self._entries: dict[str, dict[str, Any]] = {}
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
        folder = self.folder / f"seg-{seg_id}"
        self._new.append(folder.name)
        self._wrote_segment = True
        folder.mkdir()
        _write_jsonl(folder / SEGMENT_FILES["articles"], (a.to_json() for a in articles))
        _write_jsonl(folder / SEGMENT_FILES["chunks"], (c.to_json() for c in chunks))
        np.save(folder / SEGMENT_FILES["vectors"], np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
        write_dense(dense, folder / SEGMENT_FILES["dense"])
        postings.save(folder)
        for path in sorted(folder.iterdir()):
            _fsync_path(path)
            self._entries[f"{folder.name}/{path.name}"] = _file_entry(path)
        _fsync_path(folder)
        return SegmentEntry(seg_id, len(articles), len(chunks), 0, "", dense_info.to_json())

    def write_deletions(self, segment: SegmentEntry, rows: np.ndarray) -> SegmentEntry:
        """Record that ``rows`` (local, sorted, all deleted so far) of ``segment`` are gone; a new file each time."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        if not len(rows):
            return SegmentEntry(segment.id, segment.articles, segment.chunks, 0, "", segment.dense)
        name = f"deleted-{segment.id}-{self.build_id}.npy"
        self._new.append(name)
        np.save(self.folder / name, rows, allow_pickle=False)
        _fsync_path(self.folder / name)
        self._entries[name] = _file_entry(self.folder / name)
        return SegmentEntry(segment.id, segment.articles, segment.chunks, len(rows), name, segment.dense)

    def commit(
        self,
        *,
        previous: Manifest | None,
        model: str,
        dim: int,
        chunking: ChunkSettings,
        segments: Sequence[SegmentEntry],
        articles: Sequence[dict[str, Any]],
        sources: dict[str, dict[str, Any]],
    ) -> Manifest:
        """Replace the manifest with one naming ``segments``: the commit point. Then remove unreferenced files."""
        files: dict[str, dict[str, Any]] = {}
        old_files = previous.files if previous is not None else {}
        for segment in segments:
            for rel, entry in {**old_files, **self._entries}.items():
                if rel.startswith(segment.folder + "/") or rel == segment.deletions:
                    files[rel] = entry
        raw = {
            "format": INDEX_FORMAT,
            "build_id": self.build_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": {"name": model, "dim": int(dim), "normalized": True, "metric": "inner_product"},
            "chunking": {"splitter": "langchain RecursiveCharacterTextSplitter", **chunking.to_json()},
            "lexical": {"kind": "bm25", "variant": "lucene", "k1": K1, "b": B, "tokenizer": tokenizer_tag()},
            "segments": [s.to_json() for s in segments],
            "counts": {
                "articles": len(articles),
                "chunks": sum(s.live for s in segments),
                "segments": len(segments),
                "deleted_chunks": sum(s.deleted for s in segments),
            },
            "articles": list(articles),
            "sources": sources,
            "files": files,
            # Who wrote the segments: measured when this build wrote one, else the previous manifest's.
            "versions": dict(_versions()) if self._wrote_segment or previous is None else dict(previous.versions),
        }
        tmp = self.folder / f"{MANIFEST}.{self.build_id}.tmp"
        try:
            _fsync_path(self.folder)  # the new names are durable before a manifest can point at them
            text = json.dumps(raw, ensure_ascii=False, separators=(",", ":"))  # dumps: C encoder; dump is pure Python
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
        log.info("committed index %s: %d segments, %d articles, %d chunks", self.build_id, len(segments),
                 len(articles), raw["counts"]["chunks"])
        remove_unreferenced(self.folder, raw)
        return _parse_manifest(raw, self.folder)

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


def _referenced(raw: dict[str, Any]) -> set[str]:
    keep: set[str] = set()
    for segment in raw.get("segments") or []:
        if isinstance(segment, dict):
            keep.add(f"seg-{segment.get('id')}")
            if segment.get("deletions"):
                keep.add(str(segment["deletions"]))
    return keep


def remove_unreferenced(folder: Path, raw: dict[str, Any] | None = None) -> list[str]:
    """Delete data files of older or torn builds (only names this package writes)."""
    if raw is None:
        try:
            raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        if not isinstance(raw, dict) or raw.get("format") != INDEX_FORMAT:
            return []
    keep = _referenced(raw)
    removed = sorted(p.name for p in folder.iterdir() if p.name not in keep and _OWN_FILE.match(p.name))
    _remove_paths(folder, removed)
    if removed:
        log.info("removed %d leftover file(s) from %s", len(removed), folder)
    return removed


def _segments(raw: dict[str, Any]) -> tuple[SegmentEntry, ...]:
    """The manifest's segments, each naming only its own files inside the folder, each with a checksum."""
    files = raw["files"]
    if not isinstance(raw["segments"], list) or not isinstance(files, dict):
        raise ValueError("segments")
    out = []
    for i, seg in enumerate(raw["segments"]):
        seg_id = str(seg["id"])
        if not re.fullmatch(_ID, seg_id) or seg.get("folder", f"seg-{seg_id}") != f"seg-{seg_id}":
            raise ValueError(f"segments[{i}].id")
        deletions = seg.get("deletions") or ""
        if deletions and not re.fullmatch(rf"deleted-{seg_id}-{_ID}\.npy", deletions):
            raise ValueError(f"segments[{i}].deletions")
        entry = SegmentEntry(seg_id, int(seg["articles"]), int(seg["chunks"]), int(seg["deleted"]), deletions,
                             dict(seg["dense"]))
        needed = [f"{entry.folder}/{SEGMENT_FILES[k]}" for k in ("articles", "chunks", "vectors", "dense")]
        needed += [f"{entry.folder}/{n}" for n in Postings([], *[np.zeros(0)] * 4).file_names()]
        needed += [deletions] if deletions else []
        for rel in needed:
            if rel not in files:
                raise ValueError(f"files lacks {rel}")
        if bool(deletions) != bool(entry.deleted) or not 0 <= entry.deleted <= entry.chunks:
            raise ValueError(f"segments[{i}].deleted")
        out.append(entry)
    allowed = {s.folder for s in out} | {s.deletions for s in out if s.deletions}
    for rel, entry in files.items():
        parts = rel.split("/")
        top = parts[0] if len(parts) == 2 else rel
        if top not in allowed or ".." in parts or "" in parts or len(parts) > 2:
            raise ValueError(f"files.{rel}")
        if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int) or not isinstance(entry.get("sha256"), str):
            raise ValueError(f"files.{rel}")
    if len({s.id for s in out}) != len(out):
        raise ValueError("segments repeat")
    return tuple(out)


def _dense_summary(segments: Sequence[SegmentEntry]) -> str:
    kinds = [str(s.dense.get("kind", "?")) for s in segments]
    if not kinds:
        return "empty"
    return ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds))) + f" ({len(kinds)} segment{'s' * (len(kinds) != 1)})"


def _parse_manifest(raw: dict[str, Any], folder: Path) -> Manifest:
    try:
        if not re.fullmatch(_ID, str(raw["build_id"])):
            raise ValueError("build_id")
        segments = _segments(raw)
        if not isinstance(raw["articles"], list) or not isinstance(raw.get("sources", {}), dict):
            raise ValueError("articles")
        return Manifest(
            build_id=str(raw["build_id"]),
            created=str(raw.get("created", "")),
            model=str(raw["model"]["name"]),
            dim=int(raw["model"]["dim"]),
            chunking=ChunkSettings(
                chunk_tokens=int(raw["chunking"]["chunk_tokens"]),
                overlap_tokens=int(raw["chunking"]["overlap_tokens"]),
                title_tokens=int(raw["chunking"].get("title_tokens", 0)),
            ),
            dense_kind=_dense_summary(segments),
            articles=tuple(raw["articles"]),
            files=dict(raw["files"]),
            counts={k: int(v) for k, v in raw["counts"].items()},
            versions=dict(raw.get("versions", {})),
            segments=segments,
            sources=dict(raw.get("sources", {})),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IndexInvalid(f"{folder}/{MANIFEST} is incomplete or altered ({exc}): run `qa build --full`") from None


def read_manifest(folder: Path) -> Manifest:
    """Read and check the manifest's format; raise ``IndexMissing``/``IndexInvalid`` with advice."""
    path = folder / MANIFEST
    if not path.exists():
        raise IndexMissing(f"no index in {folder}/ yet: run `qa build` to build it")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexInvalid(f"{path} is unreadable ({type(exc).__name__}): run `qa build --full`") from None
    found = raw.get("format") if isinstance(raw, dict) else None
    if found in OLD_INDEX_FORMATS:
        raise IndexInvalid(
            f"{folder}/ holds an index in an older layout ({found}); rebuild it with `qa build --full`"
        )
    if found != INDEX_FORMAT:
        raise IndexInvalid(
            f"{folder}/ holds an index of format {found!r}, this version reads {INDEX_FORMAT!r}: run `qa build --full`"
        )
    return _parse_manifest(raw, folder)


def _check_file(folder: Path, rel: str, entry: dict[str, Any], checksums: bool) -> None:
    path = folder / rel
    try:
        # A file can vanish between these steps when a build commits meanwhile: that too is IndexInvalid,
        # so load_index starts again with the new manifest.
        if not path.is_file():
            raise IndexInvalid(f"{folder}/ is missing {rel}, which its manifest names: run `qa build --full`")
        st = path.stat()
        if st.st_size != entry["bytes"]:
            raise IndexInvalid(f"{folder}/{rel} has the wrong size for its manifest: run `qa build --full`")
        unchanged = checksums == "changed" and entry.get("mtime_ns") == st.st_mtime_ns
        if checksums and not unchanged and sha256_file(path) != entry["sha256"]:
            raise IndexInvalid(f"{folder}/{rel} does not match its manifest checksum: run `qa build --full`")
    except OSError as exc:
        raise IndexInvalid(f"{folder}/{rel} cannot be read ({exc.strerror or exc}): run `qa build --full`") from None


def verify_files(folder: Path, manifest: Manifest, *, checksums: bool | str = True) -> None:
    """Check that every file the manifest names is there, with its size (and sha256).

    ``checksums="changed"`` hashes only files whose mtime differs from the one
    recorded at write time (what a build does before it trusts a segment: a
    file rewritten in place gets a new mtime). Loading hashes everything.
    """
    for rel, entry in manifest.files.items():
        _check_file(folder, rel, entry, checksums)


def live_rows(manifest: Manifest) -> dict[str, np.ndarray]:
    """Per segment, which local rows the manifest's live articles hold (a boolean mask); ValueError if they overlap."""
    masks = {s.id: np.zeros(s.chunks, dtype=bool) for s in manifest.segments}
    for entry in manifest.articles:
        mask = masks[str(entry["segment"])]
        row, count = int(entry["row"]), int(entry["chunks"])
        if row < 0 or count < 0 or row + count > len(mask) or mask[row : row + count].any():
            raise ValueError(f"article {entry.get('id')} rows")
        mask[row : row + count] = True
    return masks


def verify_deletions(folder: Path, manifest: Manifest) -> None:
    """Each segment's deletion list holds exactly the rows no live article holds (cheap: no records are read)."""
    try:
        masks = live_rows(manifest)
        for seg in manifest.segments:
            deleted = np.load(folder / seg.deletions, allow_pickle=False) if seg.deletions else np.zeros(0, np.int64)
            if not np.array_equal(np.flatnonzero(~masks[seg.id]), np.asarray(deleted, dtype=np.int64)):
                raise ValueError(seg.id)
    except (OSError, ValueError, KeyError, TypeError):
        raise IndexInvalid(f"{folder}/ files do not agree with its manifest: run `qa build --full`") from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@dataclass
class Segment:
    """One loaded segment: its records, vectors, FAISS index and postings, and which rows are deleted."""

    entry: SegmentEntry
    articles: list[Article]
    chunks: list[Chunk]
    vectors: np.ndarray
    dense: Any
    postings: Postings
    deleted: np.ndarray


def read_segment(folder: Path, entry: SegmentEntry, *, records: bool = True) -> Segment:
    """Open one segment's files (vectors and FAISS memory-mapped); ``records=False`` skips the JSONL."""
    base = folder / entry.folder
    articles = [Article.from_json(r) for r in _read_jsonl(base / SEGMENT_FILES["articles"])] if records else []
    chunks = [Chunk.from_json(r) for r in _read_jsonl(base / SEGMENT_FILES["chunks"])] if records else []
    vectors = np.load(base / SEGMENT_FILES["vectors"], mmap_mode="r", allow_pickle=False)
    dense = read_dense(base / SEGMENT_FILES["dense"])
    postings = Postings.load(base, mmap=True)
    deleted = (
        np.load(folder / entry.deletions, allow_pickle=False) if entry.deletions else np.zeros(0, dtype=np.int64)
    )
    return Segment(entry, articles, chunks, vectors, dense, postings, np.asarray(deleted))


class RowVectors:
    """The live chunks' vectors by global row, read from each segment's memory-mapped file on use."""

    def __init__(self, segments: Sequence[Segment], seg_of: np.ndarray, local_of: np.ndarray, dim: int) -> None:
        self._vectors = [s.vectors for s in segments]
        self._seg_of = seg_of
        self._local_of = local_of
        self.shape = (len(seg_of), dim)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        if isinstance(rows, (int, np.integer)):
            return np.asarray(self._vectors[self._seg_of[rows]][self._local_of[rows]], dtype=np.float32)
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        segs = self._seg_of[rows]
        for seg in np.unique(segs).tolist():
            where = segs == seg
            local = self._local_of[rows[where]]
            order = np.argsort(local, kind="stable")  # read each file in ascending order
            block = np.empty((len(local), self.shape[1]), dtype=np.float32)
            block[order] = self._vectors[seg][local[order]]
            out[where] = block
        return out

    def __array__(self, dtype=None, copy=None):
        return self[:].astype(dtype or np.float32, copy=False)


class Index:
    """A loaded index generation: the live articles and chunks of all its segments, searchable as one.

    Rows are global: the live chunks of the first segment, then the second's, and
    so on. ``chunks[row]``, ``vectors[row]``, ``dense_search`` and ``lexical``
    all use them.
    """

    def __init__(self, folder: Path, manifest: Manifest, segments: list[Segment]) -> None:
        self.folder = folder
        self.manifest = manifest
        self.segments = segments
        order = [a["id"] for a in manifest.articles]
        by_id = {a.id: a for s in segments for a in s.articles}
        self.articles: dict[str, Article] = {i: by_id[i] for i in order}
        self.chunks: list[Chunk] = []
        seg_of, local_of, dense_parts, lexical_parts = [], [], [], []
        for number, seg in enumerate(segments):
            live = np.ones(seg.entry.chunks, dtype=bool)
            live[seg.deleted] = False
            local = np.flatnonzero(live)
            rows = np.full(seg.entry.chunks, -1, dtype=np.int64)
            rows[local] = len(self.chunks) + np.arange(len(local))
            self.chunks.extend(seg.chunks[i] for i in local.tolist())
            seg_of.append(np.full(len(local), number, dtype=np.int64))
            local_of.append(local)
            dense_parts.append((seg.dense, rows, seg.entry.deleted))
            lexical_parts.append((seg.postings, rows))
        cat = lambda a: np.concatenate(a) if a else np.zeros(0, dtype=np.int64)  # noqa: E731
        self.vectors = RowVectors(segments, cat(seg_of), cat(local_of), manifest.dim)
        self._dense_parts = dense_parts
        self.lexical = Lexical(lexical_parts)

    @property
    def build_id(self) -> str:
        return self.manifest.build_id

    def article_of(self, chunk: Chunk) -> Article:
        return self.articles[chunk.article_id]

    def dense_search(self, query_vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Global rows and cosine scores of the ``k`` nearest live chunks, over every segment."""
        k = min(k, len(self.chunks))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return search_segments(self._dense_parts, query_vector, k)


def load_index(folder: Path, *, model: str | None = None, checksums: bool = True) -> Index:
    """Load the committed index in ``folder``; ``model`` (if given) must be the one it was built with.

    Readers take no lock. If a build commits (and removes the files of the
    generation being read) while this reads, it starts again with the new manifest.
    """
    folder = Path(folder)
    for attempt in range(1, LOAD_ATTEMPTS + 1):
        manifest = read_manifest(folder)
        try:
            return _load_generation(folder, manifest, model, checksums)
        except IndexInvalid:
            if attempt == LOAD_ATTEMPTS or _current_build_id(folder) in (None, manifest.build_id):
                raise
            log.info("index %s was replaced while loading it; loading the new one", manifest.build_id)
    raise AssertionError("unreachable")  # pragma: no cover


def _current_build_id(folder: Path) -> str | None:
    try:
        return read_manifest(folder).build_id
    except IndexLoadError:
        return None


def _load_generation(folder: Path, manifest: Manifest, model: str | None, checksums: bool) -> Index:
    if model is not None and model != manifest.model:
        raise IndexInvalid(
            f"{folder}/ was built with model {manifest.model!r}, not {model!r}: "
            f"run `qa build --full` to rebuild it with {model!r}, or use {manifest.model!r}"
        )
    verify_files(folder, manifest, checksums=checksums)
    try:
        segments = [read_segment(folder, entry) for entry in manifest.segments]
    except Exception as exc:  # noqa: BLE001 - json, numpy and faiss each raise their own kinds
        raise IndexInvalid(f"{folder}/ cannot be read ({type(exc).__name__}): run `qa build --full`") from None
    if not _agrees(manifest, segments):
        raise IndexInvalid(f"{folder}/ files do not agree with its manifest: run `qa build --full`")
    return Index(folder, manifest, segments)


def _agrees(manifest: Manifest, segments: list[Segment]) -> bool:
    """Every count, shape and span matches the manifest, and the deletion lists match its live articles."""
    if len(manifest.articles) != manifest.counts.get("articles") or len(
        {a["id"] for a in manifest.articles}
    ) != len(manifest.articles):
        return False
    if sum(s.entry.live for s in segments) != manifest.counts.get("chunks"):
        return False
    try:
        masks = live_rows(manifest)
    except (ValueError, KeyError, TypeError):
        return False
    wanted = {a["id"]: a for a in manifest.articles}
    found = 0
    for seg in segments:
        e = seg.entry
        by_id = {a.id: a for a in seg.articles}
        if (
            len(seg.chunks) != e.chunks
            or len(seg.articles) != e.articles
            or seg.vectors.dtype != np.float32
            or seg.vectors.shape != (e.chunks, manifest.dim)
            or seg.dense.ntotal != e.chunks
            or seg.dense.d != manifest.dim
            or seg.postings.n_docs != e.chunks
            or len(seg.deleted) != e.deleted
            or not np.array_equal(np.flatnonzero(~masks[e.id]), np.asarray(seg.deleted, dtype=np.int64))
            or any(c.article_id not in by_id or by_id[c.article_id].text[c.start : c.end] != c.text for c in seg.chunks)
        ):
            return False
        for article_id in by_id:
            entry = wanted.get(article_id)
            if entry is None or entry["segment"] != e.id:
                continue
            found += 1
            row, count = int(entry["row"]), int(entry["chunks"])
            if any(c.article_id != article_id for c in seg.chunks[row : row + count]):
                return False
    return found == len(manifest.articles)
