"""The index folder: save it atomically, load it with checks, search it.

Layout (every data file carries the build id, so two builds never share a name)::

    index/
      manifest.json            written last, atomically; names everything below
      articles-<id>.jsonl      one Article per line (cleaned text, metadata)
      chunks-<id>.jsonl        one Chunk per line, in vector order
      vectors-<id>.npy         float32 [chunks, dim], L2-normalised (allow_pickle=False)
      dense-<id>.faiss         FAISS inner-product index over those vectors
      bm25-<id>/               bm25s arrays (.npy) and vocabulary (.json)

A reader opens ``manifest.json`` first and only the files it names, so it sees
the old index or the new one, never a mix. Files no manifest names are removed
by the next build, after its manifest is in place. Readers take no lock; one
that loses the race with a commit starts again on the new manifest. Builds take
``.lock`` (``flock``); a second build stops with ``IndexBusy``. Why each step is
there, and the tests that kill builds to prove it: docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import QAError
from .dense import make_dense, read_dense, search_dense, write_dense
from .lexical import Lexical
from .records import Article, Chunk, sha256_file
from .settings import INDEX_FORMAT, ChunkSettings

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK = ".lock"
_OWN_FILE = re.compile(r"^(articles|chunks|vectors|dense|bm25)-[0-9a-f]{12}(\.jsonl|\.npy|\.faiss)?$|^manifest\.json\..*\.tmp$")
_SUFFIX = {"articles": ".jsonl", "chunks": ".jsonl", "vectors": ".npy", "dense": ".faiss", "bm25": ""}
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
    raw: dict[str, Any]


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_entries(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file under the given names (folders are walked)."""
    entries: dict[str, dict[str, Any]] = {}
    for name in names:
        path = folder / name
        paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for p in paths:
            _fsync_path(p)
            rel = p.relative_to(folder).as_posix()
            entries[rel] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        if path.is_dir():
            _fsync_path(path)
    return entries


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("qa", "faiss-cpu", "numpy", "bm25s", "sentence-transformers", "torch", "langchain-text-splitters"):
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


def save_index(
    folder: Path,
    *,
    articles: list[Article],
    chunks: list[Chunk],
    vectors: np.ndarray,
    model: str,
    chunking: ChunkSettings,
    lexical: Lexical | None = None,
    previous: Index | None = None,
) -> Manifest:
    """Write a new index generation into ``folder`` and commit it by replacing the manifest.

    The caller holds ``writer_lock(folder)``. Data files are written and fsynced
    under new names first; the manifest is replaced last (temp file, fsync,
    ``os.replace``, fsync of the folder); then files no manifest names are removed.
    ``previous`` (the loaded index being replaced) saves work: BM25 keeps the
    tokens of the chunks it already holds, an IVF keeps its centroids; search
    scores come out as a fresh build's.
    """
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    folder.mkdir(parents=True, exist_ok=True)
    build_id = uuid.uuid4().hex[:12]
    names = {
        "articles": f"articles-{build_id}.jsonl",
        "chunks": f"chunks-{build_id}.jsonl",
        "vectors": f"vectors-{build_id}.npy",
        "dense": f"dense-{build_id}.faiss",
        "bm25": f"bm25-{build_id}",
    }
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    tmp = folder / f"{MANIFEST}.{build_id}.tmp"
    try:
        raw = _write_generation(folder, build_id, names, articles, chunks, vectors, model, chunking, lexical, previous)
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(raw, fh, ensure_ascii=False, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / MANIFEST)  # the commit point: atomic, so it happened or it did not
    except BaseException:
        # Not committed: the old manifest still rules. Remove this build's files now
        # (the next build would also remove them) so a full disk gets its space back.
        _remove_paths(folder, [*names.values(), tmp.name])
        raise
    try:
        _fsync_path(folder)
    except OSError as exc:  # committed already; only durability across a power cut is in doubt
        log.warning("could not fsync %s after the commit: %s", folder, exc)
    log.info("committed index %s: %d articles, %d chunks", build_id, len(articles), len(chunks))
    remove_unreferenced(folder, raw)
    return _parse_manifest(raw, folder)


