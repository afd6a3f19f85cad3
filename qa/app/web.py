"""Serve the web chat: open the library, start its background update, launch the Gradio app.

``python app.py`` calls ``main()``; tests and scripts call ``serve(..., block=False)``
and get ``(demo, library)`` back.

Environment (read in ``qa.settings``): ``QA_ARTICLES``, ``QA_INDEX``, ``QA_MODEL``,
``QA_AUTH``, ``QA_MAX_UPLOAD_MB``, ``QA_ABSTAIN_BELOW``, and Gradio's own
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (default 127.0.0.1:7860).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qa.app.examples import examples_for
from qa.app.folder import MAX_UPLOAD_BYTES
from qa.app.logs import setup_logging
from qa.errors import QAError
from qa.settings import (
    abstain_below_from_env,
    auth_from_env,
    default_articles_dir,
    default_index_dir,
    ranker_from_env,
    max_upload_bytes_from_env,
    model_from_env,
)


def serve(
    articles_dir: str | os.PathLike | None = None,
    index_dir: str | os.PathLike | None = None,
    *,
    server_name: str | None = None,
    server_port: int | None = None,
    auth: Sequence[tuple[str, str]] | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    model: str | None = None,
    embedder: Any = None,
    block: bool = True,
):
    """Start the library (index update in the background) and launch the chat; returns (demo, library)."""
    from qa.app.library import Library
    from qa.app.ui import build_app, launch_options

    articles = Path(articles_dir) if articles_dir is not None else default_articles_dir()
    library = Library(
        articles,
        Path(index_dir) if index_dir is not None else default_index_dir(),
        model=model,
        embedder=embedder,
        max_upload_bytes=max_upload_bytes,
    )
    demo = build_app(library, examples=examples_for(articles))  # the bundled questions only for the bundled articles
    demo.queue(default_concurrency_limit=2)
    demo.launch(
        server_name=server_name,  # None: GRADIO_SERVER_NAME or 127.0.0.1
        server_port=server_port,  # None: GRADIO_SERVER_PORT or 7860
        auth=list(auth) if auth else None,
        max_file_size=max_upload_bytes,
        prevent_thread_lock=True,
        show_error=False,
        quiet=not block,
        **launch_options(),
    )
    library.start()  # after the launch: the page is there at once and shows the model loading, the build
    if block:
        demo.block_thread()
    return demo, library


def main() -> int:
    """``python app.py``: read the settings, serve until interrupted; the exit status."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    setup_logging()
    try:
        auth = auth_from_env()
        limit = max_upload_bytes_from_env()
        abstain_below_from_env()  # a bad value stops here, not in the background build
        ranker_from_env()
        serve(auth=auth, max_upload_bytes=limit, model=model_from_env())
    except QAError as exc:
        print(f"app: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"app: error: {exc}; set GRADIO_SERVER_PORT to another port", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
