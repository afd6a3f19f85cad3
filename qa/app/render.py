"""What the CLI and the web chat show alike: citation numbers and the cited articles (counts in words: ``qa.text``).

One number per article, in the order articles are first quoted
(``qa.answer.quotes.citation_numbers``, which also numbers ``Answer.text``);
the list of sources names each cited article once, from its first quote. The
terminal (``qa.app.cli``) and the chat (``qa.app.chat``) only dress these up.
No Gradio here: the ``qa`` command imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qa.answer.quotes import citation_numbers
from qa.records import Quote


@dataclass(frozen=True)
class Citation:
    """One cited article: its number in the answer and the first quote taken from it (title, source, date)."""

    number: int
    quote: Quote


def numbered_quotes(quotes: Sequence[Quote]) -> list[tuple[int, Quote]]:
    """Each quote with its citation number, in the answer's order."""
    return list(zip(citation_numbers(quotes), quotes))


def cited_articles(quotes: Sequence[Quote]) -> list[Citation]:
    """The articles the quotes come from, once each, in citation order."""
    first: dict[int, Quote] = {}
    for number, quote in numbered_quotes(quotes):
        first.setdefault(number, quote)
    return [Citation(number, quote) for number, quote in first.items()]
