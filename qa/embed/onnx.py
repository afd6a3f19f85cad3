"""The ONNX Runtime backend: ``OnnxEmbedder`` (fp32, or int8 with ``int8=True``) and the ``OnnxEncoder`` it runs.

The model file comes from ``onnx_export.exported_model`` (exported locally on
first use and cached). Encoding then needs only ``onnxruntime`` and
``tokenizers``: no torch import, so a bot starts faster.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qa.embed.base import DEFAULT_BATCH, EmbedderError, Progress, encode_sorted, l2_normalize
from qa.embed.names import INT8_SUFFIX, canonical_base, model_location, split_model_name
from qa.embed.onnx_export import exported_model, require_runtime
from qa.settings import default_model, threads_from_env

log = logging.getLogger(__name__)


def max_seq_length(model_dir: Path) -> int:
    """The model's token limit from ``sentence_bert_config.json`` (256 for all-MiniLM-L6-v2)."""
    config = model_dir / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        if value:
            return int(value)
    return 256


def default_threads() -> int:
    """Threads for one encoder: ``$QA_THREADS`` or the CPUs this process may use."""
    if (threads := threads_from_env()) is not None:
        return threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class OnnxEncoder:
    """Runs an exported model: tokenize, run, L2-normalise. Rows in input order."""

    def __init__(self, onnx_path: Path, tokenizer_path: Path, max_tokens: int, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name: (np.int32 if "int32" in i.type else np.int64) for i in self.session.get_inputs()}
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.enable_padding()

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of one batch (padded to its longest text), L2-normalised float32."""
        encoded = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded])
        feed = {
            "input_ids": ids,
            "attention_mask": np.array([e.attention_mask for e in encoded]),
            "token_type_ids": np.zeros_like(ids),
        }
        vectors = self.session.run(None, {name: feed[name].astype(kind) for name, kind in self._inputs.items()})[0]
        return l2_normalize(vectors)


class OnnxEmbedder:
    """The same sentence-transformers model run by ONNX Runtime: ``int8`` for quantized weights.

    The ONNX file is exported from the local model on first use and cached
    (``onnx_export.cache_dir()``); encoding then needs no torch.
    """

    def __init__(self, model: str | None = None, *, int8: bool = True, batch_size: int = DEFAULT_BATCH,
                 threads: int | None = None) -> None:
        self._base = canonical_base(split_model_name(model or default_model())[0])
        self.int8 = int8
        self.batch_size = batch_size
        self.threads = threads
        self._encoder: OnnxEncoder | None = None
        self._counter = None

    @property
    def name(self) -> str:
        return self._base + (INT8_SUFFIX if self.int8 else "")

    @property
    def backend(self) -> str:
        return "onnx-int8" if self.int8 else "onnx"

    @property
    def encoder(self) -> OnnxEncoder:
        """The ``OnnxEncoder`` (exported if needed, loaded once)."""
        if self._encoder is None:
            folder = model_location(self._base)
            path = exported_model(folder, int8=self.int8)
            log.info("loading ONNX model %s", path)
            self._encoder = OnnxEncoder(path, folder / "tokenizer.json", max_seq_length(folder), self.threads)
        return self._encoder

    def prepare(self) -> None:
        """Export (if needed) and load now; raises ``OnnxUnavailable``/``EmbedderError`` instead of later."""
        require_runtime()
        if not (model_location(self._base) / "tokenizer.json").is_file():
            raise EmbedderError(f"{self._base!r} has no tokenizer.json, which the ONNX backend needs")
        _ = self.encoder

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def max_tokens(self) -> int:
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
