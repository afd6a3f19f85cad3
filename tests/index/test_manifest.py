"""The manifest and the catalog: what the writer commits reads back as equal typed records; older layouts still serve.

``tests/index/data/written-by-qa-index-2/`` is an index folder written by the
code before the manifest was typed (hash-8 embedder, three articles in one
segment, one article removed, a JSONL line skipped), in the layout whose
manifest held every article and source (``qa-index/2``): it still loads,
answers, and its manifest serialises back to the same JSON. An index of that
layout is rewritten in the current one by its next build, which embeds nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from qa.answer.bot import Bot
from qa.answer.quotes import AnswerSettings
from qa.embed.hashing import HashEmbedder
from qa.index.dense import build_dense
from qa.index.build import build_index
from qa.index.catalog import ArticleEntry, Catalog, SourceEntry, read_catalog
from qa.index.format import INDEX_FORMAT, MANIFEST, READABLE_FORMATS
from qa.index.lexical import Postings
from qa.index.manifest import FileEntry, decode_manifest, encode_manifest
from qa.index.reader import load_index, read_manifest
from qa.index.writer import IndexWriter, writer_lock
from qa.records import Article, Chunk, chunk_id
from qa.settings import ChunkSettings

OLD_INDEX = Path(__file__).parent / "data" / "written-by-qa-index-2"

TEXTS = {
    "harbour.txt": "The harbour at Strelsau reopened on Monday after the storm. Ferries sailed at dawn.",
    "bridge.txt": "The old bridge closed for repairs that will take two years.",
}


def test_what_the_writer_commits_reads_back_as_equal_typed_records(tmp_path: Path, hash_embedder):
    articles = [Article.make(text, str(tmp_path / name)) for name, text in TEXTS.items()]
    chunks = [Chunk(chunk_id(a.id, 0, len(a.text)), a.id, 0, len(a.text), a.text) for a in articles]
    vectors = hash_embedder.encode([c.text for c in chunks])
    dense, info = build_dense(vectors)
    kept = articles[0]
    sources = {
        kept.source: SourceEntry(size=123, mtime_ns=1_700_000_000_000_000_000, sha256="ab" * 32,
                                 seen_ns=1_700_000_000_500_000_000, articles=(kept.id,), skipped=("line 2 skipped",)),
        "bytes:" + b"caf\xe9.txt".hex(): SourceEntry(7, 1, "cd" * 32, 2, (), ()),
    }
    folder = tmp_path / "index"
    with writer_lock(folder):
        writer = IndexWriter(folder)
        segment = writer.write_segment(articles=articles, chunks=chunks, vectors=vectors, dense=dense,
                                       dense_info=info, postings=Postings.build([c.text for c in chunks]))
        segment = writer.write_deletions(segment, np.array([1]))  # the bridge article is gone
        entry = ArticleEntry(kept.id, kept.sha256, kept.source, chunks=1, segment=segment.id, row=0)
        written = writer.commit(previous=None, model=hash_embedder.name, dim=hash_embedder.dim,
                                chunking=ChunkSettings(), segments=[segment], catalog=Catalog((entry,), sources))

    read = read_manifest(folder)
    assert read == written and read.inline is None
    assert read_catalog(folder, read) == Catalog((entry,), sources) and read.segments == (segment,)
    assert read.segments[0].deleted == 1 and read.segments[0].deletions in read.files
    assert read.catalog == f"catalog-{read.build_id}.json" and read.catalog in read.files
    assert all(isinstance(f, FileEntry) and f.size == (folder / rel).stat().st_size for rel, f in read.files.items())
    assert decode_manifest(encode_manifest(read)) == read
    raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert raw["format"] == INDEX_FORMAT and "articles" not in raw and "sources" not in raw
    assert raw["catalog"] == read.catalog and raw["counts"]["articles"] == 1
    index = load_index(folder)
    assert list(index.articles) == [kept.id] and index.articles[kept.id] == kept
    assert articles[1].id not in index.articles, "its rows are deleted"
    assert index.catalog() == Catalog((entry,), sources)


def test_an_index_written_before_the_typed_manifest_loads_and_keeps_its_json(tmp_path: Path):
    folder = tmp_path / "index"
    shutil.copytree(OLD_INDEX, folder)
    text = (folder / MANIFEST).read_text(encoding="utf-8")
    manifest = read_manifest(folder)
    assert manifest.format == READABLE_FORMATS[0] == "qa-index/2" and manifest.catalog == ""
    assert json.loads(encode_manifest(manifest)) == json.loads(text), "the same keys and values, written back"
    catalog = read_catalog(folder, manifest)
    assert [Path(a.source).name for a in catalog.articles] == ["budget.md", "n1", "harbour.txt"]
    feed = next(s for key, s in catalog.sources.items() if key.endswith("feed.jsonl"))
    assert feed.articles == (catalog.articles[1].id,) and "line 2" in feed.skipped[0]
    for check in ("full", "lazy", "quick"):
        index = load_index(folder, check=check)
        assert index.checked.wait(30) and index.damage is None
        assert len(index.articles) == 3 and len(index.chunks) == manifest.counts["chunks"] == 3
        assert sorted(index.articles) == sorted(a.id for a in catalog.articles) and index.catalog() == catalog
    bot = Bot.load(folder, embedder=HashEmbedder(dim=8), answer_settings=AnswerSettings(abstain_below=0))
    answer = bot.ask("When did the harbour at Strelsau reopen?")
    assert any("reopened on Monday" in q.text for q in answer.quotes)


def _answer(folder: Path, embedder, question: str) -> dict:
    return {**Bot.load(folder, embedder=embedder).ask(question).to_json(), "seconds": 0}


def _as_written_by_qa_index_2(folder: Path) -> None:
    """Rewrite a current index folder as the previous layout wrote it: the catalog's entries inside the
    manifest (after ``counts``, as ``written-by-qa-index-2`` has them), no catalog file."""
    raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    catalog = json.loads((folder / raw["catalog"]).read_text(encoding="utf-8"))
    (folder / raw["catalog"]).unlink()
    del raw["files"][raw.pop("catalog")]
    old = {}
    for key, value in raw.items():
        old[key] = value
        if key == "counts":
            old.update(articles=catalog["articles"], sources=catalog["sources"])
    old["format"] = "qa-index/2"
    (folder / MANIFEST).write_text(json.dumps(old), encoding="utf-8")


def test_an_index_of_the_previous_layout_serves_and_its_next_build_rewrites_it_without_embedding(
    tmp_path: Path, corpus: Path, hash_embedder
):
    folder = tmp_path / "index"
    build_index([corpus], folder, embedder=hash_embedder)
    question = "What did Kim Jong Un say about the United States?"
    before = _answer(folder, hash_embedder, question)
    current = read_catalog(folder, read_manifest(folder))
    _as_written_by_qa_index_2(folder)
    old = read_manifest(folder)
    assert old.format == "qa-index/2" and old.inline == current and not list(folder.glob("catalog-*"))
    assert _answer(folder, hash_embedder, question) == before

    report = build_index([corpus], folder, embedder=hash_embedder)  # nothing changed but the layout
    assert report.changed and report.embedded == 0 and report.removed == 0 and report.reused == report.chunks
    new = read_manifest(folder)
    assert new.format == INDEX_FORMAT and new.inline is None and new.segments == old.segments
    assert read_catalog(folder, new) == current
    assert sorted(p.name for p in folder.glob("catalog-*")) == [new.catalog]
    assert _answer(folder, hash_embedder, question) == before
    assert build_index([corpus], folder, embedder=hash_embedder).changed is False, "then it is up to date"


def test_the_manifest_stays_small_whatever_the_number_of_articles(tmp_path: Path, hash_embedder):
    """Opening parses the manifest only: its size does not grow with the articles (their entries are in the
    catalog)."""
    articles = tmp_path / "articles"
    articles.mkdir()
    sizes = []
    for count in (5, 60):
        for i in range(count):
            (articles / f"a{i:03d}.txt").write_text(f"Report {i}\n\nThe ferry number {i} sailed at dawn.\n")
        folder = tmp_path / f"index-{count}"
        build_index([articles], folder, embedder=hash_embedder)
        manifest = read_manifest(folder)
        assert manifest.counts["articles"] == count == len(read_catalog(folder, manifest).articles)
        sizes.append((folder / MANIFEST).stat().st_size)
    assert sizes[1] < sizes[0] + 200, sizes
