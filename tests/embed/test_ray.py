"""``qa build --ray``: a build embedded on a local 2-CPU Ray equals a local build; without Ray, one clear line.

The equivalence tests start a real local Ray (2 CPUs) and embed with the real bundled model on both sides.
They skip, saying why, only when Ray cannot be imported (scripts/test installs the ``ray`` extra).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from qa.index.build import build_index
from qa.app.cli import main
from qa.embed.factory import get_embedder
from qa.embed.hashing import HashEmbedder
from qa.index.reader import load_index

from conftest import bundled_articles_dir

ROOT = Path(__file__).resolve().parents[2]


def _ray_or_skip():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"Ray is not installed here ({exc}); pip install '.[ray]' to run the Ray tests")
    return ray


@pytest.fixture(scope="module")
def local_ray():
    """A fresh local Ray with 2 CPUs for this module, stopped afterwards."""
    ray = _ray_or_skip()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _questions(n: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "tests" / "questions.jsonl").read_text().splitlines() if line.strip()]
    return [r["q"] for r in rows if "q" in r][:n]


# The two fast tests come first: they need no running Ray (the module's Ray starts at its first user).


def test_build_with_ray_but_without_ray_installed_says_to_install_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an uninstalled package looks like to import
    status = main(["build", str(bundled_articles_dir()), "--index", str(tmp_path / "index"), "--ray"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert len(err) == 1 and "pip install '.[ray]'" in err[0], err
    assert not (tmp_path / "index" / "manifest.json").exists()


def test_qa_ray_address_of_a_dead_cluster_fails_fast_with_what_to_do(monkeypatch, tmp_path, capsys):
    _ray_or_skip()
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("QA_RAY_ADDRESS", f"127.0.0.1:{port}")
    status = main(["build", str(bundled_articles_dir()), "--index", str(tmp_path / "index")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err and err[-1].startswith("qa: error: cannot reach Ray at 127.0.0.1:") and "ray start --head" in err[-1]
    assert not (tmp_path / "index" / "manifest.json").exists()


@pytest.mark.ray
@pytest.mark.real
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_ray_build_equals_local_build(tmp_path, local_ray, backend):
    from qa.answer.bot import Bot
    from qa.embed.ray import RayEmbedder

    local = get_embedder(backend=backend)
    remote = RayEmbedder(local, workers=2)
    assert remote.name == local.name  # so both manifests name the same vectors
    build_index([bundled_articles_dir()], tmp_path / "local", embedder=local)
    seen: list[tuple[int, int]] = []
    report = build_index([bundled_articles_dir()], tmp_path / "ray", embedder=remote,
                         progress=lambda stage, done, total: seen.append((done, total)) if stage == "embed" else None)
    assert report.embedded == report.chunks > 0
    assert seen and seen[-1][0] == seen[-1][1] == report.embedded

    a, b = load_index(tmp_path / "local"), load_index(tmp_path / "ray")
    assert a.manifest.model == b.manifest.model == local.name
    assert [c.id for c in a.chunks] == [c.id for c in b.chunks]
    assert np.abs(np.asarray(a.vectors) - np.asarray(b.vectors)).max() <= 1e-5

    bot_local, bot_ray = Bot.load(tmp_path / "local", embedder=local), Bot.load(tmp_path / "ray", embedder=local)
    for question in _questions(8):
        x, y = bot_local.ask(question), bot_ray.ask(question)
        assert (x.abstained, [(q.source, q.start, q.end) for q in x.quotes]) == (
            y.abstained, [(q.source, q.start, q.end) for q in y.quotes]
        ), question


@pytest.mark.ray
def test_ray_embedder_keeps_row_order_across_workers(local_ray):
    """Many batches on two actors come back as one matrix in input order (the hash fake is order-sensitive)."""
    from qa.embed.ray import RayEmbedder

    texts = [f"article {i} says " + "word " * (i % 37) for i in range(400)]
    fake = HashEmbedder(dim=32)
    vectors = RayEmbedder(fake, workers=2).encode(texts)
    np.testing.assert_allclose(vectors, fake.encode(texts), atol=1e-6)
