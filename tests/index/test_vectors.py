"""Vectors read by row with pread: the same values as numpy's own reading, whatever rows are asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qa.index.vectors import VectorFile


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, np.ndarray]:
    x = np.random.default_rng(0).standard_normal((500, 24)).astype(np.float32)
    path = tmp_path / "vectors.npy"
    np.save(path, x, allow_pickle=False)
    return path, x


def test_rows_runs_and_slices_read_what_numpy_reads(saved):
    path, x = saved
    v = VectorFile(path)
    assert v.shape == (500, 24) and v.dtype == np.float32 and len(v) == 500
    assert np.array_equal(v[7], x[7]) and np.array_equal(v[-1], x[-1])
    rows = np.array([499, 3, 4, 5, 3, 100, 0, 250, 251])  # unsorted, a run, a repeat, both ends
    assert np.array_equal(v[rows], x[rows])
    assert np.array_equal(v[10:40], x[10:40]) and np.array_equal(v[::50], x[::50]) and len(v[5:5]) == 0
    assert np.array_equal(np.asarray(v), x) and np.asarray(v, dtype=np.float64).dtype == np.float64
    assert v[np.zeros(0, dtype=np.int64)].shape == (0, 24)
    with pytest.raises(IndexError):
        v[500]
    with pytest.raises(IndexError):
        v[np.array([1, 500])]


def test_a_file_cut_short_is_refused_when_read(saved):
    path, _ = saved
    v = VectorFile(path)
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size - 24 * 4 * 10)
    assert v[0].shape == (24,)
    with pytest.raises(ValueError, match="shorter"):
        v[495]
