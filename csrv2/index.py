"""Exact top-n search over k-sparse codes: an inverted index (`SparseIndex`) and a dense baseline (`DenseIndex`).

Layout (CSC of the (N, h) database matrix D):
    offsets (h + 1,) int64      postings of latent l are [offsets[l], offsets[l+1])
    doc_ids (nnz,)   int32      document ids, ascending within each latent
    values  (nnz,)   float32    D[doc, l]

A query q (≤ k active latents) scores only documents on its posting lists:
    score(doc) = Σ_{l : q_l ≠ 0} q_l · D[doc, l]
The work per query is the number of postings touched, P(q) = Σ_{l ∈ q} |postings(l)|, never O(N). Because every
list is sorted by doc id, the query's lists are walked together one block of BLOCK doc ids at a time into a small
per-thread accumulator that stays in L2 cache (a dense N-long accumulator would miss cache on every posting at
N = 1M); only blocks holding a posting are visited. Candidates are reduced with a size-`top` heap; ties go to the
lower document id.

Products of float32 are exact in float64 and sums of ≤ k of them almost so; scores are rounded to float32 at the
end, so results do not depend on the order of a query's latents and equal a float64 brute force `Q @ Dᵀ` rounded to
float32.

Results equal brute force over all N documents: documents sharing no active latent with the query score exactly 0
and are ranked like any other (by id among equal scores). The kernels score only the candidates; when a query has
fewer than `top` candidates, or its worst kept score is ≤ 0 (possible only with zero or negative values), the
lowest-id non-candidates are merged in with score 0 — found from the query's posting lists, never by an O(N) scan
unless the candidates themselves cover the low ids. Only an index with fewer than `top` documents pads the row with
score -inf and id -1.

The kernels use numba (a dependency of csrv2) and run in parallel over queries. Where numba cannot be installed
(a new Python it has no wheel for yet), a numpy path gives identical results, more slowly.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

try:  # numba makes search ~10-100× faster than the numpy fallback
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None
    HAVE_NUMBA = False

from csrv2.codes import SparseCodes
from csrv2.files import atomic_write_dir, sha256_file

FORMAT = "csrv2.SparseIndex/1"


# ---------------------------------------------------------------------------------------------------
# numba kernels (compiled on first use, cached on disk)
# ---------------------------------------------------------------------------------------------------
def _njit(**kwargs):
    if HAVE_NUMBA:
        return numba.njit(cache=True, nogil=True, **kwargs)
    return lambda f: f


@_njit()
def _counting_sort(rows, lats, vals, dim):
    """Postings grouped by latent, doc ids ascending (rows must be non-decreasing). (nnz,) each → CSC arrays."""
    nnz = rows.shape[0]
    offsets = np.zeros(dim + 1, np.int64)
    for j in range(nnz):
        offsets[lats[j] + 1] += 1
    for lat in range(dim):
        offsets[lat + 1] += offsets[lat]
    pos = offsets[:-1].copy()
    doc_ids = np.empty(nnz, np.int32)
    values = np.empty(nnz, np.float32)
    for j in range(nnz):
        p = pos[lats[j]]
        doc_ids[p] = rows[j]
        values[p] = vals[j]
        pos[lats[j]] = p + 1
    return offsets, doc_ids, values


@_njit(inline="always")
def _worse(s1, i1, s2, i2):
    """True when (s1, i1) ranks below (s2, i2): lower score, or equal score and higher id."""
    return s1 < s2 or (s1 == s2 and i1 > i2)


@_njit()
def _sift_down(hs, hi, n, pos):
    """Restore the heap (root = worst entry) below `pos` for a heap of n entries."""
    while True:
        child = 2 * pos + 1
        if child >= n:
            return
        if child + 1 < n and _worse(hs[child + 1], hi[child + 1], hs[child], hi[child]):
            child += 1
        if _worse(hs[child], hi[child], hs[pos], hi[pos]):
            hs[pos], hs[child] = hs[child], hs[pos]
            hi[pos], hi[child] = hi[child], hi[pos]
            pos = child
        else:
            return


BLOCK = 16384  # documents per accumulator block: 16384 × (8 + 1 + 4) bytes ≈ 208 KiB stays in L2


@_njit()
def _search_one(offsets, doc_ids, values, q_idx, q_val, acc, flag, touched, out_s, out_i):
    """One query: q_idx, q_val (k,) → out_s (top,) float32, out_i (top,) int64, best first.

    Scratch of this thread: acc (BLOCK,) float64 and flag (BLOCK,) uint8 (both all zero between calls),
    touched (BLOCK,) int32.
    The query's posting lists (each ascending in doc id) are walked together one block of BLOCK
    document ids at a time, so the accumulator stays cache-resident; only blocks holding a posting are visited, so
    the work is O(postings touched + k · blocks visited), never O(N).
    """
    top = out_s.shape[0]
    ptr = np.empty((2, q_idx.shape[0]), np.int64)  # per active list: cursor, end
    weights = np.empty(q_idx.shape[0], np.float64)
    n_lists = 0
    for j in range(q_idx.shape[0]):  # active latents with non-empty posting lists
        lat = q_idx[j]
        if q_val[j] != 0 and offsets[lat + 1] > offsets[lat]:
            ptr[0, n_lists] = offsets[lat]
            ptr[1, n_lists] = offsets[lat + 1]
            weights[n_lists] = q_val[j]
            n_lists += 1
    # Longest list first: within a block the first list needs no "seen before?" test (see below).
    for a in range(1, n_lists):
        b = a
        while b > 0 and ptr[1, b] - ptr[0, b] > ptr[1, b - 1] - ptr[0, b - 1]:
            for r in range(2):
                ptr[r, b], ptr[r, b - 1] = ptr[r, b - 1], ptr[r, b]
            weights[b], weights[b - 1] = weights[b - 1], weights[b]
            b -= 1
    hs = np.empty(top, np.float32)  # size-`top` heap, root = worst kept (score, id)
    hi = np.empty(top, np.int64)
    n = 0
    while True:
        first = np.int64(2**62)  # smallest unread doc id over the lists → the next block to visit
        for j in range(n_lists):
            if ptr[0, j] < ptr[1, j] and doc_ids[ptr[0, j]] < first:
                first = doc_ids[ptr[0, j]]
        if first == 2**62:
            break
        base = first - first % BLOCK
        stop = base + BLOCK
        n_cand = 0
        # First list: a list holds a doc once, so every posting is a new candidate of this block.
        w = weights[0]
        p = ptr[0, 0]
        e = ptr[1, 0]
        while p < e:
            d = doc_ids[p]
            if d >= stop:
                break
            loc = d - base
            acc[loc] = w * values[p]
            touched[n_cand] = loc
            n_cand += 1
            flag[loc] = 1
            p += 1
        ptr[0, 0] = p
        for j in range(1, n_lists):
            w = weights[j]
            p = ptr[0, j]
            e = ptr[1, j]
            while p < e:
                d = doc_ids[p]
                if d >= stop:
                    break
                loc = d - base
                # Branch-free: whether a doc was seen before in this block is unpredictable at large k.
                acc[loc] += w * values[p]
                touched[n_cand] = loc
                n_cand += 1 - flag[loc]
                flag[loc] = 1
                p += 1
            ptr[0, j] = p
        for c in range(n_cand):
            loc = touched[c]
            flag[loc] = 0
            s = np.float32(acc[loc])
            acc[loc] = 0.0
            d = base + loc
            if n < top:
                hs[n] = s
                hi[n] = d
                n += 1
                if n == top:  # heapify once full
                    for pos in range(top // 2 - 1, -1, -1):
                        _sift_down(hs, hi, top, pos)
            elif _worse(hs[0], hi[0], s, d):
                hs[0] = s
                hi[0] = d
                _sift_down(hs, hi, top, 0)
    if n < top:
        for pos in range(n // 2 - 1, -1, -1):
            _sift_down(hs, hi, n, pos)
    for slot in range(n - 1, -1, -1):  # pop the worst first into the back of the row
        out_s[slot] = hs[0]
        out_i[slot] = hi[0]
        hs[0] = hs[slot]
        hi[0] = hi[slot]
        _sift_down(hs, hi, slot, 0)
    for slot in range(n, top):
        out_s[slot] = -np.inf
        out_i[slot] = -1


@_njit()
def _search_serial(offsets, doc_ids, values, q_idx, q_val, acc, flag, touched, out_s, out_i):
    """Queries (Q, k) one after another on scratch row 0."""
    for q in range(q_idx.shape[0]):
        _search_one(offsets, doc_ids, values, q_idx[q], q_val[q], acc[0], flag[0], touched[0], out_s[q], out_i[q])


if HAVE_NUMBA:

    @numba.njit(cache=True, nogil=True, parallel=True)
    def _search_parallel(offsets, doc_ids, values, q_idx, q_val, acc, flag, touched, out_s, out_i, chunk):
        """Queries (Q, k) in chunks of `chunk` over numba's threads; each thread uses its own scratch row."""
        n_chunks = (q_idx.shape[0] + chunk - 1) // chunk
        for c in numba.prange(n_chunks):
            t = numba.get_thread_id()
            for q in range(c * chunk, min((c + 1) * chunk, q_idx.shape[0])):
                _search_one(
                    offsets, doc_ids, values, q_idx[q], q_val[q], acc[t], flag[t], touched[t], out_s[q], out_i[q]
                )


