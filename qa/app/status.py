"""The status line above the tabs: where a rebuild is, what the last one did, why there is no index.

Every text here is plain; ``status_html`` escapes what it puts in the page.
"""

from __future__ import annotations

import html

from qa.app.library import Library
from qa.app.rebuilder import RebuildStatus
from qa.text import counted

#: What the status line says during each stage of a rebuild.
STAGES = {
    "model": "Loading the model",
    "load": "Reading articles",
    "chunk": "Cutting articles into passages",
    "embed": "Embedding new passages",
    "save": "Saving the index",
}


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
    summary = library.summary()
    if summary is None:
        css = "qa-failed" if status.state == "failed" else "qa-empty"
        return f'<span class="{css}">{html.escape(no_index_text(library))}</span>'
    line = (
        f"{counted(summary.articles, 'article')}, {counted(summary.chunks, 'passage')} · "
        f"index {html.escape(str(library.index_dir))}/ · model {html.escape(summary.model)}"
    )
    if status.state == "failed":
        keep = " The current index keeps answering."
        line += f'<br><span class="qa-failed">{html.escape(failure_text(status) + keep)}</span>'
    elif status.state == "done" and status.report is not None:  # "Index updated ..." or "The index is up to date ..."
        line += f'<br><span class="qa-report">{html.escape(report_text(status))}</span>'
    return line