def _write_generation(
    folder: Path,
    build_id: str,
    names: dict[str, str],
    articles: list[Article],
    chunks: list[Chunk],
    vectors: np.ndarray,
    model: str,
    chunking: ChunkSettings,
    lexical: Lexical | None,
    previous: Index | None = None,
) -> dict[str, Any]:
    """Write and fsync the data files of one generation; return its manifest (not yet written)."""
    _write_jsonl(folder / names["articles"], (a.to_json() for a in articles))
    _write_jsonl(folder / names["chunks"], (c.to_json() for c in chunks))
    np.save(folder / names["vectors"], vectors, allow_pickle=False)
    dense = make_dense(vectors, previous=previous.dense if previous is not None else None)
    write_dense(dense, folder / names["dense"])
    if lexical is None:
        lexical = Lexical.build(
            [c.text for c in chunks],
            previous=previous.lexical if previous is not None else None,
            previous_texts=[c.text for c in previous.chunks] if previous is not None else (),
        )
    lexical.save(folder / names["bm25"])
    files = _file_entries(folder, list(names.values()))
    _fsync_path(folder)  # the new names are durable before a manifest can point at them

    per_article: dict[str, int] = {}
    for chunk in chunks:
        per_article[chunk.article_id] = per_article.get(chunk.article_id, 0) + 1
    return {
        "format": INDEX_FORMAT,
        "build_id": build_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"name": model, "dim": int(vectors.shape[1]), "normalized": True, "metric": "inner_product"},
        "chunking": {"splitter": "langchain RecursiveCharacterTextSplitter", **chunking.to_json()},
        "dense": {"kind": type(dense).__name__, "file": names["dense"]},
        "names": names,
        "counts": {"articles": len(articles), "chunks": len(chunks)},
        "articles": [
            {"id": a.id, "sha256": a.sha256, "source": a.source, "chunks": per_article.get(a.id, 0)} for a in articles
        ],
        "files": files,
        "versions": _versions(),
    }


def _remove_paths(folder: Path, names: list[str]) -> None:
    for name in names:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()


def remove_unreferenced(folder: Path, raw: dict[str, Any] | None = None) -> list[str]:
    """Delete data files of older or torn builds (only names this package writes)."""
    if raw is None:
        try:
            raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
    keep = set((raw.get("names") or {}).values())
    removed = sorted(p.name for p in folder.iterdir() if p.name not in keep and _OWN_FILE.match(p.name))
    _remove_paths(folder, removed)
    if removed:
        log.info("removed %d leftover file(s) from %s", len(removed), folder)
    return removed


def _check_names(raw: dict[str, Any]) -> None:
    """The manifest may only name this build's own files inside the folder, each with a checksum."""
    build_id = str(raw["build_id"])
    names = raw["names"]
    files = raw["files"]
    if not isinstance(names, dict) or set(names) != set(_SUFFIX) or not isinstance(files, dict):
        raise ValueError("names")
    for kind, name in names.items():
        if name != f"{kind}-{build_id}{_SUFFIX[kind]}" or not _OWN_FILE.match(name):
            raise ValueError(f"names.{kind}")
        if not any(rel == name or rel.startswith(name + "/") for rel in files):
            raise ValueError(f"files lacks {name}")
    for rel, entry in files.items():
        parts = rel.split("/")
        if parts[0] not in names.values() or ".." in parts or "" in parts or len(parts) > 2:
            raise ValueError(f"files.{rel}")
        if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int) or not isinstance(entry.get("sha256"), str):
            raise ValueError(f"files.{rel}")


