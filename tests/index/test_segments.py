"""The segmented index: every sequence of incremental builds searches and answers exactly like one full build.

Real builds into real folders with the hash embedder: articles added, changed and
removed in steps, segments merged by size tier and by ``optimize``; after each
step the index is compared with a fresh full build of the same files (chunk ids,
BM25 scores and idf, dense search, the bot's answers). Also: what a build reads
and writes (unchanged files are not read; removing an article writes a deletion
list and a manifest, nothing else), old index folders, and ``qa build --optimize``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qa.answer.quotes import AnswerSettings
from qa.answer.bot import Bot
from qa.index.build import build_index
from qa.embed.hashing import HashEmbedder
from qa.index.manifest import SegmentEntry
from qa.index.merge import plan_merges
from qa.settings import MERGE_FACTOR
from qa.index.catalog import read_catalog
from qa.index.reader import IndexInvalid, load_index, read_manifest

ROOT = Path(__file__).resolve().parents[2]
WORDS = (
    "harbour council budget storm bridge school election tariff vaccine museum river drought railway festival "
    "senator strike reactor satellite orchard glacier airport refinery library tunnel coalition ferry wildfire "
    "telescope vineyard stadium pipeline monsoon embassy canal pharmacy quarry parliament"
).split()
QUERIES = ["harbour storm bridge", "council budget vote", "railway strike senator", "museum festival", "glacier"]
OLD = time.time() - 3600  # file times well before any build, outside the racy window


def write(folder: Path, i: int, version: int = 0) -> Path:
    rng = random.Random(i * 1000 + version)
    sentences = [f"Report {i} version {version} on the {WORDS[i % len(WORDS)]}."]
    for _ in range(rng.randint(3, 14)):
        w = rng.sample(WORDS, 5)
        sentences.append(f"The {w[0]} near the {w[1]} was closed after {rng.randint(2, 900)} people asked about the "
                         f"{w[2]}, the {w[3]} and the {w[4]}.")
    path = folder / f"a{i:03d}.txt"
    path.write_text(f"{WORDS[i % len(WORDS)].title()} News {i}\n\n" + " ".join(sentences) + "\n", encoding="utf-8")
    os.utime(path, (OLD, OLD + i))
    return path


def write_articles(tmp_path: Path, count: int) -> tuple[Path, list[Path]]:
    """A new folder ``tmp_path/articles`` holding articles 0..count-1 (``write``), and their paths."""
    articles = tmp_path / "articles"
    articles.mkdir()
    return articles, [write(articles, i) for i in range(count)]


def assert_same_as_full(index_dir: Path, articles: Path, embedder, tmp_path: Path) -> None:
    """The index in ``index_dir`` searches and answers like a full build of ``articles``."""
    fresh_dir = tmp_path / f"fresh-{time.monotonic_ns()}"
    build_index([articles], fresh_dir, embedder=embedder, full=True)
    seg, fresh = load_index(index_dir), load_index(fresh_dir)
    assert set(seg.articles) == set(fresh.articles)
    # the listing the Articles tab reads (no catalog) agrees with the catalog, whatever was deleted and merged
    listed = [(article.id, chunks) for article, chunks in seg.articles.with_chunks()]
    assert sorted(listed) == sorted((e.id, e.chunks) for e in seg.catalog().articles)
    assert [article_id for article_id, _ in listed] == list(seg.articles)
    # and each segment's titles file (what the filter reads) says what its live articles' records say
    titled = [row for s, positions in seg.articles.by_segment() for row in seg.articles.titles_in(s, positions.tolist())]
    assert titled == [(a.id, a.title, a.source, n) for a, n in seg.articles.with_chunks()]
    assert all(s.titles is not None for s in seg.segments)
    ids_a, ids_b = [c.id for c in seg.chunks], [c.id for c in fresh.chunks]
    assert sorted(ids_a) == sorted(ids_b) and len(set(ids_a)) == len(ids_a)
    assert seg.lexical.n_docs == fresh.lexical.n_docs and seg.lexical.avg_length == fresh.lexical.avg_length
    for query in QUERIES:
        a = dict(zip(ids_a, seg.lexical.scores(query).tolist()))
        b = dict(zip(ids_b, fresh.lexical.scores(query).tolist()))
        assert a == b, query  # bit-identical: the same statistics, summed in the same order
        for term in query.split():
            assert seg.lexical.idf(term) == fresh.lexical.idf(term)
        vector = embedder.encode([query])[0]
        rows_a, scores_a = seg.dense_search(vector, 8)
        rows_b, scores_b = fresh.dense_search(vector, 8)
        assert np.array_equal(scores_a, scores_b), query
        assert {ids_a[r] for r in rows_a} == {ids_b[r] for r in rows_b}, query
        by_id = {c.id: r for r, c in enumerate(fresh.chunks)}
        assert np.array_equal(seg.vectors[rows_a], fresh.vectors[[by_id[ids_a[r]] for r in rows_a]])
    settings = {"answer_settings": AnswerSettings(abstain_below=0)}
    bot_a = Bot.load(index_dir, embedder=embedder, **settings)
    bot_b = Bot.load(fresh_dir, embedder=embedder, **settings)
    for query in QUERIES:
        qa, qb = bot_a.ask(query), bot_b.ask(query)
        assert [(q.text, q.article_id, q.score) for q in qa.quotes] == [(q.text, q.article_id, q.score) for q in qb.quotes]


def test_adds_changes_removals_and_merges_equal_a_full_build(tmp_path: Path, hash_embedder):
    articles, _ = write_articles(tmp_path, 30)
    index_dir = tmp_path / "index"
    build_index([articles], index_dir, embedder=hash_embedder)
    assert len(read_manifest(index_dir).segments) == 1

    # One article in, one changed, one out: a new segment and one deletion list.
    write(articles, 30)
    write(articles, 3, version=1)
    (articles / "a007.txt").unlink()
    report = build_index([articles], index_dir, embedder=hash_embedder)
    manifest = read_manifest(index_dir)
    assert len(manifest.segments) == 2 and manifest.segments[0].deleted > 0 and manifest.segments[0].deletions
    assert report.embedded == manifest.segments[1].chunks
    assert_same_as_full(index_dir, articles, hash_embedder, tmp_path)

    # Small additions one at a time: segments of one size tier merge once MERGE_FACTOR of them pile up.
    counts = []
    for i in range(31, 31 + MERGE_FACTOR + 2):
        write(articles, i)
        build_index([articles], index_dir, embedder=hash_embedder)
        counts.append(len(read_manifest(index_dir).segments))
    assert max(counts) <= MERGE_FACTOR + 1 and min(counts[MERGE_FACTOR - 2 :]) < max(counts), counts
    assert_same_as_full(index_dir, articles, hash_embedder, tmp_path)

    # Remove a whole article from a merged segment, then change another.
    for name in ("a033.txt", "a010.txt"):
        (articles / name).unlink()
    write(articles, 12, version=2)
    build_index([articles], index_dir, embedder=hash_embedder)
    assert sum(s.deleted for s in read_manifest(index_dir).segments) > 0
    assert_same_as_full(index_dir, articles, hash_embedder, tmp_path)

    # --optimize: one segment, no deletions, nothing re-embedded, only its files left on disk.
    report = build_index([articles], index_dir, embedder=hash_embedder, optimize=True)
    manifest = read_manifest(index_dir)
    assert report.embedded == 0 and report.changed
    assert len(manifest.segments) == 1 and manifest.segments[0].deleted == 0
    on_disk = {p.relative_to(index_dir).as_posix() for p in index_dir.rglob("*") if p.is_file()}
    assert on_disk == set(manifest.files) | {"manifest.json", ".lock"}
    assert_same_as_full(index_dir, articles, hash_embedder, tmp_path)
    assert build_index([articles], index_dir, embedder=hash_embedder, optimize=True).changed is False


def test_removing_an_article_writes_a_deletion_list_a_catalog_and_the_manifest_only(tmp_path: Path, hash_embedder):
    articles, _ = write_articles(tmp_path, 12)
    index_dir = tmp_path / "index"
    build_index([articles], index_dir, embedder=hash_embedder)
    before = {p.relative_to(index_dir).as_posix() for p in index_dir.rglob("*") if p.is_file()}
    old = read_manifest(index_dir)
    removed_chunks = next(a.chunks for a in read_catalog(index_dir, old).articles if a.source.endswith("a005.txt"))
    (articles / "a005.txt").unlink()
    report = build_index([articles], index_dir, embedder=hash_embedder)
    after = {p.relative_to(index_dir).as_posix() for p in index_dir.rglob("*") if p.is_file()}
    new = read_manifest(index_dir)
    (segment,) = new.segments
    assert after - before == {segment.deletions, new.catalog}
    assert before - after == {old.catalog}
    assert (report.embedded, report.removed) == (0, removed_chunks)
    rows = np.load(index_dir / segment.deletions, allow_pickle=False)
    assert len(rows) == segment.deleted == removed_chunks
    index = load_index(index_dir)
    assert not any(a.source.endswith("a005.txt") for a in index.articles.values())
    assert all(index.articles[c.article_id] for c in index.chunks)


def test_unchanged_files_are_not_read_again(tmp_path: Path, hash_embedder, caplog):
    articles, paths = write_articles(tmp_path, 6)
    index_dir = tmp_path / "index"
    build_index([articles], index_dir, embedder=hash_embedder)

    # Same size and mtime: not even opened. Proof: different bytes of the same length go unnoticed.
    text = paths[0].read_text(encoding="utf-8")
    stat = paths[0].stat()
    paths[0].write_text(text.replace("Report", "Rqport", 1), encoding="utf-8")
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with caplog.at_level(logging.INFO, logger="qa.index.scan"):
        assert build_index([articles], index_dir, embedder=hash_embedder).changed is False
    assert "6 files (0 read, 6 unchanged)" in caplog.text

    # Touched but identical: hashed, found equal, not read or cleaned again.
    paths[0].write_text(text, encoding="utf-8")
    os.utime(paths[0], (OLD + 100, OLD + 100))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="qa.index.scan"):
        assert build_index([articles], index_dir, embedder=hash_embedder).changed is False
    assert "(0 read, 6 unchanged)" in caplog.text

    # Changed (even to the same size, with the old mtime kept, if written just after the last build
    # -- the racy window): read again.
    paths[1].write_text(paths[1].read_text(encoding="utf-8").replace("Report", "Rqport", 1), encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="qa.index.scan"):
        report = build_index([articles], index_dir, embedder=hash_embedder)
    assert report.changed and report.embedded > 0 and "(1 read, 5 unchanged)" in caplog.text


def test_a_file_written_in_the_same_tick_as_the_last_build_is_hashed(tmp_path: Path, hash_embedder):
    """Size and mtime equal, but the file was written within the racy window of its last read: it is hashed."""
    articles = tmp_path / "articles"
    articles.mkdir()
    path = articles / "now.txt"
    path.write_text("Fresh News\n\nThe ferry sailed at dawn.\n", encoding="utf-8")
    index_dir = tmp_path / "index"
    build_index([articles], index_dir, embedder=hash_embedder)
    stat = path.stat()
    path.write_text("Fresh News\n\nThe ferry sailed at dusk.\n", encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert build_index([articles], index_dir, embedder=hash_embedder).embedded > 0
    assert "dusk" in next(iter(load_index(index_dir).articles.values())).text


def test_jsonl_files_keep_their_skips_and_sources_when_not_read(tmp_path: Path, hash_embedder):
    articles = tmp_path / "articles"
    articles.mkdir()
    lines = [json.dumps({"id": f"n{i}", "title": f"T{i}", "text": f"The harbour story number {i} is here."}) for i in range(4)]
    path = articles / "feed.jsonl"
    path.write_text("\n".join(lines[:2] + ["not json"] + lines[2:]) + "\n", encoding="utf-8")
    os.utime(path, (OLD, OLD))
    index_dir = tmp_path / "index"
    first = build_index([articles], index_dir, embedder=hash_embedder)
    again = build_index([articles], index_dir, embedder=hash_embedder)
    assert again.changed is False and again.articles == first.articles == 4
    assert again.skipped == first.skipped and len(first.skipped) == 1 and "line 3" in first.skipped[0]


class WordCountEmbedder:
    """Any object with the ``Embedder`` interface: the build does not care where vectors come from."""

    name = "counts-16"
    dim = 16

    def __init__(self) -> None:
        self.seen: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(self, texts, *, progress=None):
        self.seen.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        out += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_any_embedder_is_asked_only_for_the_new_chunks(tmp_path: Path):
    articles, _ = write_articles(tmp_path, 5)
    embedder = WordCountEmbedder()
    index_dir = tmp_path / "index"
    build_index([articles], index_dir, embedder=embedder)
    embedder.seen.clear()
    write(articles, 5)
    report = build_index([articles], index_dir, embedder=embedder)
    assert len(embedder.seen) == report.embedded > 0
    assert all("News 5" in t for t in embedder.seen), "only the new article's chunks (each led by its title)"
    index = load_index(index_dir)
    assert index.manifest.model == "counts-16" and index.vectors.shape == (len(index.chunks), 16)


def _v1_folder(folder: Path) -> None:
    """An index folder as the previous layout wrote it (format qa-index/1, files named by build id)."""
    folder.mkdir(parents=True)
    build = "0123456789ab"
    for name in (f"articles-{build}.jsonl", f"chunks-{build}.jsonl", f"vectors-{build}.npy", f"dense-{build}.faiss"):
        (folder / name).write_bytes(b"old")
    (folder / f"bm25-{build}").mkdir()
    (folder / f"bm25-{build}" / "vocab.index.json").write_text("{}")
    (folder / "manifest.json").write_text(json.dumps({"format": "qa-index/1", "build_id": build, "names": {}}))


def test_an_old_index_folder_says_to_rebuild_and_a_build_replaces_it(tmp_path: Path, corpus: Path, hash_embedder):
    index_dir = tmp_path / "old-index"
    _v1_folder(index_dir)
    with pytest.raises(IndexInvalid) as caught:
        load_index(index_dir)
    message = str(caught.value)
    assert "\n" not in message and "older layout" in message and f"rebuild it with `qa build --full --index {tmp_path / 'old-index'}/`" in message
    proc = subprocess.run(
        [sys.executable, "-m", "qa.app.cli", "ask", "What did Kim say?", "--index", str(index_dir)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"qa: error: {message}"]
    report = build_index([corpus], index_dir, embedder=hash_embedder, full=True)
    assert report.changed and report.embedded == report.chunks
    manifest = read_manifest(index_dir)
    assert sorted(p.name for p in index_dir.iterdir()) == sorted(
        [".lock", "manifest.json", manifest.catalog, *(s.folder for s in manifest.segments)]
    ), "the old layout's files are gone"


def test_an_article_removed_and_added_again_is_served_from_its_newer_segment(tmp_path: Path, hash_embedder):
    """Its id is then in two segments: deleted in the older, live in the newer; the tables alone say which."""
    articles, paths = write_articles(tmp_path, 12)
    index_dir = tmp_path / "index"
    build_index([articles], index_dir, embedder=hash_embedder)
    text = paths[5].read_text(encoding="utf-8")
    paths[5].unlink()
    build_index([articles], index_dir, embedder=hash_embedder)
    paths[5].write_text(text, encoding="utf-8")
    os.utime(paths[5], (OLD, OLD + 5))
    build_index([articles], index_dir, embedder=hash_embedder)
    manifest = read_manifest(index_dir)
    old, new = manifest.segments
    (entry,) = [a for a in read_catalog(index_dir, manifest).articles if a.source == str(paths[5])]
    assert entry.segment == new.id and old.deleted == entry.chunks
    for check in ("full", "lazy", "quick"):
        index = load_index(index_dir, check=check)
        assert index.checked.wait(30) and index.damage is None
        assert entry.id in (a.id for a in index.segments[0].articles), "the older segment still holds it"
        assert len(index.articles) == 12 and entry.id in index.articles and index.articles[entry.id].text
        assert sorted(index.articles) == sorted(a.id for a in read_catalog(index_dir, manifest).articles)
        assert [c.article_id for c in index.chunks].count(entry.id) == entry.chunks


@pytest.mark.parametrize("check", ["full", "lazy"])
def test_deletion_lists_are_checked(tmp_path: Path, hash_embedder, check: str):
    articles, _ = write_articles(tmp_path, 10)
    index_dir = tmp_path / "index"
    build_index([articles], index_dir, embedder=hash_embedder)
    (articles / "a004.txt").unlink()
    build_index([articles], index_dir, embedder=hash_embedder)
    raw = json.loads((index_dir / "manifest.json").read_text())
    name = raw["segments"][0]["deletions"]
    rows = np.load(index_dir / name, allow_pickle=False)
    # A different deletion list of the same length, with its checksum fixed: a live article's row is "deleted".
    np.save(index_dir / name, np.where(rows == rows.min(), rows.min() - 1 if rows.min() else rows.max() + 1, rows),
            allow_pickle=False)
    raw["files"][name] = {"bytes": (index_dir / name).stat().st_size,
                          "sha256": hashlib.sha256((index_dir / name).read_bytes()).hexdigest()}
    (index_dir / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(IndexInvalid, match="do not agree"):
        index = load_index(index_dir, check=check)
        index.checked.wait(30)  # lazily: the tables may agree (whole articles swapped); the catalog does not
        index.raise_if_damaged()
    # A build does not reuse it either: it sees the file changed, finds the index broken and rebuilds.
    report = build_index([articles], index_dir, embedder=hash_embedder)
    assert report.changed and report.reused == 0
    load_index(index_dir)


def _entry(number: int, chunks: int, deleted: int = 0) -> SegmentEntry:
    deletions = f"deleted-{number:012x}-{0:012x}.npy" if deleted else ""
    return SegmentEntry(f"{number:012x}", 1, chunks, deleted, deletions, {})


def test_no_merge_makes_a_segment_larger_than_the_cap():
    cap = 1_000
    # Eight of one tier whose sum passes the cap: packed into runs that fit, single leftovers left alone.
    tier = [_entry(i, 300) for i in range(MERGE_FACTOR)]
    groups = plan_merges(tier, [], False, max_chunks=cap)
    assert groups and all(sum(300 for _ in g) <= cap and len(g) > 1 for g in groups)
    assert set().union(*groups) <= {s.id for s in tier}
    # A segment of half the cap or more is never merged by tier, even with MERGE_FACTOR peers.
    assert plan_merges([_entry(i, 600) for i in range(MERGE_FACTOR)], [], False, max_chunks=cap) == []
    # --optimize packs neighbours up to the cap; a larger segment stands alone, rewritten only if it has deletions.
    mixed = [_entry(1, 400), _entry(2, 400), _entry(3, 400), _entry(4, 5_000), _entry(5, 5_000, deleted=10)]
    assert plan_merges(mixed, [], True, max_chunks=cap) == [{mixed[0].id, mixed[1].id}, {mixed[4].id}]
    # Under the cap everything becomes one segment, as before.
    assert plan_merges(mixed[:3], [], True, max_chunks=10_000) == [{s.id for s in mixed[:3]}]


def test_a_build_writes_a_segment_per_flush_and_merges_stay_under_the_cap(tmp_path: Path, hash_embedder, monkeypatch):
    from qa.index import build as build_module

    articles, _ = write_articles(tmp_path, 12)
    index_dir = tmp_path / "index"
    one = build_index([articles], tmp_path / "whole", embedder=hash_embedder).chunks
    flush, cap = max(2, one // 5), max(4, one // 2)
    monkeypatch.setattr(build_module, "SEGMENT_FLUSH_CHUNKS", flush)
    monkeypatch.setattr(build_module, "MAX_SEGMENT_CHUNKS", cap)
    report = build_index([articles], index_dir, embedder=hash_embedder)
    manifest = read_manifest(index_dir)
    assert report.embedded == report.chunks == one
    assert len(manifest.segments) >= 3, "new chunks are written a segment at a time"
    assert all(s.chunks < flush + 20 for s in manifest.segments)  # each flush ends with a whole article
    assert_same_as_full(index_dir, articles, hash_embedder, tmp_path)
    build_index([articles], index_dir, embedder=hash_embedder, optimize=True)
    manifest = read_manifest(index_dir)
    assert len(manifest.segments) >= 2 and all(s.live <= cap for s in manifest.segments)
    assert_same_as_full(index_dir, articles, hash_embedder, tmp_path)


def test_cli_build_optimize(tmp_path: Path):
    articles, _ = write_articles(tmp_path, 6)
    index_dir = tmp_path / "index"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "qa.app.cli", "build", str(articles), "--index", str(index_dir), "--model", "hash", "--json"]
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=120)
    write(articles, 6)
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=120)
    assert len(read_manifest(index_dir).segments) == 2
    proc = subprocess.run([*cmd, "--optimize"], check=True, capture_output=True, text=True, env=env, timeout=120)
    report = json.loads(proc.stdout)
    assert report["changed"] and report["embedded"] == 0 and report["articles"] == 7
    assert len(read_manifest(index_dir).segments) == 1


def test_segments_emptied_by_removals_are_dropped_and_logged_as_such(tmp_path: Path, caplog):
    articles, paths = write_articles(tmp_path, 1)
    embedder = HashEmbedder(dim=16)
    build_index([articles], tmp_path / "index", embedder=embedder)
    for i in range(1, 5):  # one segment per build
        write(articles, i)
        build_index([articles], tmp_path / "index", embedder=embedder)
    for i in range(1, 5):
        (articles / f"a{i:03d}.txt").unlink()
    with caplog.at_level(logging.INFO, logger="qa"):
        build_index([articles], tmp_path / "index", embedder=embedder)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "merged 1 segments" in m or ": 0 chunks" in m or "1 segments" in m
                or re.search(r"\b1 (articles|files)\b", m)], messages
    assert sum("dropped segment" in m for m in messages) == 4, messages
    assert len(read_manifest(tmp_path / "index").segments) == 1
    assert len([p for p in (tmp_path / "index").iterdir() if p.name.startswith("seg-")]) == 1
