"""An answer as chat messages: the quoted sentences with numbered citation links, then a
collapsible list of the cited articles.

Article text is untrusted. Everything taken from an article (and the question itself) goes
through ``md_text``: its Markdown punctuation backslash-escaped, autolinks broken, then
HTML-escaped, so a ``<script>``, an ``<img onerror>``, a ``javascript:`` link or a Markdown
image shows as text and never runs or loads anything.
"""

from __future__ import annotations

import html
import re

import gradio as gr

from qa.app.render import cited_articles, numbered_quotes
from qa.app.viewer import source_ref
from qa.records import Answer
from qa.text import collapse_whitespace, counted

# Markdown that could make a link, an image, code or emphasis is backslash-escaped; < > & go to html.escape.
_MD_PUNCT = re.compile(r"([\\`*_\[\]~|#$])")
# GFM turns bare URLs, www. names and e-mail addresses into links: break them with an escape.
_AUTOLINK = re.compile(r"(?i)(?<=www)\.|:(?=//)|@")


def md_text(text: str) -> str:
    """``text`` made inert for Gradio's Markdown: link, image, code and emphasis syntax escaped,
    autolinks broken, then HTML-escaped; it renders as the same characters."""
    text = _MD_PUNCT.sub(r"\\\1", str(text))
    text = _AUTOLINK.sub(lambda m: "\\" + m.group(0), text)
    return html.escape(text, quote=False)


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
    for n, q in numbered_quotes(answer.quotes):
        ref = source_ref(q.article_id, q.start, q.end)
        lines.append(f"> “{md_text(collapse_whitespace(q.text))}” [\\[{n}\\]]({ref})")
    cited = cited_articles(answer.quotes)
    sources = []
    for citation in cited:
        q = citation.quote
        parts = [md_text(q.source)]
        if q.published:
            parts.append(md_text(q.published))
        if q.author:
            parts.append(f"by {md_text(q.author)}")
        if q.also_in:
            parts.append(f"also in {md_text(', '.join(q.also_in))}")
        link = f"[{md_text(collapse_whitespace(q.title))}]({source_ref(q.article_id, q.start, q.end)})"
        sources.append(f"**\\[{citation.number}\\]** {link}  \n{' · '.join(parts)}")
    return [
        gr.ChatMessage(content="\n\n".join(lines)),
        gr.ChatMessage(content="\n\n".join(sources), metadata={"title": f"Sources · {counted(len(cited), 'article')}"}),
    ]
