"""Open a committed index: read its manifest, check every file against it, load it as an ``Index``.

Readers take no lock: they open the manifest first and only the files it
names, so they see the old index or the new one, never a mix; one that loses
the race with a commit (its files removed while it reads) starts again on the
new manifest. Every failure is an ``IndexLoadError`` whose one-line message
says what to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from qa.index.errors import IndexInvalid, IndexLoadError, IndexMissing
from qa.index.format import INDEX_FORMAT, MANIFEST, SEGMENT_FILES, build_command
from qa.index.lexical import Postings
from qa.index.manifest import (
    FileEntry,
    Manifest,
    ManifestMalformed,
    ManifestOtherFormat,
    ManifestUnreadable,
    decode_manifest,
)
from qa.index.records import RecordDamaged, check_table, id_key, id_keys
from qa.index.searchable import Index
from qa.index.segment import Segment, read_deletions, read_segment
from qa.records import sha256_file

log = logging.getLogger(__name__)

#: How often ``load_index`` starts again when a build commits while it reads.
LOAD_ATTEMPTS = 5
#: How an index is checked before it serves. ``full``: every file's sha256 and every record (what a
#: build's own files get, and ``qa check``). ``lazy``: every file's size, the sha256 of all but the
#: bulk files (``bulk_files``), and counts, shapes and spans; each record is checked against its
#: digest when it is read, and the bulk files are hashed by a background thread after opening.
#: ``auto``: full up to ``FULL_CHECK_BYTES`` of bulk files, lazy above. ``quick``: lazy without the
#: background pass, for tools that read an index they built themselves (benchmarks, training).
CHECKS = ("auto", "full", "lazy", "quick")
#: Up to this many bytes of bulk files (about 50,000 chunks) opening checks everything first: about
#: 0.3 s of sha256 here. Above it, opening would grow with the index (4.7 GB at a million chunks).
FULL_CHECK_BYTES = 256 << 20


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
    number = {s.id: i for i, s in enumerate(manifest.segments)}
    articles = manifest.articles
    seg_of = np.fromiter((number[a.segment] for a in articles), dtype=np.int64, count=len(articles))  # KeyError
    rows = np.fromiter((a.row for a in articles), dtype=np.int64, count=len(articles))
    counts = np.fromiter((a.chunks for a in articles), dtype=np.int64, count=len(articles))
    for i, seg in enumerate(manifest.segments):  # vectorised per segment: a loop over articles took 1 s at 10M chunks
        mask = masks[seg.id]
        mine = seg_of == i
        r, c = rows[mine], counts[mine]
        if len(r) and (r.min() < 0 or c.min() < 0 or (r + c).max() > len(mask)):
            raise ValueError(f"segment {seg.id}: article rows out of range")
        held = c > 0
        order = np.argsort(r[held], kind="stable")
        starts, lengths = r[held][order], c[held][order]
        if len(starts) > 1 and bool((starts[1:] < (starts + lengths)[:-1]).any()):
            raise ValueError(f"segment {seg.id}: articles overlap")
        total = int(lengths.sum())
        mask[np.repeat(starts, lengths) + (np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths))] = True
    return masks


def _disagree(folder: Path) -> IndexInvalid:
    return IndexInvalid(f"{folder}/ files do not agree with its manifest: run `{build_command(folder, full=True)}`")


def verify_deletions(folder: Path, manifest: Manifest) -> None:
    """Each segment's deletion list holds exactly the rows no live article holds (cheap: no records are read)."""
    try:
        masks = live_rows(manifest)
        for seg in manifest.segments:
            deleted = read_deletions(folder, seg)
            if not np.array_equal(np.flatnonzero(~masks[seg.id]), np.asarray(deleted, dtype=np.int64)):
                raise ValueError(seg.id)
    except (OSError, ValueError, KeyError, TypeError):
        raise _disagree(folder) from None


def load_index(folder: Path, *, model: str | None = None, check: str = "auto") -> Index:
    """Open the committed index in ``folder``; ``model`` (if given) must be the one it was built with.

    ``check`` says how much is verified before the index serves (see ``CHECKS``).
    Readers take no lock. If a build commits (and removes the files of the
    generation being read) while this reads, it starts again with the new manifest.
    """
    if check not in CHECKS:
        raise ValueError(f"check must be one of {', '.join(CHECKS)}")
    folder = Path(folder)
    for attempt in range(1, LOAD_ATTEMPTS + 1):
        manifest = read_manifest(folder)
        try:
            return _load_generation(folder, manifest, model, check)
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


def bulk_files(manifest: Manifest) -> list[str]:
    """The large files, which a large index checks after it opens: vectors, FAISS, posting lists, tabled records."""
    out = []
    for seg in manifest.segments:
        names = [SEGMENT_FILES["vectors"], SEGMENT_FILES["dense"], *Postings.bulk_file_names()]
        if seg.has_tables:  # each record is checked against its table's digest when it is read
            names += [SEGMENT_FILES["articles"], SEGMENT_FILES["chunks"]]
        out += [f"{seg.folder}/{name}" for name in names]
    return out


def check_mode(manifest: Manifest, check: str = "auto") -> str:
    """What ``check`` means for this index: ``auto`` is ``full`` up to ``FULL_CHECK_BYTES`` of bulk files, else
    ``lazy``."""
    if check != "auto":
        return check
    bulk = sum(manifest.files[rel].size for rel in bulk_files(manifest))
    return "full" if bulk <= FULL_CHECK_BYTES else "lazy"


