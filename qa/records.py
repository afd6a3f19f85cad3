"""The small frozen records that pass between the stages.

Every stage takes and returns these, never bare dicts, so a reader can follow
an article from the loader to the quote shown in the chat.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def sha256_text(text: str) -> str:
    """Hex sha256 of a string, the content hash used for ids and reuse."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_id(article_id: str, start: int, end: int) -> str:
    """A chunk's id, from its article and its span: the same chunk always gets the same id."""
    return sha256_text(f"{article_id}:{start}:{end}")[:16]


#: ``sha256_file(keep_cached=False)`` drops what it hashed every this many bytes.
_DROP_STRIDE = 32 << 20


def sha256_file(path: Path, *, keep_cached: bool = True) -> str:
    """Hex sha256 of a file's bytes, read in blocks.

    ``keep_cached=False`` asks the kernel to drop the file from the page cache
    as it is hashed (``posix_fadvise``, where there is one), so hashing a file
    much larger than memory does not push out the pages a server needs.
    """
    digest = hashlib.sha256()
    drop = not keep_cached and hasattr(os, "posix_fadvise")
    with path.open("rb") as fh:
        done = dropped = 0
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            done += len(block)
            if drop and done - dropped >= _DROP_STRIDE:
                os.posix_fadvise(fh.fileno(), dropped, done - dropped, os.POSIX_FADV_DONTNEED)
                dropped = done
        if drop:  # the whole file at the end: a large folio across a stride's edge is dropped only whole
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return digest.hexdigest()


@dataclass(frozen=True)
class Article:
    """One cleaned article. ``text`` is what quotes and offsets refer to."""

    id: str
    title: str
    text: str
    source: str
    author: str = ""
    published: str = ""
    sha256: str = ""

    @staticmethod
    def make(text: str, source: str, title: str = "", author: str = "", published: str = "") -> Article:
        """Build an article whose id and hash come from its content and source."""
        digest = sha256_text(text)
        article_id = sha256_text(f"{source}\n{digest}")[:16]
        return Article(
            id=article_id,
            title=title.strip() or _fallback_title(text, source),
            text=text,
            source=source,
            author=author.strip(),
            published=published.strip(),
            sha256=digest,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Article:
        return Article(**{k: data.get(k, "") for k in Article.__dataclass_fields__})


def _fallback_title(text: str, source: str) -> str:
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= 120 else line[:117].rstrip() + "..."
    return source


@dataclass(frozen=True)
class Chunk:
    """A span ``[start, end)`` of one article's text; ``text == article.text[start:end]``."""

    id: str
    article_id: str
    start: int
    end: int
    text: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Chunk:
        return Chunk(
            id=data["id"],
            article_id=data["article_id"],
            start=int(data["start"]),
            end=int(data["end"]),
            text=data["text"],
        )


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and rank (0 = best)."""

    chunk: Chunk
    score: float
    rank: int
    dense: float = 0.0
    lexical: float = 0.0


@dataclass(frozen=True)
class Quote:
    """An exact span of an article shown as (part of) an answer."""

    text: str
    article_id: str
    title: str
    source: str
    start: int
    end: int
    score: float
    published: str = ""
    author: str = ""
    context_before: str = ""
    context_after: str = ""
    also_in: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["also_in"] = list(self.also_in)
        data["sources"] = 1 + len(self.also_in)
        return data


@dataclass(frozen=True)
class Answer:
    """What the bot says: the quotes, or an abstention with the reason."""

    question: str
    text: str
    quotes: tuple[Quote, ...]
    abstained: bool
    searched: str = ""
    notice: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "abstained": self.abstained,
            "searched": self.searched or self.question,
            "notice": self.notice,
            "quotes": [q.to_json() for q in self.quotes],
            "seconds": round(self.seconds, 4),
        }


@dataclass(frozen=True)
class BuildReport:
    """What a build did; chunk counts for embedded/reused/removed."""

    articles: int
    chunks: int
    embedded: int
    reused: int
    removed: int
    seconds: float
    skipped: tuple[str, ...] = field(default_factory=tuple)
    index_dir: str = ""
    build_id: str = ""
    changed: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "articles": self.articles,
            "chunks": self.chunks,
            "embedded": self.embedded,
            "reused": self.reused,
            "removed": self.removed,
            "seconds": round(self.seconds, 3),
            "skipped": list(self.skipped),
            "index": self.index_dir,
            "build_id": self.build_id,
            "changed": self.changed,
        }
