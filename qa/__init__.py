"""Question answering over news articles with exact, sourced quotes.

Heavy parts load on first use; importing ``qa`` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Bot", "build_index", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from qa.answer.bot import Bot
    from qa.index.build import build_index


def __getattr__(name: str) -> Any:
    if name == "Bot":
        from qa.answer.bot import Bot

        return Bot
    if name == "build_index":
        from qa.index.build import build_index

        return build_index
    raise AttributeError(name)
