"""``HashEmbedder``: a deterministic embedder with no model, for fast tests (``hash`` or ``hash-DIM`` by name)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from qa.embed.base import Progress, l2_normalize

_WORD = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=65536)
def _word_vector(word: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


class HashEmbedder:
    """A deterministic bag-of-words embedder: each word seeds a random vector from its sha256.

    Texts that share words get similar vectors, so retrieval works in tests without a model.
    """

    def __init__(self, dim: int = 128, max_tokens: int = 256, name: str | None = None) -> None:
        self._dim = dim
        self._max_tokens = max_tokens
        self._name = name or f"hash-{dim}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        return len(_WORD.findall(text)) + text.count(".")

    def encode(self, texts: Sequence[str], *, progress: Progress | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in _WORD.findall(text.lower())[: self._max_tokens]:
                out[i] += _word_vector(word, self._dim)
            if progress is not None:
                progress(i + 1, len(texts))
        return l2_normalize(out)
