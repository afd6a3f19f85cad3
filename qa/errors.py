"""The one base class for errors a user can fix.

Every such error subclasses ``QAError`` and carries a one-line message that
says what to do; the CLI and the web chat show that line and never a traceback.
This module imports nothing of the package, so any stage can raise it.
"""

from __future__ import annotations


class QAError(Exception):
    """Something the user can fix; ``str(exc)`` is one line that says how."""

