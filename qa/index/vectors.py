"""A segment's ``vectors.npy``, read by row with ``pread`` instead of memory-mapped.

A search reads a few hundred scattered rows (the candidates a compressed
index re-scores, the passages retrieval re-scores). Memory-mapped, each of
those page faults maps the kernel's whole page-cache folio around the row:
on Linux 6.18 here, 200 rows of a 200,000-row file put 191 MB into the
process's resident memory, whatever ``madvise`` said. Read with ``pread``,
the same rows cost their own 1.5 KB each and the file stays in the page
cache, shared, where it was. A file cut short gives a short read, refused
here, not a crash.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from qa.index import npy
from qa.index.records import close_quietly


class VectorFile:
    """The rows of a float32 ``.npy`` matrix, read on demand: ``vectors[i]``, ``vectors[rows]``, ``vectors[a:b]``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as fh:
            shape, fortran, dtype = npy.read_header(fh)
            self._offset = fh.tell()
        if fortran or len(shape) != 2:
            raise ValueError(f"{path.name}: not a C-ordered matrix")
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY)

    def __del__(self) -> None:
        close_quietly(getattr(self, "_fd", None))

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, start: int, count: int) -> np.ndarray:
        size = count * self._row_bytes
        data = os.pread(self._fd, size, self._offset + start * self._row_bytes)
        if len(data) != size:
            raise ValueError(f"{self.path.parent.name}/{self.path.name} is shorter than its header says")
        return np.frombuffer(data, dtype=self.dtype).reshape(count, self.shape[1])

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            row = int(rows) + (len(self) if rows < 0 else 0)
            if not 0 <= row < len(self):
                raise IndexError(rows)
            return self._read(row, 1)[0]
        if isinstance(rows, slice):
            start, stop, step = rows.indices(len(self))
            block = self._read(start, max(0, stop - start))
            return block[::step] if step != 1 else block
        rows = np.asarray(rows, dtype=np.int64).ravel()
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError("row out of range")
        if not len(rows):
            return np.empty((0, self.shape[1]), dtype=self.dtype)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        block = np.empty((len(rows), self.shape[1]), dtype=self.dtype)  # the rows in file order
        # one read per run of consecutive rows (a merge asks for long runs, a search for scattered rows),
        # straight into the block: no intermediate bytes
        starts = np.flatnonzero(np.diff(ordered, prepend=-2) != 1)
        ends = np.append(starts[1:], len(ordered))
        view = memoryview(block).cast("B")
        for start, end in zip(starts.tolist(), ends.tolist()):
            size = (end - start) * self._row_bytes
            offset = self._offset + int(ordered[start]) * self._row_bytes
            got = os.preadv(self._fd, [view[start * self._row_bytes : start * self._row_bytes + size]], offset)
            if got != size:
                raise ValueError(f"{self.path.parent.name}/{self.path.name} is shorter than its header says")
        out = np.empty_like(block)
        out[order] = block
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self._read(0, len(self))
        return whole.astype(dtype, copy=False) if dtype is not None else whole
