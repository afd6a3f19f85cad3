"""The library behind the web chat: an articles folder, its index, a background rebuilder, and the bot.

    library = Library("articles", "index")
    library.start()                               # open the index if there is one, update it in the background
    saved = library.folder.save_upload("/tmp/x.html", "Some article.html")
    library.rebuild()                             # incremental; questions keep being answered meanwhile
    answer = library.ask("What happened?", history=[])

This module only ties the parts together: ``qa.app.folder`` changes the files,
``qa.app.rebuilder`` runs the builds, ``qa.answer.bot`` answers. When a new index is
committed the bot switches to it (``Bot.refresh``); a failed rebuild leaves the
old index serving. The page reads the index through ``summary``, ``article`` and
``article_rows``; wording for people is the UI's job (``qa.app.ui`` and its parts).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.errors import QAError
from qa.app.folder import MAX_UPLOAD_BYTES, ArticlesFolder
from qa.app.rebuilder import Progress, Rebuilder, RebuildStatus
from qa.records import Answer, Article, BuildReport
from qa.text import collapse_whitespace, counted

log = logging.getLogger(__name__)

#: The "run `qa build ...`" advice of an index error: the server builds by itself, so its log leaves it out.
_RUN_HINT = re.compile(r"[:;] (?:run|rebuild it with) `qa build[^`]*`.*$")


class NoIndex(QAError):
    """There is no index to answer from yet."""


@dataclass(frozen=True)
class ArticleRow:
    """One article of the index, as the Articles tab lists it."""

    title: str
    source: str
    published: str
    chunks: int
    article_id: str


@dataclass(frozen=True)
class IndexSummary:
    """The index being served, as the status line names it."""

    articles: int
    chunks: int
    model: str


def _row(article: Article, chunks: int) -> ArticleRow:
    """The Articles tab's row of an article that has ``chunks`` chunks."""
    return ArticleRow(article.title, article.source, article.published, chunks, article.id)


