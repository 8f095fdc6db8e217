"""k-sparse codes: the packed (indices, values) form a SparseHead produces, and its CSR conversion.

Row i of a (B, k) packed pair is Σ_j values[i, j] · e_{indices[i, j]} in R^dim. `packed_to_csr` is the one place
packed codes become a scipy CSR matrix (evaluation, the index and the benchmarks all go through it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch
from torch import Tensor


def packed_to_csr(indices: np.ndarray, values: np.ndarray, dim: int) -> scipy.sparse.csr_matrix:
    """indices (N, k) int, values (N, k) float → (N, dim) CSR: a latent given twice in a row is summed, zeros are
    dropped, column indices sorted. Values keep a float32/float64 dtype (other dtypes become float32)."""
    indices, values = np.asarray(indices), np.asarray(values)
    if indices.shape != values.shape or indices.ndim != 2:
        raise ValueError(f"packed codes: indices {indices.shape} and values {values.shape} must both be (N, k)")
    n, k = indices.shape
    dtype = values.dtype if values.dtype in (np.float32, np.float64) else np.float32
    # copy=True: sum_duplicates / eliminate_zeros compact the arrays in place, which must not reach the caller's
    # (a torch tensor's memory behind SparseCodes.to_scipy, or a slice the caller reads again)
    matrix = scipy.sparse.csr_matrix(
        (values.ravel().astype(dtype, copy=False), indices.ravel(), np.arange(0, n * k + 1, k)),
        shape=(n, dim),
        copy=True,
    )
    matrix.sum_duplicates()  # also sorts the column indices of each row
    matrix.eliminate_zeros()
    return matrix


@dataclass
class SparseCodes:
    """k-sparse codes packed as (indices, values); row i is Σ_j values[i, j] · e_{indices[i, j]} in R^dim.

    indices: (B, k) int64, values: (B, k) float. A zero value is an inactive slot (TopK may keep
    non-positive pre-activations, which the ReLU turns into zeros).
    """

    indices: Tensor
    values: Tensor
    dim: int

    def __post_init__(self):
        if self.indices.shape != self.values.shape or self.indices.dim() != 2:
            raise ValueError(
                f"SparseCodes: indices {tuple(self.indices.shape)} and values {tuple(self.values.shape)} "
                "must both be (B, k)"
            )
        if self.indices.numel() and (int(self.indices.min()) < 0 or int(self.indices.max()) >= self.dim):
            raise ValueError(f"SparseCodes: indices must lie in [0, dim={self.dim})")

    def __len__(self) -> int:
        return self.indices.shape[0]

    @property
    def k(self) -> int:
        return self.indices.shape[1]

    def to(self, device) -> SparseCodes:
        return SparseCodes(self.indices.to(device), self.values.to(device), self.dim)

    def to_dense(self) -> Tensor:
        """(B, dim) dense tensor; differentiable with respect to `values`."""
        dense = self.values.new_zeros(len(self), self.dim)
        return dense.scatter_add(1, self.indices, self.values)  # a latent given twice in a row is summed

    def to_scipy(self) -> scipy.sparse.csr_matrix:
        """(B, dim) scipy CSR matrix without explicit zeros (see `packed_to_csr`)."""
        return packed_to_csr(self.indices.cpu().numpy(), self.values.detach().cpu().numpy(), self.dim)

    def normalized(self, eps: float = 1e-12) -> SparseCodes:
        """Rows scaled to unit L2 norm (cosine scoring becomes a dot product)."""
        norms = self.values.norm(dim=1, keepdim=True).clamp_min(eps)
        return SparseCodes(self.indices, self.values / norms, self.dim)

    def __getitem__(self, rows) -> SparseCodes:
        return SparseCodes(self.indices[rows], self.values[rows], self.dim)

    @staticmethod
    def cat(parts: list[SparseCodes]) -> SparseCodes:
        dims = {p.dim for p in parts}
        ks = {p.k for p in parts}
        if len(dims) != 1 or len(ks) != 1:
            raise ValueError(f"SparseCodes.cat: parts differ in dim {dims} or k {ks}")
        return SparseCodes(torch.cat([p.indices for p in parts]), torch.cat([p.values for p in parts]), dims.pop())
