"""The chat's example questions: the bundled ones only for the bundled articles, checked by content.

The fast tests check the choice on folders made under tmp_path and on the page
``build_app`` makes; the ``slow`` one builds a wheel, installs it outside the
repository and checks the same there (where no ``articles/`` lies next to the package).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TROOPS, writable_copy

from qa.app.examples import BUNDLED_EXAMPLES, BUNDLED_SHA256, examples_for, holds_bundled_articles

USER_ARTICLE = "The Elsmere harbour froze over in 1911.\n\nSkaters crossed it to the lighthouse."


def user_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "harbour.txt").write_text(USER_ARTICLE, encoding="utf-8")
    return folder


def test_the_shipped_hashes_are_those_of_the_bundled_articles():
    """The articles git ships (not whatever the user's articles/ holds now) are the ones BUNDLED_SHA256 lists."""
    def git(*args: str) -> bytes:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=True, timeout=30).stdout

    try:
        tracked = git("ls-files", "--", "articles").decode().split()
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout: the shipped files cannot be told from the user's")
    shipped = {Path(rel).name: hashlib.sha256(git("show", f"HEAD:{rel}")).hexdigest() for rel in tracked}
    assert BUNDLED_SHA256 == shipped


def test_a_users_corpus_gets_no_examples(tmp_path):
    assert examples_for(user_corpus(tmp_path / "mine")) == ()
    assert examples_for(tmp_path / "no such folder") == ()  # a missing folder is no match, never "all match"
    (tmp_path / "empty").mkdir()
    assert examples_for(tmp_path / "empty") == ()


def test_the_bundled_corpus_gets_its_examples(tmp_path):
    bundled = writable_copy(tmp_path / "articles")
    assert examples_for(bundled) == BUNDLED_EXAMPLES and TROOPS in BUNDLED_EXAMPLES
    (bundled / "harbour.txt").write_text(USER_ARTICLE, encoding="utf-8")  # more articles beside them: still theirs
    assert examples_for(bundled) == BUNDLED_EXAMPLES
    first = sorted(BUNDLED_SHA256)[0]
    (bundled / first).write_text("Same name, other words.", encoding="utf-8")  # a name alone is not the article
    assert examples_for(bundled) == ()
    (bundled / first).unlink()
    assert not holds_bundled_articles(bundled)


def test_no_hashes_means_no_examples(tmp_path, monkeypatch):
    monkeypatch.setattr("qa.app.examples.BUNDLED_SHA256", {})
    assert examples_for(writable_copy(tmp_path / "articles")) == ()


def _example_questions(demo) -> list[str]:
    """The questions the page offers (the ``qa-examples`` dataset), [] when it has none."""
    for block in demo.blocks.values():
        if getattr(block, "elem_id", None) == "qa-examples":
            return [sample[0] for sample in block.samples]
    return []


def test_the_page_offers_the_examples_only_for_the_bundled_articles(tmp_path, hash_embedder):
    from qa.app.library import Library
    from qa.app.ui import build_app

    for folder, expected in ((user_corpus(tmp_path / "mine"), []),
                             (writable_copy(tmp_path / "articles"), list(BUNDLED_EXAMPLES))):
        library = Library(folder, tmp_path / f"index-{folder.name}", embedder=hash_embedder)
        assert _example_questions(build_app(library, examples=examples_for(folder))) == expected


INSTALLED_CHECK = """
import json, sys
from pathlib import Path
import qa, qa.app.web
from qa.app.examples import examples_for
site, mine, bundled = (Path(p) for p in sys.argv[1:4])
print(json.dumps({
    "package": str(Path(qa.__file__).resolve()),
    "articles_beside_package": (Path(qa.app.web.__file__).resolve().parents[2] / "articles").exists(),
    "mine": list(examples_for(mine)),
    "bundled": list(examples_for(bundled)),
}))
"""


@pytest.mark.slow
def test_an_installed_wheel_offers_no_examples_for_a_users_corpus_and_answers(tmp_path):
    """pip wheel + install into a folder outside the repository; dependencies come from the running venv."""
    source = tmp_path / "source"  # a copy, so the build leaves no build/ or egg-info in the repository
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (source / name).write_bytes((ROOT / name).read_bytes())
    shutil.copytree(ROOT / "qa", source / "qa", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    # no build isolation: the venv's setuptools builds it, offline
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("qa-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=600)

    work = tmp_path / "work"  # the cwd: no qa/ and no articles/ here
    mine = user_corpus(work / "mine")
    bundled = writable_copy(work / "bundled")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)

    check = run("-c", INSTALLED_CHECK, str(site), str(mine), str(bundled))
    assert check.returncode == 0, check.stderr
    seen = json.loads(check.stdout)
    assert Path(seen["package"]).is_relative_to(site.resolve())  # the installed copy, not the repository's
    assert not seen["articles_beside_package"]
    assert seen["mine"] == [] and seen["bundled"] == list(BUNDLED_EXAMPLES)

    build = run("-m", "qa.app.cli", "build", str(mine), "--index", str(work / "index"), "--model", "hash", "--json")
    assert build.returncode == 0, build.stderr
    assert json.loads(build.stdout)["articles"] == 1
    ask = run("-m", "qa.app.cli", "ask", "When did the Elsmere harbour freeze over?", "--index", str(work / "index"),
              "--json")
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    assert not answer["abstained"] and "froze over in 1911" in answer["quotes"][0]["text"]
