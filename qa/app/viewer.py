"""The article viewer beside the chat: a citation link names an article and a span; the viewer shows
the whole cleaned article with that span highlighted.

Article text is untrusted: all of it is HTML-escaped before it reaches the page.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote as url_quote
from urllib.parse import unquote

from qa.app.library import Library

#: Where a citation link points; ``VIEWER_JS`` catches clicks on such links (and cuts these 8 characters).
_REF_PREFIX = "#qa-src="

VIEWER_PLACEHOLDER = (
    '<div class="qa-doc-empty">Click a citation such as <b>[1]</b> in an answer to read the whole article '
    "here, with the quoted sentence highlighted.</div>"
)

# Runs once per page: a click on a citation link opens the source in the viewer beside the chat.
VIEWER_JS = """
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


def source_ref(article_id: str, start: int, end: int) -> str:
    """The link target of a citation: which article and which span to highlight."""
    return f"{_REF_PREFIX}{url_quote(article_id, safe='')}:{int(start)}:{int(end)}"


def article_html(library: Library, ref: str) -> str:
    """The whole cleaned article named by a citation, the quoted span in a ``<mark>``."""
    match = re.fullmatch(r"([^:]{1,200}):(\d{1,9}):(\d{1,9})", unquote(ref or ""))
    if not match:
        return '<div class="qa-doc-empty">That citation cannot be opened.</div>'
    article = library.article(match.group(1))
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
