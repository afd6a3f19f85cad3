"""A segment's records (articles, chunks): JSON lines plus a table to read any one of them without the rest.

``articles.jsonl`` and ``chunks.jsonl`` hold one JSON object per line. Beside
each, ``*.table.npy`` (uint64, one row per record and a last row) holds where
each line starts, a 64-bit BLAKE2b digest of its bytes, and one more number:
for an article, its id as a number (``id_key``), to find it by id; for a
chunk, the position of its article in the segment's articles. The last row
holds the file's size. The table is small (24 bytes a record) and is checked against the
manifest's sha256 when the index is opened; each record is then checked
against its digest when it is read. So opening a segment reads no records, and
a record that was altered after the build is refused, not quoted.

Segments written before tables existed have none: their table is made in
memory by reading the file once (what opening a segment always cost before).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")

#: Columns of a table row.
OFFSET, DIGEST, AUX = 0, 1, 2
_COLUMNS = 3


class RecordDamaged(ValueError):
    """A record's bytes do not match its digest, or do not parse: the segment was altered after its build."""


def close_quietly(fd: int | None) -> None:
    """Close a descriptor a reader opened, if it did (for ``__del__``: never raises)."""
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def digest(data: bytes) -> int:
    """The 64-bit digest a table keeps for one record's bytes."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def id_key(article_id: str) -> int:
    """An article id as the 64-bit number a table keeps (ids are 16 hex digits; anything else is digested)."""
    try:
        if len(article_id) == 16:
            return int(article_id, 16)
    except ValueError:
        pass
    return digest(article_id.encode("utf-8"))


def id_keys(article_ids: Sequence[str]) -> np.ndarray:
    """``id_key`` of many ids at once (uint64): 16-hex-digit ids in one C call, others one by one."""
    if article_ids and all(len(i) == 16 for i in article_ids):
        try:
            data = bytes.fromhex("".join(article_ids))
        except ValueError:
            data = b""  # some id is not hex
        if len(data) == 8 * len(article_ids):  # (fromhex skips spaces: an id with one is not 16 hex digits)
            return np.frombuffer(data, dtype=">u8").astype(np.uint64)
    return np.fromiter((id_key(i) for i in article_ids), dtype=np.uint64, count=len(article_ids))


def write_records(path: Path, rows: Iterable[dict[str, Any]], aux: Sequence[int] | None = None) -> np.ndarray:
    """Write ``rows`` as JSON lines to ``path`` and return their table (``aux``: one number per row, else 0)."""
    table: list[tuple[int, int, int]] = []
    offset = 0
    with path.open("wb") as fh:
        for i, row in enumerate(rows):
            line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
            table.append((offset, digest(line), int(aux[i]) if aux is not None else 0))
            fh.write(line)
            offset += len(line)
    table.append((offset, 0, 0))
    return np.asarray(table, dtype=np.uint64).reshape(-1, _COLUMNS)


def table_of(path: Path, aux: Callable[[int, dict[str, Any]], int] | None = None) -> np.ndarray:
    """The table of a records file that has none (an older segment): read and digest every line."""
    table: list[tuple[int, int, int]] = []
    offset = 0
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                extra = aux(len(table), json.loads(line)) if aux is not None else 0
                table.append((offset, digest(line), extra))
            offset += len(line)
    table.append((offset, 0, 0))
    return np.asarray(table, dtype=np.uint64).reshape(-1, _COLUMNS)


def check_table(table: np.ndarray, records: int, size: int) -> None:
    """Raise ``ValueError`` unless ``table`` describes ``records`` lines that fill a file of ``size`` bytes."""
    if table.dtype != np.uint64 or table.ndim != 2 or table.shape != (records + 1, _COLUMNS):
        raise ValueError("record table shape")
    offsets = table[:, OFFSET]
    rising = not records or bool((np.diff(offsets.astype(np.int64)) > 0).all())
    if int(offsets[0]) != 0 or int(offsets[-1]) != size or not rising:
        raise ValueError("record table offsets")


class RecordFile(Sequence[T], Generic[T]):
    """The records of one file, read one at a time by position (``pread``), checked, decoded and cached.

    ``make`` turns a decoded JSON object into the record type. Reading uses
    ``os.pread`` on a descriptor opened once, not a memory map: a file cut short
    under a running reader then gives a short read (refused by the digest), not
    a crash.
    """

    def __init__(self, path: Path, table: np.ndarray, make: Callable[[dict[str, Any]], T], *,
                 cache: int = 1024) -> None:
        self.path = path
        self.table = table
        self._make = make
        self._fd = os.open(path, os.O_RDONLY)
        self._cache: OrderedDict[int, T] = OrderedDict()
        self._cache_size = cache
        self._lock = threading.Lock()

    def __del__(self) -> None:
        close_quietly(getattr(self, "_fd", None))

    def __len__(self) -> int:
        return len(self.table) - 1

    @property
    def size(self) -> int:
        """The file's size in bytes now."""
        return os.fstat(self._fd).st_size

    def aux(self, i: int) -> int:
        """The table's extra number for record ``i``."""
        return int(self.table[i, AUX])

    def raw(self, i: int) -> bytes:
        """Record ``i``'s bytes, checked against its digest (``RecordDamaged`` if they differ)."""
        start, end = int(self.table[i, OFFSET]), int(self.table[i + 1, OFFSET])
        data = os.pread(self._fd, end - start, start)
        if len(data) != end - start or digest(data) != int(self.table[i, DIGEST]):
            raise RecordDamaged(f"{self.path.parent.name}/{self.path.name} record {i}")
        return data

    def _read(self, i: int) -> T:
        data = self.raw(i)
        try:
            return self._make(json.loads(data))
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordDamaged(f"{self.path.parent.name}/{self.path.name} record {i}: {type(exc).__name__}") from None

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        with self._lock:
            found = self._cache.get(i)
            if found is not None:
                self._cache.move_to_end(i)
                return found
        record = self._read(i)
        with self._lock:
            self._cache[i] = record
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return record

    def __iter__(self) -> Iterator[T]:
        """Every record in order, read sequentially (not cached)."""
        for i in range(len(self)):
            yield self._read(i)
