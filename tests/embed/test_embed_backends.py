"""Embedding backends: names that say which vectors an index holds, a loud fallback, and ONNX agreeing with torch."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa.embed import factory as embed
from qa.embed.base import EmbedderError
from qa.embed.factory import default_backend, get_embedder
from qa.embed.hashing import HashEmbedder
from qa.embed.names import INT8_SUFFIX, canonical_model_name, split_model_name
from qa.embed.torch import SentenceTransformerEmbedder
from qa.settings import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[2]


def test_names_distinguish_int8_vectors():
    assert split_model_name(f"{DEFAULT_MODEL}{INT8_SUFFIX}") == (DEFAULT_MODEL, True)
    assert split_model_name(DEFAULT_MODEL) == (DEFAULT_MODEL, False)
    assert canonical_model_name("all-MiniLM-L6-v2@int8") == DEFAULT_MODEL + INT8_SUFFIX
    assert canonical_model_name("default") == DEFAULT_MODEL
    assert SentenceTransformerEmbedder(DEFAULT_MODEL + INT8_SUFFIX).name == DEFAULT_MODEL  # torch is always fp32


def test_hash_embedder_is_unchanged_by_backends(monkeypatch):
    monkeypatch.setenv("QA_BACKEND", "onnx-int8")
    assert isinstance(get_embedder("hash-32"), HashEmbedder)


def test_unknown_backend_is_refused_with_the_choices():
    with pytest.raises(EmbedderError, match="torch, onnx, onnx-int8"):
        get_embedder(backend="tensorrt")


def test_bad_qa_backend_warns_once_and_uses_the_default(monkeypatch, caplog):
    monkeypatch.setenv("QA_BACKEND", "gpu-please")
    embed.warned.clear()
    with caplog.at_level(logging.WARNING, logger="qa.embed.factory"):
        assert default_backend() == embed.DEFAULT_BACKEND
        assert default_backend() == embed.DEFAULT_BACKEND
    assert len([r for r in caplog.records if "QA_BACKEND" in r.getMessage()]) == 1


def test_missing_onnxruntime_falls_back_to_torch_with_one_warning(monkeypatch, caplog):
    """No silent change of results: the fallback warns once and records the fp32 name."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an uninstalled package looks like to import
    embed.warned.clear()
    with caplog.at_level(logging.WARNING, logger="qa.embed.factory"):
        first = get_embedder(backend="onnx-int8")
        second = get_embedder(backend="onnx-int8")
    assert isinstance(first, SentenceTransformerEmbedder) and isinstance(second, SentenceTransformerEmbedder)
    assert first.name == DEFAULT_MODEL, "fp32 vectors must not be recorded as int8"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "onnxruntime" in warnings[0] and "fp32" in warnings[0]


def test_fp32_onnx_fallback_is_quiet_when_not_asked_for(monkeypatch, caplog):
    """ONNX fp32 and torch give the same vectors, so falling back for a named fp32 model changes nothing."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.delenv("QA_BACKEND", raising=False)
    embed.warned.clear()
    with caplog.at_level(logging.WARNING, logger="qa.embed.factory"):
        embedder = get_embedder(DEFAULT_MODEL)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_missing_onnxruntime_is_a_one_line_user_error(monkeypatch):
    """The CLI and the web chat show a ``QAError`` as its one line, never a traceback."""
    from qa.embed.onnx_export import OnnxUnavailable, require_runtime
    from qa.errors import QAError

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(OnnxUnavailable, match="pip install onnxruntime") as caught:
        require_runtime()
    assert isinstance(caught.value, QAError)


def test_the_protocol_module_loads_no_backend():
    """``qa.embed.base`` is what the index and answer stages import: it must not pull in a backend (no circle)."""
    code = "import sys, qa.embed.base; print(sorted(m for m in sys.modules if m.startswith('qa')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(["qa", "qa.embed", "qa.embed.base", "qa.errors"])


def test_a_named_fp32_model_never_becomes_int8(monkeypatch):
    """An index's manifest names fp32 vectors with the bare name: opening it must not switch to int8."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # keeps the test fast; the name logic is the same
    monkeypatch.setenv("QA_BACKEND", "onnx-int8")
    assert get_embedder(DEFAULT_MODEL).name == DEFAULT_MODEL