# ---------------------------------------------------------------------------------------------------
# numpy fallback (no numba): identical results, slower
# ---------------------------------------------------------------------------------------------------
def _search_one_numpy(offsets, doc_ids, values, q_idx, q_val, out_s, out_i):
    keep = q_val != 0
    q_idx, q_val = q_idx[keep], q_val[keep]
    top = out_s.shape[0]
    out_s[:] = -np.inf
    out_i[:] = -1
    if not len(q_idx):
        return
    ids = np.concatenate([doc_ids[offsets[lat] : offsets[lat + 1]] for lat in q_idx])
    contrib = np.concatenate(
        [values[offsets[lat] : offsets[lat + 1]].astype(np.float64) * float(w) for lat, w in zip(q_idx, q_val)]
    )
    if not len(ids):
        return
    cand, inverse = np.unique(ids, return_inverse=True)  # cand ascending
    scores = np.bincount(inverse, weights=contrib).astype(np.float32)
    order = np.lexsort((cand, -scores))[:top]  # score descending, then id ascending
    out_s[: len(order)] = scores[order]
    out_i[: len(order)] = cand[order]


# ---------------------------------------------------------------------------------------------------
def _as_packed(codes, dim: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """SparseCodes | scipy sparse (Q, dim) → (Q, k) int64 indices and (Q, k) float32 values (0 = inactive slot)."""
    if isinstance(codes, SparseCodes):
        if codes.dim != dim:
            raise ValueError(f"{name}: codes have dim {codes.dim}, the index has dim {dim}")
        idx = codes.indices.detach().cpu().numpy().astype(np.int64, copy=False)
        val = codes.values.detach().cpu().to(torch.float32).numpy()
        idx, val = np.ascontiguousarray(idx), np.ascontiguousarray(val)
        _check_packed(idx, val, name)
        return idx, val
    if scipy.sparse.issparse(codes):
        matrix = _checked_csr(codes, name)
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


@_njit()
def _first_bad_rows(idx, val):
    """(first row with a NaN / inf value, first row giving an active latent twice), -1 where none: one pass with
    k² comparisons per row (k ≤ a few dozen), cheap enough for every single-query search."""
    bad_value, repeat = -1, -1
    for i in range(idx.shape[0]):
        for a in range(idx.shape[1]):
            v = val[i, a]
            if bad_value < 0 and not np.isfinite(v):
                bad_value = i
            if repeat < 0 and v != 0:
                for b in range(a + 1, idx.shape[1]):
                    if val[i, b] != 0 and idx[i, b] == idx[i, a]:
                        repeat = i
        if bad_value >= 0 and repeat >= 0:
            break
    return bad_value, repeat


def _check_packed(idx: np.ndarray, val: np.ndarray, name: str) -> None:
    """Refuse NaN / inf values and a row that gives one latent twice among its active (non-zero) slots: the dot
    product of such a row is ambiguous, and TopK never makes one. Zero slots may repeat (padding)."""
    if HAVE_NUMBA:
        bad_value, repeat = _first_bad_rows(idx, val)
    else:  # the same, vectorised: inactive slots get distinct negative stand-ins so only active latents collide
        finite = np.isfinite(val).all(axis=1)
        ordered = np.sort(np.where(val != 0, idx, -1 - np.arange(idx.shape[1])), axis=1)
        repeats = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        bad_value = int(np.argmin(finite)) if not finite.all() else -1
        repeat = int(np.argmax(repeats)) if repeats.any() else -1
    if bad_value >= 0:
        raise ValueError(f"{name}: row {bad_value} holds NaN or inf values")
    if repeat >= 0:
        raise ValueError(f"{name}: row {repeat} gives a latent twice; each active latent may appear once per row")


def _checked_csr(codes, name: str) -> scipy.sparse.csr_matrix:
    """A float32 CSR copy of a scipy matrix; NaN / inf or a latent stored twice in a row (duplicate entries) refused."""
    matrix = scipy.sparse.csr_matrix(codes, dtype=np.float32, copy=True)
    if not np.isfinite(matrix.data).all():
        raise ValueError(f"{name}: the matrix holds NaN or inf values")
    if not matrix.has_canonical_format:  # unsorted or duplicated column indices: find out which
        merged = matrix.copy()
        merged.sum_duplicates()
        if merged.nnz != matrix.nnz:
            raise ValueError(f"{name}: a row stores one latent twice (duplicate entries); sum them first")
        matrix = merged
    return matrix


def _postings_of(codes, dim: int | None, name: str):
    """Database codes → (rows, latents, values, n_rows, dim) of their non-zeros, rows non-decreasing."""
    if isinstance(codes, SparseCodes):
        dim = codes.dim if dim is None else dim
        idx, val = _as_packed(codes, dim, name)
        rows = np.repeat(np.arange(idx.shape[0], dtype=np.int64), idx.shape[1])
        lats, vals = idx.ravel(), val.ravel()
        n_rows = idx.shape[0]
    elif scipy.sparse.issparse(codes):
        matrix = _checked_csr(codes, name)
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


def _group_by_latent(rows, lats, vals, dim):
    if HAVE_NUMBA:
        return _counting_sort(rows, lats, vals, dim)
    order = np.argsort(lats, kind="stable")  # stable keeps doc ids ascending within a latent
    offsets = np.zeros(dim + 1, np.int64)
    np.cumsum(np.bincount(lats, minlength=dim), out=offsets[1:])
    return offsets, rows[order].astype(np.int32), vals[order]


class SparseIndex:
    """Inverted index over k-sparse codes; exact top-n by dot product (cosine when the codes are normalised).

    >>> index = SparseIndex.build(doc_codes.normalized())           # SparseCodes (N, k) or scipy CSR (N, h)
    >>> scores, ids = index.search(query_codes.normalized(), top=10)  # (Q, 10) float32, (Q, 10) int64
    """

    def __init__(self, offsets: np.ndarray, doc_ids: np.ndarray, values: np.ndarray, n_docs: int):
        if offsets.ndim != 1 or offsets.shape[0] < 2 or int(offsets[-1]) != doc_ids.shape[0]:
            raise ValueError("SparseIndex: offsets must be (dim + 1,) with offsets[-1] == len(doc_ids)")
        if doc_ids.shape != values.shape:
            raise ValueError(f"SparseIndex: doc_ids {doc_ids.shape} and values {values.shape} differ in shape")
        if n_docs >= 2**31 - 1:
            raise ValueError(f"SparseIndex: n_docs={n_docs} does not fit int32 document ids")
        self.offsets, self.doc_ids, self.values = offsets, doc_ids, values
        self.n_docs = int(n_docs)
        self.dim = offsets.shape[0] - 1
        self._lock = threading.Lock()  # the scratch buffers are shared by all calls
        self._scratch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.build_seconds = 0.0

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def build(cls, codes: SparseCodes | scipy.sparse.spmatrix, dim: int | None = None) -> SparseIndex:
        """Index database codes: SparseCodes (N, k) or a scipy sparse (N, h) matrix; zeros are dropped."""
        start = time.perf_counter()
        rows, lats, vals, n_rows, dim = _postings_of(codes, dim, "SparseIndex.build(codes)")
        offsets, doc_ids, values = _group_by_latent(rows, lats, vals, dim)
        index = cls(offsets, doc_ids, values, n_rows)
        index.build_seconds = time.perf_counter() - start
        return index

    def add(self, codes: SparseCodes | scipy.sparse.spmatrix) -> np.ndarray:
        """Append documents; they get ids n_docs, n_docs + 1, …; returns those ids (M,) int64."""
        rows, lats, vals, n_new, _ = _postings_of(codes, self.dim, "SparseIndex.add(codes)")
        if self.n_docs + n_new >= 2**31 - 1:
            raise ValueError("SparseIndex.add: more than 2^31 - 1 documents do not fit int32 ids")
        new_off, new_ids, new_vals = _group_by_latent(rows + self.n_docs, lats, vals, self.dim)
        old_counts, new_counts = np.diff(self.offsets), np.diff(new_off)
        offsets = self.offsets + new_off  # each latent's list grows by its new postings
        # Within each latent: old postings first, then the new ones (their ids are all larger: order kept).
        old_pos = np.arange(len(self.doc_ids)) + np.repeat(new_off[:-1], old_counts)
        new_pos = np.arange(len(new_ids)) + np.repeat(self.offsets[1:], new_counts)
        doc_ids = np.empty(offsets[-1], np.int32)
        values = np.empty(offsets[-1], np.float32)
        doc_ids[old_pos], values[old_pos] = self.doc_ids, self.values
        doc_ids[new_pos], values[new_pos] = new_ids, new_vals
        first = self.n_docs
        self.offsets, self.doc_ids, self.values = offsets, doc_ids, values
        self.n_docs += n_new
        self._scratch = None
        return np.arange(first, self.n_docs, dtype=np.int64)

    # -- search ----------------------------------------------------------------------------------
    def search(self, queries: SparseCodes | scipy.sparse.spmatrix, top: int = 10, threads: int | None = None):
        """Exact top-`top` documents by dot product for each query.

        queries: SparseCodes (Q, k) or scipy sparse (Q, h). Returns (scores (Q, top) float32, ids (Q, top) int64),
        best first, ties by lower id, equal to brute force `Q @ Dᵀ` (documents sharing no latent score 0); padded
        with (-inf, -1) only when the index holds fewer than `top` documents. torch tensors when the queries
        are SparseCodes, numpy arrays otherwise. threads: numba threads for Q > 1 (None = all).
        """
        if not isinstance(top, int | np.integer) or top < 1:
            raise ValueError(f"SparseIndex.search: top must be a positive int, got {top!r}")
        q_idx, q_val = _as_packed(queries, self.dim, "SparseIndex.search(queries)")
        n_q = q_idx.shape[0]
        out_s = np.empty((n_q, top), np.float32)
        out_i = np.empty((n_q, top), np.int64)
        if n_q and HAVE_NUMBA:
            self._search_numba(q_idx, q_val, out_s, out_i, threads)
        else:
            for q in range(n_q):
                _search_one_numpy(self.offsets, self.doc_ids, self.values, q_idx[q], q_val[q], out_s[q], out_i[q])
        # Rows whose kept scores do not all beat 0 may rank documents without a shared latent (score 0) higher.
        for q in np.flatnonzero((out_i[:, -1] < 0) | (out_s[:, -1] <= 0)):
            self._merge_zero_scores(q_idx[q], q_val[q], out_s[q], out_i[q])
        if isinstance(queries, SparseCodes):
            return torch.from_numpy(out_s), torch.from_numpy(out_i)
        return out_s, out_i

    def _merge_zero_scores(self, q_idx, q_val, out_s, out_i) -> None:
        """Merge the lowest-id documents sharing no latent with the query (score 0) into one result row (top,)."""
        top = out_s.shape[0]
        lists = [self.doc_ids[self.offsets[lat] : self.offsets[lat + 1]] for lat, w in zip(q_idx, q_val) if w != 0]
        bound = 2 * top
        while True:  # non-candidate ids below `bound`; double it until `top` of them are found (work ∝ candidates)
            bound = min(bound, self.n_docs)
            below = [lst[: np.searchsorted(lst, bound)] for lst in lists]
            cands = np.unique(np.concatenate(below)) if below else np.empty(0, np.int64)
            zeros = np.setdiff1d(np.arange(bound, dtype=np.int64), cands, assume_unique=True)[:top]
            if len(zeros) >= top or bound == self.n_docs:
                break
            bound *= 2
        kept = out_i >= 0
        ids = np.concatenate([out_i[kept], zeros])
        scores = np.concatenate([out_s[kept], np.zeros(len(zeros), np.float32)])
        order = np.lexsort((ids, -scores))[:top]
        out_s[:] = -np.inf
        out_i[:] = -1
        out_s[: len(order)] = scores[order]
        out_i[: len(order)] = ids[order]

    def _search_numba(self, q_idx, q_val, out_s, out_i, threads):
        n_threads = numba.config.NUMBA_NUM_THREADS if threads is None else max(1, min(threads, os.cpu_count() or 1))
        parallel = n_threads > 1 and q_idx.shape[0] > 1
        with self._lock:
            acc, flag, touched = self._get_scratch(numba.config.NUMBA_NUM_THREADS if parallel else 1)
            if parallel:
                previous = numba.get_num_threads()
                numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
                try:
                    chunk = max(1, min(64, q_idx.shape[0] // (8 * n_threads)))
                    _search_parallel(
                        self.offsets, self.doc_ids, self.values, q_idx, q_val, acc, flag, touched, out_s, out_i, chunk
                    )
                finally:
                    numba.set_num_threads(previous)
            else:
                _search_serial(self.offsets, self.doc_ids, self.values, q_idx, q_val, acc, flag, touched, out_s, out_i)

    def _get_scratch(self, rows: int):
        """Per-thread block scratch: acc (rows, BLOCK) float64, flag (rows, BLOCK) uint8, touched (rows, BLOCK) int32.

        Independent of N (≈ 208 KiB per thread); flags are all zero between searches.
        """
        if self._scratch is None or self._scratch[0].shape[0] < rows:
            self._scratch = (
                np.zeros((rows, BLOCK), np.float64),
                np.zeros((rows, BLOCK), np.uint8),
                np.zeros((rows, BLOCK), np.int32),
            )
        return self._scratch

    # -- statistics (cost model) -------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n_docs

    @property
    def nnz(self) -> int:
        return int(self.offsets[-1])

    def posting_lengths(self) -> np.ndarray:
        """(dim,) int64: documents on each latent's posting list."""
        return np.diff(self.offsets)

    def postings_touched(self, queries: SparseCodes | scipy.sparse.spmatrix) -> np.ndarray:
        """(Q,) int64: Σ over each query's active latents of their posting-list lengths (the work of a search)."""
        q_idx, q_val = _as_packed(queries, self.dim, "postings_touched(queries)")
        return np.where(q_val != 0, self.posting_lengths()[q_idx], 0).sum(axis=1)

    def memory_bytes(self) -> int:
        """Bytes of the index arrays (excluding the per-thread search scratch of 12 bytes × N per thread)."""
        return int(self.offsets.nbytes + self.doc_ids.nbytes + self.values.nbytes)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the folder `path` (offsets.npy, doc_ids.npy, values.npy, index.json) as one unit: the files go into a
        temporary folder that then takes the place of `path`, so a crash mid-save never leaves old and new mixed."""

        def write(tmp: Path) -> None:
            for name in ("offsets", "doc_ids", "values"):
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(self, name)))
            meta = {"format": FORMAT, "n_docs": self.n_docs, "dim": self.dim, "nnz": self.nnz}
            meta["sha256"] = {
                f"{name}.npy": sha256_file(tmp / f"{name}.npy") for name in ("offsets", "doc_ids", "values")
            }
            (tmp / "index.json").write_text(json.dumps(meta, indent=2) + "\n")

        atomic_write_dir(Path(path), write)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True, verify: bool = True) -> SparseIndex:
        """Open a saved index; mmap=True maps the arrays read-only (opening costs O(1), pages load on use).

        verify=True checks every file against the sha256 that save() recorded, then what the search kernels trust —
        dtypes, offsets non-decreasing within [0, nnz], every doc id in [0, n_docs), finite values — and names the
        file that breaks it (a bad offset would make a search read out of bounds; a flipped value bit would rank
        wrongly). It reads the files once (~1 s per GB); verify=False skips that for an index you wrote yourself
        (dtypes and shapes are always checked). numba compiles separate kernels for read-only arrays: the very first search on a
        mapped index in a fresh numba cache takes ~2 s to compile them; afterwards they load from the on-disk cache.
        """
        path = Path(path)
        meta_path = path / "index.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: expected a folder written by SparseIndex.save")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_path}: not valid JSON ({err})") from err
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format {meta.get('format')!r} is not {FORMAT!r}")
        if verify:
            for file_name, digest in meta.get("sha256", {}).items():  # absent in indexes saved before checksums
                file = path / file_name
                if not file.is_file():
                    raise FileNotFoundError(f"{file} not found: the index folder is incomplete")
                if sha256_file(file) != digest:
                    raise ValueError(f"{file} does not match the sha256 recorded in index.json (corrupted)")
        mode = "r" if mmap else None
        arrays = {}
        for name, dtype in (("offsets", np.int64), ("doc_ids", np.int32), ("values", np.float32)):
            file = path / f"{name}.npy"
            if not file.is_file():
                raise FileNotFoundError(f"{file} not found: the index folder is incomplete")
            arrays[name] = np.load(file, mmap_mode=mode)
            if arrays[name].dtype != dtype or arrays[name].ndim != 1:
                raise ValueError(
                    f"{file}: expected a 1-d {np.dtype(dtype)} array, got {arrays[name].dtype} {arrays[name].shape}"
                )
        offsets, doc_ids, values = arrays["offsets"], arrays["doc_ids"], arrays["values"]
        if offsets.shape[0] != meta["dim"] + 1 or doc_ids.shape[0] != meta["nnz"] or values.shape[0] != meta["nnz"]:
            raise ValueError(f"{path}: array shapes do not match index.json (dim {meta['dim']}, nnz {meta['nnz']})")
        if verify:
            _verify_postings(path, offsets, doc_ids, values, int(meta["n_docs"]))
        return cls(offsets, doc_ids, values, meta["n_docs"])


def _verify_postings(path: Path, offsets: np.ndarray, doc_ids: np.ndarray, values: np.ndarray, n_docs: int) -> None:
    """What the kernels index with must be in range: a corrupted file is named, never searched."""
    nnz = doc_ids.shape[0]
    if offsets[0] != 0 or offsets[-1] != nnz or (np.diff(offsets) < 0).any():
        raise ValueError(f"{path / 'offsets.npy'}: offsets must rise from 0 to nnz={nnz} without going down")
    if nnz and (int(doc_ids.min()) < 0 or int(doc_ids.max()) >= n_docs):
        raise ValueError(f"{path / 'doc_ids.npy'}: document ids must lie in [0, n_docs={n_docs})")
    if nnz and not np.isfinite(values).all():
        raise ValueError(f"{path / 'values.npy'}: holds NaN or inf")


class DenseIndex:
    """Exact dense inner-product top-n, the reference dense search is checked against (no faiss needed).

    >>> index = DenseIndex(vectors)                      # (N, d) float32, kept as given (no copy when contiguous)
    >>> scores, ids = index.search(queries, top=10)      # (Q, 10) float32, (Q, 10) int64, best first

    Scores are float64 products rounded once to float32, so results do not depend on BLAS blocking and equal a
    float64 brute force `Q @ Dᵀ` rounded to float32; ties go to the lower id (as in SparseIndex). Only an index with
    fewer than `top` vectors pads a row with (-inf, -1). Memory beyond the vectors: one (q_block, ROWS_PER_BLOCK)
    float64 block of scores, never (Q, N).
    """

    ROWS_PER_BLOCK = 16384  # database rows scored at a time: (q_block, 16384) float64 scores

    def __init__(self, vectors: np.ndarray):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"DenseIndex: vectors must be (N, d), got shape {vectors.shape}")
        self.vectors = vectors
        self.dim = vectors.shape[1]

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def memory_bytes(self) -> int:
        return int(self.vectors.nbytes)

    def search(self, queries: np.ndarray, top: int = 10, q_block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """(Q, d) → (scores (Q, top) float32, ids (Q, top) int64), best first, ties by lower id."""
        if not isinstance(top, int | np.integer) or top < 1:
            raise ValueError(f"DenseIndex.search: top must be a positive int, got {top!r}")
        queries = np.asarray(queries)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"DenseIndex.search: queries must be (Q, {self.dim}), got {queries.shape}")
        out_s = np.full((queries.shape[0], top), -np.inf, np.float32)
        out_i = np.full((queries.shape[0], top), -1, np.int64)
        for q0 in range(0, queries.shape[0], q_block):
            q = queries[q0 : q0 + q_block].astype(np.float64)  # (b, d)
            best_s, best_i = out_s[q0 : q0 + q_block], out_i[q0 : q0 + q_block]  # views, filled block by block
            for start in range(0, len(self), self.ROWS_PER_BLOCK):
                block = self.vectors[start : start + self.ROWS_PER_BLOCK]
                scores = (q @ block.T.astype(np.float64)).astype(np.float32)  # (b, B): rounded once
                keep = min(top, scores.shape[1])
                cut = -np.partition(-scores, keep - 1, axis=1)[:, keep - 1]  # (b,) the keep-th best score per row
                rows, cols = np.nonzero(scores >= cut[:, None])  # every score ≥ the cut: ties at the cut stay in
                self._merge_top(best_s, best_i, rows, cols + start, scores[rows, cols])
        return out_s, out_i

    @staticmethod
    def _merge_top(best_s: np.ndarray, best_i: np.ndarray, rows, ids, scores) -> None:
        """Merge candidates (rows, ids, scores) into the running best (b, top) in place: score desc, then lower id."""
        top = best_s.shape[1]
        kept_r, kept_c = np.nonzero(best_i >= 0)
        rows = np.concatenate([kept_r, rows])
        ids = np.concatenate([best_i[kept_r, kept_c], ids])
        scores = np.concatenate([best_s[kept_r, kept_c], scores])
        order = np.lexsort((ids, -scores, rows))  # grouped by row, best first within a row
        rows, ids, scores = rows[order], ids[order], scores[order]
        rank = np.arange(len(rows)) - np.searchsorted(rows, rows)  # position of each candidate within its row
        sel = rank < top
        best_s[rows[sel], rank[sel]] = scores[sel]
        best_i[rows[sel], rank[sel]] = ids[sel]
