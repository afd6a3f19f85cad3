"""The exceptions that mean "the user can fix this"; the edges show their message as one line."""

from __future__ import annotations

from .bot import AskError
from .build import BuildError
from .embed import EmbedderError
from .evaluate import QuestionFileError
from .load import LoadError
from .settings import SettingsError
from .store import IndexBusy, IndexLoadError

USER_ERRORS: tuple[type[Exception], ...] = (
    AskError, BuildError, EmbedderError, LoadError, IndexBusy, IndexLoadError, QuestionFileError, SettingsError
)