def _load_generation(folder: Path, manifest: Manifest, model: str | None, check: str) -> Index:
    if model is not None and model != manifest.model:
        raise IndexInvalid(
            f"{folder}/ was built with model {manifest.model!r}, not {model!r}: "
            f"run `{build_command(folder, full=True)}` to rebuild it with {model!r}, or use {manifest.model!r}"
        )
    mode = check_mode(manifest, check)
    later = set(bulk_files(manifest)) if mode in ("lazy", "quick") else set()
    for rel, entry in manifest.files.items():
        _check_file(folder, rel, entry, rel not in later)  # sizes always; checksums of all but ``later``
    try:
        segments = [read_segment(folder, entry) for entry in manifest.segments]
    except Exception as exc:  # noqa: BLE001 - json, numpy and faiss each raise their own kinds
        raise IndexInvalid(f"{folder}/ cannot be read ({type(exc).__name__}): run `{build_command(folder, full=True)}`") from None
    if not _agrees(manifest, segments):
        raise _disagree(folder)
    index = Index(folder, manifest, segments)
    if mode == "full":
        try:
            agree = _records_agree(segments)
        except RecordDamaged as exc:
            raise index.damaged_record(str(exc)) from None
        if not agree:
            raise _disagree(folder)
        index.checked.set()
    elif mode == "lazy":
        BackgroundCheck(index, sorted(later)).start()
    else:  # quick: nothing more will be checked
        index.checked.set()
    return index


class BackgroundCheck(threading.Thread):
    """Hashes a large index's bulk files after it opened, at the lowest CPU priority.

    A file that does not match its checksum takes the index out of service: every
    later search raises its ``IndexInvalid`` (the one-line message names the file
    and the rebuild command) instead of serving from it. ``index.checked`` is set
    when the check ends. A check of an index that a newer build has replaced
    stops there: its files are being removed, which is no damage.
    """

    def __init__(self, index: Index, files: list[str]) -> None:
        super().__init__(name=f"qa-check-{index.build_id}", daemon=True)
        self.index = index
        self.files = files
        self._stamp = manifest_stamp(index.folder)

    def _replaced(self) -> bool:
        stamp = manifest_stamp(self.index.folder)
        return stamp != self._stamp and _current_build_id(self.index.folder) != self.index.build_id

    def run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: nice applies to this thread only
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        started = time.perf_counter()
        index = self.index
        try:
            for rel in self.files:
                if self._replaced():
                    log.info("index %s was replaced; its check stops", index.build_id)
                    return
                _check_file(index.folder, rel, index.manifest.files[rel], True)
            log.info("index %s: %d large files checked in %.1f s", index.build_id, len(self.files),
                     time.perf_counter() - started)
        except IndexInvalid as exc:
            if self._replaced():
                log.info("index %s was replaced while it was checked; its check stops", index.build_id)
                return
            log.error("index %s taken out of service: %s", index.build_id, exc)
            index.damage = exc
        finally:
            index.checked.set()


def _agrees(manifest: Manifest, segments: list[Segment]) -> bool:
    """Every count, shape and span matches the manifest, and the deletion lists match its live articles.

    Reads no records: each article is found by its id's key in the articles'
    table, and its chunks' table rows must point at it.
    """
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
    by_segment: dict[str, list] = {}
    for a in manifest.articles:
        by_segment.setdefault(a.segment, []).append(a)
    found = 0
    for seg in segments:
        e = seg.entry
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
        ):
            return False
        try:
            check_table(np.asarray(seg.articles.table), e.articles, seg.articles.size)
            check_table(np.asarray(seg.chunks.table), e.chunks, seg.chunks.size)
        except ValueError:
            return False
        entries = by_segment.get(e.id, [])
        if not _spans_agree(seg, entries):
            return False
        found += len(entries)
    return found == len(manifest.articles)


def _spans_agree(seg: Segment, entries: list) -> bool:
    """The chunk rows each manifest article claims are exactly the rows whose table points at that article."""
    sorted_keys, order = seg.keys_sorted()
    wanted = id_keys([a.id for a in entries])
    at = np.searchsorted(sorted_keys, wanted)
    if len(entries) and (at.max() >= len(sorted_keys) or not np.array_equal(sorted_keys[at], wanted)):
        return False
    if len(np.unique(wanted)) != len(wanted):
        return False
    positions = seg.article_positions()
    if len(positions) and (positions.min() < 0 or positions.max() >= len(sorted_keys)):
        return False
    position = order[at] if len(entries) else np.zeros(0, dtype=np.int64)
    rows = np.fromiter((a.row for a in entries), dtype=np.int64, count=len(entries))
    counts = np.fromiter((a.chunks for a in entries), dtype=np.int64, count=len(entries))
    if not np.array_equal(np.bincount(positions, minlength=len(sorted_keys))[position], counts):
        return False
    total = int(counts.sum())
    first = np.repeat(np.cumsum(counts) - counts, counts)
    span_rows = np.repeat(rows, counts) + (np.arange(total) - first)
    if total and (span_rows.min() < 0 or span_rows.max() >= len(positions)):
        return False
    return bool(np.array_equal(positions[span_rows], np.repeat(position, counts)))


def _records_agree(segments: list[Segment]) -> bool:
    """Every record decodes, matches its table and its article; a chunk's text is its article's slice (reads all)."""
    for seg in segments:
        articles = list(seg.articles)
        if any(id_key(a.id) != seg.articles.aux(i) for i, a in enumerate(articles)):
            return False
        for row, chunk in enumerate(seg.chunks):
            article = articles[seg.chunks.aux(row)]
            if chunk.article_id != article.id or article.text[chunk.start : chunk.end] != chunk.text:
                return False
    return True
