"""StackedRows against np.concatenate of the same parts (the naive reference), with memory-mapped parts."""

import numpy as np
import pytest

from csrv2.data import arrays, stacked_rows
from csrv2.data.arrays import check_arrays
from csrv2.data.stacked_rows import StackedRows, row_blocks


@pytest.fixture
def parts(tmp_path):
    """Three (N_i, 5) parts of different lengths, the middle one a memory map on disk."""
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal((n, 5)).astype(np.float32) for n in (7, 11, 3))
    np.save(tmp_path / "b.npy", b)
    return [a, np.load(tmp_path / "b.npy", mmap_mode="r"), c]


def test_indexing_equals_the_concatenation(parts):
    """Integer arrays (any order, repeats, negatives), booleans, slices and ints give the concatenation's rows."""
    stacked, whole = StackedRows(parts), np.concatenate(parts)
    assert stacked.shape == whole.shape == (21, 5) and len(stacked) == 21 and stacked.ndim == 2
    rng = np.random.default_rng(1)
    for rows in (rng.integers(0, 21, 50), np.array([20, 0, 7, 6, 18, 18, -1, -21]), np.array([], dtype=np.int64)):
        np.testing.assert_array_equal(stacked[rows], whole[rows])
    mask = rng.random(21) < 0.5
    np.testing.assert_array_equal(stacked[mask], whole[mask])
    for s in (slice(None), slice(5, 19), slice(None, None, -3), slice(17, 100)):
        np.testing.assert_array_equal(stacked[s], whole[s])
    np.testing.assert_array_equal(stacked[9], whole[9])
    np.testing.assert_array_equal(np.asarray(stacked, dtype=np.float64), whole.astype(np.float64))


def test_blocks_cover_every_row_once_in_order(parts):
    stacked, whole = StackedRows(parts), np.concatenate(parts)
    for source in (stacked, whole):
        starts, blocks = zip(*row_blocks(source, 4))
        assert max(len(b) for b in blocks) <= 4
        np.testing.assert_array_equal(np.concatenate(blocks), whole)
        assert [s + len(b) for s, b in zip(starts, blocks)][:-1] == list(starts[1:])


def test_bad_parts_and_indices_are_refused(parts):
    with pytest.raises(ValueError, match="one d"):
        StackedRows([parts[0], np.zeros((2, 4), np.float32)])
    with pytest.raises(ValueError, match="at least one"):
        StackedRows([])
    stacked = StackedRows(parts)
    with pytest.raises(IndexError, match="row 21 is out of range for 21 rows"):
        stacked[np.array([0, 21])]
    with pytest.raises(IndexError, match="boolean index"):
        stacked[np.ones(3, bool)]
    with pytest.raises(IndexError, match="1-D integer"):
        stacked[np.array([0.5])]


def test_check_arrays_finds_a_bad_row_in_a_later_block(parts, monkeypatch):
    """The NaN/inf check reads blocks; a bad row in the last part is still named by its global row number."""
    monkeypatch.setattr(arrays, "FINITE_CHECK_VALUES", 10)  # 2 rows per block at d = 5
    bad = parts[2].copy()
    bad[1, 3] = np.inf
    with pytest.raises(ValueError, match=r"row 19 has NaN or inf \(1 such rows\)"):
        check_arrays(StackedRows([parts[0], parts[1], bad]), None, "data.mixture")
    embeddings, _ = check_arrays(StackedRows(parts), None, "data.mixture")
    assert isinstance(embeddings, StackedRows)


