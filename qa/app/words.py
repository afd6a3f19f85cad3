"""Small wording helpers shared by the CLI and the web chat."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun in the right number: ``1 article``, ``2 articles``, ``1,200 passages``."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
