"""Run index rebuilds one at a time in a background thread, and say where they are.

    rebuilder = Rebuilder(run)        # run(progress) -> BuildReport | None, raises on failure
    rebuilder.request()               # start one, or one more after the running one
    status = rebuilder.wait(60)       # block until none runs or is waiting

One worker thread sleeps on a ``threading.Condition`` until a rebuild is
requested; requests that arrive while one runs are merged into one more run.
``RebuildStatus`` holds facts (stage, counts, the report, the error), not
wording: the UI words them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from qa.errors import QAError
from qa.records import BuildReport

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RebuildStatus:
    """Where the background rebuild is. ``generation`` grows by one per finished rebuild.

    ``state`` is ``idle`` (none yet, or nothing to build), ``running``, ``done`` or ``failed``.
    ``stage`` is the build's progress stage (``model``, ``load``, ``chunk``, ``embed``, ``save``).
    ``report`` is the last finished build's report; ``error`` why the last one failed.
    """

    state: str = "idle"
    stage: str = ""
    done: int = 0
    total: int = 0
    report: BuildReport | None = None
    error: str = ""
    unexpected: bool = False
    generation: int = 0

    @property
    def running(self) -> bool:
        return self.state == "running"


class Rebuilder:
    """Runs ``run(progress)`` in one background thread whenever asked, never two at once."""

    def __init__(self, run: Callable[[Progress], BuildReport | None], *, name: str = "qa-rebuild") -> None:
        self._run = run
        self._name = name
        self._changed = threading.Condition()
        self._requested = False
        self._status = RebuildStatus()
        self._thread: threading.Thread | None = None

    def status(self) -> RebuildStatus:
        """The current status (a frozen snapshot)."""
        return self._status

    def request(self) -> bool:
        """Ask for a rebuild; True if one starts now, False if it will run after the current one."""
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            starts = not self._status.running
            self._requested = True
            if starts:
                self._status = replace(self._status, state="running", stage="", done=0, total=0)
            self._changed.notify_all()
            return starts

    def wait(self, timeout: float | None = 120.0) -> RebuildStatus:
        """Block until no rebuild runs or is waiting to run, at most ``timeout`` seconds; the status then."""
        with self._changed:
            self._changed.wait_for(lambda: not self._requested and not self._status.running, timeout)
            return self._status

    def _progress(self, stage: str, done: int, total: int) -> None:
        self._status = replace(self._status, stage=stage, done=done, total=total)

    def _loop(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._requested)
                self._requested = False
                self._status = replace(self._status, state="running", stage="", done=0, total=0)
            finished = self._build_once()
            with self._changed:
                if not self._requested:  # a request meanwhile keeps the status "running" for the next round
                    self._status = replace(finished, generation=self._status.generation + 1)
                else:
                    self._status = replace(self._status, report=finished.report, error=finished.error,
                                           generation=self._status.generation + 1)
                self._changed.notify_all()

    def _build_once(self) -> RebuildStatus:
        previous = self._status
        try:
            report = self._run(self._progress)
        except QAError as exc:
            log.warning("rebuild failed: %s", exc)
            return replace(previous, state="failed", stage="", error=str(exc), unexpected=False)
        except Exception as exc:  # never let the thread die silently; the old index keeps serving
            log.exception("rebuild failed")
            return replace(previous, state="failed", stage="", error=f"{type(exc).__name__}: {exc}", unexpected=True)
        if report is None:
            return replace(previous, state="idle", stage="", error="")
        return replace(previous, state="done", stage="", report=report, error="", unexpected=False)
