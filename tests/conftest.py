"""Shared fixtures and helpers: a fast tier with the hash embedder, a real tier with the bundled model.

The real model and the index of the bundled articles are built once per session.
Tiers (markers, registered in pyproject.toml with ``--strict-markers``): ``real``
(the bundled model), ``browser`` (headless Chromium), ``slow`` (subprocesses, the
load test, the SIGKILL series), ``ray``. The fast tier is
``-m "not real and not browser and not slow"``.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = ROOT / "articles"
TROOPS = "How many troops did North Korea send to Russia?"


def load_paths(paths, **limits):
    """Every article under ``paths`` and every skip message, as ``qa build`` reads them (``LoadResult``).

    The walker finds the files, ``load_file`` reads each; an unusable file or a
    source already loaded becomes a skip message, as in the build.
    """
    from qa.ingest.discover import discover_files
    from qa.ingest.formats import LoadError
    from qa.ingest.load import LoadResult, load_file

    files, skipped = discover_files(paths)
    articles = {}
    for path in files:
        try:
            loaded = load_file(path, **limits)
        except LoadError as exc:
            skipped.append(str(exc))
            continue
        skipped += loaded.skipped
        for article in loaded.articles:
            if article.source in articles:
                skipped.append(f"{path}: {article.source} was already loaded; duplicate skipped")
            else:
                articles[article.source] = article
    return LoadResult(articles=tuple(articles.values()), skipped=tuple(skipped))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (never a fixed one: other servers run on this machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def writable_copy(dst: Path) -> Path:
    """A copy of the bundled articles at ``dst`` that the test may change."""
    shutil.copytree(ARTICLES, dst)
    for path in dst.iterdir():
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return dst


@pytest.fixture
def hash_embedder():
    from qa.embed.hashing import HashEmbedder

    return HashEmbedder(dim=64)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A copy of the bundled articles in a folder the test may change."""
    return writable_copy(tmp_path / "articles")


@pytest.fixture
def hash_index(tmp_path: Path, corpus: Path, hash_embedder) -> Path:
    """The bundled articles indexed with the hash embedder."""
    from qa.index.build import build_index

    index_dir = tmp_path / "index"
    build_index([corpus], index_dir, embedder=hash_embedder)
    return index_dir


@pytest.fixture(scope="session")
def real_embedder():
    from qa.embed.torch import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    embedder.encode(["warm up"])
    return embedder


@pytest.fixture(scope="session")
def real_index(tmp_path_factory, real_embedder) -> Path:
    """The bundled articles indexed with the real model, once per session."""
    from qa.index.build import build_index

    index_dir = tmp_path_factory.mktemp("real") / "index"
    build_index([ARTICLES], index_dir, embedder=real_embedder)
    return index_dir


@pytest.fixture(scope="session")
def real_bot(real_index, real_embedder):
    from qa.answer.bot import Bot

    return Bot.load(real_index, embedder=real_embedder)
