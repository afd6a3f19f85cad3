"""Boilerplate clean-up of scraped article text.

Cleaning only ever drops whole lines, trims line ends, normalises newlines and
removes invisible characters. It never changes the characters inside a kept
line, so every quote taken from the cleaned text can be found again (after
collapsing whitespace) in the original file.

The rules are data: add a regex to ``BOILERPLATE_PATTERNS`` to drop a new kind
of line, or to ``BYLINE_PATTERNS`` to recognise a new kind of byline.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

logger = logging.getLogger(__name__)

MAX_TITLE_CHARS = 200
"""A headline is at most this long."""

SENTENCE_GUARD_CHARS = 200
"""A line longer than this with sentence punctuation is never boilerplate."""

_I = re.IGNORECASE
_APOS = "['’]"

BOILERPLATE_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Advertising and sponsorship labels.
    re.compile(
        r"(?:advertisements?|advertising|ads?|sponsored(?: content| post| links?| stories)?"
        r"|paid (?:content|post|partner content)|promoted(?: content| stories)?"
        r"|(?:story|article) continues below(?: (?:this )?advertisement)?"
        r"|continue reading below|scroll to continue(?: with content)?)",
        _I,
    ),
    # Relative times: "4 hours ago", "an hour ago", "Updated 5 minutes ago".
    re.compile(
        r"(?:(?:updated|posted|published)\s*:?\s*)?(?:\d+|an?|one|a few)\s+"
        r"(?:secs?|seconds?|mins?|minutes?|hrs?|hours?|days?|weeks?|months?|years?)\s+ago\.?",
        _I,
    ),
    # Reading time: "2 mins read", "5-minute read", "Reading time: 4 minutes".
    re.compile(
        r"(?:\d+|one|two|three|four|five)[\s-]*(?:mins?|minutes?)\s+read"
        r"|(?:estimated )?reading time\s*:?\s*\d+\s*(?:mins?|minutes?)",
        _I,
    ),
    # Sharing and social labels.
    re.compile(
        r"(?:share|shares|share this(?: article| story| post| page)?|share (?:on|via|to) [\w ]{1,20}"
        r"|tweet|facebook|twitter|x \(formerly twitter\)|linkedin|whatsapp|e-?mail|print"
        r"|pinterest|reddit|telegram|flipboard|copy link|copy url|link copied)",
        _I,
    ),
    # "Read more" and friends, optionally followed by a link title.
    re.compile(
        r"(?:read more|continue reading|read the full (?:story|article)|read next)"
        r"(?:\s*[:»›→|>…-].{0,120}|\W{0,3})",
        _I,
    ),
    # Subscription and newsletter prompts: "Subscribe now", "Newsletter: sign up ...", "Sign up for our daily briefing".
    re.compile(
        r"subscribe(?: now| today| here)?\W{0,3}"
        r"|(?:sign up|subscribe|register)\b.{0,80}\bnewsletters?\b.{0,60}"
        r"|(?:newsletters?|briefing|daily digest)\s*[:|–—-]\s*.{0,120}"
        r"|(?:sign up|subscribe)\s+(?:for|to)\s+(?:our|the)\b.{0,60}\b(?:briefing|digest|e-?mails?|updates|alerts)\W{0,3}",
        _I,
    ),
    # "Click here to ..." / "Tap here to ...".
    re.compile(r"(?:click|tap) here\b.{0,120}", _I),
    # Related-content labels: "Related: ...", "Don't Miss", "You may also like".
    re.compile(
        r"(?:related|see also|also read|read also|more|recommended|most read|trending|watch)\s*:.{0,150}"
        r"|related(?: stories| articles| content| coverage| posts| links)?"
        r"|recommended(?: for you)?|most (?:read|popular|viewed)|trending(?: now| stories)?"
        rf"|you (?:may|might) also like|don{_APOS}?t miss|editor{_APOS}?s? picks?|top stories|latest news",
        _I,
    ),
    # Cookie notices.
    re.compile(
        r"(?:we|this (?:site|website)|our (?:site|website)) uses? cookies\b.{0,200}"
        r"|(?:accept|reject|allow|manage)(?: all)? cookies|cookie (?:policy|settings|preferences|consent)",
        _I,
    ),
    # Image captions and credits: "Photo: AP", "Image credit: Reuters".
    re.compile(
        r"\(?(?:photo|photograph|image|picture|pic)s?\s*(?:credit\s*)?(?::|by\b|credit\b).{0,120}"
        r"|(?:getty images|shutterstock|ap photo|reuters)\)?",
        _I,
    ),
    # Comment widgets and page chrome: "Sorting by", "12 comments", "Skip to content".
    re.compile(
        r"sort(?:ing|ed)? by\s*:?(?:\s*(?:newest|oldest|best|top|popular|relevance)\w*)?"
        r"|\d*\s*comments?|leave a (?:comment|reply)|(?:show|view|hide) comments"
        r"|skip to (?:main )?content|menu|search|home|close|back to top|toggle navigation|loading\W{0,3}",
        _I,
    ),
    # Lone punctuation or symbols: "×", "|", "•", "* * *".
    re.compile(r"(?!```)[\W_]{1,5}"),
)
"""Each pattern must match a whole stripped line for the line to be dropped."""

BYLINE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?:by|written by|words by|story by|author)\s*:?\s+(?P<name>.+)", _I),
    re.compile(r"author\s*:\s*(?P<name>.+)", _I),
)
"""A whole line matching one of these, with a name-like ``name`` group, is a byline."""

_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
          r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_WEEKDAY = r"(?:mon|tue(?:s)?|wed(?:nes)?|thu(?:rs)?|fri|sat(?:ur)?|sun)(?:day)?\.?,?\s+"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
DATE_PATTERN = re.compile(
    r"(?:(?:published|posted|updated|last updated|date)\s*:?\s*(?:on\s+)?)?"
    rf"(?P<date>(?:{_WEEKDAY})?(?:{_MONTH}\s+{_DAY},?\s+\d{{4}}|{_DAY}\s+{_MONTH},?\s+\d{{4}}"
    r"|\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{4})"
    r"(?:,?\s+(?:at\s+)?\d{1,2}[:.]\d{2}(?:\s*[ap]\.?m\.?)?(?:\s+[a-z]{2,4})?)?)",
    _I,
)
"""A line that is only a date (with a "Published:" label, a weekday, a time): near the top, the published date."""

DATE_LINES_FROM_TOP = 4
"""A date line among this many first non-empty lines, before the body's first sentence, is the published date;
further down it is content."""

_EMPHASIS = re.compile(r"(?<![\w*_])[*_]{1,3}|[*_]{1,3}(?![\w*_])")

AVATAR_PATTERN = re.compile(r"(?:author|profile)(?: avatar| photo| image| picture)|avatar", _I)
"""An avatar label; the next non-empty line is the author's name."""

