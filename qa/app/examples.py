"""The example questions the chat offers for the bundled articles."""

from __future__ import annotations

#: Questions about the two bundled articles, shown as clickable examples.
BUNDLED_EXAMPLES = (
    "How many troops did North Korea send to Russia?",
    "What did Kim Jong Un call the United States?",
    "How many times did Trump meet Kim?",
    "Who blocked new sanctions at the U.N. Security Council?",
)
