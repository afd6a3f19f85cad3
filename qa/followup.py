"""Make a follow-up question self-contained from the conversation before retrieval.

No language model runs here, so this is a small, predictable rule set: a
question that leans on earlier turns (a pronoun, "what about ...?", "and ...?",
or too few words of its own) gets the key terms of the previous searched
question added. The searched question is shown to the user.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"[\w’'.-]+", re.UNICODE)
_PRONOUNS = frozenset(
    "he she him his her hers it its they them their theirs this that these those there then such".split()
)
_OPENERS = re.compile(r"^\s*(and|but|also|so|then|what about|how about|and what about|why|what else|anything else)\b", re.I)
_QUESTION_WORDS = frozenset(
    """what which who whom whose when where why how is are was were do does did can could would should will
    the a an of to in on for with by from about and or but as at be been being has have had that this
    it its they them their he she his her him there than then so also else next did say said tell me us
    any anything more other""".split()
)


def content_words(question: str) -> list[str]:
    """Words of ``question`` that carry its topic (no question words, no pronouns)."""
    words = [w.strip(".’'-") for w in _WORD.findall(question)]
    return [w for w in words if w and w.lower() not in _QUESTION_WORDS and w.lower() not in _PRONOUNS]


def needs_context(question: str) -> bool:
    """True when ``question`` refers back to earlier turns."""
    words = {w.lower().strip(".’'-") for w in _WORD.findall(question)}
    return bool(words & _PRONOUNS) or bool(_OPENERS.search(question)) or len(content_words(question)) <= 1


def contextualize(question: str, previous: Sequence[str]) -> str:
    """The question to search: ``question`` itself, or with the previous searched question's topic added.

    ``previous`` holds the earlier searched questions, oldest first.
    """
    question = question.strip()
    if not previous or not needs_context(question):
        return question
    own = {w.lower() for w in content_words(question)}
    topic = [w for w in content_words(previous[-1]) if w.lower() not in own]
    # De-duplicate, keep order.
    seen: set[str] = set()
    topic = [w for w in topic if not (w.lower() in seen or seen.add(w.lower()))]
    if not topic:
        return question
    return f"{question} ({' '.join(topic)})"


def searched_history(questions: Sequence[str]) -> list[str]:
    """The searched form of each question in a conversation, in order."""
    out: list[str] = []
    for q in questions:
        out.append(contextualize(q, out))
    return out
