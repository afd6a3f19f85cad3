"""``get_embedder``: the one place that picks an embedding backend for a model name.

``QA_BACKEND`` (``torch``, ``onnx`` or ``onnx-int8``) picks how the default
model embeds new indexes; a name ending in ``@int8`` always means int8 ONNX;
``hash``/``hash-DIM`` gives the test fake. A backend whose packages are
missing falls back to ``torch`` with one warning (see ``names.py`` for why
the name an embedder reports matters).
"""

from __future__ import annotations

import logging
import os
import re

from qa.embed.base import Embedder, EmbedderError
from qa.embed.hashing import HashEmbedder
from qa.embed.names import bundled_model_path, canonical_base, split_model_name
from qa.embed.onnx import OnnxEmbedder
from qa.embed.onnx_export import OnnxUnavailable
from qa.embed.torch import SentenceTransformerEmbedder
from qa.settings import DEFAULT_MODEL, backend_from_env, default_model

log = logging.getLogger(__name__)

#: The backends ``QA_BACKEND`` may name.
BACKENDS = ("torch", "onnx", "onnx-int8")
#: The backend new indexes of the default model use when ``QA_BACKEND`` is unset. int8 builds about 3x
#: faster than fp32 and, with its own abstention threshold (0.67, as fp32), answers the bundled questions
#: identically or better and the RealTime QA held-out slice within a point (docs/benchmarks.md).
#: ``QA_BACKEND=onnx`` gives fp32 vectors (equal to torch's).
DEFAULT_BACKEND = "onnx-int8"

#: Warnings already given: each is logged once per process (a test clears it to see one again).
warned: set[str] = set()


def default_backend() -> str:
    """``$QA_BACKEND`` if it names a backend, else ``DEFAULT_BACKEND`` (a wrong value is warned about once)."""
    value = backend_from_env()
    if value and value not in BACKENDS:
        _warn_once(f"QA_BACKEND={value!r} is not one of {', '.join(BACKENDS)}: using {DEFAULT_BACKEND}")
        return DEFAULT_BACKEND
    return value or DEFAULT_BACKEND


def _warn_once(message: str) -> None:
    if message not in warned:
        warned.add(message)
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
    base = canonical_base(base)
    asked = backend or backend_from_env()
    chosen = backend or default_backend()
    if int8:
        chosen = "onnx-int8"
    elif (model is not None or os.environ.get("QA_MODEL")) and chosen == "onnx-int8":
        chosen = "onnx"  # a named model without @int8 means fp32 vectors
    return _make(base, chosen, asked == chosen or int8)
