"""The README shows ``qa --help`` as it really is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_readme_help_block_matches_the_cli(monkeypatch, capsys):
    from qa.app.cli import main

    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out.rstrip()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```text\n(usage: qa .*?)\n```", readme, re.S)
    assert block, "README has no qa --help block"
    assert block.group(1) == help_text


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for script in ("scripts/chat", "scripts/test"):
        assert f"bash {script}" in readme
        assert (ROOT / script).exists()
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_readme_says_what_the_first_start_costs_and_where_the_model_export_goes():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "~/.cache/qa" in readme and "QA_CACHE" in readme
    assert re.search(r"first start.{0,400}export", readme, re.S | re.I), "the one-time ONNX export is not mentioned"
