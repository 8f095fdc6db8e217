"""Exact dense top-n by dot product (`DenseIndex`): the reference the retrieval benchmark checks faiss against."""

from __future__ import annotations

import numpy as np


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
