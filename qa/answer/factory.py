"""Pick the scorer of candidate sentences by name: the one place that chooses hand, learned or reader."""

from __future__ import annotations

from pathlib import Path

from qa.answer.reader import ReaderScorer, shared_reader
from qa.answer.scorers import DEFAULT_RANKER, Ranker, RankerError, Scorer, HandScorer, shipped_ranker
from qa.settings import DEFAULT_RANKER_NAME, RANKERS


def scorer_for(model: str, path: str | Path | None = None, *, ranker: str = DEFAULT_RANKER_NAME) -> Scorer:
    """The scorer named ``ranker`` (``qa.settings.RANKERS``) for an embedding model.

    ``hand``: the hand-weighted ``HandScorer``; ``learned``: the shipped ranker, which must serve ``model``;
    ``reader``: the shipped reader blended with the hand-weighted score; ``path``: the ranker in that file.
    A missing, corrupt or foreign model file is a ``RankerError``/``ReaderError`` then, never silently
    replaced by the hand-weighted score.
    """
    if path is not None:
        return Ranker.load(path, model=model)
    if ranker not in RANKERS:
        raise RankerError(f"unknown ranker {ranker!r}: use one of {', '.join(RANKERS)}")
    if ranker == "learned":
        shipped = shipped_ranker(str(DEFAULT_RANKER))
        if model not in shipped.calibrations:
            raise RankerError(f"the shipped ranker serves {', '.join(shipped.models)}, not {model!r}: "
                              "train one with python -m training.ranker.train, or leave the learned ranker off")
        return shipped
    if ranker == "reader":
        return ReaderScorer(shared_reader())
    return HandScorer()
