"""``Library``: what the page reads of the served index, and rebuilds on Ray built as ``qa build --ray`` builds them."""

from __future__ import annotations

import socket
import sys

import pytest
from conftest import writable_copy


def test_summary_and_article_answer_from_the_served_index(tmp_path, hash_embedder):
    from qa.app.library import Library

    library = Library(writable_copy(tmp_path / "articles"), tmp_path / "index", embedder=hash_embedder)
    assert library.summary() is None and library.article("0000000000000000") is None  # no index yet
    library.start()
    assert library.wait(60).state == "done"
    index = library.bot.index
    summary = library.summary()
    assert summary.articles == len(index.articles) == 2 and summary.chunks >= 2
    assert summary.model == hash_embedder.name
    article_id, article = next(iter(index.articles.items()))
    assert library.article(article_id) == article
    assert library.article("0000000000000000") is None


def _rebuild_on_ray(tmp_path, hash_embedder, monkeypatch, address: str):
    from qa.app.library import Library

    monkeypatch.setenv("QA_RAY_ADDRESS", address)
    library = Library(writable_copy(tmp_path / "articles"), tmp_path / "index", embedder=hash_embedder)
    library.start()
    return library.wait(60)


def test_a_rebuild_on_ray_without_ray_installed_says_to_install_the_extra(tmp_path, hash_embedder, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an uninstalled package looks like to import
    status = _rebuild_on_ray(tmp_path, hash_embedder, monkeypatch, "auto")
    assert status.state == "failed" and not status.unexpected
    assert "pip install '.[ray]'" in status.error
    assert not (tmp_path / "index" / "manifest.json").exists()


def test_a_rebuild_on_a_dead_ray_cluster_fails_fast_with_what_to_do(tmp_path, hash_embedder, monkeypatch):
    pytest.importorskip("ray.data", reason="Ray is not installed here; pip install '.[ray]' to run the Ray tests")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status = _rebuild_on_ray(tmp_path, hash_embedder, monkeypatch, f"127.0.0.1:{port}")
    assert status.state == "failed" and status.error.startswith("cannot reach Ray at 127.0.0.1:")
    assert "ray start --head" in status.error
    assert not (tmp_path / "index" / "manifest.json").exists()


def test_the_first_start_says_it_builds_the_index_not_to_run_qa_build(tmp_path, hash_embedder, caplog):
    import logging

    from qa.app.library import Library

    library = Library(writable_copy(tmp_path / "articles"), tmp_path / "index", embedder=hash_embedder)
    with caplog.at_level(logging.INFO, logger="qa"):
        library.start()
        assert library.wait(60).state == "done"
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "qa build" in m], messages
    assert any(m.startswith(f"no index in {tmp_path / 'index'}/ yet: building it from") for m in messages), messages
