"""The manifest: what the writer commits reads back as equal typed records, and the on-disk format is unchanged.

``tests/index/data/written-by-qa-index-2/`` is an index folder written by the
code before the manifest was typed (hash-8 embedder, three articles in one
segment, one article removed, a JSONL line skipped): it still loads, answers,
and its manifest serialises back to the same JSON.
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
from qa.index.format import INDEX_FORMAT, MANIFEST
from qa.index.lexical import Postings
from qa.index.manifest import ArticleEntry, FileEntry, SourceEntry, decode_manifest, encode_manifest
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
                                chunking=ChunkSettings(), segments=[segment], articles=[entry], sources=sources)

    read = read_manifest(folder)
    assert read == written
    assert read.articles == (entry,) and read.sources == sources and read.segments == (segment,)
    assert read.segments[0].deleted == 1 and read.segments[0].deletions in read.files
    assert all(isinstance(f, FileEntry) and f.size == (folder / rel).stat().st_size for rel, f in read.files.items())
    assert decode_manifest(encode_manifest(read)) == read
    raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert raw["format"] == INDEX_FORMAT and raw["articles"] == [entry.to_json()]
    assert list(load_index(folder).articles) == [kept.id]


def test_an_index_written_before_the_typed_manifest_loads_and_keeps_its_json(tmp_path: Path):
    folder = tmp_path / "index"
    shutil.copytree(OLD_INDEX, folder)
    text = (folder / MANIFEST).read_text(encoding="utf-8")
    manifest = read_manifest(folder)
    assert json.loads(encode_manifest(manifest)) == json.loads(text), "the same keys and values, written back"
    assert [Path(a.source).name for a in manifest.articles] == ["budget.md", "n1", "harbour.txt"]
    feed = next(s for key, s in manifest.sources.items() if key.endswith("feed.jsonl"))
    assert feed.articles == (manifest.articles[1].id,) and "line 2" in feed.skipped[0]
    index = load_index(folder)
    assert len(index.articles) == 3 and len(index.chunks) == manifest.counts["chunks"] == 3
    bot = Bot.load(folder, embedder=HashEmbedder(dim=8), answer_settings=AnswerSettings(abstain_below=0))
    answer = bot.ask("When did the harbour at Strelsau reopen?")
    assert any("reopened on Monday" in q.text for q in answer.quotes)
