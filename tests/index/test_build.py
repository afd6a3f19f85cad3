"""Incremental builds and the index folder, with the hash embedder (fast)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from qa.answer.quotes import AnswerSettings
from qa.answer.bot import Bot
from qa.index.build import BuildError, build_index
from qa.embed.hashing import HashEmbedder
from qa.index.format import INDEX_FORMAT
from qa.index.catalog import read_catalog
from qa.index.reader import IndexInvalid, IndexMissing, load_index, read_manifest

NEW_ARTICLE = """Ruritania Opens Its First Tidal Power Plant

The plant at Strelsau harbour will supply 40,000 homes, the energy minister said on Tuesday.

Engineers spent six years building the turbines, which sit on the sea floor.
"""


def _files(index_dir: Path) -> set[str]:
    return {p.name for p in index_dir.iterdir()}


def test_first_build_writes_a_manifest_that_names_everything(hash_index: Path, corpus: Path):
    manifest = read_manifest(hash_index)
    raw = json.loads((hash_index / "manifest.json").read_text())
    assert raw["format"] == INDEX_FORMAT
    assert raw["model"] == {"name": "hash-64", "dim": 64, "normalized": True, "metric": "inner_product"}
    assert raw["chunking"]["chunk_tokens"] == manifest.chunking.chunk_tokens
    assert raw["counts"]["articles"] == 2
    # Per-article and per-source entries are in the catalog, which the manifest names with its checksum.
    assert "articles" not in raw and "sources" not in raw and raw["catalog"] in raw["files"]
    catalog = json.loads((hash_index / raw["catalog"]).read_text())
    assert catalog["format"] == "qa-catalog/1" and catalog["build_id"] == raw["build_id"]
    assert {a["source"] for a in catalog["articles"]} == {str(p) for p in corpus.iterdir()}
    assert all(len(a["sha256"]) == 64 for a in catalog["articles"])
    assert {"faiss-cpu", "numpy", "bm25s"} <= set(raw["versions"])
    for rel, entry in raw["files"].items():
        assert (hash_index / rel).stat().st_size == entry["bytes"]
    index = load_index(hash_index)
    assert index.vectors.shape == (raw["counts"]["chunks"], 64)
    assert np.allclose(np.linalg.norm(np.asarray(index.vectors), axis=1), 1.0, atol=1e-5)
    # One segment; the manifest records the dense index's parameters, not a class name.
    (segment,) = raw["segments"]
    assert segment["chunks"] == raw["counts"]["chunks"] and segment["deleted"] == 0 and segment["deletions"] is None
    assert segment["dense"] == {"kind": "flat", "metric": "inner_product", "rows": segment["chunks"], "recall_at_10": 1.0}
    assert set(segment["holds"]) == {"articles", "chunks", "vectors", "dense", "postings", "article_table",
                                     "chunk_table", "term_keys", "titles"}
    assert index.segments[0].dense.ntotal == raw["counts"]["chunks"]
    assert raw["lexical"] == {"kind": "bm25", "variant": "lucene", "k1": 1.5, "b": 0.75, "tokenizer": raw["lexical"]["tokenizer"]}
    # Each source file is recorded with what decides whether the next build reads it again.
    for path in corpus.iterdir():
        entry = catalog["sources"][str(path)]
        assert (entry["bytes"], entry["mtime_ns"]) == (path.stat().st_size, path.stat().st_mtime_ns)
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert [a["id"] for a in catalog["articles"] if a["source"] == str(path)] == entry["articles"]


def test_adding_one_article_embeds_only_its_chunks(hash_index: Path, corpus: Path, hash_embedder):
    before = read_manifest(hash_index)
    (corpus / "new.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    report = build_index([corpus], hash_index, embedder=hash_embedder)
    after = read_manifest(hash_index)
    new_entry = next(a for a in read_catalog(hash_index, after).articles if a.source.endswith("new.txt"))
    assert report.embedded == new_entry.chunks > 0
    assert report.reused == before.counts["chunks"]
    assert report.removed == 0
    assert report.chunks == before.counts["chunks"] + new_entry.chunks
    # Old data files are gone; only the new generation remains.
    assert not any(before.build_id in name for name in _files(hash_index))
    # Reused vectors are bit-identical to a fresh embedding of the same chunks.
    index = load_index(hash_index)
    bot = Bot(index, hash_embedder)
    answer = bot.ask("How many homes will the tidal power plant in Strelsau supply?")
    assert not answer.abstained
    assert "40,000 homes" in answer.quotes[0].text


def test_unchanged_corpus_is_a_no_op(hash_index: Path, corpus: Path, hash_embedder):
    build_id = read_manifest(hash_index).build_id
    report = build_index([corpus], hash_index, embedder=hash_embedder)
    assert report.changed is False
    assert report.embedded == 0 and report.removed == 0
    assert read_manifest(hash_index).build_id == build_id


def test_changed_and_removed_articles(hash_index: Path, corpus: Path, hash_embedder):
    before = read_manifest(hash_index)
    first, second = sorted(corpus.iterdir())
    articles = read_catalog(hash_index, before).articles
    first_chunks = next(a.chunks for a in articles if a.source == str(first))
    second_chunks = next(a.chunks for a in articles if a.source == str(second))
    second.unlink()
    first.write_text(first.read_text(encoding="utf-8") + "\n\nA new closing paragraph was added today.", encoding="utf-8")
    report = build_index([corpus], hash_index, embedder=hash_embedder)
    assert report.articles == 1
    assert report.reused == 0
    assert report.removed == first_chunks + second_chunks
    assert report.embedded == report.chunks


def test_full_rebuild_re_embeds_everything(hash_index: Path, corpus: Path, hash_embedder):
    chunks = read_manifest(hash_index).counts["chunks"]
    report = build_index([corpus], hash_index, embedder=hash_embedder, full=True)
    assert (report.embedded, report.reused, report.removed) == (chunks, 0, chunks)


def test_another_model_re_embeds_everything(hash_index: Path, corpus: Path):
    report = build_index([corpus], hash_index, embedder=HashEmbedder(dim=32))
    assert report.reused == 0 and report.embedded == report.chunks
    assert read_manifest(hash_index).model == "hash-32"


@pytest.mark.parametrize("setup", ["empty", "missing", "only_unsupported"])
def test_no_articles_is_a_clear_error_and_leaves_the_index_alone(hash_index: Path, tmp_path: Path, hash_embedder, setup):
    folder = tmp_path / "other"
    if setup != "missing":
        folder.mkdir()
    if setup == "only_unsupported":
        (folder / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    snapshot = {p.name: p.stat().st_mtime_ns for p in hash_index.iterdir()}
    with pytest.raises(BuildError) as err:
        build_index([folder], hash_index, embedder=hash_embedder)
    assert "\n" not in str(err.value)
    assert str(folder) in str(err.value)
    assert {p.name: p.stat().st_mtime_ns for p in hash_index.iterdir()} == snapshot


def test_loading_checks_the_model_and_the_format(hash_index: Path, tmp_path: Path):
    with pytest.raises(IndexInvalid, match="qa build"):
        load_index(hash_index, model="sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(IndexMissing, match="qa build"):
        load_index(tmp_path / "nowhere")
    raw = json.loads((hash_index / "manifest.json").read_text())
    raw["format"] = "qa-index/0"
    (hash_index / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(IndexInvalid, match="qa build --full"):
        load_index(hash_index)


def test_files_that_do_not_match_the_manifest_are_refused(hash_index: Path):
    raw = json.loads((hash_index / "manifest.json").read_text())
    vectors = hash_index / raw["segments"][0]["folder"] / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-1] ^= 0xFF
    vectors.write_bytes(bytes(data))
    with pytest.raises(IndexInvalid, match="checksum"):
        load_index(hash_index)


def test_leftovers_of_a_torn_build_are_removed_and_foreign_files_kept(hash_index: Path, corpus: Path, hash_embedder):
    (hash_index / ".gitignore").write_text("*\n")
    (hash_index / "chunks-0123456789ab.jsonl").write_text("torn")
    (hash_index / "manifest.json.0123456789ab.tmp").write_text("{")
    (hash_index / "notes.txt").write_text("mine")
    (corpus / "new.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    build_index([corpus], hash_index, embedder=hash_embedder)
    names = _files(hash_index)
    assert "chunks-0123456789ab.jsonl" not in names
    assert "manifest.json.0123456789ab.tmp" not in names
    assert {".gitignore", "notes.txt"} <= names


def test_the_same_article_under_two_names_is_kept_twice(tmp_path: Path, corpus: Path, hash_embedder):
    first = sorted(corpus.iterdir())[0]
    shutil.copy(first, corpus / "copy.txt")
    report = build_index([corpus], tmp_path / "idx", embedder=hash_embedder)
    assert report.articles == 3
    # The copy reuses nothing at first build, but a rebuild reuses all of it.
    assert build_index([corpus], tmp_path / "idx", embedder=hash_embedder, full=False).changed is False


def test_an_incremental_build_searches_exactly_like_a_full_one(
    hash_index: Path, corpus: Path, hash_embedder, tmp_path: Path, caplog
):
    first, second = sorted(corpus.iterdir())
    (corpus / "new.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    second.unlink()  # one article in, one out
    build_index([corpus], hash_index, embedder=hash_embedder)
    fresh_dir = tmp_path / "fresh-index"
    build_index([corpus], fresh_dir, embedder=hash_embedder, full=True)
    incremental, fresh = load_index(hash_index), load_index(fresh_dir)
    assert len(incremental.manifest.segments) == 2  # the old one purged of its (over half) deleted rows, the new one
    assert sorted(c.id for c in incremental.chunks) == sorted(c.id for c in fresh.chunks)
    ids_a, ids_b = [c.id for c in incremental.chunks], [c.id for c in fresh.chunks]
    for query in ("tidal power Strelsau", "North Korea troops Russia", "sanctions China", "Kim reactionary"):
        by_id_a = dict(zip(ids_a, incremental.lexical.scores(query).tolist()))
        by_id_b = dict(zip(ids_b, fresh.lexical.scores(query).tolist()))
        assert by_id_a == pytest.approx(by_id_b, rel=1e-6), query
        vector = hash_embedder.encode([query])[0]
        rows_a, scores_a = incremental.dense_search(vector, 5)
        rows_b, scores_b = fresh.dense_search(vector, 5)
        assert [ids_a[r] for r in rows_a] == [ids_b[r] for r in rows_b] and np.allclose(scores_a, scores_b)
    for term in ("tidal", "troops", "reactionary", "kremlin", "nosuchword"):
        assert incremental.lexical.idf(term) == pytest.approx(fresh.lexical.idf(term)), term
    settings = {"answer_settings": AnswerSettings(abstain_below=0)}
    ask_a = Bot.load(hash_index, embedder=hash_embedder, **settings).ask("How many homes will the plant supply?")
    ask_b = Bot.load(fresh_dir, embedder=hash_embedder, **settings).ask("How many homes will the plant supply?")
    assert [(q.text, q.score) for q in ask_a.quotes] == [(q.text, q.score) for q in ask_b.quotes]


def test_a_busy_index_names_the_build_command_for_its_own_folder(tmp_path):
    from qa.index.writer import IndexBusy, writer_lock

    folder = tmp_path / "other"
    with writer_lock(folder):
        with pytest.raises(IndexBusy) as err:
            with writer_lock(folder):  # a second writer, as another terminal's `qa build --index other/` would be
                pass
    message = str(err.value)
    assert f"run `qa build --index {folder}/` again" in message and "\n" not in message
