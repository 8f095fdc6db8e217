"""How a head uses its latents on a corpus U: the figures that say whether its codes are alive and cheap to search.

    counts = latent_counts(codes.indices, codes.values, hidden)    # (h,) rows of U in which each latent is active
    usage_figures(counts)   →  {dead_pct, n_eff, inflation, top1pct_share, usage_entropy, usage_entropy_norm}
    usage_stats(counts, k)  →  {dead_pct, n_eff, postings_fraction, rare_pct, rows}

usage_figures is the one definition of each figure: the evaluation table (csrv2.evaluation.scoring.sparsity_stats),
the fold protocol and the benchmark's index skew (csrv2.experiments.measure.skew_stats) all read it.

With s_j = counts_j / Σ counts (latent j's share of all activations):
  dead_pct           % of latents active in no row of U
  n_eff              1 / Σ_j s_j²: the number of equally used latents with the same concentration (h when uniform)
  inflation          h / n_eff = h · Σ_j s_j²: how much longer the posting lists a query reads are than under
                     uniform use (1 = uniform)
  top1pct_share      share of all activations taken by the most used 1 % of latents (ceil(h / 100) of them)
  usage_entropy      entropy (bits) of s; usage_entropy_norm divides it by log2 h
  postings_fraction  k² / n_eff: the expected share of the database an inverted index reads per query, when queries
                     and documents use latents alike (each of a query's k latents has a posting list of N·k·s_j rows)
  rare_pct           % of latents with share below 0.1 / h (dead ones included)
Counting needs enough rows to mean something: with N_U · k activations over h latents, a latent used uniformly is
expected N_U·k/h times, so dead_pct is read on a corpus with N_U · k ≥ 20 · h (csrv2.experiments.research.folds checks it).
"""

from __future__ import annotations

import math

import numpy as np


def latent_counts(indices: np.ndarray, values: np.ndarray, hidden: int) -> np.ndarray:
    """indices, values (N, k) of packed codes → (h,) int64: rows in which each latent has a positive value."""
    indices, values = np.asarray(indices), np.asarray(values)
    return np.bincount(indices[values > 0].reshape(-1), minlength=hidden).astype(np.int64)


def usage_figures(counts: np.ndarray) -> dict[str, float]:
    """counts (h,) of any non-negative usage (rows per latent, posting-list lengths) → the figures of the module
    docstring that need no k (dead_pct in %, top1pct_share as a fraction). All activations zero: every latent is
    dead, n_eff 0, and the ratios of a zero total are 0 (inflation: nan)."""
    counts = np.asarray(counts, dtype=np.float64)
    hidden, total = len(counts), counts.sum()
    share = counts / max(total, 1.0)  # (h,)
    used = share[share > 0]
    entropy = float(-(used * np.log2(used)).sum())
    n_eff = 1.0 / float(np.sum(share**2)) if total > 0 else 0.0
    top = max(1, math.ceil(hidden / 100))
    return {
        "dead_pct": 100.0 * float(np.mean(counts == 0)),
        "n_eff": n_eff,
        "inflation": hidden / n_eff if n_eff > 0 else float("nan"),
        "top1pct_share": float(np.sort(counts)[::-1][:top].sum() / max(total, 1.0)),
        "usage_entropy": entropy,
        "usage_entropy_norm": entropy / math.log2(hidden) if hidden > 1 else 0.0,
    }


def usage_stats(counts: np.ndarray, k: int, rows: int | None = None) -> dict:
    """counts (h,) from latent_counts at sparsity k → the fold protocol's figures (shares in %)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() == 0:
        return {"dead_pct": 100.0, "n_eff": 0.0, "postings_fraction": float("nan"), "rare_pct": 100.0, "rows": rows}
    figures = usage_figures(counts)
    share = counts / counts.sum()
    return {
        "dead_pct": figures["dead_pct"],
        "n_eff": figures["n_eff"],
        "postings_fraction": k * k / figures["n_eff"],
        "rare_pct": 100.0 * float(np.mean(share < 0.1 / len(counts))),
        "rows": rows,
    }
