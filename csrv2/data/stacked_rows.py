"""Several (N_i, d) row arrays read as one (ΣN_i, d) array without copying them.

A training mixture is the train splits of many tasks, each a memory map of the embedding cache. Concatenating them
would put the whole mixture in RAM; `StackedRows` keeps the maps and copies only the rows a batch asks for:

    rows = StackedRows([cache_a, cache_b])     # (N_a + N_b, d), nothing read yet
    batch = rows[np.array([5, N_a + 2])]       # (2, d) ndarray: row 5 of cache_a, row 2 of cache_b
    batch = take_rows(cache_a, np.array([5, 9]))   # the same for one array: a memory map is read with file reads
    for start, block in rows.blocks(65536):    # sequential passes (checks, means) in bounded memory
        ...

`np.asarray(rows)` still works and copies everything: for small experiments that want a plain array.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Sequence

import numpy as np


class StackedRows:
    """Read-only row-wise concatenation of 2-D arrays of one width (memory maps stay memory maps)."""

    ndim = 2

    def __init__(self, parts: Sequence[np.ndarray]):
        if not parts:
            raise ValueError("StackedRows needs at least one array")
        widths = {p.shape[1] if p.ndim == 2 else None for p in parts}
        if len(widths) != 1 or None in widths:
            shapes = ", ".join(str(p.shape) for p in parts)
            raise ValueError(f"StackedRows: every part must be (N_i, d) with one d, got shapes {shapes}")
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(p) for p in parts])  # (parts + 1,): first global row of each part
        self.shape = (int(self.starts[-1]), widths.pop())
        self.dtype = np.result_type(*(p.dtype for p in parts))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        """An int (one row (d,)), a slice, or an integer / boolean index array (rows (b, d), in the asked order)."""
        if isinstance(index, (int, np.integer)):
            return self[np.array([index])][0]
        if isinstance(index, slice):
            return self[np.arange(*index.indices(len(self)))]
        rows = np.asarray(index)
        if rows.dtype == bool:
            if rows.shape != (len(self),):
                raise IndexError(f"boolean index of shape {rows.shape} for {len(self)} rows")
            rows = np.flatnonzero(rows)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise IndexError(f"StackedRows takes an int, a slice or a 1-D integer/boolean array, got {index!r}")
        rows = np.where(rows < 0, rows + len(self), rows)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            bad = rows[(rows < 0) | (rows >= len(self))][0]
            raise IndexError(f"row {bad} is out of range for {len(self)} rows")
        part_of = np.searchsorted(self.starts, rows, side="right") - 1  # (b,) which part holds each row
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        for p in np.unique(part_of):
            mine = part_of == p
            out[mine] = take_rows(self.parts[p], rows[mine] - self.starts[p])
        return out

    def blocks(self, block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows (≤ block_rows, d)) in order: one pass over every part, never more than a block in RAM."""
        return row_blocks(self, block_rows)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = np.concatenate([np.asarray(p) for p in self.parts])
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"StackedRows({len(self.parts)} parts, shape={self.shape}, dtype={self.dtype})"


def row_blocks(x, block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows) blocks of an (N, d) ndarray, memory map or StackedRows: sequential reads, bounded RAM.

    A whole memory map (np.load(..., mmap_mode="r")) is read with plain file reads: pages touched through the map
    would stay resident in this process (clean and reclaimable, but counted in its RSS — a 15 GB cache read once to
    check it would look like 15 GB of memory)."""
    if isinstance(x, StackedRows):
        for p, part in enumerate(x.parts):
            for start, block in row_blocks(part, block_rows):
                yield int(x.starts[p]) + start, block
        return
    if _is_whole_file_map(x):
        with open(x.filename, "rb") as f:
            row_bytes = x.shape[1] * x.dtype.itemsize
            for start in range(0, len(x), block_rows):
                rows = min(block_rows, len(x) - start)
                f.seek(x.offset + start * row_bytes)
                block = np.fromfile(f, dtype=x.dtype, count=rows * x.shape[1])
                if block.size != rows * x.shape[1]:
                    raise ValueError(f"{x.filename}: file ends inside row {start + block.size // x.shape[1]}")
                yield start, block.reshape(rows, x.shape[1])
        return
    for start in range(0, len(x), block_rows):
        yield start, np.asarray(x[start : start + block_rows])


def take_rows(x, rows: np.ndarray) -> np.ndarray:
    """x[rows] (b, d) for an (N, d) ndarray, memory map or StackedRows; rows (b,) integers in [0, N).

    A whole-file memory map is read with one WILLNEED hint per row and then one positioned read per row: the hints
    let the kernel fetch every row of the batch at once, where reads through the map fault the rows in one after
    another (and map whole folios into this process). A random batch of 128 rows from a 4.3 GiB file not in the page
    cache: 2.5 ms instead of 20 ms here; from the page cache both cost 0.5-0.6 ms (scripts/bench_row_reads.py)."""
    if isinstance(x, StackedRows) or not (_is_whole_file_map(x) and _HAS_FILE_HINTS):
        return x[rows]
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= len(x)):
        raise IndexError(f"row {int(rows[(rows < 0) | (rows >= len(x))][0])} is out of range for {len(x)} rows")
    out = np.empty((len(rows), x.shape[1]), dtype=x.dtype)
    row_bytes = x.shape[1] * x.dtype.itemsize
    buffers = out.view(np.uint8).reshape(len(rows), row_bytes)
    fd = os.open(x.filename, os.O_RDONLY)
    try:
        for row in rows.tolist():
            os.posix_fadvise(fd, x.offset + row * row_bytes, row_bytes, os.POSIX_FADV_WILLNEED)
        for i, row in enumerate(rows.tolist()):
            if os.preadv(fd, [buffers[i]], x.offset + row * row_bytes) != row_bytes:
                raise ValueError(f"{x.filename}: file ends inside row {row} (was it truncated?)")
    finally:
        os.close(fd)
    return out


_HAS_FILE_HINTS = hasattr(os, "posix_fadvise") and hasattr(os, "preadv")  # POSIX; elsewhere reads go through the map


def _is_whole_file_map(x) -> bool:
    """A C-ordered np.memmap over its file from `offset` on (not a view of one: a view's offset is its parent's)."""
    return (
        isinstance(x, np.memmap)
        and isinstance(x.base, mmap.mmap)
        and x.ndim == 2
        and x.flags.c_contiguous
        and bool(x.filename)
    )
