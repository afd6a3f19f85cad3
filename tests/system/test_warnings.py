"""A test run prints no deprecation warnings: ours are fixed, third-party ones filtered in pytest's config."""

from __future__ import annotations

import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gradios_pandas_deprecations_are_filtered_in_the_pytest_config():
    """Gradio's queue calls pandas APIs that pandas 3 deprecates (every event warned twice): not ours to fix."""
    from pandas.errors import Pandas4Warning

    with warnings.catch_warnings(record=True) as seen:  # keeps the filters pytest set from pyproject.toml
        for line, text in ((176, "'future.no_silent_downcasting' is deprecated"), (178, "The copy keyword is deprecated")):
            warnings.warn_explicit(text, Pandas4Warning, "gradio/queueing.py", line, module="gradio.queueing")
    assert [str(w.message) for w in seen] == []


def test_our_code_raises_no_deprecation_warning(tmp_path, corpus, hash_embedder):
    """Building, answering and laying out the page through the APIs we use: nothing deprecated is called."""
    from qa.app.library import Library
    from qa.app.ui import build_app, launch_options

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        library = Library(corpus, tmp_path / "index", embedder=hash_embedder)
        library.start()
        library.wait(60)
        library.ask("How many troops did North Korea send to Russia?")
        build_app(library)
        launch_options()
    ours = [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in seen
            if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning))]
    assert ours == []
