"""Record files: JSON lines read one at a time through their table, each checked against its digest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qa.index.records import RecordDamaged, RecordFile, check_table, id_key, table_of, write_records
from qa.records import Article

ARTICLES = [Article.make(f"Story {i}. The ferry left at {i} o'clock. Ünïcode ✓", f"s{i}.txt") for i in range(5)]


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, np.ndarray]:
    path = tmp_path / "articles.jsonl"
    table = write_records(path, (a.to_json() for a in ARTICLES), [id_key(a.id) for a in ARTICLES])
    return path, table


def test_records_are_read_by_position_with_their_extra_number(written):
    path, table = written
    check_table(table, len(ARTICLES), path.stat().st_size)
    records = RecordFile(path, table, Article.from_json, cache=2)
    assert len(records) == 5
    assert records[3] == ARTICLES[3] and records[-1] == ARTICLES[4] and records[1:3] == ARTICLES[1:3]
    assert list(records) == ARTICLES
    assert [records.aux(i) for i in range(5)] == [id_key(a.id) for a in ARTICLES]
    with pytest.raises(IndexError):
        records[5]


def test_a_table_made_from_the_file_equals_the_written_one(written):
    path, table = written
    assert np.array_equal(table_of(path, lambda i, row: id_key(row["id"])), table)


def test_a_changed_or_cut_record_is_refused_when_read(written):
    path, table = written
    records = RecordFile(path, table, Article.from_json)
    data = bytearray(path.read_bytes())
    at = int(table[2, 0]) + 10
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    assert records[1] == ARTICLES[1]  # the others still read
    with pytest.raises(RecordDamaged, match="record 2"):
        records[2]
    with path.open("r+b") as fh:
        fh.truncate(int(table[4, 0]) + 5)
    with pytest.raises(RecordDamaged, match="record 4"):
        records[4]


def test_a_table_that_does_not_fit_its_file_is_refused(written):
    path, table = written
    size = path.stat().st_size
    with pytest.raises(ValueError):
        check_table(table, len(ARTICLES) + 1, size)
    with pytest.raises(ValueError):
        check_table(table, len(ARTICLES), size + 1)
    shuffled = table.copy()
    shuffled[[1, 2], 0] = shuffled[[2, 1], 0]
    with pytest.raises(ValueError):
        check_table(shuffled, len(ARTICLES), size)


def test_ids_of_any_shape_have_a_key():
    assert id_key("00000000000000ff") == 255
    assert id_key("not-a-hex-id") == id_key("not-a-hex-id") != id_key("not-a-hex-id2")


def test_many_ids_have_the_keys_each_has():
    from qa.index.records import id_keys

    ids = ["00000000000000ff", "0123456789abcdef", "ffffffffffffffff"]
    for batch in (ids, [*ids, "not-a-hex-id"], ["zz00000000000000"], ["01 234567 89abcd", *ids], []):
        assert id_keys(batch).tolist() == [id_key(i) for i in batch]
