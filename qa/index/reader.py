"""Open a committed index: read its manifest, check every file against it, load it as an ``Index``.

Readers take no lock: they open the manifest first and only the files it
names, so they see the old index or the new one, never a mix; one that loses
the race with a commit (its files removed while it reads) starts again on the
new manifest. Every failure is an ``IndexLoadError`` whose one-line message
says what to do.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from qa.errors import QAError
from qa.index.format import INDEX_FORMAT, MANIFEST, build_command
from qa.index.manifest import (
    FileEntry,
    Manifest,
    ManifestMalformed,
    ManifestOtherFormat,
    ManifestUnreadable,
    decode_manifest,
)
from qa.index.searchable import Index
from qa.index.segment import Segment, read_deletions, read_segment
from qa.records import sha256_file

log = logging.getLogger(__name__)

#: How often ``load_index`` starts again when a build commits while it reads.
LOAD_ATTEMPTS = 5


class IndexLoadError(QAError):
    """The index cannot be used; the message says what to do."""


class IndexMissing(IndexLoadError):
    """There is no index in the folder yet."""


class IndexInvalid(IndexLoadError):
    """The folder holds an index that does not match its manifest, this version, or the model."""


def read_manifest(folder: Path) -> Manifest:
    """Read and check the manifest's format; raise ``IndexMissing``/``IndexInvalid`` with advice."""
    path = folder / MANIFEST
    if not path.exists():
        raise IndexMissing(f"no index in {folder}/ yet: run `{build_command(folder)}` to build it")
    try:
        return decode_manifest(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _advice(folder, exc) from None


def _advice(folder: Path, exc: Exception) -> IndexInvalid:
    """What to tell the user about a manifest that could not be read."""
    if isinstance(exc, ManifestOtherFormat) and exc.older:
        return IndexInvalid(
            f"{folder}/ holds an index in an older layout ({exc.found}); rebuild it with `{build_command(folder, full=True)}`"
        )
    if isinstance(exc, ManifestOtherFormat):
        return IndexInvalid(
            f"{folder}/ holds an index of format {exc.found!r}, this version reads {INDEX_FORMAT!r}: "
            f"run `{build_command(folder, full=True)}`"
        )
    if isinstance(exc, ManifestMalformed):
        return IndexInvalid(f"{folder}/{MANIFEST} is incomplete or altered ({exc}): run `{build_command(folder, full=True)}`")
    why = exc if isinstance(exc, ManifestUnreadable) else type(exc).__name__
    return IndexInvalid(f"{folder / MANIFEST} is unreadable ({why}): run `{build_command(folder, full=True)}`")


def manifest_stamp(folder: Path) -> tuple[int, int, int] | None:
    """Identifies the committed manifest file (every commit replaces it with a new inode); None if there is none."""
    try:
        st = os.stat(folder / MANIFEST)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _check_file(folder: Path, rel: str, entry: FileEntry, checksums: bool | str) -> None:
    path = folder / rel
    try:
        # A file can vanish between these steps when a build commits meanwhile: that too is IndexInvalid,
        # so load_index starts again with the new manifest.
        if not path.is_file():
            raise IndexInvalid(f"{folder}/ is missing {rel}, which its manifest names: run `{build_command(folder, full=True)}`")
        st = path.stat()
        if st.st_size != entry.size:
            raise IndexInvalid(f"{folder}/{rel} has the wrong size for its manifest: run `{build_command(folder, full=True)}`")
        unchanged = checksums == "changed" and entry.mtime_ns == st.st_mtime_ns
        if checksums and not unchanged and sha256_file(path) != entry.sha256:
            raise IndexInvalid(f"{folder}/{rel} does not match its manifest checksum: run `{build_command(folder, full=True)}`")
    except OSError as exc:
        raise IndexInvalid(f"{folder}/{rel} cannot be read ({exc.strerror or exc}): run `{build_command(folder, full=True)}`") from None


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
        mask = masks[entry.segment]
        row, count = entry.row, entry.chunks
        if row < 0 or count < 0 or row + count > len(mask) or mask[row : row + count].any():
            raise ValueError(f"article {entry.id} rows")
        mask[row : row + count] = True
    return masks


def verify_deletions(folder: Path, manifest: Manifest) -> None:
    """Each segment's deletion list holds exactly the rows no live article holds (cheap: no records are read)."""
    try:
        masks = live_rows(manifest)
        for seg in manifest.segments:
            deleted = read_deletions(folder, seg)
            if not np.array_equal(np.flatnonzero(~masks[seg.id]), np.asarray(deleted, dtype=np.int64)):
                raise ValueError(seg.id)
    except (OSError, ValueError, KeyError, TypeError):
        raise IndexInvalid(f"{folder}/ files do not agree with its manifest: run `{build_command(folder, full=True)}`") from None


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
            f"run `{build_command(folder, full=True)}` to rebuild it with {model!r}, or use {manifest.model!r}"
        )
    verify_files(folder, manifest, checksums=checksums)
    try:
        segments = [read_segment(folder, entry) for entry in manifest.segments]
    except Exception as exc:  # noqa: BLE001 - json, numpy and faiss each raise their own kinds
        raise IndexInvalid(f"{folder}/ cannot be read ({type(exc).__name__}): run `{build_command(folder, full=True)}`") from None
    if not _agrees(manifest, segments):
        raise IndexInvalid(f"{folder}/ files do not agree with its manifest: run `{build_command(folder, full=True)}`")
    return Index(folder, manifest, segments)


def _agrees(manifest: Manifest, segments: list[Segment]) -> bool:
    """Every count, shape and span matches the manifest, and the deletion lists match its live articles."""
    if len(manifest.articles) != manifest.counts.get("articles") or len(
        {a.id for a in manifest.articles}
    ) != len(manifest.articles):
        return False
    if sum(s.entry.live for s in segments) != manifest.counts.get("chunks"):
        return False
    try:
        masks = live_rows(manifest)
    except (ValueError, KeyError, TypeError):
        return False
    wanted = {a.id: a for a in manifest.articles}
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
            if entry is None or entry.segment != e.id:
                continue
            found += 1
            if any(c.article_id != article_id for c in seg.chunks[entry.row : entry.row + entry.chunks]):
                return False
    return found == len(manifest.articles)
