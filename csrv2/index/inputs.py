"""What SparseIndex and QdrantSparse accept as codes, checked once: SparseCodes (Q, k) or a scipy sparse (Q, h) matrix,
with finite values, every latent index in [0, h) and no latent given twice among a row's active slots (zero slots may
repeat: padding).

The kernels (csrv2.index.kernels) index arrays with these latents unchecked, so they are checked here, at the
boundary of every kernel call, and not trusted from construction: a SparseCodes' tensors can be edited after it was
built, and scipy accepts a CSR matrix whose column indices exceed its width (or whose indptr goes down) and would
read out of bounds in its own C++ conversions.

    idx, val = as_packed(codes, dim, name)              # (Q, k) int64, (Q, k) float32 (0 = inactive slot)
    rows, lats, vals, n_rows, dim = postings_of(codes)  # the non-zeros of database codes, rows non-decreasing
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch

from csrv2.head.codes import SparseCodes
from csrv2.index import kernels as index_kernels


def as_packed(codes, dim: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """SparseCodes | scipy sparse (Q, dim) → (Q, k) int64 indices and (Q, k) float32 values (0 = inactive slot)."""
    if isinstance(codes, SparseCodes):
        if codes.dim != dim:
            raise ValueError(f"{name}: codes have dim {codes.dim}, the index has dim {dim}")
        # Few tensor calls: a single-query search spends more time converting its query than searching a 100k index.
        indices, values = codes.indices.detach(), codes.values.detach()
        if indices.device.type != "cpu":
            indices, values = indices.cpu(), values.cpu()
        if values.dtype != torch.float32:
            values = values.to(torch.float32)
        idx, val = indices.numpy(), values.numpy()
        if idx.dtype != np.int64 or not idx.flags.c_contiguous:
            idx = np.ascontiguousarray(idx, dtype=np.int64)
        if not val.flags.c_contiguous:
            val = np.ascontiguousarray(val)
        check_packed(idx, val, name, dim)
        return idx, val
    if scipy.sparse.issparse(codes):
        matrix = checked_csr(codes, name)
        if matrix.shape[1] != dim:
            raise ValueError(f"{name}: matrix has {matrix.shape[1]} columns, the index has dim {dim}")
        lengths = np.diff(matrix.indptr)
        width = max(int(lengths.max(initial=0)), 1)
        idx = np.zeros((matrix.shape[0], width), np.int64)
        val = np.zeros((matrix.shape[0], width), np.float32)
        rows = np.repeat(np.arange(matrix.shape[0]), lengths)
        cols = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], lengths)
        idx[rows, cols] = matrix.indices
        val[rows, cols] = matrix.data
        return idx, val
    raise TypeError(f"{name} must be SparseCodes or a scipy sparse matrix, got {type(codes).__name__}")


def check_packed(idx: np.ndarray, val: np.ndarray, name: str, dim: int) -> None:
    """Refuse shapes that differ, a latent index outside [0, dim) (in any slot: the kernels would read or write out of
    bounds), NaN / inf values and a row that gives one latent twice among its active (non-zero) slots: the dot
    product of such a row is ambiguous, and TopK never makes one. Zero slots may repeat (padding)."""
    if idx.ndim != 2 or idx.shape != val.shape:
        raise ValueError(f"{name}: indices {idx.shape} and values {val.shape} must both be (N, k)")
    if index_kernels.HAVE_NUMBA:
        bad_value, repeat, outside = index_kernels.first_bad_rows(idx, val, dim)
    else:  # the same, vectorised: inactive slots get distinct negative stand-ins so only active latents collide
        finite = np.isfinite(val).all(axis=1)
        ordered = np.sort(np.where(val != 0, idx, -1 - np.arange(idx.shape[1])), axis=1)
        repeats = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        ranged = ((idx >= 0) & (idx < dim)).all(axis=1)
        bad_value = int(np.argmin(finite)) if not finite.all() else -1
        repeat = int(np.argmax(repeats)) if repeats.any() else -1
        outside = int(np.argmin(ranged)) if not ranged.all() else -1
    if outside >= 0:
        raise ValueError(f"{name}: row {outside} holds a latent index outside [0, dim={dim})")
    if bad_value >= 0:
        raise ValueError(f"{name}: row {bad_value} holds NaN or inf values")
    if repeat >= 0:
        raise ValueError(f"{name}: row {repeat} gives a latent twice; each active latent may appear once per row")


def check_structure(matrix, name: str) -> None:
    """Refuse a scipy matrix whose index arrays break its format (scipy checks them only on request): column / row
    indices outside the shape, an index pointer that does not rise from 0 to at most nnz. Read-only: scipy's own
    check_format(full_check=True) would prune and recast the caller's arrays."""
    fmt = matrix.format
    if fmt in ("csr", "csc", "bsr"):
        rows, cols = matrix.shape
        if fmt == "bsr":
            rows, cols = rows // matrix.blocksize[0], cols // matrix.blocksize[1]
        major, minor = (rows, cols) if fmt != "csc" else (cols, rows)
        indptr, indices = np.asarray(matrix.indptr), np.asarray(matrix.indices)
        if indptr.ndim != 1 or indices.ndim != 1 or len(indptr) != major + 1:
            raise ValueError(f"{name}: the {fmt} matrix's indptr must be 1-d of length {major + 1}, got {indptr.shape}")
        if indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] > len(indices):
            raise ValueError(f"{name}: the {fmt} matrix's indptr must rise from 0 to at most nnz={len(indices)}")
        used = indices[: indptr[-1]]
        if len(used) and (used.min() < 0 or used.max() >= minor):
            raise ValueError(f"{name}: the {fmt} matrix holds an index outside [0, {minor}) (its width)")
    elif fmt == "coo":
        coords = getattr(matrix, "coords", None) or (matrix.row, matrix.col)
        for axis, (index, size) in enumerate(zip(coords, matrix.shape)):
            index = np.asarray(index)
            if index.shape != np.shape(matrix.data):
                raise ValueError(f"{name}: the coo matrix's axis-{axis} indices and data differ in length")
            if len(index) and (index.min() < 0 or index.max() >= size):
                raise ValueError(f"{name}: the coo matrix holds an axis-{axis} index outside [0, {size})")


