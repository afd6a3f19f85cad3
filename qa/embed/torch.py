"""``SentenceTransformerEmbedder``: the model on PyTorch via sentence-transformers, loaded lazily and once.

Always fp32 vectors, recorded under the bare model name. torch is imported on
first use only, so ``qa --help`` stays light.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qa.embed.base import DEFAULT_BATCH, EmbedderError, Progress, encode_sorted
from qa.embed.names import canonical_base, model_location, split_model_name
from qa.settings import DEFAULT_MODEL, default_model

log = logging.getLogger(__name__)


class SentenceTransformerEmbedder:
    """A sentence-transformers model; loads on first use, offline for the bundled one."""

    def __init__(self, model: str | None = None, *, batch_size: int = DEFAULT_BATCH, device: str = "cpu") -> None:
        self._name = canonical_base(split_model_name(model or default_model())[0])
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
