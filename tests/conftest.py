"""Shared fixtures and helpers: a fast tier with the hash embedder, a real tier with the bundled model.

The real model and the index of the bundled articles are built once per session.
Tiers (markers, registered in pyproject.toml with ``--strict-markers``): ``real``
(the bundled model), ``browser`` (headless Chromium), ``slow`` (subprocesses, the
load test, the SIGKILL series), ``ray``. The fast tier is
``-m "not real and not browser and not slow"``.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from qa.app.examples import BUNDLED_SHA256

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
#: The user's own articles folder: never read by a test, only the shipped files are copied out of it (or out of git).
LIVE_ARTICLES = ROOT / "articles"
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


def _shipped_bytes(name: str, digest: str) -> bytes:
    """The shipped bytes of bundled article ``name``: the checkout's file if unchanged, else git's committed copy."""
    try:
        data = (LIVE_ARTICLES / name).read_bytes()
        if hashlib.sha256(data).hexdigest() == digest:
            return data
    except OSError:
        pass
    try:
        data = subprocess.run(["git", "-C", str(ROOT), "show", f"HEAD:articles/{name}"],
                              capture_output=True, check=True, timeout=30).stdout
        if hashlib.sha256(data).hexdigest() == digest:
            return data
    except (OSError, subprocess.SubprocessError):
        pass
    raise RuntimeError(f"the shipped articles/{name} is neither in the checkout nor in git HEAD as BUNDLED_SHA256 says")


def make_bundled_copy(dst: Path) -> Path:
    """Write the shipped articles (only the files ``BUNDLED_SHA256`` names, byte for byte) into a new folder ``dst``."""
    dst.mkdir(parents=True)
    for name, digest in sorted(BUNDLED_SHA256.items()):
        (dst / name).write_bytes(_shipped_bytes(name, digest))
    return dst


@functools.cache
def bundled_articles_dir() -> Path:
    """One pristine copy of the shipped articles per test session, apart from the user's ``articles/``."""
    parent = Path(tempfile.mkdtemp(prefix="qa-bundled-"))
    atexit.register(shutil.rmtree, parent, ignore_errors=True)
    return make_bundled_copy(parent / "articles")


def writable_copy(dst: Path) -> Path:
    """A copy of the shipped articles at ``dst`` that the test may change."""
    shutil.copytree(bundled_articles_dir(), dst)
    return dst


@pytest.fixture(scope="session")
def bundled_articles() -> Path:
    """The shipped articles, pristine; read them, never change them (``corpus`` is a copy to change)."""
    return bundled_articles_dir()


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
def real_index(tmp_path_factory, real_embedder, bundled_articles) -> Path:
    """The bundled articles indexed with the real model, once per session."""
    from qa.index.build import build_index

    index_dir = tmp_path_factory.mktemp("real") / "index"
    build_index([bundled_articles], index_dir, embedder=real_embedder)
    return index_dir


@pytest.fixture(scope="session")
def real_bot(real_index, real_embedder):
    from qa.answer.bot import Bot

    return Bot.load(real_index, embedder=real_embedder)
