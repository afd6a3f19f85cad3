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
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import unquote

import gradio as gr

from .errors import QAError
from .load import SUPPORTED_SUFFIXES
from .manage import Library, ManageError, NoIndex, RebuildStatus
from .records import Answer

log = logging.getLogger(__name__)

#: Questions about the two bundled articles, shown as clickable examples.
BUNDLED_EXAMPLES = (
    "How many troops did North Korea send to Russia?",
    "What did Kim Jong Un call the United States?",
    "How many times did Trump meet Kim?",
    "Who blocked new sanctions at the U.N. Security Council?",
)

_REF_PREFIX = "#qa-src="
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
.qa-notice {font-size: .95rem}
#qa-viewer {border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg); padding: 0 1rem}
.qa-doc-empty {color: var(--body-text-color-subdued); padding: 2rem 0}
.qa-doc-head {padding: .8rem 0 .6rem; border-bottom: 1px solid var(--border-color-primary)}
.qa-doc-title {font-weight: 600; font-size: 1.05rem}
.qa-doc-meta {color: var(--body-text-color-subdued); font-size: .85rem; word-break: break-all}
.qa-doc-body {white-space: pre-wrap; line-height: 1.6; margin-top: .6rem; padding: 0 0 1rem; max-height: 560px; overflow-y: auto;
  position: relative}
