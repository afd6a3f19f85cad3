"""Shared fixtures: a fast tier with the hash embedder, a real tier with the bundled model.

The real model and the index of the bundled articles are built once per session.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = ROOT / "articles"


@pytest.fixture
def hash_embedder():
    from qa.embed import HashEmbedder

    return HashEmbedder(dim=64)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A copy of the bundled articles in a folder the test may change."""
    folder = tmp_path / "articles"
    shutil.copytree(ARTICLES, folder)
    return folder


@pytest.fixture
def hash_index(tmp_path: Path, corpus: Path, hash_embedder) -> Path:
    """The bundled articles indexed with the hash embedder."""
    from qa.build import build_index

    index_dir = tmp_path / "index"
    build_index([corpus], index_dir, embedder=hash_embedder)
    return index_dir


@pytest.fixture(scope="session")
def real_embedder():
    from qa.embed import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    embedder.encode(["warm up"])
    return embedder


@pytest.fixture(scope="session")
def real_index(tmp_path_factory, real_embedder) -> Path:
    """The bundled articles indexed with the real model, once per session."""
    from qa.build import build_index

    index_dir = tmp_path_factory.mktemp("real") / "index"
    build_index([ARTICLES], index_dir, embedder=real_embedder)
    return index_dir


@pytest.fixture(scope="session")
def real_bot(real_index, real_embedder):
    from qa.bot import Bot

    return Bot.load(real_index, embedder=real_embedder)
