"""The Articles tab's HTML: the table of indexed articles and the notice after a change.

Titles and sources come from the articles (untrusted): all of it is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from qa.app.library import Library
from qa.text import collapse_whitespace

#: The Articles tab shows at most this many rows; the filter finds the others.
MAX_TABLE_ROWS = 300


def article_table(library: Library, query: str = "", limit: int = MAX_TABLE_ROWS) -> str:
    """The Articles tab's table as escaped HTML: title, source, date ("-" when none), passages.

    ``query`` keeps the rows whose title or source contains it (any case); at most ``limit`` rows are
    shown, with a line saying how many more there are. On a narrow screen each row becomes a small card.
    """
    rows, total = library.article_rows(query, limit)
    if not rows:
        empty = "No article matches the filter." if collapse_whitespace(query or "") else "No articles indexed yet."
        return f'<div class="qa-table-empty">{empty}</div>'
    body = "".join(
        "<tr>"
        f'<td class="qa-col-title">{html.escape(r.title)}</td>'
        f'<td class="qa-col-source">{html.escape(r.source)}</td>'
        f'<td class="qa-col-date">{html.escape(r.published or "-")}</td>'
        f'<td class="qa-col-passages" data-unit="{"passage" if r.chunks == 1 else "passages"}">{r.chunks}</td>'
        "</tr>"
        for r in rows
    )
    more = (
        f'<div class="qa-table-more">Showing {len(rows):,} of {total:,}; type in the filter to find the others.</div>'
        if total > len(rows)
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
