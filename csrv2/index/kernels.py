"""The numba kernels of SparseIndex (csrv2.index.sparse_index) and their numpy fallback; the layout and the algorithm are described
in csrv2.index.sparse_index's docstring. Compiled on first use and cached on disk.
"""

from __future__ import annotations

import numpy as np

try:  # numba makes search ~10-100× faster than the numpy fallback
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None
    HAVE_NUMBA = False


def _njit(**kwargs):
    if HAVE_NUMBA:
        return numba.njit(cache=True, nogil=True, **kwargs)
    return lambda f: f


@_njit()
def counting_sort(rows, lats, vals, dim):
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
def _offer(hs, hi, n, top, s, d):
    """Offer (score s, doc d) to the size-`top` heap holding n entries; returns the new n."""
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
    return n


@_njit()
def _search_one(offsets, doc_ids, values, lat_max, lat_min, q_idx, q_val, acc, flag, touched, out_s, out_i):
    """One query: q_idx, q_val (k,) → out_s (top,) float32, out_i (top,) int64, best first.

    Scratch of this thread: acc (BLOCK,) float64 and flag (BLOCK,) uint8 (both all zero between calls),
    touched (BLOCK + 1,) int32.
    The query's posting lists (each ascending in doc id) are walked together one block of BLOCK
    document ids at a time, so the accumulator stays cache-resident; only blocks holding a posting are visited, so
    the work is O(postings touched + k · blocks visited), never O(N). Within a block the shorter lists are summed
    into the accumulator first; the longest list (usually most of the postings: trained codes use latents very
    unequally) is then streamed once, each of its documents scored and offered to the heap on the spot, adding
    what the shorter lists left in the accumulator; last, the documents only the shorter lists hold are offered.
    Once the heap is full and even the best document of the longest list alone (its weight times the latent's
    largest, or for a negative weight smallest, value: lat_max / lat_min (dim,)) scores no more than the heap's
    worst, that list's documents the shorter lists do not hold cannot enter: for them only the doc id is read.

    Bounds: q_idx must lie in [0, dim) (csrv2.index.inputs checks every query). Everything read from the index is
    guarded, so that a corrupted index opened with verify=False can rank wrongly but never read or write out of
    bounds: a list's [start, end) is clipped to [0, nnz] (O(k) per query), a doc id below the current block (out of
    order) is skipped, and the block scratch `touched` has BLOCK + 1 slots (the last posting of a block whose BLOCK
    documents are all flagged writes one past BLOCK before the flag test).
    """
    top = out_s.shape[0]
    nnz = doc_ids.shape[0]
    ptr = np.empty((3, q_idx.shape[0]), np.int64)  # per active list: cursor, end, latent
    weights = np.empty(q_idx.shape[0], np.float64)
    n_lists = 0
    for j in range(q_idx.shape[0]):  # active latents with non-empty posting lists
        lat = q_idx[j]
        start = min(max(offsets[lat], 0), nnz)
        end = min(max(offsets[lat + 1], 0), nnz)
        if q_val[j] != 0 and end > start:
            ptr[0, n_lists] = start
            ptr[1, n_lists] = end
            ptr[2, n_lists] = lat
            weights[n_lists] = q_val[j]
            n_lists += 1
    # Longest list first: it is the one streamed straight into the heap.
    for a in range(1, n_lists):
        b = a
        while b > 0 and ptr[1, b] - ptr[0, b] > ptr[1, b - 1] - ptr[0, b - 1]:
            for r in range(3):
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
        for j in range(1, n_lists):  # the shorter lists: summed into the block accumulator
            w = weights[j]
            p = ptr[0, j]
            e = ptr[1, j]
            while p < e:
                d = doc_ids[p]
                if d >= stop:
                    break
                loc = d - base
                if loc >= 0:  # always, unless the list is out of order (a corrupted index)
                    # Branch-free: whether a doc was seen before in this block is unpredictable at large k.
                    acc[loc] += w * values[p]
                    touched[n_cand] = loc
                    n_cand += 1 - flag[loc]
                    flag[loc] = 1
                p += 1
            ptr[0, j] = p
        if n_lists:  # the longest list: each document scored once, here (a list holds a doc once)
            w = weights[0]
            p = ptr[0, 0]
            e = ptr[1, 0]
            long_lat = ptr[2, 0]
            # Pruning is exact: a document of the longest list alone scores float32(w · v) ≤ alone_best ≤ the
            # heap's worst, and it cannot win a tie either (its id is above every id already in the heap).
            alone_best = np.float32(max(0.0, w * (lat_max[long_lat] if w > 0 else lat_min[long_lat])))
            if n == top and alone_best <= hs[0]:
                while p < e:
                    d = doc_ids[p]
                    if d >= stop:
                        break
                    loc = d - base
                    if loc >= 0 and flag[loc]:
                        s = np.float32(acc[loc] + w * values[p])
                        flag[loc] = 2
                        if _worse(hs[0], hi[0], s, d):
                            n = _offer(hs, hi, n, top, s, d)
                    p += 1
            while p < e:
                d = doc_ids[p]
                if d >= stop:
                    break
                loc = d - base
                if loc < 0:  # out of order (a corrupted index): skipped
                    p += 1
                    continue
                s64 = w * values[p]
                if flag[loc]:  # the shorter lists hold it too: their sum first, as the accumulator has it
                    s64 = acc[loc] + s64
                    flag[loc] = 2
                s = np.float32(s64)
                if n < top or _worse(hs[0], hi[0], s, d):  # most documents fall below the heap's worst
                    n = _offer(hs, hi, n, top, s, d)
                p += 1
            ptr[0, 0] = p
        for c in range(n_cand):  # documents of the shorter lists: offered unless the longest list held them
            loc = touched[c]
            if flag[loc] == 1:
                s = np.float32(acc[loc])
                if n < top or _worse(hs[0], hi[0], s, base + loc):
                    n = _offer(hs, hi, n, top, s, base + loc)
            flag[loc] = 0
            acc[loc] = 0.0
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
def search_serial(offsets, doc_ids, values, lat_max, lat_min, q_idx, q_val, acc, flag, touched, out_s, out_i):
    """Queries (Q, k) one after another on scratch row 0."""
    for q in range(q_idx.shape[0]):
        _search_one(
            offsets,
            doc_ids,
            values,
            lat_max,
            lat_min,
            q_idx[q],
            q_val[q],
            acc[0],
            flag[0],
            touched[0],
            out_s[q],
            out_i[q],
        )


