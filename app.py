"""Run the web chat: ``python app.py``, then open http://127.0.0.1:7860.

Environment: ``QA_ARTICLES`` (articles folder, default ``articles/``), ``QA_INDEX``
(index folder, default ``index/``), ``QA_MODEL`` (embedding model),
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (default 127.0.0.1:7860),
``QA_AUTH`` (optional login, ``user:password`` or several separated by commas),
``QA_MAX_UPLOAD_MB`` (upload limit, default 20), ``QA_ABSTAIN_BELOW`` (refuse
when the best sentence scores below it; default: the model's calibrated value).

The index is built, or brought up to date incrementally, in the background
while the page is already served; the page shows the progress.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from qa.settings import SettingsError, abstain_below_from_env

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

BUNDLED_ARTICLES = Path(__file__).resolve().parent / "articles"


class SetupError(Exception):
    """A setting the deployer can fix; the message says how."""


def parse_auth(value: str | None) -> list[tuple[str, str]] | None:
    """``user:password[,user2:password2]`` from ``QA_AUTH``; None when unset (no login)."""
    if not value or not value.strip():
        return None
    pairs = []
    for item in value.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user or not password:
            raise SetupError("QA_AUTH must look like user:password (several separated by commas)")
        pairs.append((user, password))
    return pairs


def upload_limit_bytes(value: str | None) -> int:
    """The upload limit from ``QA_MAX_UPLOAD_MB`` (default 20 MB)."""
    try:
        mb = float(value) if value else 20.0
    except ValueError:
        raise SetupError(f"QA_MAX_UPLOAD_MB must be a number of megabytes, not {value!r}") from None
    if mb <= 0:
        raise SetupError("QA_MAX_UPLOAD_MB must be positive")
    return int(mb * 1_000_000)


def holds_bundled_articles(folder: Path) -> bool:
    """True if ``folder`` has the bundled articles (so the example questions fit)."""
    try:
        return all(
            (folder / f.name).is_file() and (folder / f.name).read_bytes() == f.read_bytes()
            for f in BUNDLED_ARTICLES.glob("*.txt")
        )
    except OSError:
        return False


def serve(
    articles_dir: str | os.PathLike | None = None,
    index_dir: str | os.PathLike | None = None,
    *,
    server_name: str | None = None,
    server_port: int | None = None,
    auth: list[tuple[str, str]] | None = None,
    max_upload_bytes: int = 20_000_000,
    embedder=None,
    block: bool = True,
):
    """Start the library (index update in the background) and launch the chat; returns (demo, library)."""
    from qa.manage import Library
    from qa.settings import default_articles_dir, default_index_dir
    from qa.ui import BUNDLED_EXAMPLES, build_app, launch_options

    articles = Path(articles_dir) if articles_dir is not None else default_articles_dir()
    library = Library(
        articles,
        Path(index_dir) if index_dir is not None else default_index_dir(),
        model=os.environ.get("QA_MODEL") or None,
        embedder=embedder,
        max_upload_bytes=max_upload_bytes,
    )
    library.start()
    demo = build_app(library, examples=BUNDLED_EXAMPLES if holds_bundled_articles(articles) else ())
    demo.queue(default_concurrency_limit=2)
    demo.launch(
        server_name=server_name,  # None: GRADIO_SERVER_NAME or 127.0.0.1
        server_port=server_port,  # None: GRADIO_SERVER_PORT or 7860
        auth=auth,
        max_file_size=max_upload_bytes,
        prevent_thread_lock=not block,
        show_error=False,
        quiet=not block,
        **launch_options(),
    )
    return demo, library


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="qa: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "sentence_transformers", "transformers", "bm25s", "faiss", "gradio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        auth = parse_auth(os.environ.get("QA_AUTH"))
        limit = upload_limit_bytes(os.environ.get("QA_MAX_UPLOAD_MB"))
        abstain_below_from_env()  # a bad value stops here, not in the background build
        serve(auth=auth, max_upload_bytes=limit)
    except (SetupError, SettingsError) as exc:
        print(f"app: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"app: error: {exc}; set GRADIO_SERVER_PORT to another port", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