def test_a_whole_memory_map_is_read_with_file_reads_and_a_view_through_the_map(parts, monkeypatch):
    """row_blocks of np.load(..., mmap_mode="r") reads the file (its pages never enter this process's RSS) and gives
    the same rows; a view of a map (whose offset attribute is its parent's) is read through the map instead."""
    whole_map, view = parts[1], parts[1][3:]
    assert stacked_rows._is_whole_file_map(whole_map) and not stacked_rows._is_whole_file_map(view)
    reads = []
    real_fromfile = np.fromfile
    monkeypatch.setattr(np, "fromfile", lambda *a, **kw: reads.append(1) or real_fromfile(*a, **kw))
    for source in (whole_map, view):
        np.testing.assert_array_equal(np.concatenate([b for _, b in row_blocks(source, 4)]), np.asarray(source))
    assert len(reads) == 3  # 11 rows in blocks of 4, all from the whole map; none for the view


def test_unit_norms_of_the_sampled_rows_come_from_the_blocks(tmp_path, monkeypatch):
    """The unit-norm check reads the sampled rows out of the NaN/inf pass's blocks (a memory map read with file
    reads): an off-norm sampled row in a later block is named by its row number; one outside the sample is not seen."""
    monkeypatch.setattr(arrays, "FINITE_CHECK_VALUES", 15)  # 3 rows per block at d = 5
    monkeypatch.setattr(arrays, "UNIT_CHECK_ROWS", 5)  # of 21 rows: 0, 5, 10, 15, 20
    x = np.random.default_rng(2).standard_normal((21, 5))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    assert arrays.unit_check_rows(21).tolist() == [0, 5, 10, 15, 20]
    for row, message in ((15, r"row 15 has L2 norm 2 \(1 of 5 checked rows"), (20, "row 20 is all zeros")):
        bad = x.copy()
        bad[row] = 2 * bad[row] if row == 15 else 0
        np.save(tmp_path / "x.npy", bad)
        with pytest.raises(ValueError, match=message):
            check_arrays(np.load(tmp_path / "x.npy", mmap_mode="r"), None, "data.embeddings", unit_rows=True)
    unsampled = x.copy()
    unsampled[7] *= 3
    check_arrays(unsampled, None, "data.embeddings", unit_rows=True)  # row 7 is not in the sample


@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<f2"])
def test_take_rows_reads_a_memory_map_with_file_reads_and_gives_its_rows(tmp_path, dtype, monkeypatch):
    """take_rows of a whole-file map (any dtype and byte order) equals indexing it: rows in any order, repeated, none;
    it reads through positioned file reads (one per row, after one WILLNEED hint per row), never through the map.
    A view, an ndarray and StackedRows are indexed as they are; a row out of range and a truncated file are named."""
    x = np.random.default_rng(3).standard_normal((40, 7)).astype(dtype)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    hints, reads = [], []
    real_fadvise, real_preadv = stacked_rows.os.posix_fadvise, stacked_rows.os.preadv
    monkeypatch.setattr(stacked_rows.os, "posix_fadvise", lambda *a: hints.append(a) or real_fadvise(*a))
    monkeypatch.setattr(stacked_rows.os, "preadv", lambda *a: reads.append(a) or real_preadv(*a))
    for rows in (np.array([39, 0, 5, 5, 17]), np.arange(40), np.array([], dtype=np.int64)):
        got = stacked_rows.take_rows(mapped, rows)
        assert got.dtype == x.dtype and got.shape == (len(rows), 7)
        np.testing.assert_array_equal(got, x[rows])
    assert len(hints) == len(reads) == 5 + 40
    for source in (mapped[2:], x, StackedRows([x, mapped])):
        np.testing.assert_array_equal(stacked_rows.take_rows(source, np.array([1, 3])), np.asarray(source)[[1, 3]])
    with pytest.raises(IndexError, match="row 40 is out of range for 40 rows"):
        stacked_rows.take_rows(mapped, np.array([3, 40]))
    header = mapped.offset
    with open(tmp_path / "x.npy", "r+b") as handle:
        handle.truncate(header + 10 * 7 * x.dtype.itemsize + 3)  # rows 0-9 whole, row 10 cut
    with pytest.raises(ValueError, match=r"x\.npy: file ends inside row 10"):
        stacked_rows.take_rows(mapped, np.array([2, 10]))