_NAME_CONNECTORS = frozenset({"and", "&", "de", "del", "da", "van", "von", "der", "den", "la", "le", "du", "bin", "al"})
_NOT_NAME_WORDS = frozenset(
    {"the", "a", "an", "of", "in", "on", "for", "with", "to", "at", "from", "this", "that", "our", "my", "your", "their"}
)
_NAME_TOKEN = re.compile(r"[A-ZÀ-ÖØ-Þ][\w.'’-]*|[A-Z]\.")

_INVISIBLE = re.compile(
    "["
    "\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f"  # C0/C1 controls (tab and line breaks are kept or mapped)
    "\u00ad\u061c\u180e"  # soft hyphen, Arabic letter mark, Mongolian vowel separator
    "\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"  # zero-width, bidi marks/embeddings/isolates
    "\ufeff\ufff9-\ufffb"  # byte order mark, interlinear annotation
    "\ud800-\udfff"  # lone surrogates (not encodable as UTF-8)
    "\U000e0000-\U000e007f"  # tag characters (invisible "ASCII smuggling")
    "]"
)
_LINE_BREAKS = re.compile("\r\n|[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_SENTENCE_PUNCT = re.compile(r"[.!?][\"'”’)\]]*(?:\s|$)")
_TITLE_BAD_END = re.compile(r"[.:;,]$")


@dataclass(frozen=True)
class Cleaned:
    """The result of cleaning: a headline, a byline, the body text and a date line's date (any may be "")."""

    title: str
    author: str
    text: str
    published: str = ""


def strip_invisible(text: str) -> str:
    """Normalise line breaks to ``\\n`` and remove zero-width, bidi and control characters."""
    return _INVISIBLE.sub("", _LINE_BREAKS.sub("\n", text))


def clean_field(value: str, max_chars: int) -> str:
    """A one-line metadata value (title, author, date): invisible characters removed, whitespace
    collapsed, cut at a word boundary to at most ``max_chars`` characters (with "…")."""
    text = " ".join(strip_invisible(value).split())
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    if " " in cut[max_chars // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"


def is_boilerplate(line: str) -> bool:
    """True if a stripped line is boilerplate (never for a long real sentence)."""
    line = line.strip()
    if not line:
        return False
    if len(line) > SENTENCE_GUARD_CHARS and _SENTENCE_PUNCT.search(line):
        return False
    return any(p.fullmatch(line) for p in BOILERPLATE_PATTERNS)


def byline_name(line: str) -> str:
    """The author's name if ``line`` is a byline like "By Jane Doe" (Markdown emphasis allowed: "*By Jane Doe*"), else ""."""
    line = _EMPHASIS.sub("", line).strip()
    for pattern in BYLINE_PATTERNS:
        match = pattern.fullmatch(line)
        if match and looks_like_name(match.group("name")):
            return match.group("name").strip()
    return ""


def looks_like_name(text: str) -> bool:
    """True for short capitalised names: "Josh Weiner", "Jane Doe and John Roe, CNN"."""
    text = text.strip()
    if not text or len(text) > 80 or text[-1] in ".!?:;," and not text.endswith(("Jr.", "Sr.")):
        return False
    tokens = [t for t in re.split(r"[\s,|·•]+", text) if t]
    if not 1 <= len(tokens) <= 10:
        return False
    named = 0
    for token in tokens:
        if token.lower() in _NOT_NAME_WORDS:
            return False
        if token.lower() in _NAME_CONNECTORS:
            continue
        if not _NAME_TOKEN.fullmatch(token):
            return False
        named += 1
    return named >= 1


def is_headline(line: str) -> bool:
    """True for a short line that reads like a headline rather than a sentence."""
    line = line.strip()
    return (
        0 < len(line) <= MAX_TITLE_CHARS
        and any(ch.isalpha() for ch in line)
        and not _TITLE_BAD_END.search(line)
        and not is_boilerplate(line)
    )


def clean_text(raw: str, *, title_hint: str = "") -> Cleaned:
    """Drop boilerplate lines, pull out the headline and byline, and tidy whitespace.

    With ``title_hint`` (a title known from metadata) no headline is detected; the
    hint is returned as the title and a leading line equal to it is dropped.
    """
    lines = [line.rstrip() for line in strip_invisible(raw).split("\n")]
    keep = [bool(line.strip()) for line in lines]
    author = published = ""
    pending_avatar = False
    seen, in_body = 0, False
    for i, line in enumerate(lines):
        if not keep[i]:
            continue
        stripped = line.strip()
        seen += 1
        header = not in_body and seen <= DATE_LINES_FROM_TOP
        if header and not published and (date := DATE_PATTERN.fullmatch(stripped)):
            published, keep[i] = date.group("date"), False
            continue
        if pending_avatar:
            pending_avatar = False
            if not author and looks_like_name(stripped):
                author, keep[i] = stripped, False
                continue
        if AVATAR_PATTERN.fullmatch(stripped):
            keep[i], pending_avatar = False, True
        elif not author and (name := byline_name(stripped)):
            author, keep[i] = name, False  # only the first byline: later ones may be content
        elif is_boilerplate(stripped):
            keep[i] = False
        elif not is_headline(stripped):
            in_body = True
    title = _take_title(lines, keep, title_hint.strip())
    dropped = sum(1 for line, k in zip(lines, keep) if line.strip() and not k)
    if dropped:
        logger.debug("dropped %d boilerplate/title/byline lines", dropped)
    return Cleaned(title=title, author=author, text=_join_paragraphs(lines, keep), published=published)


def _take_title(lines: list[str], keep: list[bool], hint: str) -> str:
    """Find the headline among the kept lines, mark it dropped and return it."""
    kept = [i for i, k in enumerate(keep) if k]
    if not kept:
        return hint
    first = kept[0]
    candidate = lines[first].strip()
    if hint:
        if _squash(candidate) == _squash(hint):
            keep[first] = False
        return hint
    if len(kept) > 1 and is_headline(candidate):
        keep[first] = False
        return candidate
    return ""


def _squash(text: str) -> str:
    return " ".join(text.split()).casefold()


def _join_paragraphs(lines: list[str], keep: list[bool]) -> str:
    """Group kept lines into paragraphs split at blank lines; join with "\\n\\n"."""
    paragraphs: list[list[str]] = [[]]
    for line, k in zip(lines, keep):
        if not line.strip():
            if paragraphs[-1]:
                paragraphs.append([])
        elif k:
            paragraphs[-1].append(line)
    return "\n\n".join("\n".join(p) for p in paragraphs if p).strip()