class Library:
    """The articles folder, its index and the bot answering from it, for one web app."""

    def __init__(
        self,
        articles_dir: str | os.PathLike,
        index_dir: str | os.PathLike,
        *,
        model: str | None = None,
        embedder: Any = None,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        self.folder = ArticlesFolder(articles_dir, max_upload_bytes=max_upload_bytes)
        self.index_dir = Path(index_dir)
        self._model = model
        self._embedder = embedder
        self._embedder_lock = threading.Lock()
        self._bot = None
        self._warm_up = False
        self._titles_lock = threading.Lock()
        self._kept_titles: tuple[Any, list[str], list[int], list[str]] | None = None  # (index, ids, chunks, keys)
        self._segment_titles: dict[str, dict[int, tuple[str, int, str]]] = {}  # segment id -> position -> same
        self._rebuilder = Rebuilder(self._build)

    @property
    def articles_dir(self) -> Path:
        return self.folder.root

    @property
    def bot(self):
        """The ``Bot`` answering questions, or None while there is no index."""
        return self._bot

    def embedder(self):
        """The embedding model shared by the bot and every build (created once, loaded lazily)."""
        with self._embedder_lock:
            if self._embedder is None:
                from qa.embed.factory import get_embedder
                from qa.index.reader import IndexLoadError, read_manifest

                model = self._model
                if model is None:
                    try:
                        model = read_manifest(self.index_dir).model
                    except IndexLoadError:
                        model = None
                self._embedder = get_embedder(model)
            return self._embedder

    def start(self, *, update: bool = True) -> None:
        """Open the current index if there is one and (``update``) bring it up to date.

        With ``update`` both happen in the background thread, so a web page can be served at once
        and show the progress; without it the index is opened here.
        """
        if update:
            self._warm_up = True
            self.rebuild()
        else:
            self._open()

    def _open(self, *, building: bool = False) -> None:
        """Load the index in the index folder, if there is a usable one; ``building``: a build follows at once."""
        from qa.answer.bot import Bot
        from qa.index.reader import IndexLoadError, IndexMissing

        try:
            self._bot = Bot.load(self.index_dir, embedder=self.embedder())
            log.info("serving index %s/ (%s)", self.index_dir, counted(len(self._bot.index.articles), "article"))
        except IndexMissing:
            if building and self.files():  # the user runs nothing: the build below makes it
                log.info("no index in %s/ yet: building it from %s/", self.index_dir, self.articles_dir)
            else:
                log.info("no index in %s/ yet: add articles in the Articles tab or to %s/", self.index_dir,
                         self.articles_dir)
        except IndexLoadError as exc:
            why = _RUN_HINT.sub("", str(exc))
            if building:
                log.warning("cannot use the index in %s/ (%s): rebuilding it from %s/", self.index_dir, why,
                            self.articles_dir)
            else:
                log.warning("cannot use the index in %s/: %s", self.index_dir, exc)

    def ask(self, question: str, history: Sequence[Any] = (), *, k: int = 3) -> Answer:
        """``Bot.ask`` on the current index; ``NoIndex`` while there is none."""
        bot = self._bot
        if bot is None:
            raise NoIndex(f"no index yet: add articles to {self.articles_dir}/ and rebuild (or run qa build)")
        if not self.status().running:
            try:  # another process (`qa build`) may have committed a newer index: one stat tells
                bot.refresh()
            except Exception as exc:  # noqa: BLE001 - keep answering from the index we have
                log.warning("could not switch to the newer index: %s", exc)
        return bot.ask(question, history, k=k)

    def version(self) -> str:
        """Changes whenever what the page shows may have: a rebuild finished, or another index is served."""
        bot = self._bot
        return f"{self.status().generation}:{bot.index.build_id if bot is not None else ''}"

    def articles(self) -> list[ArticleRow]:
        """Every article of the current index, in segment order (each record read: slow on an archive)."""
        bot = self._bot
        if bot is None:
            return []
        return [_row(article, chunks) for article, chunks in bot.index.articles.with_chunks()]

    def article_rows(self, query: str = "", limit: int = 300) -> tuple[list[ArticleRow], int]:
        """At most ``limit`` articles whose title or source holds ``query`` (any case), and how many do in all.

        Without a query only the first ``limit`` articles' records are read, so the Articles tab of an archive
        of half a million articles opens at once. The first query reads every segment's titles file (an older
        segment without one: every article's record, about 0.07 ms an article) and keeps the titles, lowered;
        later ones search what it kept and read only the records of the rows they show, and after a rebuild only
        the new segments' titles are read.
        """
        bot = self._bot
        if bot is None:
            return [], 0
        index = bot.index
        needle = collapse_whitespace(query or "").lower()
        if not needle:
            listing = itertools.islice(index.articles.with_chunks(), limit)
            return [_row(article, chunks) for article, chunks in listing], len(index.articles)
        ids, chunks, keys = self._titles(index)
        found = [i for i, key in enumerate(keys) if needle in key]
        rows = [_row(article, chunks[i]) for i in found[:limit] if (article := index.articles.get(ids[i])) is not None]
        return rows, len(found)

    def _titles(self, index: Any) -> tuple[list[str], list[int], list[str]]:
        """Ids, chunk counts and lowered "title, newline, source" of ``index``'s live articles, made once per index.

        What was read is kept per segment (segments never change), so after a rebuild only the new segments'
        articles are read again.
        """
        with self._titles_lock:  # one reader of the records at a time; the others wait for what it keeps
            if self._kept_titles is None or self._kept_titles[0] is not index:
                ids, chunks, keys = [], [], []
                kept: dict[str, dict[int, tuple[str, int, str]]] = {}
                for seg, positions in index.articles.by_segment():
                    known = kept[seg.entry.id] = self._segment_titles.get(seg.entry.id, {})
                    missing = [p for p in positions.tolist() if p not in known]
                    for p, (article_id, title, source, count) in zip(missing, index.articles.titles_in(seg, missing)):
                        known[p] = (article_id, count, f"{collapse_whitespace(title)}\n{collapse_whitespace(source)}".lower())
                    for p in positions.tolist():
                        ids.append(known[p][0])
                        chunks.append(known[p][1])
                        keys.append(known[p][2])
                self._segment_titles = kept  # segments no longer served are let go
                self._kept_titles = (index, ids, chunks, keys)
            return self._kept_titles[1], self._kept_titles[2], self._kept_titles[3]

    def summary(self) -> IndexSummary | None:
        """How many articles and chunks the served index holds and its model; None while there is no index."""
        bot = self._bot
        if bot is None:
            return None
        manifest = bot.index.manifest
        return IndexSummary(manifest.counts.get("articles", 0), manifest.counts.get("chunks", 0), manifest.model)

    def article(self, article_id: str) -> Article | None:
        """The served index's article with this id; None if it has none (removed, changed) or there is no index."""
        bot = self._bot
        return bot.index.articles.get(article_id) if bot is not None else None

    def files(self) -> list[str]:
        """Supported files in the articles folder, relative to it, sorted."""
        return self.folder.files()

    # -- the background rebuild ------------------------------------------------------------

    def status(self) -> RebuildStatus:
        """Where the background rebuild is."""
        return self._rebuilder.status()

    def rebuild(self) -> bool:
        """Start an incremental rebuild in the background; if one runs, it runs once more after. True if started."""
        return self._rebuilder.request()

    def wait(self, timeout: float = 120.0) -> RebuildStatus:
        """Block until no rebuild runs or waits (for tests and scripts); returns the final status."""
        return self._rebuilder.wait(timeout)

    def _build(self, progress: Progress) -> BuildReport | None:
        """One incremental build of the folder, then switch the bot to it; None when there is nothing to build."""
        from qa.answer.bot import Bot
        from qa.index.build import build_index

        if self._warm_up:  # the first run: load the model, open the index we have, then update it
            self._warm_up = False
            progress("model", 0, 1)
            self.embedder().encode(["warm up"])
            if self._bot is None:
                self._open(building=True)
        if self._bot is None and not self.files():
            return None  # nothing to build yet
        embedder = self.embedder()
        report = build_index([self.articles_dir], self.index_dir, embedder=_build_embedder(embedder),
                             progress=progress)
        for message in report.skipped:  # the server log's copy of the status line's list, one line each
            log.info("skipped %s", message)
        if self._bot is None:
            self._bot = Bot.load(self.index_dir, embedder=embedder)
        else:
            self._bot.refresh()
        return report


def _build_embedder(embedder):
    """The embedder a rebuild uses: ``embedder`` itself, or it on the Ray cluster ``$QA_RAY_ADDRESS`` names."""
    from qa.settings import ray_address_from_env

    address = ray_address_from_env()
    if address is None:
        return embedder
    from qa.embed.ray import ray_embedder

    # As `qa build --ray` does: connect before the articles are read; a RayError (a QAError) becomes the rebuild's
    # status line. Left open after the build: Ray stays joined and the next rebuild reuses the connection.
    return ray_embedder(address=address, local=embedder)
