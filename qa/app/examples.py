"""The example questions the chat offers: only for the corpus they were written about.

The questions below are about the two articles bundled with the project
(``articles/`` in the repository). They are offered only when the served folder
really holds those articles, checked by content: the name and sha256 of each
bundled file are listed here, in the package, so the check needs no copy of the
articles and answers the same from a source checkout and from an installed
wheel. Any other corpus gets no examples.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: Questions about the two bundled articles, shown as clickable examples.
BUNDLED_EXAMPLES = (
    "How many troops did North Korea send to Russia?",
    "What did Kim Jong Un call the United States?",
    "How many times did Trump meet Kim?",
    "Who blocked new sanctions at the U.N. Security Council?",
)

#: The bundled articles: file name -> sha256 of the file's bytes (tests/app/test_examples.py keeps it in step).
BUNDLED_SHA256 = {
    "000_477d58a20c8c4005.txt": "e9bb3225f8a24bce18324d73fc82096802cb016cf67f121bc42ad257a8edf6c8",
    "004_b620c456e68df0a2.txt": "9be4038ba52c6b05023fb48c601861e95c8e4d4b164f7200ffb150b96194386c",
}


def holds_bundled_articles(folder: str | os.PathLike) -> bool:
    """True if ``folder`` holds every bundled article, byte for byte (other files beside them are fine)."""
    if not BUNDLED_SHA256:  # nothing to compare with is never a match
        return False
    root = Path(folder)
    try:
        return all(
            hashlib.sha256((root / name).read_bytes()).hexdigest() == digest for name, digest in BUNDLED_SHA256.items()
        )
    except OSError:  # missing, a folder, unreadable: not the bundled articles
        return False


def examples_for(folder: str | os.PathLike) -> tuple[str, ...]:
    """The example questions for the articles in ``folder``: the bundled ones' questions, else none."""
    return BUNDLED_EXAMPLES if holds_bundled_articles(folder) else ()
