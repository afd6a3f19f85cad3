"""Logging for the edges (the ``qa`` command and the web server); library modules only log."""

from __future__ import annotations

import logging
import sys
import warnings

#: Libraries whose INFO lines are noise on the terminal and in the server log.
NOISY = ("httpx", "httpcore", "sentence_transformers", "transformers", "bm25s", "faiss", "gradio", "urllib3")


def setup_logging(level: int = logging.INFO, fmt: str = "qa: %(message)s") -> None:
    """One stderr handler at ``level``; third-party chatter below WARNING dropped.

    The handler carries the level because bm25s sets its own logger to DEBUG
    when imported (its "Building index from IDs objects" lines); trafilatura
    imports urllib3's SOCKS support, which warns when PySocks is absent.
    """
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="SOCKS support in urllib3")