# --------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """Export into a fresh cache folder once for this module (also proves nothing is written into the repo)."""
    folder = tmp_path_factory.mktemp("qa-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("QA_CACHE", str(folder))
    yield folder
    mp.undo()


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Chunk-sized passages of the bundled articles plus short questions."""
    from qa.ingest.chunk import chunk_article
    from conftest import bundled_articles_dir, load_paths
    from qa.settings import ChunkSettings

    counter = SentenceTransformerEmbedder()
    out = []
    for article in load_paths([bundled_articles_dir()]).articles:
        out += [c.text for c in chunk_article(article, ChunkSettings(), counter.count_tokens)]
    rows = [json.loads(line) for line in (ROOT / "tests" / "questions.jsonl").read_text().splitlines() if line.strip()]
    questions = [row.get("q") or row["turns"][0] for row in rows]
    return out + questions[:30]


@pytest.mark.real
def test_onnx_backends_agree_with_torch_and_keep_retrieval(onnx_cache, texts, real_embedder):
    from qa.embed.onnx import OnnxEmbedder

    fp32 = get_embedder(backend="onnx")
    int8 = get_embedder(backend="onnx-int8")
    assert isinstance(fp32, OnnxEmbedder) and not fp32.int8 and fp32.name == DEFAULT_MODEL
    assert isinstance(int8, OnnxEmbedder) and int8.int8 and int8.name == DEFAULT_MODEL + INT8_SUFFIX
    exported = sorted(p.name for p in onnx_cache.rglob("*.onnx"))
    assert exported == ["model-int8.onnx", "model.onnx"]
    from qa.embed.names import bundled_model_path

    # the one ONNX file the package ships is the reader its card names (qa/models), never an export
    card = json.loads((ROOT / "qa" / "models" / "reader.json").read_text())
    shipped = {ROOT / "qa" / "models" / card["file"]}
    for folder in (ROOT / "qa", ROOT / "tests", ROOT / "benchmarks", bundled_model_path()):
        strays = [p for p in folder.rglob("*.onnx") if p not in shipped]
        assert not strays, f"exports must never land in {folder}"

    ref = real_embedder.encode(texts)
    a, b = fp32.encode(texts), int8.encode(texts)
    assert a.shape == b.shape == ref.shape and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert (a * ref).sum(1).min() > 0.9999, "ONNX fp32 vectors are interchangeable with torch's"
    cos = (b * ref).sum(1)
    assert cos.mean() > 0.985 and cos.min() > 0.95, f"int8 drifted: mean {cos.mean():.4f} min {cos.min():.4f}"
    assert fp32.count_tokens("Hello, world!") == real_embedder.count_tokens("Hello, world!")

    # Retrieval: each question's top-5 passages under int8 mostly the same as under fp32.
    n_q = 30
    passages = slice(0, len(texts) - n_q)
    overlap = []
    for i in range(len(texts) - n_q, len(texts)):
        top_ref = set(np.argsort(-(ref[passages] @ ref[i]))[:5].tolist())
        top_int8 = set(np.argsort(-(b[passages] @ b[i]))[:5].tolist())
        overlap.append(len(top_ref & top_int8) / 5)
    assert np.mean(overlap) >= 0.8, f"top-5 overlap {np.mean(overlap):.2f}"


@pytest.mark.real
def test_an_int8_index_is_opened_with_int8_vectors(onnx_cache, tmp_path):
    from qa.answer.bot import Bot
    from qa.index.build import build_index
    from qa.embed.onnx import OnnxEmbedder
    from qa.index.reader import read_manifest

    from conftest import bundled_articles_dir

    build_index([bundled_articles_dir()], tmp_path / "index", embedder=get_embedder(backend="onnx-int8"))
    assert read_manifest(tmp_path / "index").model == DEFAULT_MODEL + INT8_SUFFIX
    bot = Bot.load(tmp_path / "index")
    assert isinstance(bot.embedder, OnnxEmbedder) and bot.embedder.int8
    answer = bot.ask("How many times did Trump meet Kim during his first term?")
    assert not answer.abstained and any("three times" in q.text for q in answer.quotes)


def test_batches_keep_padding_bounded_and_cover_every_text():
    from qa.embed.base import cut_batches

    lengths = [500, 480, 300, 260, 120, 119, 60, 20, 19, 5]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches = cut_batches(order, lengths, size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert all(2 * lengths[i] >= lengths[batch[0]] for i in batch)
    assert cut_batches([], [], 64) == []


def test_batches_stay_within_the_character_budget_and_a_long_text_still_gets_one():
    from qa.embed.base import cut_batches

    lengths = [3000, 900, 800, 700, 600, 500, 450, 100, 90, 80, 70, 60, 50, 40]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches = cut_batches(order, lengths, size=64, max_chars=2000)
    assert batches[0] == [0]  # longer than the budget alone: a batch of its own, never dropped
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches[1:]:
        assert lengths[batch[0]] * len(batch) <= 2000
    # 3000 alone; 900+800 (a third would pad to 2700); 700+600; 500+450 (100 is under half of 500); 100..50; 40
    assert [len(b) for b in batches] == [1, 2, 2, 2, 6, 1]


def test_plan_batches_cover_every_text_once_longest_first_and_match_encode():
    """The batches a Ray worker is sent are the ones a local encode makes (so vectors match)."""
    from qa.embed.base import encode_sorted, plan_batches

    texts = [("word " * ((i * 7) % 90)).strip() or "x" for i in range(300)]
    batches = plan_batches(texts, 64)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(texts)))
    assert all(0 < len(b) <= 64 for b in batches)
    assert [len(texts[i]) for i in flat] == sorted((len(t) for t in texts), reverse=True)
    assert all(2 * len(texts[b[-1]]) >= len(texts[b[0]]) for b in batches)  # padding at most doubles the work
    seen: list[list[str]] = []

    def record(batch: list[str]) -> np.ndarray:
        seen.append(list(batch))
        return HashEmbedder(dim=16).encode(batch)

    encode_sorted(texts, 16, 64, record)
    assert seen == [[texts[i] for i in b] for b in batches]


def test_the_int8_export_keeps_only_the_file_it_uses(monkeypatch, tmp_path):
    """The fp32 export is a step on the way to int8: ~/.cache/qa keeps only model-int8.onnx (58 MB, not 148)."""
    import qa.embed.onnx_export as export

    monkeypatch.setenv("QA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(export, "_export_fp32", lambda model_dir, target: target.write_bytes(b"fp32" * 100))
    monkeypatch.setattr(export, "_quantize", lambda source, target: target.write_bytes(source.read_bytes()[:40]))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    path = export.exported_model(model_dir, int8=True)
    assert path.name == "model-int8.onnx" and path.read_bytes() == b"fp32" * 10
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith(".")) == ["model-int8.onnx",
                                                                                           "source.json"]
    assert export.exported_model(model_dir, int8=False).name == "model.onnx"  # fp32 on request: exported then
