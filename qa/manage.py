"""The article pile behind the web chat: list, add, remove, and rebuild in the background.

    library = Library("articles", "index")
    library.start()                       # load the index if there is one, update it in the background
    library.save_upload("/tmp/x.html", "Some article.html")
    library.rebuild()                     # incremental; the chat keeps answering meanwhile
    answer = library.ask("What happened?", history=[])

A rebuild runs in one background thread. Questions keep using the index they
have; when the new index is committed the bot switches to it (``Bot.refresh``).
A failed rebuild leaves the old index serving and says why in ``status().message``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import QAError
from .load import SUPPORTED_SUFFIXES, LoadError, load_file, suffix_of
from .records import Answer, sha256_file

log = logging.getLogger(__name__)

#: Default upload limit; the app reads ``QA_MAX_UPLOAD_MB``.
MAX_UPLOAD_BYTES = 20_000_000
#: Longest pasted text accepted, in characters.
MAX_PASTE_CHARS = 1_000_000
#: How often a question checks whether another process committed a newer index.
REFRESH_EVERY_SECONDS = 5.0

_STAGES = {
    "model": "Loading the model",
    "load": "Reading articles",
    "chunk": "Cutting articles into passages",
    "embed": "Embedding new passages",
    "save": "Saving the index",
}


class ManageError(QAError):
    """An upload, paste or removal that cannot be done; the message says what to do."""


class NoIndex(QAError):
    """There is no index to answer from yet; the message says why and what to do."""


@dataclass(frozen=True)
class ArticleRow:
    """One article of the index, as the Articles tab lists it."""

    title: str
    source: str
    published: str
    chunks: int
    article_id: str


@dataclass(frozen=True)
class RebuildStatus:
    """Where the background rebuild is. ``generation`` grows by one per finished rebuild."""

    state: str = "idle"  # idle | running | done | failed
    stage: str = ""
    done: int = 0
    total: int = 0
    message: str = ""
    generation: int = 0

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def stage_label(self) -> str:
        return _STAGES.get(self.stage, "Starting")


def safe_name(name: str, default: str = "article") -> str:
    """A plain file name for ``name``: no folders, no hidden or odd characters, lower-case suffix."""
    name = unicodedata.normalize("NFKC", str(name or ""))
    name = re.split(r"[\\/]", name)[-1]
    suffix = _suffix(name)
    stem = name[: len(name) - len(suffix)]
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)
    stem = re.sub(r"[._-]*_[._-]*", "_", stem)  # runs of separators around a replaced char
    stem = re.sub(r"\.{2,}", ".", stem).strip("._- ")[:80].strip("._- ")
    suffix = re.sub(r"[^a-z0-9.]", "", suffix.lower())
    return (stem or default) + suffix


def _suffix(name: str) -> str:
    """The supported suffix ``name`` ends with (any case), else its last suffix, else ""."""
    lower = name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[-len(suffix) :]
    return os.path.splitext(name)[1]


def _mb(n: int) -> str:
    return f"{n / 1e6:.3g}"


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
        self.articles_dir = Path(articles_dir)
        self.index_dir = Path(index_dir)
        self.max_upload_bytes = max_upload_bytes
        self._model = model
        self._embedder = embedder
        self._bot = None
        self._lock = threading.Lock()
        self._status = RebuildStatus()
        self._again = False
        self._last_refresh = 0.0

    # -- the bot -------------------------------------------------------------------------

    @property
    def bot(self):
        """The ``Bot`` answering questions, or None while there is no index."""
        return self._bot

    def embedder(self):
        """The embedding model shared by the bot and every build (created once, loaded lazily)."""
        with self._lock:
            if self._embedder is None:
                from .embed import get_embedder
                from .store import IndexLoadError, read_manifest

                model = self._model
                if model is None:
                    try:
                        model = read_manifest(self.index_dir).model
                    except IndexLoadError:
                        model = None
                self._embedder = get_embedder(model)
            return self._embedder

    def start(self, *, update: bool = True) -> None:
        """Open the current index if there is one; then (``update``) bring it up to date in the background."""
        from .bot import Bot
        from .store import IndexLoadError

        try:
            self._bot = Bot.load(self.index_dir, embedder=self.embedder())
            log.info("serving index %s/ (%d articles)", self.index_dir, len(self._bot.index.articles))
        except IndexLoadError as exc:
            log.info("no usable index yet: %s", exc)
        if update:
            self.rebuild(warm_up=True)

    def ask(self, question: str, history: Sequence[Any] = (), *, k: int = 3) -> Answer:
        """``Bot.ask`` on the current index; ``NoIndex`` while there is none."""
        bot = self._bot
        if bot is None:
            raise NoIndex(self.no_index_message())
        now = time.monotonic()
        if not self._status.running and now - self._last_refresh > REFRESH_EVERY_SECONDS:
            self._last_refresh = now
            try:  # another process (`qa build`) may have committed a newer index
                bot.refresh()
            except Exception as exc:  # noqa: BLE001 - keep answering from the index we have
                log.warning("could not switch to the newer index: %s", exc)
        return bot.ask(question, history, k=k)

    def no_index_message(self) -> str:
        """Why there is no index and what to do, for the chat and the status line."""
        status = self._status
        if status.running:
            step = f", {status.done}/{status.total}" if status.total > 1 else ""
            return f"The index is being built ({status.stage_label.lower()}{step}); ask again in a moment."
        text = (
            "No index yet: add articles in the Articles tab (upload files or paste a text), "
            f"or put them in {self.articles_dir}/ and run qa build."
        )
        return f"{text} Last attempt: {status.message}" if status.state == "failed" and status.message else text

    # -- what is there ---------------------------------------------------------------------

    def articles(self) -> list[ArticleRow]:
        """The articles of the current index, in the order of its manifest."""
        bot = self._bot
        if bot is None:
            return []
        index = bot.index
        rows = []
        for entry in index.manifest.articles:
            article = index.articles.get(entry["id"])
            if article is not None:
                rows.append(
                    ArticleRow(
                        article.title, article.source, article.published, int(entry.get("chunks", 0)), article.id
                    )
                )
        return rows

    def files(self) -> list[str]:
        """Supported files in the articles folder, relative to it, sorted."""
        if not self.articles_dir.is_dir():
            return []
        out = []
        for path in sorted(self.articles_dir.rglob("*")):
            rel = path.relative_to(self.articles_dir)
            if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                continue
            if suffix_of(path) in SUPPORTED_SUFFIXES:
                out.append(rel.as_posix())
        return out

    def status(self) -> RebuildStatus:
        return self._status

    # -- changes ---------------------------------------------------------------------------

    def save_upload(self, path: str | os.PathLike, name: str | None = None) -> Path:
        """Check one uploaded file and copy it into the articles folder under a safe name."""
        path = Path(path)
        shown = name or path.name
        suffix = _suffix(shown).lower()
        if suffix not in SUPPORTED_SUFFIXES:
            kind = f"{suffix} files are" if suffix else "a file without a suffix is"
            raise ManageError(f"{shown}: {kind} not supported; upload one of {', '.join(SUPPORTED_SUFFIXES)}")
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ManageError(f"{shown}: the upload cannot be read ({exc.strerror or exc}); try again") from None
        if size == 0:
            raise ManageError(f"{shown} is empty; nothing was added")
        if size > self.max_upload_bytes:
            raise ManageError(
                f"{shown} is {_mb(size)} MB, over the {_mb(self.max_upload_bytes)} MB upload limit; split it"
            )
        with tempfile.TemporaryDirectory(prefix="qa-upload-") as tmp:
            staged = Path(tmp) / safe_name(shown)
            shutil.copyfile(path, staged)  # check the bytes we will keep, under the name they will have
            self._check_loads(staged, shown)
            return self._place(staged)

    def save_text(self, title: str, text: str) -> Path:
        """Save a pasted article (``title`` optional) as a file in the articles folder."""
        title = " ".join((title or "").split())
        text = (text or "").strip()
        if not text:
            raise ManageError("the text is empty: paste the article's text, then add it")
        if len(text) > MAX_PASTE_CHARS:
            raise ManageError(
                f"the text is {len(text):,} characters, over the {MAX_PASTE_CHARS:,} limit; upload it as a file"
            )
        first_line = next((line for line in text.splitlines() if line.strip()), "")
        name = safe_name((title or first_line)[:60], default="pasted") + (".md" if title else ".txt")
        body = f"# {title}\n\n{text}\n" if title else text + "\n"
        with tempfile.TemporaryDirectory(prefix="qa-paste-") as tmp:
            staged = Path(tmp) / Path(name).name
            staged.write_text(body, encoding="utf-8")
            self._check_loads(staged, "the pasted text")
            return self._place(staged)

    def remove(self, rel: str) -> Path:
        """Delete one file (a path relative to the articles folder) from the articles folder."""
        if not rel:
            raise ManageError("choose a file to remove")
        root = self.articles_dir.resolve()
        target = (self.articles_dir / rel).resolve()
        if target.parent != root and root not in target.parents:
            raise ManageError(f"{rel} is not in the articles folder; nothing was removed")
        if not target.is_file():
            raise ManageError(f"{rel} is not in the articles folder any more; refresh the list")
        try:
            target.unlink()
        except OSError as exc:
            raise ManageError(
                f"{rel} cannot be removed ({exc.strerror or exc}); check the folder's permissions"
            ) from None
        log.info("removed %s", target)
        return target

    def _check_loads(self, staged: Path, shown: str) -> None:
        try:
            articles = load_file(staged, max_file_bytes=self.max_upload_bytes)
        except LoadError as exc:
            raise ManageError(str(exc).replace(str(staged), shown)) from None
        if not articles:
            raise ManageError(f"{shown}: no article found in it; nothing was added")

    def _place(self, staged: Path) -> Path:
        """Link ``staged`` into the articles folder without overwriting a different file."""
        self.articles_dir.mkdir(parents=True, exist_ok=True)
        digest = sha256_file(staged)
        suffix = _suffix(staged.name)
        stem = staged.name[: len(staged.name) - len(suffix)]
        part = self.articles_dir / f".{uuid.uuid4().hex}.part"  # hidden: the loader skips it
        shutil.copyfile(staged, part)
        try:
            with part.open("rb") as fh:
                os.fsync(fh.fileno())
            for n in range(1, 1000):
                target = self.articles_dir / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")
                if target.exists():
                    if target.is_file() and sha256_file(target) == digest:
                        log.info("%s is already in the articles folder", target)
                        return target
                    continue
                try:
                    os.link(part, target)  # fails instead of overwriting if the name was taken meanwhile
                except FileExistsError:
                    continue
                log.info("saved %s", target)
                return target
        except OSError as exc:
            raise ManageError(
                f"cannot write to {self.articles_dir}/ ({exc.strerror or exc}); check its permissions"
            ) from None
        finally:
            part.unlink(missing_ok=True)
        raise ManageError(f"too many files named {stem}{suffix}; rename the file")

    # -- the background rebuild ------------------------------------------------------------

    def rebuild(self, *, warm_up: bool = False) -> bool:
        """Start an incremental rebuild in the background; if one runs, it runs once more after. True if started."""
        with self._lock:
            if self._status.running:
                self._again = True
                return False
            self._again = False
            self._status = RebuildStatus("running", "load", 0, 0, "Updating the index…", self._status.generation)
        threading.Thread(target=self._run, args=(warm_up,), name="qa-rebuild", daemon=True).start()
        return True

    def wait(self, timeout: float = 120.0) -> RebuildStatus:
        """Block until no rebuild runs (for tests and scripts); returns the final status."""
        deadline = time.monotonic() + timeout
        while self._status.running and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._status

    def _progress(self, stage: str, done: int, total: int) -> None:
        self._status = replace(self._status, stage=stage, done=done, total=total)

    def _run(self, warm_up: bool) -> None:
        while True:
            state, message = self._build_once(warm_up)
            warm_up = False
            with self._lock:
                if self._again:
                    self._again = False
                    self._status = RebuildStatus(
                        "running", "load", 0, 0, "Updating the index…", self._status.generation
                    )
                    continue
                self._status = RebuildStatus(state, "", 0, 0, message, self._status.generation + 1)
                return

    def _build_once(self, warm_up: bool) -> tuple[str, str]:
        from .bot import Bot
        from .build import build_index

        started = time.perf_counter()
        if self._bot is None and not self.files():
            return "idle", ""  # nothing to build yet; no_index_message says what to do
        try:
            embedder = self.embedder()
            if warm_up:
                self._progress("model", 0, 1)
                embedder.encode(["warm up"])
            report = build_index([self.articles_dir], self.index_dir, embedder=_build_embedder(embedder),
                                 progress=self._progress)
            if self._bot is None:
                self._bot = Bot.load(self.index_dir, embedder=embedder)
            else:
                self._bot.refresh()
        except QAError as exc:
            keep = " The current index keeps answering." if self._bot is not None else ""
            log.warning("rebuild failed: %s", exc)
            return "failed", f"The rebuild failed: {exc}.{keep}"
        except Exception as exc:  # never let the thread die silently; the old index keeps serving
            log.exception("rebuild failed")
            keep = " The current index keeps answering." if self._bot is not None else ""
            return "failed", f"The rebuild failed ({type(exc).__name__}: {exc}).{keep}"
        skipped = f" Skipped {len(report.skipped)} file(s): " + "; ".join(report.skipped) if report.skipped else ""
        if not report.changed:
            return "done", f"The index is up to date: {report.articles} articles, {report.chunks} passages.{skipped}"
        return "done", (
            f"Index updated in {time.perf_counter() - started:.1f}s: {report.articles} articles, {report.chunks} passages "
            f"({report.embedded} embedded, {report.reused} reused, {report.removed} removed).{skipped}"
        )


def _build_embedder(embedder):
    """The embedder a rebuild uses: ``embedder`` itself, or it on the Ray cluster ``$QA_RAY_ADDRESS`` names."""
    from .settings import ray_address_from_env

    address = ray_address_from_env()
    if address is None:
        return embedder
    from .ray_embed import RayEmbedder, require_ray

    require_ray()  # a RayError (a QAError) becomes the rebuild's status line
    return RayEmbedder(embedder, address)
