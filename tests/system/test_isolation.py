"""The tests use only what they make or what the project ships, never the user's live ``articles/`` folder.

Using the app leaves things in ``articles/`` (uploads, a ``.trash/`` folder after a
removal); the tests must not see them. They read a pristine copy of the shipped
articles (``bundled_articles`` in conftest.py), made from the files named in
``qa.app.examples.BUNDLED_SHA256`` and checked byte for byte.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import conftest
from conftest import ROOT, make_bundled_copy, writable_copy

from qa.app.examples import BUNDLED_SHA256


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_the_tests_read_a_pristine_copy_of_the_shipped_articles(bundled_articles, tmp_path):
    live = conftest.LIVE_ARTICLES.resolve()
    assert live not in bundled_articles.resolve().parents and bundled_articles.resolve() != live
    assert _digests(bundled_articles) == BUNDLED_SHA256
    assert _digests(writable_copy(tmp_path / "articles")) == BUNDLED_SHA256


def test_a_used_articles_folder_does_not_leak_into_the_tests(tmp_path, monkeypatch):
    live = writable_copy(tmp_path / "live")  # the folder after a session in the web chat
    (live / ".trash" / "20260101-000000-abcd1234").mkdir(parents=True)
    (live / ".trash" / "20260101-000000-abcd1234" / "old.txt").write_text("Removed earlier.", encoding="utf-8")
    (live / "upload.txt").write_text("An article the user added.", encoding="utf-8")
    monkeypatch.setattr(conftest, "LIVE_ARTICLES", live)
    assert _digests(make_bundled_copy(tmp_path / "copy")) == BUNDLED_SHA256


def test_no_test_names_the_live_articles_folder():
    pattern = re.compile(r"""(ROOT|Path\(__file__\)\.resolve\(\)\.parents\[\d\])\s*/\s*["']articles["']""")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line) and not line.startswith("LIVE_ARTICLES =")
    ]
    assert offenders == []
