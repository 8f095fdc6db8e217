"""Codes and sizes the vector-database adapter tests share (tests/index/test_qdrant.py, tests/index/test_milvus.py)."""

from __future__ import annotations

import numpy as np
import torch

from csrv2.head.codes import SparseCodes

N_REAL, N_QUERIES, N_TWICE = 10_000, 20, 500  # database texts, held-out query texts, database rows stored twice


def codes_of(idx, val, dim: int) -> SparseCodes:
    return SparseCodes(torch.as_tensor(idx, dtype=torch.int64), torch.as_tensor(val, dtype=torch.float32), dim)


def random_codes(rng, n: int, dim: int, k: int) -> SparseCodes:
    """(n, k) codes: k distinct random latents per row, positive values, unit-normalised."""
    idx = np.stack([rng.choice(dim, k, replace=False) for _ in range(n)])
    return codes_of(idx, rng.uniform(0.1, 1, (n, k)), dim).normalized()
