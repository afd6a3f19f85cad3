"""The articles folder behind the web chat: list its files, add uploads and pasted text, remove and restore.

    folder = ArticlesFolder("articles", max_upload_bytes=20_000_000)
    saved = folder.save_upload("/tmp/x.html", "Some article.html")   # Saved(path, added)
    removed = folder.remove("old.txt")                              # moved to articles/.trash/
    folder.restore(removed)                                         # and back

Every change is checked before it lands (the file must load as an article) and
never overwrites a different file. Removed files go to a hidden ``.trash``
folder inside the articles folder, which every folder reader skips, so a removal
can be undone; an undo that empties ``.trash`` removes it; delete it yourself to free the space.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path

from qa.errors import QAError
from qa.ingest.formats import SUPPORTED_SUFFIXES, LoadError, megabytes, suffix_of
from qa.ingest.load import load_file
from qa.records import sha256_file
from qa.text import collapse_whitespace
from qa.settings import DEFAULT_MAX_UPLOAD_MB

log = logging.getLogger(__name__)

#: Default upload limit in bytes (the web chat reads ``QA_MAX_UPLOAD_MB``; the default lives in settings).
MAX_UPLOAD_BYTES = int(DEFAULT_MAX_UPLOAD_MB * 1_000_000)
#: Longest pasted text accepted, in characters.
MAX_PASTE_CHARS = 1_000_000
#: The hidden folder inside the articles folder that removed files are moved to.
TRASH = ".trash"


class FolderError(QAError):
    """An upload, paste, removal or restore that cannot be done; the message says what to do."""


@dataclass(frozen=True)
class Saved:
    """Where an upload or paste is in the folder; ``added`` is False when the same file was already there."""

    path: Path
    added: bool


@dataclass(frozen=True)
class Removed:
    """A removed file: its path relative to the folder and where it waits in the trash."""

    rel: str
    trash: Path


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


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


class ArticlesFolder:
    """One folder of article files, changed only through checked, non-overwriting steps."""

    def __init__(self, root: str | os.PathLike, *, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self.root = Path(root)
        self.max_upload_bytes = max_upload_bytes

    def files(self) -> list[str]:
        """Supported files in the folder (not hidden, not in the trash), relative to it, sorted."""
        if not self.root.is_dir():
            return []
        out = []
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root)
            if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                continue
            if suffix_of(path) in SUPPORTED_SUFFIXES:
                out.append(rel.as_posix())
        return out

    def save_upload(self, path: str | os.PathLike, name: str | None = None) -> Saved:
        """Check one uploaded file and copy it into the folder under a safe name."""
        path = Path(path)
        shown = name or path.name
        suffix = _suffix(shown).lower()
        if suffix not in SUPPORTED_SUFFIXES:
            kind = f"{suffix} files are" if suffix else "a file without a suffix is"
            raise FolderError(f"{shown}: {kind} not supported; upload one of {', '.join(SUPPORTED_SUFFIXES)}")
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise FolderError(f"{shown}: the upload cannot be read ({_reason(exc)}); try again") from None
        if size == 0:
            raise FolderError(f"{shown} is empty; nothing was added")
        if size > self.max_upload_bytes:
            raise FolderError(
                f"{shown} is {megabytes(size)} MB, over the {megabytes(self.max_upload_bytes)} MB upload limit; split it"
            )
        with tempfile.TemporaryDirectory(prefix="qa-upload-") as tmp:
            staged = Path(tmp) / safe_name(shown)
            shutil.copyfile(path, staged)  # check the bytes we will keep, under the name they will have
            self._check_loads(staged, shown)
            return self._place(staged)

    def save_text(self, title: str, text: str) -> Saved:
        """Save a pasted article (``title`` optional) as a file in the folder."""
        title = collapse_whitespace(title or "").strip()
        text = (text or "").strip()
        if not text:
            raise FolderError("the text is empty: paste the article's text, then add it")
        if len(text) > MAX_PASTE_CHARS:
            raise FolderError(
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

    def remove(self, rel: str) -> Removed:
        """Move one file (a path relative to the folder) into the folder's trash; ``restore`` undoes it."""
        target = self._inside(rel, "removed")
        if not target.is_file():
            raise FolderError(f"{rel} is not in the articles folder any more; refresh the list")
        trash = self.root / TRASH / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}" / rel
        try:
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.replace(target, trash)
        except OSError as exc:
            raise FolderError(f"{rel} cannot be removed ({_reason(exc)}); check the folder's permissions") from None
        log.info("moved %s to %s", target, trash)
        return Removed(rel, trash)

    def restore(self, removed: Removed) -> Path:
        """Put a removed file back where it was, unless another file took its name meanwhile."""
        target = self._inside(removed.rel, "restored")
        if not removed.trash.is_file():
            raise FolderError(f"{removed.rel} is no longer in {self.root / TRASH}/; it cannot be restored")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(removed.trash, target)  # fails instead of overwriting a file added meanwhile
            removed.trash.unlink()
        except FileExistsError:
            raise FolderError(f"another {removed.rel} was added meanwhile; remove it first to restore") from None
        except OSError as exc:
            raise FolderError(f"{removed.rel} cannot be restored ({_reason(exc)}); check the folder") from None
        _remove_empty_parents(removed.trash.parent, self.root)  # the trash itself too, once it is empty
        log.info("restored %s", target)
        return target

    def _inside(self, rel: str, verb: str) -> Path:
        if not rel:
            raise FolderError("choose a file first")
        root = self.root.resolve()
        target = (self.root / rel).resolve()
        if root not in target.parents or any(part.startswith(".") for part in target.relative_to(root).parts):
            raise FolderError(f"{rel} is not in the articles folder; nothing was {verb}")
        return target

    def _check_loads(self, staged: Path, shown: str) -> None:
        try:
            articles = load_file(staged, max_file_bytes=self.max_upload_bytes).articles
        except LoadError as exc:
            raise FolderError(str(exc).replace(str(staged), shown)) from None
        if not articles:
            raise FolderError(f"{shown}: no article found in it; nothing was added")

    def _place(self, staged: Path) -> Saved:
        """Link ``staged`` into the folder without overwriting a different file."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest = sha256_file(staged)
        suffix = _suffix(staged.name)
        stem = staged.name[: len(staged.name) - len(suffix)]
        part = self.root / f".{uuid.uuid4().hex}.part"  # hidden: the loader skips it
        shutil.copyfile(staged, part)
        try:
            with part.open("rb") as fh:
                os.fsync(fh.fileno())
            for n in range(1, 1000):
                target = self.root / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")
                if target.exists():
                    if target.is_file() and sha256_file(target) == digest:
                        log.info("%s is already in the articles folder", target)
                        return Saved(target, added=False)
                    continue
                try:
                    os.link(part, target)  # fails instead of overwriting if the name was taken meanwhile
                except FileExistsError:
                    continue
                log.info("saved %s", target)
                return Saved(target, added=True)
        except OSError as exc:
            raise FolderError(f"cannot write to {self.root}/ ({_reason(exc)}); check its permissions") from None
        finally:
            part.unlink(missing_ok=True)
        raise FolderError(f"too many files named {stem}{suffix}; rename the file")


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``stop`` while they are empty."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
