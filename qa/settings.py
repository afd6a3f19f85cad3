"""Defaults and environment variables, in one place.

``QA_INDEX``, ``QA_ARTICLES``, ``QA_MODEL``, ``QA_ABSTAIN_BELOW`` and ``QA_RANKER`` set
the defaults of the CLI, the Python API and the web chat.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from qa.errors import QAError

#: The name the bundled model is recorded under in an index manifest.
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: Names that all mean the bundled model.
DEFAULT_MODEL_ALIASES = frozenset({DEFAULT_MODEL, "all-MiniLM-L6-v2", "default", ""})

#: Segment merging (tiered by size). A segment's tier is ``floor(log_MERGE_FACTOR(live chunks))``;
#: when ``MERGE_FACTOR`` segments share a tier they are merged into one (of the next tier up), so an
#: index of N chunks holds at most about ``(MERGE_FACTOR - 1) * log_MERGE_FACTOR(N)`` segments and
#: each chunk is rewritten about ``log_MERGE_FACTOR(N)`` times over its life.
MERGE_FACTOR = 8
#: A segment whose deleted share reaches this is rewritten without its deleted chunks at the next build.
PURGE_DELETED_SHARE = 0.5
#: No merge makes a segment of more live chunks than this, and a segment of at least half of it is
#: never merged by tier: what one merge holds in memory (its vectors, FAISS index, postings and
#: records) stays bounded however large the archive grows. ``qa build --optimize`` packs segments
#: up to it. Measured in docs/benchmarks.md.
MAX_SEGMENT_CHUNKS = 250_000
#: A build writes its new chunks as a segment each time this many are embedded, so its memory does
#: not grow with the number of new articles.
SEGMENT_FLUSH_CHUNKS = 100_000

#: Questions longer than this are cut (with a notice), so a pasted book cannot stall the bot.
MAX_QUESTION_CHARS = 2_000


def default_index_dir() -> Path:
    """The index folder: ``$QA_INDEX`` or ``index``."""
    return Path(os.environ.get("QA_INDEX") or "index")


def default_articles_dir() -> Path:
    """The articles folder: ``$QA_ARTICLES`` or ``articles``."""
    return Path(os.environ.get("QA_ARTICLES") or "articles")


def default_model() -> str:
    """The embedding model: ``$QA_MODEL`` or the bundled all-MiniLM-L6-v2."""
    return os.environ.get("QA_MODEL") or DEFAULT_MODEL


def backend_from_env() -> str | None:
    """``$QA_BACKEND`` lower-cased (``onnx``, ``onnx-int8`` or ``torch``), None when unset; ``qa.embed`` checks it."""
    return (os.environ.get("QA_BACKEND") or "").strip().lower() or None


def ray_address_from_env() -> str | None:
    """``$QA_RAY_ADDRESS``: embed builds on this Ray cluster (``host:6379``, ``ray://host:10001``, ``auto``,
    ``local``); None when unset (builds embed in this process)."""
    value = (os.environ.get("QA_RAY_ADDRESS") or "").strip()
    return value or None


def threads_from_env() -> int | None:
    """``$QA_THREADS``: threads for one encoder, None when unset or not a positive whole number."""
    value = (os.environ.get("QA_THREADS") or "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def cache_root() -> Path:
    """Where derived models are kept: ``$QA_CACHE``, else ``$XDG_CACHE_HOME/qa`` or ``~/.cache/qa``."""
    if os.environ.get("QA_CACHE"):
        return Path(os.environ["QA_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qa"


def debug_from_env() -> bool:
    """``$QA_DEBUG`` set: show tracebacks instead of one-line messages (for developers)."""
    return bool(os.environ.get("QA_DEBUG"))


class SettingsError(QAError, ValueError):
    """An environment variable holds a value the bot cannot use; the message says what to set."""


def abstain_below_from_env() -> float | None:
    """``$QA_ABSTAIN_BELOW``: refuse when the best sentence scores below it; None when unset.

    Unset, the threshold calibrated for the model applies (0.67 for the bundled one); 0.9 suits long
    quiz-like questions (docs/evaluation.md).
    """
    value = (os.environ.get("QA_ABSTAIN_BELOW") or "").strip()
    if not value:
        return None
    try:
        threshold = float(value)
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):
        raise SettingsError(
            f"QA_ABSTAIN_BELOW must be a number such as 0.67 (higher refuses more often), not {value!r}"
        )
    return threshold


#: ``QA_RANKER`` values: the hand-weighted score, the shipped learned ranker, the shipped reader
#: (a cross-encoder that reads each sentence against the question, blended with the hand-weighted score).
RANKERS = ("hand", "learned", "reader")
#: What scores quotes when ``QA_RANKER`` is unset: the reader, which finds more answers than the hand-weighted
#: score on held-out news weeks and as many first quotes on the bundled questions (docs/reader.md).
DEFAULT_RANKER_NAME = "reader"


def ranker_from_env() -> str:
    """``$QA_RANKER``, one of ``RANKERS`` (unset: ``DEFAULT_RANKER_NAME``); docs/ranker.md and docs/reader.md
    compare them."""
    value = (os.environ.get("QA_RANKER") or "").strip().lower()
    if value and value not in RANKERS:
        raise SettingsError(
            f"QA_RANKER must be {', '.join(RANKERS[:-1])} or {RANKERS[-1]} (unset: {DEFAULT_RANKER_NAME}), not {value!r}"
        )
    return value or DEFAULT_RANKER_NAME


@dataclass(frozen=True)
class ChunkSettings:
    """How articles are cut into chunks, in the embedding model's tokens."""

    chunk_tokens: int = 160
    overlap_tokens: int = 32
    #: Tokens of the title put before each chunk when it is embedded.
    title_tokens: int = 40

    def to_json(self) -> dict[str, int]:
        return {
            "chunk_tokens": self.chunk_tokens,
            "overlap_tokens": self.overlap_tokens,
            "title_tokens": self.title_tokens,
        }


#: Default upload limit of the web chat, in megabytes (``QA_MAX_UPLOAD_MB``).
DEFAULT_MAX_UPLOAD_MB = 20.0


def model_from_env() -> str | None:
    """``$QA_MODEL`` when set (the index must have been built with it), else None: use the index's own model."""
    return (os.environ.get("QA_MODEL") or "").strip() or None


def auth_from_env() -> list[tuple[str, str]] | None:
    """``$QA_AUTH`` as ``[(user, password), ...]`` (``user:password[,user2:password2]``); None when unset."""
    value = os.environ.get("QA_AUTH") or ""
    if not value.strip():
        return None
    pairs = []
    for item in value.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user or not password:
            raise SettingsError("QA_AUTH must look like user:password (several separated by commas)")
        pairs.append((user, password))
    return pairs


def max_upload_bytes_from_env() -> int:
    """The web chat's upload limit in bytes from ``$QA_MAX_UPLOAD_MB`` (default 20 MB)."""
    value = (os.environ.get("QA_MAX_UPLOAD_MB") or "").strip()
    try:
        mb = float(value) if value else DEFAULT_MAX_UPLOAD_MB
    except ValueError:
        mb = math.nan
    if not math.isfinite(mb) or mb <= 0:
        raise SettingsError(f"QA_MAX_UPLOAD_MB must be a positive number of megabytes such as 20, not {value!r}")
    return int(mb * 1_000_000)