.qa-doc-body mark.qa-hit {background: #fde68a; color: inherit; padding: .1rem .15rem; border-radius: .2rem}
#qa-table .virtual-row, #qa-table .virtual-row * {font-family: var(--font) !important}
#qa-chat a[href^="#qa-src="] {color: var(--color-accent); text-decoration: none; font-weight: 600}
#qa-chat a[href^="#qa-src="]:hover {text-decoration: underline}
#qa-chat blockquote {margin: .3rem 0; border-left: 3px solid var(--color-accent); padding-left: .7rem}
"""


def launch_options() -> dict[str, Any]:
    """The look of the app, passed to ``Blocks.launch`` (Gradio 6 takes theme and css there)."""
    return {"theme": gr.themes.Soft(), "css": CSS}


# -- formatting -------------------------------------------------------------------------------


def md_text(text: str) -> str:
    """``text`` made inert for Gradio's Markdown: link, image, code and emphasis syntax escaped,
    autolinks broken, then HTML-escaped; it renders as the same characters."""
    text = _MD_PUNCT.sub(r"\\\1", str(text))
    text = _AUTOLINK.sub(lambda m: "\\" + m.group(0), text)
    return html.escape(text, quote=False)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def source_ref(article_id: str, start: int, end: int) -> str:
    """The link target of a citation: which article and which span to highlight."""
    return f"{_REF_PREFIX}{url_quote(article_id, safe='')}:{int(start)}:{int(end)}"


def answer_messages(answer: Answer) -> list[gr.ChatMessage]:
    """The chat messages for one answer: the quotes with citations, then the sources."""
    lines = []
    if answer.notice:
        lines.append(f"_{md_text(answer.notice)}_")
    if answer.searched and answer.searched != answer.question:
        lines.append(f"_Searched: {md_text(answer.searched)}_")
    if answer.abstained or not answer.quotes:
        lines.append(md_text(answer.text))
        return [gr.ChatMessage(content="\n\n".join(lines))]
    numbers: dict[str, int] = {}
    first = {}
    for q in answer.quotes:
        n = numbers.setdefault(q.article_id, len(numbers) + 1)
        first.setdefault(q.article_id, q)
        lines.append(f"> “{md_text(_one_line(q.text))}” [\\[{n}\\]]({source_ref(q.article_id, q.start, q.end)})")
    sources = []
    for article_id, n in numbers.items():
        q = first[article_id]
        parts = [md_text(q.source)]
        if q.published:
            parts.append(md_text(q.published))
        if q.author:
            parts.append(f"by {md_text(q.author)}")
        if q.also_in:
            parts.append(f"also in {md_text(', '.join(q.also_in))}")
        link = f"[{md_text(_one_line(q.title))}]({source_ref(q.article_id, q.start, q.end)})"
        sources.append(f"**\\[{n}\\]** {link}  \n{' · '.join(parts)}")
    title = f"Sources · {len(numbers)} article{'s' if len(numbers) != 1 else ''}"
    return [
        gr.ChatMessage(content="\n\n".join(lines)),
        gr.ChatMessage(content="\n\n".join(sources), metadata={"title": title}),
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


def status_html(library: Library) -> str:
    """One line on the index; a progress bar while a rebuild runs."""
    status: RebuildStatus = library.status()
    if status.running:
        count = f" {status.done}/{status.total}" if status.total > 1 else ""
        bar = (
            f'<progress value="{status.done}" max="{status.total}"></progress>'
            if status.total > 1
            else "<progress></progress>"
        )
        return f'<div class="qa-running">{html.escape(status.stage_label)}…{count}</div>{bar}'
    bot = library.bot
    if bot is None:
        css = "qa-failed" if status.state == "failed" else "qa-empty"
        return f'<span class="{css}">{html.escape(library.no_index_message())}</span>'
    counts = bot.index.manifest.counts
    line = (
        f"{counts.get('articles', 0)} articles, {counts.get('chunks', 0)} passages · "
        f"index {html.escape(str(library.index_dir))}/ · model {html.escape(bot.index.manifest.model)}"
    )
    if status.state == "failed":
        line += f'<br><span class="qa-failed">{html.escape(status.message)}</span>'
    return line


def _table(library: Library) -> list[list[Any]]:
    return [[r.title, r.source, r.published or "", r.chunks] for r in library.articles()]


def _notice(lines: Sequence[str], failed: bool = False) -> str:
    body = "<br>".join(html.escape(line) for line in lines)
    return f'<span class="qa-failed">{body}</span>' if failed else body


# -- the app ----------------------------------------------------------------------------------


def build_app(
    library: Library, *, examples: Sequence[str] = BUNDLED_EXAMPLES, title: str = "Ask the articles"
) -> gr.Blocks:
    """The Gradio app for ``library``: a chat tab and an articles tab, plus the ``ask`` API."""

    def respond(message: str, chat: list, asked: list[str]):
        chat = list(chat or [])
        question = (message or "").strip()
        if not question:
            gr.Warning("Type a question about the articles first.")
            yield chat, asked, message
            return
        shown = question if len(question) <= _SHOWN_QUESTION_CHARS else question[:_SHOWN_QUESTION_CHARS] + "…"
        chat.append(gr.ChatMessage(role="user", content=md_text(shown)))
        chat.append(gr.ChatMessage(content="", metadata={"title": "Searching the articles…", "status": "pending"}))
        yield chat, asked, ""
        try:
            answer = library.ask(question, asked)
        except QAError as exc:
            chat[-1] = gr.ChatMessage(content=md_text(str(exc)))
            yield chat, asked, ""
            return
        except Exception as exc:  # never a traceback in the page; the log has it
            log.exception("answering %r failed", question[:80])
            chat[-1] = gr.ChatMessage(
                content=md_text(f"Sorry, answering failed ({type(exc).__name__}). The server log has the details.")
            )
            yield chat, asked, ""
            return
        yield chat[:-1] + answer_messages(answer), [*asked, answer.question], ""

    def open_source(evt: gr.EventData) -> str:
        data = evt._data if isinstance(evt._data, dict) else {}
        return article_html(library, str(data.get("ref", "")))

    def api_ask(question: str, history: list[str] | None = None, k: int = 3) -> dict:
        """Answer a question with exact quotes from the articles; the same JSON as `qa ask --json`."""
        try:
            return library.ask(question, history or [], k=max(1, min(int(k), 20))).to_json()
        except QAError as exc:
            raise gr.Error(str(exc)) from None

    def refresh(seen: int):
        status = library.status()
        files = gr.update(choices=library.files(), value=None) if status.generation != seen else gr.skip()
        table = _table(library) if status.generation != seen else gr.skip()
        return status_html(library), table, files, gr.Timer(active=status.running), status.generation

    def after_change(messages: list[str], changed: bool, failed: bool):
        if changed:
            library.rebuild()
            messages.append("Updating the index in the background; the chat keeps answering meanwhile.")
        return (
            _notice(messages, failed and not changed),
            status_html(library),
            gr.Timer(active=library.status().running),
        )

    def add_files(paths: list[str] | None):
        messages, saved, failed = [], 0, False
        for path in paths or []:
            try:
                target = library.save_upload(path)
                messages.append(f"Added {target.name}.")
                saved += 1
            except ManageError as exc:
                messages.append(str(exc))
                failed = True
        if not paths:
            messages.append("Choose one or more files first.")
        return (None, *after_change(messages, saved > 0, failed or not paths))

    def add_text(title_in: str, text: str):
        try:
            target = library.save_text(title_in, text)
        except ManageError as exc:
            return (gr.skip(), gr.skip(), *after_change([str(exc)], False, True))
        return ("", "", *after_change([f"Added {target.name}."], True, False))

    def remove_file(rel: str | None):
        try:
            target = library.remove(rel or "")
        except ManageError as exc:
            return after_change([str(exc)], False, True)
        return after_change([f"Removed {target.name}."], True, False)

    def rebuild_now():
        return after_change(["Rebuild requested."], True, False)

    with gr.Blocks(title=f"{title} · qa", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown(
            f"# {title}\nAnswers are exact sentences quoted from your articles. "
            "Click a citation like **[1]** to read the source with the quote highlighted.",
            elem_classes="qa-header",
        )
        status = gr.HTML(status_html(library), elem_classes="qa-status", elem_id="qa-status")
        asked = gr.State([])
        seen = gr.State(-1)
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
                table = gr.Dataframe(
                    headers=["Title", "Source", "Date", "Passages"],
                    value=_table(library),
                    datatype=["str", "str", "str", "number"],
                    interactive=False,
                    wrap=True,
                    type="array",
                    label="Articles in the index",
                    elem_id="qa-table",
                    max_height=360,
                    column_widths=["46%", "36%", "10%", "8%"],
                    show_search="search",
                )
                notice = gr.HTML("", elem_classes="qa-notice", elem_id="qa-notice")
                with gr.Row(equal_height=False):
                    with gr.Column():
                        upload = gr.File(
                            label=f"Upload articles ({', '.join(SUPPORTED_SUFFIXES)})",
                            file_count="multiple",
                            type="filepath",
                            elem_id="qa-upload",
                        )
                    with gr.Column():
                        paste_title = gr.Textbox(label="Or paste an article: title", elem_id="qa-paste-title")
                        paste_text = gr.Textbox(label="Text", lines=5, max_lines=12, elem_id="qa-paste-text")
                        paste = gr.Button("Add text", elem_id="qa-paste")
                with gr.Row():
                    pick = gr.Dropdown(
                        choices=library.files(), label=f"Files in {library.articles_dir}/", scale=4, elem_id="qa-files"
                    )
                    remove = gr.Button("Remove file", variant="stop", scale=1, elem_id="qa-remove")
                    rebuild = gr.Button("Rebuild now", scale=1, elem_id="qa-rebuild")

        chat_io = {"inputs": [box, chatbot, asked], "outputs": [chatbot, asked, box], "api_visibility": "private"}
        box.submit(respond, **chat_io)
        ask.click(respond, **chat_io)
        if examples:
            samples.click(lambda sample: sample[0], samples, box, api_visibility="private").then(respond, **chat_io)
        chatbot.clear(list, None, asked, api_visibility="private")
        viewer.open_source(open_source, None, viewer, api_visibility="private", show_progress="hidden")
        gr.api(api_ask, api_name="ask")

        refresh_io = {
            "outputs": [status, table, pick, timer, seen],
            "api_visibility": "private",
            "show_progress": "hidden",
        }
        demo.load(refresh, inputs=seen, **refresh_io)
        timer.tick(refresh, inputs=seen, **refresh_io)
        change_out = [notice, status, timer]
        upload.upload(add_files, upload, [upload, *change_out], api_visibility="private")
        paste.click(
            add_text, [paste_title, paste_text], [paste_title, paste_text, *change_out], api_visibility="private"
        )
        remove.click(remove_file, pick, change_out, api_visibility="private")
        rebuild.click(rebuild_now, None, change_out, api_visibility="private")
    return demo