if HAVE_NUMBA:

    @numba.njit(cache=True, nogil=True, parallel=True)
    def search_parallel(
        offsets, doc_ids, values, lat_max, lat_min, q_idx, q_val, acc, flag, touched, out_s, out_i, chunk
    ):
        """Queries (Q, k) in chunks of `chunk` over numba's threads; each thread uses its own scratch row."""
        n_chunks = (q_idx.shape[0] + chunk - 1) // chunk
        for c in numba.prange(n_chunks):
            t = numba.get_thread_id()
            for q in range(c * chunk, min((c + 1) * chunk, q_idx.shape[0])):
                _search_one(
                    offsets,
                    doc_ids,
                    values,
                    lat_max,
                    lat_min,
                    q_idx[q],
                    q_val[q],
                    acc[t],
                    flag[t],
                    touched[t],
                    out_s[q],
                    out_i[q],
                )


# ---------------------------------------------------------------------------------------------------
# numpy fallback (no numba): identical results, slower
# ---------------------------------------------------------------------------------------------------
def search_one_numpy(offsets, doc_ids, values, q_idx, q_val, out_s, out_i):
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


@_njit()
def first_bad_rows(idx, val, dim):
    """(first row with a NaN / inf value, first row giving an active latent twice, first row with a latent outside
    [0, dim)), -1 where none: one pass with k² comparisons per row (k ≤ a few dozen), cheap enough for every
    single-query search. idx and val must have one shape (csrv2.index.inputs.check_packed checks it first)."""
    bad_value, repeat, outside = -1, -1, -1
    for i in range(idx.shape[0]):
        for a in range(idx.shape[1]):
            v = val[i, a]
            if outside < 0 and (idx[i, a] < 0 or idx[i, a] >= dim):
                outside = i
            if bad_value < 0 and not np.isfinite(v):
                bad_value = i
            if repeat < 0 and v != 0:
                for b in range(a + 1, idx.shape[1]):
                    if val[i, b] != 0 and idx[i, b] == idx[i, a]:
                        repeat = i
        if bad_value >= 0 and repeat >= 0 and outside >= 0:
            break
    return bad_value, repeat, outside


@_njit()
def counting_sort_packed(idx, val, dim):
    """Packed codes idx, val (N, k) → CSC arrays (offsets (dim + 1,), doc_ids, values) of their non-zeros, doc ids
    ascending within each latent: no (N · k,) row / latent temporaries (csrv2.index.build)."""
    n, k = idx.shape
    offsets = np.zeros(dim + 1, np.int64)
    for i in range(n):
        for j in range(k):
            if val[i, j] != 0:
                offsets[idx[i, j] + 1] += 1
    for lat in range(dim):
        offsets[lat + 1] += offsets[lat]
    pos = offsets[:-1].copy()
    doc_ids = np.empty(offsets[dim], np.int32)
    values = np.empty(offsets[dim], np.float32)
    for i in range(n):
        for j in range(k):
            v = val[i, j]
            if v != 0:
                p = pos[idx[i, j]]
                doc_ids[p] = i
                values[p] = v
                pos[idx[i, j]] = p + 1
    return offsets, doc_ids, values
