"""The index folder's layout: its file names, ids and format version. Nothing here reads or writes.

Layout (names carry ids, so two builds never write the same name)::

    index/
      manifest.json                 written last, atomically; names everything below (counts, segments, model,
                                    files); small, parsed by every reader
      catalog-<build>.json          every live article's source, sha256 and rows, every source file read: for
                                    builds and listings only (qa/index/catalog.py), never parsed to answer
      seg-<segment>/                one immutable segment, written once by the build that made it
        articles.jsonl              its articles (cleaned text, metadata)
        chunks.jsonl                its chunks, in vector order (local rows)
        articles.table.npy, chunks.table.npy
                                    where each record starts, its digest (see qa/index/records.py)
        term_keys.npy               each BM25 term's 64-bit key and id, sorted (no vocabulary dict at load)
        titles.json                 each article's [id, title, source], by position: the Articles filter's
                                    one read (checked against the manifest's sha256 when read)
        vectors.npy                 float32 [chunks, dim], L2-normalised (allow_pickle=False)
        dense.faiss                 FAISS inner-product index over those vectors
        terms.json, term_ptr.npy, post_rows.npy, post_tfs.npy, lengths.npy
                                    BM25 postings (counts only; see qa/index/lexical.py)
      deleted-<segment>-<build>.npy local rows of that segment whose articles were removed or changed
      .lock                         the writer lock (qa/index/writer.py)

What the manifest holds and how it is parsed: qa/index/manifest.py. How a
build commits and why each step is there: qa/index/writer.py and
docs/reliability.md.
"""

from __future__ import annotations

import os
import re
import uuid

from qa.index.lexical import Postings
from qa.settings import default_index_dir

#: Version of the index folder layout; bump when the files change shape. 3: the per-article and per-source
#: entries moved from the manifest into the catalog file.
INDEX_FORMAT = "qa-index/3"
#: Older layouts this version still reads and serves (their manifest holds the catalog inline); the next build
#: rewrites them in this layout without embedding anything again.
READABLE_FORMATS = ("qa-index/2",)
#: Layouts this version recognises but cannot read: loading them says to rebuild with `qa build --full`.
OLD_INDEX_FORMATS = ("qa-index/1",)

MANIFEST = "manifest.json"
LOCK = ".lock"
#: A segment or build id: 12 lower-case hex digits.
ID_PATTERN = "[0-9a-f]{12}"
#: Names this package writes at the top of an index folder (older layouts' names included, so a
#: rebuild removes them); nothing else there is ever deleted.
_OWN_FILE = re.compile(
    rf"^seg-{ID_PATTERN}$|^deleted-{ID_PATTERN}-{ID_PATTERN}\.npy$|^manifest\.json\..*\.tmp$"
    rf"|^catalog-{ID_PATTERN}\.json$"
    rf"|^(articles|chunks|vectors|dense|bm25)-{ID_PATTERN}(\.jsonl|\.npy|\.faiss)?$"
)
#: The files of one segment, by what they hold.
SEGMENT_FILES = {
    "articles": "articles.jsonl",
    "chunks": "chunks.jsonl",
    "vectors": "vectors.npy",
    "dense": "dense.faiss",
    "postings": "terms.json",  # and the arrays Postings.file_names() lists
    "article_table": "articles.table.npy",
    "chunk_table": "chunks.table.npy",
    "term_keys": "term_keys.npy",
    "titles": "titles.json",
}
#: What every segment holds; segments written before record tables existed hold only these.
REQUIRED_KINDS = ("articles", "chunks", "vectors", "dense", "postings")
#: What a segment written by this version holds. ``titles``: each article's id, title and source, by position, so
#: the Articles tab's filter reads one small file a segment instead of every article's record (text and all).
WRITTEN_KINDS = (*REQUIRED_KINDS, "article_table", "chunk_table", "term_keys", "titles")


def new_id() -> str:
    """A fresh 12-hex-digit id for a segment or a build."""
    return uuid.uuid4().hex[:12]


def is_id(text: str) -> bool:
    """Whether ``text`` is a segment or build id."""
    return re.fullmatch(ID_PATTERN, text) is not None


def segment_folder(segment_id: str) -> str:
    """The folder (relative to the index folder) of one segment."""
    return f"seg-{segment_id}"


def segment_file_names(kinds: tuple[str, ...] = WRITTEN_KINDS) -> list[str]:
    """Every file a segment folder holding ``kinds`` has, relative to it."""
    return [name for kind in kinds for name in ([SEGMENT_FILES[kind]] if kind != "postings" else Postings.file_names())]


def segment_holds(kinds: tuple[str, ...] = WRITTEN_KINDS) -> dict[str, str | list[str]]:
    """What a segment holds, by kind, as the manifest records it (so a later version can add kinds beside them)."""
    return {kind: (SEGMENT_FILES[kind] if kind != "postings" else Postings.file_names()) for kind in kinds}


def kinds_of(holds: object) -> tuple[str, ...]:
    """The kinds a manifest's ``holds`` names (``ValueError`` if it names a file this version does not know).

    A segment entry without ``holds`` holds the required kinds only.
    """
    if holds is None:
        return REQUIRED_KINDS
    if not isinstance(holds, dict):
        raise ValueError("holds")
    kinds = tuple(k for k in WRITTEN_KINDS if k in holds)
    if set(holds) != set(kinds) or not set(REQUIRED_KINDS) <= set(kinds) or holds != segment_holds(kinds):
        raise ValueError("holds")
    if ("article_table" in kinds) != ("chunk_table" in kinds):
        raise ValueError("holds")
    return kinds


def deletions_name(segment_id: str, build_id: str) -> str:
    """The deletion list that build ``build_id`` writes for segment ``segment_id``."""
    return f"deleted-{segment_id}-{build_id}.npy"


def is_deletions_name(name: str, segment_id: str) -> bool:
    """Whether ``name`` is a deletion list of segment ``segment_id``."""
    return re.fullmatch(rf"deleted-{segment_id}-{ID_PATTERN}\.npy", name) is not None


def catalog_name(build_id: str) -> str:
    """The catalog file that build ``build_id`` writes."""
    return f"catalog-{build_id}.json"


def is_catalog_name(name: str) -> bool:
    """Whether ``name`` is a catalog file's name."""
    return re.fullmatch(rf"catalog-{ID_PATTERN}\.json", name) is not None


def manifest_temp_name(build_id: str) -> str:
    """Where build ``build_id`` writes its manifest before it replaces ``manifest.json``."""
    return f"{MANIFEST}.{build_id}.tmp"


def is_own_file(name: str) -> bool:
    """Whether a name at the top of an index folder is one this package writes (so it may remove it)."""
    return _OWN_FILE.match(name) is not None


def build_command(folder: str | os.PathLike[str], *, full: bool = False) -> str:
    """The ``qa build`` command that (re)builds ``folder``: ``--index`` named unless it is the default folder."""
    command = "qa build --full" if full else "qa build"
    if os.path.abspath(folder) != os.path.abspath(default_index_dir()):
        command += f" --index {os.fspath(folder).rstrip('/') or '/'}/"
    return command
