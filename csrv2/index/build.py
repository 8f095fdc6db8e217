"""Embeddings → k-sparse codes → SparseIndex in chunks: peak memory is the index plus one chunk, not O(N · d).

    index = encode_to_index(head, "corpus.npy", chunk_rows=16384)    # a .npy path (read in chunks with file reads)
    index = encode_to_index(head, np.load("corpus.npy", mmap_mode="r"))  # or any (N, d) array, e.g. a memmap

`head` is anything with `encode(x (B, d) float32 tensor, k) → SparseCodes` (csrv2.SparseHead). Each chunk of rows is
encoded (normalised to unit rows when `normalize`, as retrieval wants) and its codes packed into (N, k) int32 /
float32 arrays; one counting sort (csrv2.index.kernels.counting_sort_packed) then lays out the postings. Memory:
N · k · 8 bytes of packed codes + the index + one chunk's activations (chunk_rows · h floats). Chunks come from
csrv2.data.stacked_rows.row_blocks: a path, or a whole-file memory map, is read with plain file reads, so its pages never
count against the process; any other array is sliced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from csrv2.data.stacked_rows import row_blocks
from csrv2.head.codes import SparseCodes
from csrv2.index.inputs import check_packed
from csrv2.index.kernels import HAVE_NUMBA, counting_sort_packed
from csrv2.index.sparse_index import SparseIndex


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
        embeddings, name = np.load(path, mmap_mode="r"), str(path)  # row_blocks reads a whole map with file reads
    else:
        name = "embeddings"
    if getattr(embeddings, "ndim", None) != 2:
        raise ValueError(f"encode_to_index: {name} must be (N, d), got shape {getattr(embeddings, 'shape', None)}")
    n = len(embeddings)
    chunks = ((s, block.astype(np.float32, copy=False)) for s, block in row_blocks(embeddings, chunk_rows))
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
    check_packed(idx, val, f"encode_to_index({name})", dim)
    if HAVE_NUMBA:
        offsets, doc_ids, values = counting_sort_packed(idx, val, dim)
        return SparseIndex(offsets, doc_ids, values, n)
    return SparseIndex.build(SparseCodes(torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(val), dim))
