"""How a head uses its latents on a corpus U: the figures that say whether its codes are alive and cheap to search.

    counts = latent_counts(codes.indices, codes.values, hidden)    # (h,) rows of U in which each latent is active
    usage_stats(counts, k)  →  {dead_pct, n_eff, postings_fraction, rare_pct, rows}

With s_j = counts_j / Σ counts (latent j's share of all activations):
  dead_pct           % of latents active in no row of U
  n_eff              1 / Σ_j s_j²: the number of equally used latents with the same concentration (h when uniform)
  postings_fraction  k² / n_eff: the expected share of the database an inverted index reads per query, when queries
                     and documents use latents alike (each of a query's k latents has a posting list of N·k·s_j rows)
  rare_pct           % of latents with share below 0.1 / h (dead ones included)
Counting needs enough rows to mean something: with N_U · k activations over h latents, a latent used uniformly is
expected N_U·k/h times, so dead_pct is read on a corpus with N_U · k ≥ 20 · h (csrv2.experiments.research.folds checks it).
"""

from __future__ import annotations

import numpy as np


def latent_counts(indices: np.ndarray, values: np.ndarray, hidden: int) -> np.ndarray:
    """indices, values (N, k) of packed codes → (h,) int64: rows in which each latent has a positive value."""
    indices, values = np.asarray(indices), np.asarray(values)
    return np.bincount(indices[values > 0].reshape(-1), minlength=hidden).astype(np.int64)


def usage_stats(counts: np.ndarray, k: int, rows: int | None = None) -> dict:
    """counts (h,) from latent_counts at sparsity k → the module docstring's figures (shares in %)."""
    counts = np.asarray(counts, dtype=np.float64)
    hidden, total = len(counts), counts.sum()
    if total == 0:
        return {"dead_pct": 100.0, "n_eff": 0.0, "postings_fraction": float("nan"), "rare_pct": 100.0, "rows": rows}
    share = counts / total
    n_eff = 1.0 / float(np.sum(share**2))
    return {
        "dead_pct": 100.0 * float(np.mean(counts == 0)),
        "n_eff": n_eff,
        "postings_fraction": k * k / n_eff,
        "rare_pct": 100.0 * float(np.mean(share < 0.1 / hidden)),
        "rows": rows,
    }
