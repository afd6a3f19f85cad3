"""The web chat: builds the Gradio app around a ``Library``; ``app.py`` launches it (via ``qa.app.web``).

The UI only formats. Questions go to ``Library.ask`` (that is ``Bot.ask``), and
the ``Answer``/``Quote`` records come back as chat messages: quoted sentences
with numbered citations, then a collapsible list of sources (``qa.app.chat``).
A citation opens the whole cleaned article beside the chat with the quote
highlighted (``qa.app.viewer``). This module lays out the page and wires its
events to ``qa.app.handlers``; the status line is ``qa.app.status``, the
Articles tab's table ``qa.app.articles``.

Article text is untrusted. Everything taken from an article is HTML-escaped and
its Markdown punctuation backslash-escaped before it reaches the page, so a
``<script>``, an ``<img onerror>``, a ``javascript:`` link or a Markdown image in
an article shows as text and never runs or loads anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from qa.app.articles import article_table
from qa.app.handlers import Handlers, check_question, example_text
from qa.app.library import Library
from qa.app.status import status_html
from qa.app.viewer import VIEWER_JS, VIEWER_PLACEHOLDER
from qa.ingest.formats import SUPPORTED_SUFFIXES

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


#: Keeps the chat scrolled to its end while an answer grows (Gradio's own autoscroll stopped short of the
#: Sources block and clipped its last line), unless the reader scrolled up; asking again follows the chat.
CHAT_SCROLL_JS = """
() => {
  if (window.__qaFollow) return;
  window.__qaFollow = true;
  let follow = true, touched = 0, queued = false;
  const inChat = (node) => node && node.closest && node.closest('#qa-chat');
  const box = () => document.querySelector('#qa-chat .bubble-wrap') || [...document.querySelectorAll('#qa-chat *')].find(
    e => e.scrollHeight > e.clientHeight && ['auto', 'scroll'].includes(getComputedStyle(e).overflowY));
  const toEnd = () => {
    queued = false;
    const b = follow && box();
    if (b && b.scrollHeight - b.scrollTop - b.clientHeight > 1) b.scrollTop = b.scrollHeight;
  };
  let settle = 0;
  const later = () => {
    if (!queued) { queued = true; requestAnimationFrame(toEnd); }
    clearTimeout(settle);  // once Gradio's smooth scroll and the Sources block have settled, check again
    settle = setTimeout(toEnd, 600);
  };
  for (const kind of ['wheel', 'touchmove', 'pointerdown', 'keydown']) {
    document.addEventListener(kind, (e) => { if (inChat(e.target)) touched = Date.now(); }, {passive: true, capture: true});
  }
  document.addEventListener('scroll', (e) => {
    if (!inChat(e.target)) return;
    const b = e.target;
    if (Date.now() - touched < 1000) follow = b.scrollHeight - b.scrollTop - b.clientHeight < 8;
    else later();  // Gradio's own scroll stops at the answer's start: go on to its end
  }, {capture: true});
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.target.closest && e.target.closest('#qa-question')) follow = true;
  }, true);
  document.addEventListener('click', (e) => {
    if (e.target.closest && e.target.closest('#qa-ask, #qa-examples')) follow = true;
  }, true);
  new MutationObserver((records) => { if (records.some(r => inChat(r.target))) later(); })
    .observe(document.body, {childList: true, subtree: true, characterData: true});
}
"""


def launch_options() -> dict[str, Any]:
    """The look of the app, passed to ``Blocks.launch`` (Gradio 6 takes theme, css and js there)."""
    return {"theme": gr.themes.Soft(), "css": CSS, "js": CHAT_SCROLL_JS}


def build_app(library: Library, *, examples: Sequence[str] = (), title: str = "Ask the articles") -> gr.Blocks:
    """The Gradio app for ``library``: a chat tab and an articles tab, plus the ``ask`` API.

    ``examples``: questions offered to click; none by default (``qa.app.examples.examples_for`` picks them).
    """
    on = Handlers(library)
    with gr.Blocks(title=f"{title} · qa", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown(
            f"# {title}\nAnswers are exact sentences quoted from your articles. "
            "Click a citation like **[1]** to read the source with the quote highlighted.",
            elem_classes="qa-header",
        )
        status = gr.HTML(status_html(library), elem_classes="qa-status", elem_id="qa-status")
        asked = gr.State([])
        seen = gr.State("")
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
                    viewer = gr.HTML(VIEWER_PLACEHOLDER, elem_id="qa-viewer", js_on_load=VIEWER_JS, padding=False)
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
        # an answer also refreshes the status line (and the table, if an index built elsewhere was picked up)
        chat_io = {"inputs": [box, chatbot, asked, seen, table_filter],
                   "outputs": [chatbot, asked, box, status, table, pick, timer, seen], "api_visibility": "private"}
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
        # .change, not .input: Gradio 6's Textbox sends no input event for Backspace, so an emptied box kept
        # "No article matches the filter." until a reload
        table_filter.change(on.filter_table, table_filter, table, trigger_mode="always_last", **quiet)
        change_out = [notice, status, timer]
        upload.upload(on.add_files, upload, [upload, *change_out], **quiet)
        paste.click(on.add_text, [paste_title, paste_text], [paste_title, paste_text, *change_out], **quiet)
        remove.click(on.remove_file, pick, [*change_out, last_removed, undo], **quiet)
        undo.click(on.undo_remove, last_removed, [*change_out, last_removed, undo], **quiet)
        rebuild.click(on.rebuild_now, None, change_out, **quiet)
    return demo
