"""What each control of the web page does: one small method per event, all on one ``Library``.

The handlers call the library and hand back what the page shows; the wording and the
escaping come from ``qa.app.chat``, ``qa.app.status``, ``qa.app.articles`` and ``qa.app.viewer``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr

from qa.app.articles import article_table, notice_html
from qa.app.chat import answer_messages, md_text
from qa.app.folder import FolderError, Removed
from qa.app.library import Library, NoIndex
from qa.app.status import no_index_text, status_html
from qa.app.viewer import article_html
from qa.errors import QAError

log = logging.getLogger(__name__)

#: A longer question is shown in the chat cut to this many characters.
_SHOWN_QUESTION_CHARS = 2_000


class Handlers:
    """What each control of the page does, one small method per event, all on one ``Library``."""

    def __init__(self, library: Library) -> None:
        self.library = library

    def respond(self, message: str, chat: list, asked: list[str], seen: Any = None, query: str = "") -> Iterator[tuple]:
        """Show the question at once, then the answer (or why there is none) and the status line as it is now.

        The status, table, file list, timer and ``seen`` follow ``refresh``: an index built in another
        terminal answers this question and shows in the page at once.
        """
        chat = list(chat or [])
        question = (message or "").strip()
        shown = question if len(question) <= _SHOWN_QUESTION_CHARS else question[:_SHOWN_QUESTION_CHARS] + "…"
        chat.append(gr.ChatMessage(role="user", content=md_text(shown)))
        chat.append(gr.ChatMessage(content="", metadata={"title": "Searching the articles…", "status": "pending"}))
        yield chat, asked, "", *(gr.skip(),) * 5
        try:
            answer = self.library.ask(question, asked)
        except NoIndex:
            chat[-1] = gr.ChatMessage(content=md_text(no_index_text(self.library)))
        except QAError as exc:
            chat[-1] = gr.ChatMessage(content=md_text(str(exc)))
        except Exception as exc:  # never a traceback in the page; the log has it
            log.exception("answering %r failed", question[:80])
            chat[-1] = gr.ChatMessage(
                content=md_text(f"Sorry, answering failed ({type(exc).__name__}). The server log has the details.")
            )
        else:
            chat[-1:] = answer_messages(answer)
            if not answer.abstained:  # a follow-up borrows only from answered turns
                asked = [*asked, answer.question]
        yield chat, asked, "", *self.refresh(seen, query)

    def filter_table(self, query: str) -> str:
        """The table of articles whose title or source contains ``query``."""
        return article_table(self.library, query)

    def open_source(self, evt: gr.EventData) -> str:
        """The article a clicked citation names, for the viewer."""
        data = evt._data if isinstance(evt._data, dict) else {}
        return article_html(self.library, str(data.get("ref", "")))

    def api_ask(self, question: str, history: list[str] | None = None, k: int = 3) -> dict:
        """Answer a question with exact quotes from the articles; the same JSON as `qa ask --json`."""
        try:
            return self.library.ask(question, history or [], k=max(1, min(int(k), 20))).to_json()
        except NoIndex:
            raise gr.Error(no_index_text(self.library), print_exception=False) from None
        except QAError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    def refresh(self, seen: Any, query: str = "") -> tuple:
        """The status line; the table and file list too when the served index changed since ``seen``
        (a rebuild here finished, or the bot switched to an index built elsewhere)."""
        status = self.library.status()
        now = self.library.version()
        changed = now != seen
        files = gr.update(choices=self.library.files(), value=None) if changed else gr.skip()
        table = article_table(self.library, query) if changed else gr.skip()
        return status_html(self.library), table, files, gr.Timer(active=status.running), now

    def _after(self, messages: list[str], *, changed: bool, failed: bool) -> tuple[str, str, gr.Timer]:
        """Rebuild if the folder changed; the notice, the status line and the timer that follows the rebuild."""
        if changed:
            self.library.rebuild()
        return notice_html(messages, failed), status_html(self.library), gr.Timer(active=self.library.status().running)

    def add_files(self, paths: list[str] | None) -> tuple:
        """Save uploaded files into the articles folder and rebuild if any was new."""
        if not paths:
            return (None, *self._after(["Choose one or more files first."], changed=False, failed=True))
        messages, added, failed = [], 0, False
        for path in paths:
            try:
                saved = self.library.folder.save_upload(path)
            except FolderError as exc:
                messages.append(str(exc))
                failed = True
                continue
            if saved.added:
                messages.append(f"Added {saved.path.name}.")
                added += 1
            else:
                messages.append(f"{saved.path.name} is already in the articles folder; nothing changed.")
        return (None, *self._after(messages, changed=added > 0, failed=failed))

    def add_text(self, title: str, text: str) -> tuple:
        """Save a pasted article and rebuild."""
        try:
            saved = self.library.folder.save_text(title, text)
        except FolderError as exc:
            return (gr.skip(), gr.skip(), *self._after([str(exc)], changed=False, failed=True))
        if not saved.added:
            note = f"{saved.path.name} is already in the articles folder; nothing changed."
            return ("", "", *self._after([note], changed=False, failed=False))
        return ("", "", *self._after([f"Added {saved.path.name}."], changed=True, failed=False))

    def remove_file(self, rel: str | None) -> tuple:
        """Move the chosen file to the trash, rebuild, and offer an undo."""
        try:
            removed = self.library.folder.remove(rel or "")
        except FolderError as exc:
            return (*self._after([str(exc)], changed=False, failed=True), gr.skip(), gr.skip())
        note = f"Removed {removed.rel} (moved to {self.library.articles_dir}/.trash/; Undo puts it back)."
        return (*self._after([note], changed=True, failed=False), removed, gr.update(visible=True))

    def undo_remove(self, removed: Removed | None) -> tuple:
        """Put the last removed file back and rebuild."""
        if removed is None:
            return (*self._after(["Nothing to undo."], changed=False, failed=True), None, gr.update(visible=False))
        try:
            path = self.library.folder.restore(removed)
        except FolderError as exc:
            return (*self._after([str(exc)], changed=False, failed=True), None, gr.update(visible=False))
        return (*self._after([f"Restored {path.name}."], changed=True, failed=False), None, gr.update(visible=False))

    def rebuild_now(self) -> tuple:
        """Rebuild on request (after files were changed by hand)."""
        return self._after(["Rebuild requested."], changed=True, failed=False)


def check_question(message: str) -> None:
    """Stop an empty question at once, before the chat shows it or the bot is asked."""
    if not (message or "").strip():
        raise gr.Error("Type a question about the articles first.", duration=4, title="No question", print_exception=False)


def example_text(sample: list[str]) -> str:
    """The question of a clicked example."""
    return sample[0]
