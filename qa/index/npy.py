"""``.npy`` files opened from several threads at once.

numpy parses an ``.npy`` header with ``ast.literal_eval``; on Python 3.11 two threads doing that at the same moment
can fail with ``SystemError: AST constructor recursion depth mismatch`` (cpython gh-106905), and a cold index load
in one thread while another loaded would then report a sound file as unreadable. Every header the index reads is
parsed under one lock here; the lock is held for the header and the opening of a memory map, so it costs nothing
a search would notice.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO

import numpy as np

_HEADERS = threading.Lock()


def _new_lock() -> None:
    global _HEADERS
    _HEADERS = threading.Lock()  # a forked child has no thread that could release the parent's


os.register_at_fork(after_in_child=_new_lock)


def load(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    """``np.load(path, mmap_mode, allow_pickle=False)``, its header parsed under the module's lock."""
    with _HEADERS:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)


def read_header(fh: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The shape, Fortran order and dtype of the ``.npy`` file open in ``fh``, left at the start of its data."""
    with _HEADERS:
        major, _ = np.lib.format.read_magic(fh)
        reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        return reader(fh)
