"""Make a follow-up question self-contained from the conversation before retrieval.

No language model runs here, so this is a small, predictable rule set applied
to the previous *searched* question (itself already self-contained):

1. "What about Russia?" / "How about Japan?" / "And China?": the new name takes
   the place of the last name in the previous question ("How many troops did
   North Korea send to Russia?" -> "... send to China?").
2. A pronoun ("he", "it", "they", "his", ...) is replaced by the salient name of
   the previous question: its first name (usually the subject).
3. What is still vague ("Why?", "What do those actions signal?") gets the key
   words of the previous question added in brackets.

A question that stands on its own (no pronoun, no opener such as "And", "Why",
"What about", and at least one word of its own) borrows nothing, however odd it
is. Callers pass only the turns that were answered (``Bot.ask`` drops abstained
``Answer`` records), so nothing is borrowed from a question the articles did not answer.

Finally, a few abbreviations common in news that neither BM25 nor a small
embedding model links to the full name ("DPRK", "ROK", "PRC") get that name
added in brackets. The searched question is shown to the user, so a wrong
guess is visible.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"[\w’'.-]+", re.UNICODE)
_PERSONAL = frozenset("he she him his her hers it its they them their theirs".split())
_DEMONSTRATIVE = frozenset("this that these those there then such".split())
_PRONOUNS = _PERSONAL | _DEMONSTRATIVE
_POSSESSIVE = frozenset("his her hers its their theirs".split())
_OPENERS = re.compile(r"^\s*(and|but|also|so|then|what about|how about|and what about|why|what else|anything else)\b", re.I)
_ABOUT = re.compile(r"^\s*(?i:(?:and\s+)?(?:what|how)\s+about)\s+(?P<x>.+?)\s*[?.!]*\s*$|^\s*(?i:and)\s+(?P<y>[A-Z][^?]{0,60}?)\s*\?\s*$")
_QUESTION_WORDS = frozenset(
    """what which who whom whose when where why how is are was were do does did can could would should will
    the a an of to in on for with by from about and or but as at be been being has have had that this
    it its they them their he she his her him there than then so also else next did say said tell me us
    any anything more other might may get got details detail elaborate explain continue""".split()
)
# A run of capitalised words (with inner "of", "the", "-"), e.g. "North Korea", "Kim Jong Un", "U.S.", "Bank of England".
_NAME = re.compile(r"\b(?:[A-Z][\w’'.-]*)(?:\s+(?:of\s+|the\s+)?[A-Z][\w’'.-]*)*")
_NOT_NAMES = frozenset(
    """What Which Who Whom Whose When Where Why How Is Are Was Were Do Does Did Can Could Would Should Will And But
    Also So Then The A An In On At For With By From About Tell Any I""".split()
)


def content_words(question: str) -> list[str]:
    """Words of ``question`` that carry its topic (no question words, no pronouns)."""
    words = [w.strip(".’'-") for w in _WORD.findall(question)]
    return [w for w in words if w and w.lower() not in _QUESTION_WORDS and w.lower() not in _PRONOUNS]


def names(question: str) -> list[tuple[int, int]]:
    """Spans of the capitalised names in ``question``, leaving out a leading question word."""
    out = []
    for m in _NAME.finditer(question):
        s, text = m.start(), m.group(0)
        first = text.split()[0]
        if first in _NOT_NAMES:  # "What", "How", "The" ...: drop that word, keep the rest of the run
            rest = text[len(first) :].lstrip()
            if not rest or not rest[0].isupper():
                continue
            s, text = m.end() - len(rest), rest
        text = text.rstrip("’'-")
        if text.endswith(".") and not re.search(r"\b\w\.$", text):  # "Russia." but not "U.S."
            text = text[:-1]
        out.append((s, s + len(text)))
    return out


def needs_context(question: str) -> bool:
    """True when ``question`` refers back to earlier turns: a pronoun, an opener, or no word of its own."""
    words = {w.lower().strip(".’'-") for w in _WORD.findall(question)}
    return bool(words & _PRONOUNS) or bool(_OPENERS.search(question)) or not content_words(question)


def _substitute(question: str, previous: str) -> str | None:
    """"What about X?" in the frame of ``previous``: X replaces its last name; None if the rule does not apply."""
    m = _ABOUT.match(question)
    if not m:
        return None
    new = (m.group("x") or m.group("y") or "").strip()
    if not new or len(content_words(new)) == 0 or len(new.split()) > 6 or new.split()[0].lower() in _PRONOUNS:
        return None
    spans = names(previous)
    if not spans:
        return None
    s, e = spans[-1]
    if previous[max(0, s - 4) : s].lower() == "the " and new[:1].isupper():
        s -= 4  # "about the United States" -> "about Japan"
    return previous[:s] + new + previous[e:]


def _resolve_pronouns(question: str, previous: str) -> str:
    """Replace singular personal pronouns with names of ``previous``.

    The first pronoun of the question stands for the first name of the previous
    one (its subject, usually); a second, different pronoun for its last name
    ("How did he describe its alliance?" after "What did Kim call the U.S.?").
    "they"/"them"/"their" are left alone: too often a group the question only describes.
    """
    spans = names(previous)
    if not spans:
        return question
    entities = [previous[s:e] for s, e in spans]
    assigned: dict[str, str] = {}

    def repl(m: re.Match) -> str:
        word = m.group(0)
        base = {"him": "he", "his": "he", "her": "she", "hers": "she", "its": "it"}.get(word.lower(), word.lower())
        if base not in assigned:
            used = set(assigned.values())
            assigned[base] = next((x for x in (entities[0], entities[-1]) if x not in used), entities[0])
        entity = assigned[base]
        return entity + "’s" if word.lower() in _POSSESSIVE else entity

    return re.sub(r"\b(he|she|him|his|her|hers|it|its)\b", repl, question, flags=re.I)


def contextualize(question: str, previous: Sequence[str]) -> str:
    """The question to search: ``question`` itself, or made self-contained from the previous searched question.

    ``previous`` holds the earlier searched questions, oldest first.
    """
    question = question.strip()
    if not previous or not needs_context(question):
        return question
    last = previous[-1]
    swapped = _substitute(question, last)
    if swapped is not None:
        return swapped
    resolved = _resolve_pronouns(question, last)
    words = {w.lower().strip(".’'-") for w in _WORD.findall(resolved)}
    still_vague = bool(words & (_DEMONSTRATIVE | {"they", "them", "their", "theirs"})) or bool(_OPENERS.search(resolved)) or len(content_words(resolved)) <= 1
    if resolved != question and not still_vague:
        return resolved
    own = {w.lower() for w in content_words(resolved)}
    topic: list[str] = []
    for w in content_words(last):
        if w.lower() not in own and w.lower() not in {t.lower() for t in topic}:
            topic.append(w)
    if not topic:
        return resolved
    return f"{resolved} ({' '.join(topic)})"


#: Abbreviation -> the name articles use; only added when the name is not in the question already.
ALIASES = {
    "DPRK": "North Korea",
    "ROK": "South Korea",
    "PRC": "China",
    "UK": "Britain",
    "UAE": "United Arab Emirates",
    "POTUS": "US president",
    "SCOTUS": "Supreme Court",
    "GOP": "Republican",
    "Kremlin": "Russia",
}


def expand_aliases(question: str) -> str:
    """``question`` with the full name of known abbreviations added in brackets."""
    added = [
        name for alias, name in ALIASES.items()
        if re.search(rf"\b{alias}\b", question) and name.lower() not in question.lower()
    ]
    return f"{question} ({'; '.join(added)})" if added else question


def searched_history(questions: Sequence[str]) -> list[str]:
    """The searched form of each question in a conversation, in order."""
    plain: list[str] = []
    for q in questions:
        plain.append(contextualize(q, plain))
    return [expand_aliases(q) for q in plain]
