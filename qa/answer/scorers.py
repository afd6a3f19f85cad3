"""Score candidate sentences: the reader (the default), the hand-weighted score, or the learned ranker.

``HandScorer`` ("hand") is the hand-weighted score of earlier versions
(cosine + IDF coverage + chunk rank + type cue) over the feature rows. The
default reader (``qa.answer.reader.ReaderScorer``, "reader") adds to it a
cross-encoder's reading of each sentence against the question, and abstains
where the hand-weighted score would (docs/reader.md); ``QA_RANKER=hand`` keeps
the hand-weighted score alone. Trained on 670 quiz questions of 33 weeks, the
ranker beats the hand-weighted score on held-out news quiz weeks but loses to
it on the bundled chat questions (docs/ranker.md), so ``scorer_for`` returns it
only when asked (``ranker="learned"``, ``AnswerSettings.ranker``, ``QA_RANKER=learned``).

``Ranker`` ("ranker") is a LightGBM LambdaRank model trained by
``python -m training.ranker.train`` on RealTime QA 2024-2026 (docs/ranker.md). Its
trees are stored as plain JSON in ``qa/models/ranker.json`` and evaluated with
numpy (``qa.answer.trees``), so answering needs no LightGBM. The file names the
embedding models it was trained and calibrated for; it is refused for any other.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qa.answer.features import FEATURES
from qa.answer.trees import TreeEnsemble
from qa.errors import QAError
from qa.settings import DEFAULT_MODEL

#: The ranker shipped in the package.
DEFAULT_RANKER = Path(__file__).resolve().parent.parent / "models" / "ranker.json"
RANKER_FORMAT = "qa-ranker/1"
REBUILD_HINT = "rebuild it with: python -m training.ranker.train --data <RealTime QA 2024-2026 folder>"


class RankerError(QAError):
    """The ranker file is missing, unreadable or made for another model; the message says what to do."""


@dataclass(frozen=True)
class Calibration:
    """Thresholds on a scorer's scale for one embedding model, chosen on training data (docs/ranker.md)."""

    #: Refuse when the best candidate scores below this.
    abstain_below: float
    #: Show a quote only if it scores at least the best score minus this (None: show up to k).
    show_within: float | None = None


class Scorer(Protocol):
    """Scores candidates (higher is better) and knows its thresholds per embedding model.

    ``X`` holds their feature rows; ``question`` and ``texts`` (the question searched and each candidate's
    sentence) are for a scorer that reads them, such as the reader; the others ignore them. A scorer may
    also have ``abstention_scores(X)``: the scores the bot abstains on, when they are not the ones it ranks
    by (``abstention_scores`` below).
    """

    name: str

    def score(self, X: np.ndarray, question: str = "", texts: Sequence[str] = ()) -> np.ndarray: ...

    def calibration(self, model: str) -> Calibration: ...


