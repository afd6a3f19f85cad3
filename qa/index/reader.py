"""Open a committed index: read its manifest, check every file against it, load it as an ``Index``.

Opening parses the manifest (small) and the segments' tables, never the
catalog (qa/index/catalog.py) unless the check is full: which articles are live
comes from the tables (qa/index/live.py); what agrees with what is
qa/index/agreement.py.

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
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np

from qa.index.agreement import catalog_agrees, live_rows, records_agree, tables_agree
from qa.index.catalog import Catalog
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
from qa.index.records import RecordDamaged
from qa.index.searchable import Index
from qa.index.segment import read_deletions, read_segment
from qa.records import sha256_file

log = logging.getLogger(__name__)

#: How often ``load_index`` starts again when a build commits while it reads.
LOAD_ATTEMPTS = 5
#: How an index is checked before it serves. ``full``: every file's sha256, the catalog against the
#: tables and every record (what a build's own files get, and ``qa check``). ``lazy``: every file's size,
#: the sha256 of all but the bulk files (``bulk_files``, the catalog among them), and counts, shapes,
#: tables and deletion lists; each record is checked against its digest when it is read, and a background
#: thread hashes the bulk files and checks the catalog against the tables after opening.
#: ``auto``: full up to ``FULL_CHECK_BYTES`` of bulk files, lazy above. ``quick``: lazy without the
#: background pass, for tools that read an index they built themselves (benchmarks, training).
CHECKS = ("auto", "full", "lazy", "quick")
#: Up to this many bytes of bulk files (about 50,000 chunks) opening checks everything first: about
#: 0.3 s of sha256 here. Above it, opening would grow with the index (4.7 GB at a million chunks).
FULL_CHECK_BYTES = 256 << 20
#: The bulk files every question reads: the FAISS indexes and the posting lists. The background check hashes them
#: last and leaves them in the page cache; it drops the others (records, exact vectors, the catalog, of which a
#: question reads a few pages) from the cache as it hashes them. Hashing 35 GB in name order left a 10M-chunk
#: archive's first answers reading their posting lists from disk (p50 862 ms, against 445 with these 9 GB cached).
SEARCHED_FILES = frozenset((SEGMENT_FILES["dense"], *Postings.bulk_file_names()))


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


def _check_file(folder: Path, rel: str, entry: FileEntry, checksums: bool | str, *, keep_cached: bool = True) -> None:
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
        if checksums and not unchanged and sha256_file(path, keep_cached=keep_cached) != entry.sha256:
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


def _disagree(folder: Path) -> IndexInvalid:
    return IndexInvalid(f"{folder}/ files do not agree with its manifest: run `{build_command(folder, full=True)}`")


def verify_deletions(folder: Path, manifest: Manifest, catalog: Catalog) -> None:
    """Each segment's deletion list holds exactly the rows no catalog article holds (cheap: no records are read)."""
    try:
        masks = live_rows(manifest.segments, catalog.articles)
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
    """The large files, which a large index checks after it opens: vectors, FAISS, posting lists, tabled records,
    titles files, the catalog."""
    out = [manifest.catalog] if manifest.catalog else []
    for seg in manifest.segments:
        names = [SEGMENT_FILES["vectors"], SEGMENT_FILES["dense"], *Postings.bulk_file_names()]
        if seg.has_tables:  # each record is checked against its table's digest when it is read
            names += [SEGMENT_FILES["articles"], SEGMENT_FILES["chunks"]]
        if "titles" in seg.kinds:  # checked against its manifest checksum when it is read
            names.append(SEGMENT_FILES["titles"])
        out += [f"{seg.folder}/{name}" for name in names]
    return out


def _searched(rel: str) -> bool:
    """Whether the index file ``rel`` is one of ``SEARCHED_FILES``."""
    return PurePosixPath(rel).name in SEARCHED_FILES


def check_order(files: Iterable[str]) -> list[str]:
    """The order the background check hashes ``files`` in: those a question does not search first, then
    ``SEARCHED_FILES``, each group by name."""
    return sorted(files, key=lambda rel: (_searched(rel), rel))


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
        segments = [read_segment(folder, entry, manifest.files) for entry in manifest.segments]
    except Exception as exc:  # noqa: BLE001 - json, numpy and faiss each raise their own kinds
        raise IndexInvalid(f"{folder}/ cannot be read ({type(exc).__name__}): run `{build_command(folder, full=True)}`") from None
    live = tables_agree(manifest, segments)
    if live is None:
        raise _disagree(folder)
    if manifest.inline is not None and not catalog_agrees(manifest, manifest.inline, segments):
        raise _disagree(folder)  # an older index: its catalog came with the manifest, so it is checked as before
    try:  # opened now, read when a listing or a check asks for it (a newer build may have removed it by then)
        catalog_fd = os.open(folder / manifest.catalog, os.O_RDONLY) if manifest.catalog else None
    except OSError as exc:
        raise IndexInvalid(f"{folder}/{manifest.catalog} cannot be read ({exc.strerror or exc}): "
                           f"run `{build_command(folder, full=True)}`") from None
    index = Index(folder, manifest, segments, live, catalog_fd)
    if mode == "full":
        if not catalog_agrees(manifest, index.catalog(keep=False), segments):
            raise _disagree(folder)
        try:
            agree = records_agree(segments)
        except RecordDamaged as exc:
            raise index.damaged_record(str(exc)) from None
        if not agree:
            raise _disagree(folder)
        index.checked.set()
    elif mode == "lazy":
        BackgroundCheck(index, check_order(later)).start()
    else:  # quick: nothing more will be checked
        index.checked.set()
    return index


class BackgroundCheck(threading.Thread):
    """Hashes a large index's bulk files after it opened, at the lowest CPU priority, then checks that its catalog
    agrees with the segments' tables and prepares its BM25 bounds (``Lexical.prepare_bounds``).

    A file that does not match its checksum, or a catalog that does not agree, takes the index out of service: every
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
                _check_file(index.folder, rel, index.manifest.files[rel], True, keep_cached=_searched(rel))
            if self._replaced():
                return
            manifest = index.manifest
            if not catalog_agrees(manifest, index.catalog(keep=False), index.segments):
                raise _disagree(index.folder)
            index.lexical.prepare_bounds()  # its posting lists are sound and, just hashed, in the page cache
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
