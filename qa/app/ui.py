"""The web chat: builds the Gradio app around a ``Library``; ``app.py`` launches it.

The UI only formats. Questions go to ``Library.ask`` (that is ``Bot.ask``), and
the ``Answer``/``Quote`` records come back as chat messages: quoted sentences
with numbered citations, then a collapsible list of sources. A citation opens
the whole cleaned article beside the chat with the quote highlighted.

Article text is untrusted. Everything taken from an article is HTML-escaped and
its Markdown punctuation backslash-escaped before it reaches the page, so a
``<script>``, an ``<img onerror>``, a ``javascript:`` link or a Markdown image in
an article shows as text and never runs or loads anything.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import unquote

import gradio as gr

from qa.answer.quotes import citation_numbers
from qa.errors import QAError
from qa.app.folder import FolderError, Removed
from qa.ingest.formats import SUPPORTED_SUFFIXES
from qa.app.library import Library, NoIndex, RebuildStatus
from qa.records import Answer
from qa.text import collapse_whitespace
from qa.app.words import counted

log = logging.getLogger(__name__)

#: Questions about the two bundled articles, shown as clickable examples.
BUNDLED_EXAMPLES = (
    "How many troops did North Korea send to Russia?",
    "What did Kim Jong Un call the United States?",
    "How many times did Trump meet Kim?",
    "Who blocked new sanctions at the U.N. Security Council?",
)

_REF_PREFIX = "#qa-src="
#: The Articles tab shows at most this many rows; the filter finds the others.
MAX_TABLE_ROWS = 300
_SHOWN_QUESTION_CHARS = 2_000
# Markdown that could make a link, an image, code or emphasis is backslash-escaped; < > & go to html.escape.
_MD_PUNCT = re.compile(r"([\\`*_\[\]~|#$])")
# GFM turns bare URLs, www. names and e-mail addresses into links: break them with an escape.
_AUTOLINK = re.compile(r"(?i)(?<=www)\.|:(?=//)|@")

VIEWER_PLACEHOLDER = (
    '<div class="qa-doc-empty">Click a citation such as <b>[1]</b> in an answer to read the whole article '
    "here, with the quoted sentence highlighted.</div>"
)

# Runs once per page: a click on a citation link opens the source in the viewer beside the chat.
_VIEWER_JS = """
window.__qaOpenSource = (ref) => trigger('open_source', {ref: ref});
if (!window.__qaCitations) {
  window.__qaCitations = true;
  document.addEventListener('click', (event) => {
    const link = event.target.closest ? event.target.closest('a[href^="#qa-src="]') : null;
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    window.__qaOpenSource(decodeURIComponent(link.getAttribute('href').slice(8)));
  }, true);
}
watch('value', () => {
  const hit = element.querySelector('mark.qa-hit');
  const body = element.querySelector('.qa-doc-body');
  if (!hit || !body) return;
  body.scrollTop = Math.max(0, hit.offsetTop - body.clientHeight / 3);
  const top = element.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight - 160) element.scrollIntoView({block: 'start'});
});
"""

CSS = """
.qa-header h1 {margin-bottom: 0}
.qa-header p {margin-top: .2rem; color: var(--body-text-color-subdued)}
.qa-status {font-size: .9rem; color: var(--body-text-color-subdued); min-height: 1.4rem}
.qa-status progress {width: 100%; height: .6rem; accent-color: var(--color-accent)}
.qa-status .qa-failed, .qa-notice .qa-failed {color: var(--error-text-color, #b91c1c)}
/* Gradio's own status tracker (its timer text, e.g. "0.1s") never shows in the status line or the notice,
   not even faded out: our status line says where a rebuild is. */
#qa-status .wrap, #qa-notice .wrap {display: none !important}
.qa-notice {font-size: .95rem}
#qa-viewer {border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg); padding: 0 1rem}
.qa-doc-empty {color: var(--body-text-color-subdued); padding: 2rem 0}
.qa-doc-head {padding: .8rem 0 .6rem; border-bottom: 1px solid var(--border-color-primary)}
.qa-doc-title {font-weight: 600; font-size: 1.05rem}
.qa-doc-meta {color: var(--body-text-color-subdued); font-size: .85rem; word-break: break-all}
.qa-doc-body {white-space: pre-wrap; line-height: 1.6; margin-top: .6rem; padding: 0 0 1rem; max-height: 560px; overflow-y: auto;
  position: relative}
.qa-doc-body mark.qa-hit {background: #fde68a; color: inherit; padding: .1rem .15rem; border-radius: .2rem}
.qa-table-scroll {max-height: 360px; overflow-y: auto; border: 1px solid var(--border-color-primary);
  border-radius: var(--radius-lg)}
table.qa-articles {width: 100%; border-collapse: collapse; table-layout: fixed; font-size: .9rem;
  margin: 0 !important; border: 0 !important}
table.qa-articles th, table.qa-articles td, table.qa-articles tr {border-left: 0 !important; border-right: 0 !important;
  border-top: 0 !important}
table.qa-articles th {position: sticky; top: 0; background: var(--background-fill-secondary); text-align: left;
  font-weight: 600}
table.qa-articles th, table.qa-articles td {padding: .45rem .6rem; border-bottom: 1px solid var(--border-color-primary);
  vertical-align: top; overflow-wrap: anywhere}
table.qa-articles .qa-col-date {width: 7.5rem}
table.qa-articles .qa-col-passages {width: 5.5rem; text-align: right; white-space: nowrap}
table.qa-articles td.qa-col-source {color: var(--body-text-color-subdued)}
.qa-table-more, .qa-table-empty {color: var(--body-text-color-subdued); font-size: .85rem; padding: .4rem 0}
@media (max-width: 640px) {
  table.qa-articles thead {display: none}
  table.qa-articles tr {display: grid; grid-template-columns: 1fr auto; column-gap: .8rem;
    border-bottom: 1px solid var(--border-color-primary); padding: .45rem .6rem}
  table.qa-articles td {display: block; width: auto !important; padding: 0; border: 0; text-align: left !important}
  table.qa-articles td.qa-col-title {grid-column: 1 / -1; font-weight: 600}
  table.qa-articles td.qa-col-source {grid-column: 1 / -1; font-size: .8rem}
  table.qa-articles td.qa-col-passages::after {content: " " attr(data-unit)}
}
#qa-chat a[href^="#qa-src="] {color: var(--color-accent); text-decoration: none; font-weight: 600}
#qa-chat a[href^="#qa-src="]:hover {text-decoration: underline}
#qa-chat blockquote {margin: .3rem 0; border-left: 3px solid var(--color-accent); padding-left: .7rem}
"""


def launch_options() -> dict[str, Any]:
    """The look of the app, passed to ``Blocks.launch`` (Gradio 6 takes theme and css there)."""
    return {"theme": gr.themes.Soft(), "css": CSS}


# -- formatting -------------------------------------------------------------------------------

#: What the status line says during each stage of a rebuild.
STAGES = {
    "model": "Loading the model",
    "load": "Reading articles",
    "chunk": "Cutting articles into passages",
    "embed": "Embedding new passages",
    "save": "Saving the index",
}


def md_text(text: str) -> str:
    """``text`` made inert for Gradio's Markdown: link, image, code and emphasis syntax escaped,
    autolinks broken, then HTML-escaped; it renders as the same characters."""
    text = _MD_PUNCT.sub(r"\\\1", str(text))
    text = _AUTOLINK.sub(lambda m: "\\" + m.group(0), text)
    return html.escape(text, quote=False)


def source_ref(article_id: str, start: int, end: int) -> str:
    """The link target of a citation: which article and which span to highlight."""
    return f"{_REF_PREFIX}{url_quote(article_id, safe='')}:{int(start)}:{int(end)}"


def answer_messages(answer: Answer) -> list[gr.ChatMessage]:
    """The chat messages for one answer: the quotes with citations (one number per article), then the sources."""
    lines = []
    if answer.notice:
        lines.append(f"_{md_text(answer.notice)}_")
    if answer.searched and answer.searched != answer.question:
        lines.append(f"_Searched: {md_text(answer.searched)}_")
    if answer.abstained or not answer.quotes:
        lines.append(md_text(answer.text))
        return [gr.ChatMessage(content="\n\n".join(lines))]
    numbers = citation_numbers(answer.quotes)
    first = {}
    for q, n in zip(answer.quotes, numbers):
        first.setdefault(n, q)
        ref = source_ref(q.article_id, q.start, q.end)
        lines.append(f"> “{md_text(collapse_whitespace(q.text))}” [\\[{n}\\]]({ref})")
    sources = []
    for n, q in first.items():
        parts = [md_text(q.source)]
        if q.published:
            parts.append(md_text(q.published))
        if q.author:
            parts.append(f"by {md_text(q.author)}")
        if q.also_in:
            parts.append(f"also in {md_text(', '.join(q.also_in))}")
        link = f"[{md_text(collapse_whitespace(q.title))}]({source_ref(q.article_id, q.start, q.end)})"
        sources.append(f"**\\[{n}\\]** {link}  \n{' · '.join(parts)}")
    return [
        gr.ChatMessage(content="\n\n".join(lines)),
        gr.ChatMessage(content="\n\n".join(sources), metadata={"title": f"Sources · {counted(len(first), 'article')}"}),
    ]


def article_html(library: Library, ref: str) -> str:
    """The whole cleaned article named by a citation, the quoted span in a ``<mark>``."""
    match = re.fullmatch(r"([^:]{1,200}):(\d{1,9}):(\d{1,9})", unquote(ref or ""))
    if not match:
        return '<div class="qa-doc-empty">That citation cannot be opened.</div>'
    bot = library.bot
    article = bot.index.articles.get(match.group(1)) if bot is not None else None
    if article is None:
        return (
            '<div class="qa-doc-empty">This article is no longer in the index (it was removed or changed). '
            "Ask again to get fresh quotes.</div>"
        )
    start, end = int(match.group(2)), int(match.group(3))
    if not 0 <= start <= end <= len(article.text):
        start = end = 0
    meta = [article.source] + [x for x in (article.published, article.author and f"by {article.author}") if x]
    return (
        '<div class="qa-doc"><div class="qa-doc-head">'
        f'<div class="qa-doc-title">{html.escape(article.title)}</div>'
        f'<div class="qa-doc-meta">{html.escape(" · ".join(meta))}</div></div>'
        f'<div class="qa-doc-body">{html.escape(article.text[:start])}'
        f'<mark class="qa-hit">{html.escape(article.text[start:end])}</mark>'
        f"{html.escape(article.text[end:])}</div></div>"
    )


def no_index_text(library: Library) -> str:
    """Why there is no index yet and what to do, for the chat and the status line."""
    status = library.status()
    if status.running:
        step = f", {status.done}/{status.total}" if status.total > 1 else ""
        stage = STAGES.get(status.stage, "Starting").lower()
        return f"The index is being built ({stage}{step}); ask again in a moment."
    text = (
        "No index yet: add articles in the Articles tab (upload files or paste a text), "
        f"or put them in {library.articles_dir}/ and run qa build."
    )
    return f"{text} Last attempt: {failure_text(status)}" if status.state == "failed" else text


def failure_text(status: RebuildStatus) -> str:
    """Why the last rebuild failed, in one sentence."""
    if status.unexpected:
        return f"The rebuild failed ({status.error}). The server log has the details."
    return f"The rebuild failed: {status.error}."


def report_text(status: RebuildStatus) -> str:
    """What the last finished rebuild did, in one line; "" before the first one."""
    report = status.report
    if report is None:
        return ""
    skipped = f" Skipped {counted(len(report.skipped), 'file')}: " + "; ".join(report.skipped) if report.skipped else ""
    counts = f"{counted(report.articles, 'article')}, {counted(report.chunks, 'passage')}"
    if not report.changed:
        return f"The index is up to date: {counts}.{skipped}"
    return (
        f"Index updated in {report.seconds:.1f}s: {counts} ({report.embedded} embedded, "
        f"{report.reused} reused, {report.removed} removed).{skipped}"
    )


def status_html(library: Library) -> str:
    """One line on the index; a progress bar while a rebuild runs; what the last rebuild did."""
    status = library.status()
    if status.running:
        count = f" {status.done}/{status.total}" if status.total > 1 else ""
        bar = (
            f'<progress value="{status.done}" max="{status.total}"></progress>'
            if status.total > 1
            else "<progress></progress>"
        )
        label = STAGES.get(status.stage, "Updating the index")
        return f'<div class="qa-running">{html.escape(label)}…{count}</div>{bar}'
    bot = library.bot
    if bot is None:
        css = "qa-failed" if status.state == "failed" else "qa-empty"
        return f'<span class="{css}">{html.escape(no_index_text(library))}</span>'
    counts = bot.index.manifest.counts
    line = (
        f"{counted(counts.get('articles', 0), 'article')}, {counted(counts.get('chunks', 0), 'passage')} · "
        f"index {html.escape(str(library.index_dir))}/ · model {html.escape(bot.index.manifest.model)}"
    )
    if status.state == "failed":
        keep = " The current index keeps answering."
        line += f'<br><span class="qa-failed">{html.escape(failure_text(status) + keep)}</span>'
    elif status.state == "done" and status.report is not None and status.report.changed:
        line += f'<br><span class="qa-report">{html.escape(report_text(status))}</span>'
    return line


def article_table(library: Library, query: str = "", limit: int = MAX_TABLE_ROWS) -> str:
    """The Articles tab's table as escaped HTML: title, source, date ("-" when none), passages.

    ``query`` keeps the rows whose title or source contains it (any case); at most ``limit`` rows are
    shown, with a line saying how many more there are. On a narrow screen each row becomes a small card.
    """
    rows = library.articles()
    needle = collapse_whitespace(query or "").lower()
    if needle:
        rows = [r for r in rows if needle in r.title.lower() or needle in r.source.lower()]
    if not rows:
        empty = "No article matches the filter." if needle else "No articles indexed yet."
        return f'<div class="qa-table-empty">{empty}</div>'
    body = "".join(
        "<tr>"
        f'<td class="qa-col-title">{html.escape(r.title)}</td>'
        f'<td class="qa-col-source">{html.escape(r.source)}</td>'
        f'<td class="qa-col-date">{html.escape(r.published or "-")}</td>'
        f'<td class="qa-col-passages" data-unit="{"passage" if r.chunks == 1 else "passages"}">{r.chunks}</td>'
        "</tr>"
        for r in rows[:limit]
    )
    more = (
        f'<div class="qa-table-more">Showing {limit:,} of {len(rows):,}; type in the filter to find the others.</div>'
        if len(rows) > limit
        else ""
    )
    return (
        '<div class="qa-table-scroll"><table class="qa-articles"><thead><tr><th class="qa-col-title">Title</th>'
        '<th class="qa-col-source">Source</th><th class="qa-col-date">Date</th>'
        f'<th class="qa-col-passages">Passages</th></tr></thead><tbody>{body}</tbody></table></div>{more}'
    )


def notice_html(lines: Sequence[str], failed: bool = False) -> str:
    """The Articles tab's message after an upload, paste, removal or undo."""
    body = "<br>".join(html.escape(line) for line in lines)
    return f'<span class="qa-failed">{body}</span>' if failed else body


# -- the handlers -----------------------------------------------------------------------------


class Handlers:
    """What each control of the page does, one small method per event, all on one ``Library``."""

    def __init__(self, library: Library) -> None:
        self.library = library

    def respond(self, message: str, chat: list, asked: list[str]) -> Iterator[tuple[list, list[str], str]]:
        """Show the question at once, then the answer (or why there is none)."""
        chat = list(chat or [])
        question = (message or "").strip()
        shown = question if len(question) <= _SHOWN_QUESTION_CHARS else question[:_SHOWN_QUESTION_CHARS] + "…"
        chat.append(gr.ChatMessage(role="user", content=md_text(shown)))
        chat.append(gr.ChatMessage(content="", metadata={"title": "Searching the articles…", "status": "pending"}))
        yield chat, asked, ""
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
            asked = [*asked, answer.question]
        yield chat, asked, ""

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

    def refresh(self, seen: int, query: str = "") -> tuple:
        """The status line; the table and file list too when a rebuild finished since ``seen``."""
        status = self.library.status()
        changed = status.generation != seen
        files = gr.update(choices=self.library.files(), value=None) if changed else gr.skip()
        table = article_table(self.library, query) if changed else gr.skip()
        return status_html(self.library), table, files, gr.Timer(active=status.running), status.generation

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


# -- the app ----------------------------------------------------------------------------------


def build_app(
    library: Library, *, examples: Sequence[str] = BUNDLED_EXAMPLES, title: str = "Ask the articles"
) -> gr.Blocks:
    """The Gradio app for ``library``: a chat tab and an articles tab, plus the ``ask`` API."""
    on = Handlers(library)
    with gr.Blocks(title=f"{title} · qa", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown(
            f"# {title}\nAnswers are exact sentences quoted from your articles. "
            "Click a citation like **[1]** to read the source with the quote highlighted.",
            elem_classes="qa-header",
        )
        status = gr.HTML(status_html(library), elem_classes="qa-status", elem_id="qa-status")
        asked = gr.State([])
        seen = gr.State(-1)
        last_removed = gr.State(None)
        timer = gr.Timer(1.0, active=False)
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"), gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=340):
                    chatbot = gr.Chatbot(
                        elem_id="qa-chat",
                        height=560,
                        show_label=False,
                        latex_delimiters=[],
                        allow_tags=False,
                        sanitize_html=True,
                        feedback_options=None,
                        buttons=["copy"],
                        placeholder="Ask a question about the articles. Answers quote them word for word.",
                    )
                    with gr.Row():
                        box = gr.Textbox(
                            placeholder="Ask about the articles…",
                            show_label=False,
                            scale=6,
                            max_lines=4,
                            autofocus=True,
                            elem_id="qa-question",
                        )
                        ask = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="qa-ask")
                    if examples:
                        samples = gr.Dataset(
                            components=[box], samples=[[q] for q in examples], label="Try", elem_id="qa-examples"
                        )
                with gr.Column(scale=2, min_width=300):
                    viewer = gr.HTML(VIEWER_PLACEHOLDER, elem_id="qa-viewer", js_on_load=_VIEWER_JS, padding=False)
            with gr.Tab("Articles", id="articles"):
                table_filter = gr.Textbox(
                    placeholder="Filter by title or source",
                    show_label=False,
                    max_lines=1,
                    elem_id="qa-table-filter",
                )
                table = gr.HTML(article_table(library), elem_id="qa-table", padding=False)
                notice = gr.HTML("", elem_classes="qa-notice", elem_id="qa-notice")
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=260):
                        upload = gr.File(
                            label=f"Upload articles ({', '.join(SUPPORTED_SUFFIXES)})",
                            file_count="multiple",
                            type="filepath",
                            elem_id="qa-upload",
                        )
                    with gr.Column(min_width=260):
                        paste_title = gr.Textbox(label="Or paste an article: title", elem_id="qa-paste-title")
                        paste_text = gr.Textbox(label="Text", lines=5, max_lines=12, elem_id="qa-paste-text")
                        paste = gr.Button("Add text", elem_id="qa-paste")
                with gr.Row(elem_id="qa-manage"):
                    pick = gr.Dropdown(
                        choices=library.files(),
                        label=f"Files in {library.articles_dir}/",
                        scale=4,
                        min_width=240,
                        elem_id="qa-files",
                    )
                    with gr.Column(scale=1, min_width=140):
                        remove = gr.Button("Remove file", variant="stop", elem_id="qa-remove")
                        undo = gr.Button("Undo remove", visible=False, elem_id="qa-undo")
                        rebuild = gr.Button("Rebuild now", elem_id="qa-rebuild")

        quiet = {"api_visibility": "private", "show_progress": "hidden"}
        chat_io = {"inputs": [box, chatbot, asked], "outputs": [chatbot, asked, box], "api_visibility": "private"}
        for trigger in (box.submit, ask.click):
            # its own lane: an empty question never waits behind answers being computed
            trigger(check_question, box, None, concurrency_limit=None, **quiet).success(on.respond, **chat_io)
        if examples:
            samples.click(example_text, samples, box, **quiet).then(on.respond, **chat_io)
        chatbot.clear(list, None, asked, **quiet)
        viewer.open_source(on.open_source, None, viewer, **quiet)
        gr.api(on.api_ask, api_name="ask")

        refresh_io = {"inputs": [seen, table_filter], "outputs": [status, table, pick, timer, seen]}
        demo.load(on.refresh, **refresh_io, **quiet)
        timer.tick(on.refresh, **refresh_io, **quiet)
        table_filter.input(on.filter_table, table_filter, table, trigger_mode="always_last", **quiet)
        change_out = [notice, status, timer]
        upload.upload(on.add_files, upload, [upload, *change_out], **quiet)
        paste.click(on.add_text, [paste_title, paste_text], [paste_title, paste_text, *change_out], **quiet)
        remove.click(on.remove_file, pick, [*change_out, last_removed, undo], **quiet)
        undo.click(on.undo_remove, last_removed, [*change_out, last_removed, undo], **quiet)
        rebuild.click(on.rebuild_now, None, change_out, **quiet)
    return demo