def abstention_scores(scorer: Scorer, X: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """What the bot compares with the abstention threshold: ``scorer.abstention_scores(X)``, else ``scores``."""
    own = getattr(scorer, "abstention_scores", None)
    return np.asarray(own(X) if own is not None else scores, dtype=np.float64)


class HandScorer:
    """The hand-weighted score: cosine + 0.75 coverage + 0.15/(1+rank) + 0.05 typed (``QA_RANKER=hand``; the reader adds
    to it).

    For the bundled model it refuses below 0.67 (chosen on the bundled questions in earlier versions) and
    hides a quote scoring more than 0.2 below the best (chosen on RealTime QA 2024-2026 out-of-fold scores,
    docs/ranker.md); for any other model it refuses below 0.45 and shows up to k quotes.
    """

    name = "hand"
    weights = {"dense": 1.0, "coverage": 0.75, "typed": 0.05}
    w_rank = 0.15
    abstain_below = 0.45
    calibrations = {
        DEFAULT_MODEL: Calibration(abstain_below=0.67, show_within=0.2),
        DEFAULT_MODEL + "@int8": Calibration(abstain_below=0.67, show_within=0.2),
    }

    def score(self, X: np.ndarray, question: str = "", texts: Sequence[str] = ()) -> np.ndarray:
        """The weighted sum of each row's ``dense``, ``coverage`` and ``typed``, plus the chunk-rank bonus."""
        cols = {name: i for i, name in enumerate(FEATURES)}
        out = sum(w * X[:, cols[n]] for n, w in self.weights.items())
        return np.asarray(out + self.w_rank / (1.0 + X[:, cols["chunk_rank"]]), dtype=np.float32)

    def calibration(self, model: str) -> Calibration:
        """The bundled model's thresholds, or the generic ``abstain_below`` (no gap rule) for any other."""
        return self.calibrations.get(model, Calibration(abstain_below=self.abstain_below))


class Ranker:
    """A tree ensemble (LightGBM's, flattened to arrays) over ``FEATURES``, for the embedding models it names."""

    name = "ranker"

    def __init__(self, meta: dict[str, Any], trees: TreeEnsemble, calibrations: dict[str, Calibration],
                 path: Path) -> None:
        self.meta = meta
        self.version = str(meta.get("version", ""))
        self.trees = trees
        self.calibrations = calibrations
        self.path = path
        #: The trees learn a correction to ``base_weight`` times the hand-weighted score (0: trees alone).
        self.base_weight = float(meta.get("base_weight", 0.0))

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.calibrations)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_RANKER, *, model: str | None = None) -> Ranker:
        """Read a ranker file; ``RankerError`` if it is missing, corrupt, or not made for ``model``."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RankerError(f"ranker file {path} is missing: {REBUILD_HINT}") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RankerError(f"ranker file {path} cannot be read ({type(exc).__name__}): {REBUILD_HINT}") from None
        try:
            ranker = cls._parse(raw, path)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RankerError(f"ranker file {path} is corrupt ({exc!s:.80}): {REBUILD_HINT}") from None
        if model is not None and model not in ranker.calibrations:
            raise RankerError(
                f"ranker file {path} was trained for {', '.join(ranker.models)}, not for {model!r}: "
                f"train one for it with python -m training.ranker.train, or use the hand-weighted scorer"
            )
        return ranker

    @classmethod
    def _parse(cls, raw: dict[str, Any], path: Path) -> Ranker:
        if raw.get("format") != RANKER_FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {RANKER_FORMAT!r}")
        if list(raw["features"]) != list(FEATURES):
            raise ValueError("its feature list differs from this version's")
        trees = TreeEnsemble.parse(raw["trees"], len(FEATURES))
        if not math.isfinite(float(raw.get("base_weight", 0.0))):
            raise ValueError("non-finite numbers")
        calibrations = {
            str(m): Calibration(abstain_below=float(c["abstain_below"]),
                                show_within=None if c.get("show_within") is None else float(c["show_within"]))
            for m, c in raw["calibration"].items()
        }
        if not calibrations:
            raise ValueError("it names no embedding model")
        meta = {k: v for k, v in raw.items() if k != "trees"}
        return cls(meta, trees, calibrations, path)

    def score(self, X: np.ndarray, question: str = "", texts: Sequence[str] = ()) -> np.ndarray:
        """``base_weight`` times the hand-weighted score plus the trees' leaf values for each row of ``X``."""
        base = self.base_weight * HandScorer().score(X) if self.base_weight else 0.0
        return (base + self.trees.predict(X)).astype(np.float32)

    def calibration(self, model: str) -> Calibration:
        """The thresholds fitted for ``model``; ``RankerError`` if the file has none for it."""
        try:
            return self.calibrations[model]
        except KeyError:
            raise RankerError(f"ranker {self.path} was not calibrated for {model!r}") from None


@functools.lru_cache(maxsize=8)
def shipped_ranker(path: str) -> Ranker:
    """The ranker file at ``path``, read once per process."""
    return Ranker.load(path)
