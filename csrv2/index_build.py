"""Embeddings → k-sparse codes → SparseIndex in chunks: peak memory is the index plus one chunk, not O(N · d).

    index = encode_to_index(head, "corpus.npy", chunk_rows=16384)    # a .npy path (read in chunks, never mapped)
    index = encode_to_index(head, np.load("corpus.npy", mmap_mode="r"))  # or any (N, d) array, e.g. a memmap

`head` is anything with `encode(x (B, d) float32 tensor, k) → SparseCodes` (csrv2.SparseHead). Each chunk of rows is
encoded (normalised to unit rows when `normalize`, as retrieval wants) and its codes packed into (N, k) int32 /
float32 arrays; one counting sort (csrv2.index_kernels.counting_sort_packed) then lays out the postings. Memory:
N · k · 8 bytes of packed codes + the index + one chunk's activations (chunk_rows · h floats). A path is read with
plain file reads, so its pages never count against the process; a memory-mapped array keeps the pages it touched
resident (clean, reclaimable) until the mapping is dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from csrv2.codes import SparseCodes
from csrv2.index import SparseIndex
from csrv2.index_inputs import check_packed
from csrv2.index_kernels import HAVE_NUMBA, counting_sort_packed


def _header(f) -> tuple[tuple, bool, np.dtype]:
    """(shape, fortran_order, dtype) of an open .npy file, leaving it at the first data byte."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)


def read_npy_chunks(path: Path, chunk_rows: int):
    """(start, rows (≤ chunk_rows, d) float32) of a 2-d C-order .npy file, read with file reads (no mapping)."""
    with open(path, "rb") as f:
        shape, fortran, dtype = _header(f)
        if len(shape) != 2 or fortran:
            raise ValueError(f"{path}: expected a C-order (N, d) array, got shape {shape} (fortran order {fortran})")
        n, d = shape
        for start in range(0, n, chunk_rows):
            rows = min(chunk_rows, n - start)
            block = np.fromfile(f, dtype=dtype, count=rows * d)
            if block.size != rows * d:
                raise ValueError(f"{path}: file ends at row {start + block.size // max(d, 1)} of {n}")
            yield start, block.reshape(rows, d).astype(np.float32, copy=False)


def encode_to_index(head, embeddings, k: int | None = None, chunk_rows: int = 16384, normalize: bool = True):
    """SparseIndex of head.encode(embeddings) (unit-norm codes when `normalize`), encoded `chunk_rows` at a time.

    embeddings: a .npy path or an (N, d) array. Equal to SparseIndex.build(head.encode(all rows, k).normalized())
    up to the float rounding a matmul's batch size can change (the same postings; values within an ulp or so)."""
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"encode_to_index: chunk_rows must be a positive int, got {chunk_rows!r}")
    if isinstance(embeddings, str | Path):
        path = Path(embeddings)
        if not path.is_file():
            raise FileNotFoundError(f"encode_to_index: {path} not found")
        with open(path, "rb") as f:
            n = _header(f)[0][0]
        chunks = read_npy_chunks(path, chunk_rows)
        name = str(path)
    else:
        if getattr(embeddings, "ndim", None) != 2:
            raise ValueError(
                f"encode_to_index: embeddings must be (N, d), got shape {getattr(embeddings, 'shape', None)}"
            )
        n, name = len(embeddings), "embeddings"
        chunks = ((s, np.array(embeddings[s : s + chunk_rows], dtype=np.float32)) for s in range(0, n, chunk_rows))
    idx = val = None
    dim = 0
    with torch.no_grad():
        for start, rows in chunks:
            codes = head.encode(torch.from_numpy(np.ascontiguousarray(rows)), k=k)
            codes = codes.normalized() if normalize else codes
            if idx is None:
                dim, width = codes.dim, codes.indices.shape[1]
                idx, val = np.empty((n, width), np.int32), np.empty((n, width), np.float32)
            idx[start : start + len(rows)] = codes.indices.numpy()
            val[start : start + len(rows)] = codes.values.to(torch.float32).numpy()
    if idx is None:
        raise ValueError(f"encode_to_index: {name} holds no rows")
    check_packed(idx, val, f"encode_to_index({name})")
    if HAVE_NUMBA:
        offsets, doc_ids, values = counting_sort_packed(idx, val, dim)
        return SparseIndex(offsets, doc_ids, values, n)
    return SparseIndex.build(SparseCodes(torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(val), dim))
