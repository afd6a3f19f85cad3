"""Sentence spans with exact offsets, for chunk boundaries and for quotes.

A regex splitter tuned for news prose: it does not split after common
abbreviations ("Mr.", "U.S.", "Jan.") or initials, and keeps closing quotes and
brackets with the sentence they end.
"""

from __future__ import annotations

import re

# A sentence ends at . ! ? (or …), then optional closing quotes/brackets, then whitespace.
_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|\n\s*\n")
_ABBREV = frozenset(
    """mr mrs ms dr prof sr jr st gen col lt sgt capt cmdr adm gov sen rep rev hon pres
    inc ltd co corp no vs etc jan feb mar apr jun jul aug sep sept oct nov dec est approx dept univ fig
    """.split()
)
_STARTERS = frozenset(
    """the a an he she it they we i you his her its their our this that these those there
    but and so yet or in on at for after before when while if as since although though
    meanwhile however still also then now earlier later last next some many most one two""".split()
)
_INITIALS = re.compile(r"(?:\b[A-Za-z]\.){1,}$")


def _is_abbreviation(text: str, dot: int) -> bool:
    """True when the period at ``dot`` ends an abbreviation rather than a sentence."""
    head = text[max(0, dot - 12) : dot + 1]
    word = re.search(r"([A-Za-z]+)\.$", head)
    if word and word.group(1).lower() in _ABBREV:
        return True
    # "U.S." / "U.N." / "J." — but "the U.S." at the end of a sentence is ambiguous; see next word.
    if _INITIALS.search(head):
        after = text[dot + 1 : dot + 40].lstrip()
        nxt = after.split(" ", 1)[0] if after else ""
        # "U.S. officials", "U.S. President Biden": the sentence goes on unless the
        # next word is capitalised and one that typically starts a sentence.
        word = nxt.strip("\"“‘'(")
        return not (word[:1].isupper() and word.lower() in _STARTERS)
    return False


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans ``(s, e)`` of the sentences in ``text[start:end]``, stripped of surrounding whitespace."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    cursor = start
    for match in _END.finditer(text, start, end):
        stop = match.end()
        if match.group(0)[0] == "." and _is_abbreviation(text, match.start() + len(match.group(0).rstrip("\"'”’)]")) - 1):
            continue
        _add(text, cursor, stop, spans)
        cursor = stop
    _add(text, cursor, end, spans)
    return spans


def _add(text: str, lo: int, hi: int, spans: list[tuple[int, int]]) -> None:
    piece = text[lo:hi]
    stripped = piece.strip()
    if not stripped:
        return
    s = lo + (len(piece) - len(piece.lstrip()))
    spans.append((s, s + len(stripped)))


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace become one space, none at either end; used to compare quotes with source files.

    ``str.split`` splits on exactly the characters ``\\s`` matches, and is 3x faster than a regex here (the
    Articles filter collapses every title of an archive).
    """
    return " ".join(text.split())


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun in the right number: ``1 article``, ``2 articles``, ``1,200 passages``."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
