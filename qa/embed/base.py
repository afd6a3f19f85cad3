"""What every embedder is: the ``Embedder`` protocol, ``l2_normalize``, and the length-sorted batching they share.

The backends (``torch.py``, ``onnx.py``, ``hashing.py``, ``ray.py``) implement
the protocol; ``factory.get_embedder`` picks one. This module imports none of
them, so the index and the answer stages can depend on it alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from qa.errors import QAError

Progress = Callable[[int, int], None]

#: Most texts per forward pass; batches are length-sorted, so padding stays small.
DEFAULT_BATCH = 64
#: Most characters per forward pass, counted as the batch's longest text times its size: about 600 tokens,
#: so a batch's activations stay in the CPU's cache. Measured on this 2-core host with int8 ONNX: 150 chunks/s
#: against 110 with batches of 64 chunks, and 619 against 485 question-time sentences/s (docs/benchmarks.md).
BATCH_CHARS = 2500


class EmbedderError(QAError):
    """The model could not be found or loaded."""


class Embedder(Protocol):
    """What the pipeline needs from an embedding model."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def encode(self, texts: Sequence[str], *, progress: Progress | None = None) -> np.ndarray: ...


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as contiguous float32: inner product = cosine."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


def encode_sorted(
    texts: Sequence[str],
    dim: int,
    batch_size: int,
    encode_batch: Callable[[list[str]], np.ndarray],
    progress: Progress | None = None,
) -> np.ndarray:
    """Embed ``texts`` longest first in batches that pad little; rows come back in input order, normalised."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    out = np.zeros((len(texts), dim), dtype=np.float32)
    done = 0
    for idx in plan_batches(texts, batch_size):
        out[idx] = encode_batch([texts[i] for i in idx])
        done += len(idx)
        if progress is not None:
            progress(done, len(texts))
    return l2_normalize(out)


def plan_batches(texts: Sequence[str], batch_size: int, max_chars: int = BATCH_CHARS) -> list[list[int]]:
    """The batches ``encode_sorted`` encodes, as lists of row numbers: longest text first, cut by ``cut_batches``.

    Ray workers encode exactly these batches, so their vectors equal a local build's (int8 scales activations
    per batch, so the batch a text is in matters in the fourth decimal)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    return cut_batches(order, [len(t) for t in texts], batch_size, max_chars)


def cut_batches(order: list[int], lengths: list[int], size: int, max_chars: int = BATCH_CHARS) -> list[list[int]]:
    """Cut a longest-first order into batches of at most ``size`` texts whose texts are at least half as long
    as the batch's first (padding never more than doubles the work: the ~40 sentences of one answer range from
    10 to 80 tokens, and one padded batch cost 25% more than batches cut this way), and whose padded size
    (first length times count) stays within ``max_chars`` (one text always fits)."""
    batches: list[list[int]] = []
    for i in order:
        if batches:
            batch = batches[-1]
            longest = lengths[batch[0]]
            if len(batch) < size and 2 * lengths[i] >= longest and longest * (len(batch) + 1) <= max_chars:
                batch.append(i)
                continue
        batches.append([i])
    return batches
