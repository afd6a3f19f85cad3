"""Export the model to ONNX, locally and once: fp32, and int8 for ``onnx-int8``; the runtime side is ``onnx.py``.

Nothing is downloaded. The first use exports the sentence-transformers model
(a BERT encoder with mean pooling) to ONNX with ``torch.onnx.export``, fuses
attention and layer norms with ONNX Runtime's transformer optimizer, and, for
``onnx-int8``, quantizes the matrix products to int8 per channel (dynamic
quantization: weights int8, activations quantized on the fly, which uses
AVX-512 VNNI where the CPU has it). The files go to a cache folder outside the
project and the virtualenv (``$QA_CACHE`` or ``~/.cache/qa``), named by the
sha256 of the model's weights, so a changed model is exported again. Only the
file in use is kept: int8 (58 MB for the bundled model) keeps no fp32 copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import uuid
from pathlib import Path

from qa.errors import QAError
from qa.settings import cache_root

log = logging.getLogger(__name__)

#: Bump when the export recipe changes, so old cached files are not reused.
EXPORT_VERSION = "1"
#: ONNX Runtime's operator set used for the export.
OPSET = 17


class OnnxUnavailable(QAError):
    """A package the ONNX backend needs is not installed, or the model is one it cannot run; the message says which."""


def require_runtime() -> None:
    """Raise ``OnnxUnavailable`` unless onnxruntime can be imported (``exported_model`` also needs onnx, once)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise OnnxUnavailable("onnxruntime is not installed (pip install onnxruntime onnx)") from None


def cache_dir() -> Path:
    """Where exported models are kept: ``$QA_CACHE/onnx`` or ``~/.cache/qa/onnx``."""
    return cache_root() / "onnx"


def _weights_digest(model_dir: Path) -> str:
    digest = hashlib.sha256(EXPORT_VERSION.encode())
    for name in ("model.safetensors", "pytorch_model.bin", "config.json", "1_Pooling/config.json"):
        path = model_dir / name
        if path.is_file():
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def _pooling_mode(model_dir: Path) -> str:
    config = model_dir / "1_Pooling" / "config.json"
    if not config.is_file():
        return "mean"
    data = json.loads(config.read_text())
    if data.get("pooling_mode_cls_token"):
        return "cls"
    if data.get("pooling_mode_mean_tokens", True):
        return "mean"
    raise OnnxUnavailable(f"the ONNX backend supports mean or CLS pooling, not the pooling in {config}")



@contextlib.contextmanager
def _export_lock(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield


def _export_fp32(model_dir: Path, target: Path) -> None:
    """Trace the encoder plus pooling into ``target`` (eager attention, so ORT can fuse it)."""
    import torch
    from transformers import AutoConfig, AutoModel

    mode = _pooling_mode(model_dir)
    config = AutoConfig.from_pretrained(str(model_dir))
    encoder = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            if mode == "cls":
                return hidden[:, 0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    sample = torch.ones(2, 16, dtype=torch.long)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "token_type_ids")}
    dynamic["embedding"] = {0: "batch"}
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled(encoder),
            (sample, sample, torch.zeros_like(sample)),
            str(target),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    _optimize(target, heads=int(config.num_attention_heads), hidden=int(config.hidden_size))


def _optimize(path: Path, heads: int, hidden: int) -> None:
    """Fuse attention, GELU and layer norms in place (ONNX Runtime's BERT optimizer)."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    optimized.save_model_to_file(str(path))
    log.info("optimized ONNX graph: %s", fused)


class _FromOnnxRuntime(logging.Filter):
    """Drops the root-logger chatter of ONNX Runtime's quantizer (it logs through ``logging.info``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of the matrix products, per output channel."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    chatter = _FromOnnxRuntime()
    logging.getLogger().addFilter(chatter)
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Attention"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.getLogger().removeFilter(chatter)


def exported_model(model_dir: Path, int8: bool) -> Path:
    """The cached ONNX file for the model in ``model_dir``; exported (once) if missing."""
    require_runtime()
    folder = cache_dir() / _weights_digest(model_dir)
    fp32 = folder / "model.onnx"
    wanted = folder / ("model-int8.onnx" if int8 else "model.onnx")
    if wanted.is_file():
        return wanted
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise OnnxUnavailable("onnx is not installed, needed once to export the model (pip install onnx)") from None
    with _export_lock(folder):
        if wanted.is_file():
            return wanted
        tmp = folder / f".{uuid.uuid4().hex[:8]}.tmp.onnx"
        staged = folder / f".{uuid.uuid4().hex[:8]}.fp32.onnx"  # int8's fp32 step, not kept: only what is used stays
        try:
            source = fp32
            if not fp32.is_file():
                log.info("exporting %s to ONNX in %s (once)", model_dir, folder)
                source = staged if int8 else fp32
                _export_fp32(model_dir, tmp)
                os.replace(tmp, source)
            if int8:
                log.info("quantizing the ONNX model to int8 (once)")
                _quantize(source, tmp)
                os.replace(tmp, wanted)
        finally:
            for path in (tmp, staged):
                with contextlib.suppress(OSError):
                    path.unlink()
        (folder / "source.json").write_text(json.dumps({"model": str(model_dir), "export_version": EXPORT_VERSION}))
    return wanted