def _parse_manifest(raw: dict[str, Any], folder: Path) -> Manifest:
    try:
        _check_names(raw)
        if not isinstance(raw["articles"], list):
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
            dense_kind=str(raw["dense"]["kind"]),
            articles=tuple(raw["articles"]),
            files=dict(raw["files"]),
            counts={k: int(v) for k, v in raw["counts"].items()},
            versions=dict(raw.get("versions", {})),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as exc:
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
    if not isinstance(raw, dict) or raw.get("format") != INDEX_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else None
        raise IndexInvalid(
            f"{folder}/ holds an index of format {found!r}, this version reads {INDEX_FORMAT!r}: run `qa build --full`"
        )
    return _parse_manifest(raw, folder)


def verify_files(folder: Path, manifest: Manifest, *, checksums: bool = True) -> None:
    """Check that every file the manifest names is there, with its size (and sha256)."""
    for rel, entry in manifest.files.items():
        path = folder / rel
        try:
            # A file can vanish between these steps when a build commits meanwhile: that too is IndexInvalid,
            # so load_index starts again with the new manifest.
            if not path.is_file():
                raise IndexInvalid(f"{folder}/ is missing {rel}, which its manifest names: run `qa build --full`")
            if path.stat().st_size != entry["bytes"]:
                raise IndexInvalid(f"{folder}/{rel} has the wrong size for its manifest: run `qa build --full`")
            if checksums and sha256_file(path) != entry["sha256"]:
                raise IndexInvalid(f"{folder}/{rel} does not match its manifest checksum: run `qa build --full`")
        except OSError as exc:
            raise IndexInvalid(f"{folder}/{rel} cannot be read ({exc.strerror or exc}): run `qa build --full`") from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class Index:
    """A loaded index generation: records, vectors, the FAISS and BM25 indexes."""

    def __init__(
        self,
        folder: Path,
        manifest: Manifest,
        articles: dict[str, Article],
        chunks: list[Chunk],
        vectors: np.ndarray,
        dense,
        lexical: Lexical,
    ) -> None:
        self.folder = folder
        self.manifest = manifest
        self.articles = articles
        self.chunks = chunks
        self.vectors = vectors
        self.dense = dense
        self.lexical = lexical

    @property
    def build_id(self) -> str:
        return self.manifest.build_id

    def article_of(self, chunk: Chunk) -> Article:
        return self.articles[chunk.article_id]

    def dense_search(self, query_vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and cosine scores of the ``k`` nearest chunks."""
        k = min(k, len(self.chunks))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return search_dense(self.dense, query_vector, k)


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
    names = manifest.raw["names"]
    try:
        articles = [Article.from_json(row) for row in _read_jsonl(folder / names["articles"])]
        chunks = [Chunk.from_json(row) for row in _read_jsonl(folder / names["chunks"])]
        vectors = np.load(folder / names["vectors"], mmap_mode="r", allow_pickle=False)
        dense = read_dense(folder / names["dense"])
        lexical = Lexical.load(folder / names["bm25"], mmap=True)
    except Exception as exc:  # noqa: BLE001 - json, numpy, faiss and bm25s each raise their own kinds
        raise IndexInvalid(f"{folder}/ cannot be read ({type(exc).__name__}): run `qa build --full`") from None
    by_id = {a.id: a for a in articles}
    if (
        len(chunks) != manifest.counts.get("chunks")
        or len(articles) != manifest.counts.get("articles")
        or vectors.dtype != np.float32
        or vectors.shape != (len(chunks), manifest.dim)
        or dense.ntotal != len(chunks)
        or dense.d != manifest.dim
        or lexical.n_docs != len(chunks)
        or any(c.article_id not in by_id or by_id[c.article_id].text[c.start : c.end] != c.text for c in chunks)
    ):
        raise IndexInvalid(f"{folder}/ files do not agree with its manifest: run `qa build --full`")
    return Index(folder, manifest, by_id, chunks, vectors, dense, lexical)
