"""The one code path that answers questions, for the CLI, the web chat and the tests.

    bot = Bot.load("index")
    answer = bot.ask("How many troops did North Korea send?")
    answer = bot.ask("And in return?", history=["How many troops did North Korea send?"])

``Bot.refresh()`` switches to a newer committed index without a restart; a
question in flight keeps the index it started with. Checking costs one ``stat``
of the manifest (every commit replaces it), so it can run before every question.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qa.errors import QAError
from qa.answer.quotes import AnswerSettings, compose, make_answer
from qa.embed.base import Embedder
from qa.embed.factory import get_embedder
from qa.embed.names import canonical_model_name
from qa.answer.followup import searched_history
from qa.answer.factory import scorer_for
from qa.records import Answer
from qa.answer.retrieve import RetrieveSettings, retrieve
from qa.settings import MAX_QUESTION_CHARS, abstain_below_from_env, default_index_dir, ranker_from_env
from qa.index.reader import IndexLoadError, load_index, manifest_stamp, read_manifest
from qa.index.searchable import Index

log = logging.getLogger(__name__)

DEFAULT_K = 3


class AskError(QAError, ValueError):
    """The question cannot be asked as given; the message says what to do."""


def _user_turns(history: Sequence[Any]) -> list[str]:
    """Earlier questions from a history of strings, ``Answer`` records, (user, bot) pairs or chat messages.

    An abstained ``Answer`` is left out: a follow-up borrows only from turns that were answered.
    """
    out = []
    for turn in history or ():
        if isinstance(turn, Answer):
            if not turn.abstained:
                out.append(turn.question)
        elif isinstance(turn, str):
            out.append(turn)
        elif isinstance(turn, dict):
            if turn.get("role") == "user":
                content = turn.get("content")
                if isinstance(content, list):  # Gradio 6 content parts
                    content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
                if isinstance(content, str):
                    out.append(content)
        elif isinstance(turn, (list, tuple)) and turn and isinstance(turn[0], str):
            out.append(turn[0])
    return [t.strip() for t in out if t and t.strip()]


def clean_question(question: str) -> tuple[str, str]:
    """The question to answer and a notice if it was cut; ``AskError`` if nothing is left."""
    if not isinstance(question, str):
        raise AskError("the question must be text")
    text = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in question).strip()
    if not text:
        raise AskError("the question is empty: type a question about the articles")
    notice = ""
    if len(text) > MAX_QUESTION_CHARS:
        notice = f"Your question was {len(text):,} characters; only the first {MAX_QUESTION_CHARS:,} were used."
        text = text[:MAX_QUESTION_CHARS]
    return text, notice


def _clean_turn(turn: str) -> str:
    """An earlier question, cleaned; "" if nothing is left (it is then ignored, not an error)."""
    try:
        return clean_question(turn)[0]
    except AskError:
        return ""


class Bot:
    """Answers questions from one index folder with exact quotes."""

    def __init__(
        self,
        index: Index,
        embedder: Embedder,
        *,
        answer_settings: AnswerSettings | None = None,
        retrieve_settings: RetrieveSettings | None = None,
    ) -> None:
        self._index = index
        self.embedder = embedder
        self.answer_settings = answer_settings or AnswerSettings(
            abstain_below=abstain_below_from_env(), ranker=ranker_from_env()
        )
        self.retrieve_settings = retrieve_settings or RetrieveSettings()
        # the sentence scorer, read once: a missing or broken ranker file is a RankerError here, not mid-answer
        self.scorer = scorer_for(embedder.name, ranker=self.answer_settings.ranker)
        self._swap = threading.Lock()
        self._stamp = manifest_stamp(index.folder)  # the manifest file this index was read from (``refresh``)

    @classmethod
    def load(
        cls,
        index_dir: str | Path | None = None,
        *,
        model: str | None = None,
        embedder: Embedder | None = None,
        **settings: Any,
    ) -> Bot:
        """Open the index in ``index_dir``; the model is the index's own unless one is named."""
        index_dir = Path(index_dir) if index_dir is not None else default_index_dir()
        if embedder is not None:
            expected = embedder.name
        elif model is not None:
            expected = canonical_model_name(model)
        else:
            expected = None
        stamp = manifest_stamp(index_dir)  # before reading: a commit meanwhile is seen by the next refresh
        index = load_index(index_dir, model=expected)
        embedder = embedder or get_embedder(index.manifest.model)
        bot = cls(index, embedder, **settings)
        bot._stamp = stamp
        return bot

    @property
    def index(self) -> Index:
        return self._index

    def refresh(self) -> bool:
        """Load the folder's index if a newer one was committed; True if it switched.

        Cheap when nothing was committed: the manifest file's identity (inode, mtime, size) is compared first.
        """
        folder = self._index.folder
        stamp = manifest_stamp(folder)
        if stamp is None or stamp == self._stamp:
            return False
        try:
            build_id = read_manifest(folder).build_id
        except IndexLoadError:  # a missing or broken manifest: keep serving what we have
            return False
        if build_id == self._index.build_id:
            self._stamp = stamp
            return False
        with self._swap:
            try:
                if read_manifest(folder).build_id == self._index.build_id:
                    self._stamp = stamp
                    return False
                self._index = load_index(folder, model=self.embedder.name)
                self._stamp = stamp
            except IndexLoadError as exc:  # a bad new index must not stop the good one serving
                log.warning("keeping index %s: the new one cannot be loaded (%s)", self._index.build_id, exc)
                return False
            log.info("switched to index %s", self._index.build_id)
            return True

    def ask(self, question: str, history: Sequence[Any] = (), *, k: int = DEFAULT_K) -> Answer:
        """Answer ``question`` with exact quotes; ``history`` holds the earlier answered turns (or their ``Answer``s)."""
        started = time.perf_counter()
        text, notice = clean_question(question)
        if k < 1:
            raise AskError("k must be at least 1")
        index = self._index  # one index for the whole question, even if a rebuild lands meanwhile
        earlier = [cleaned for q in _user_turns(history) if (cleaned := _clean_turn(q))]
        searched = searched_history([*earlier, text])[-1]
        vector = self.embedder.encode([searched])[0]
        hits = retrieve(index, searched, vector, max(k, self.answer_settings.passages), self.retrieve_settings)
        quotes, abstained = compose(text, searched, vector, index, hits, self.embedder, k, self.answer_settings, self.scorer)
        return make_answer(text, searched, quotes, abstained, notice, time.perf_counter() - started)