def checked_csr(codes, name: str) -> scipy.sparse.csr_matrix:
    """A float32 CSR copy of a scipy matrix; malformed index arrays (check_structure), NaN / inf or a latent stored
    twice in a row (duplicate entries) refused."""
    check_structure(codes, name)  # before scipy converts it: its C++ conversions trust the indices
    matrix = scipy.sparse.csr_matrix(codes, dtype=np.float32, copy=True)
    check_structure(matrix, name)  # formats converted in Python (lil, dok, dia) are checked here
    if not np.isfinite(matrix.data).all():
        raise ValueError(f"{name}: the matrix holds NaN or inf values")
    if not matrix.has_canonical_format:  # unsorted or duplicated column indices: find out which
        merged = matrix.copy()
        merged.sum_duplicates()
        if merged.nnz != matrix.nnz:
            raise ValueError(f"{name}: a row stores one latent twice (duplicate entries); sum them first")
        matrix = merged
    return matrix


def postings_of(codes, dim: int | None, name: str):
    """Database codes → (rows, latents, values, n_rows, dim) of their non-zeros, rows non-decreasing."""
    if isinstance(codes, SparseCodes):
        dim = codes.dim if dim is None else dim
        idx, val = as_packed(codes, dim, name)
        rows = np.repeat(np.arange(idx.shape[0], dtype=np.int64), idx.shape[1])
        lats, vals = idx.ravel(), val.ravel()
        n_rows = idx.shape[0]
    elif scipy.sparse.issparse(codes):
        matrix = checked_csr(codes, name)
        dim = matrix.shape[1] if dim is None else dim
        if matrix.shape[1] != dim:
            raise ValueError(f"{name}: matrix has {matrix.shape[1]} columns, the index has dim {dim}")
        n_rows = matrix.shape[0]
        rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(matrix.indptr))
        lats, vals = matrix.indices.astype(np.int64), matrix.data
    else:
        raise TypeError(f"{name} must be SparseCodes or a scipy sparse matrix, got {type(codes).__name__}")
    keep = vals != 0
    if not keep.all():
        rows, lats, vals = rows[keep], lats[keep], vals[keep]
    return rows, lats, np.ascontiguousarray(vals, dtype=np.float32), n_rows, dim
