"""Latent usage figures (csrv2.evaluation.usage) against naive loops over hand-made codes."""

import numpy as np
import pytest

from csrv2.evaluation.usage import latent_counts, usage_stats


def naive_counts(indices, values, hidden):
    counts = [0] * hidden
    for row_i, row_v in zip(indices, values):
        for j, v in zip(row_i, row_v):
            if v > 0:
                counts[j] += 1
    return counts


def test_counts_skip_zero_values_and_equal_a_loop():
    rng = np.random.default_rng(0)
    indices = rng.integers(0, 50, size=(200, 3))
    values = np.where(rng.random((200, 3)) < 0.2, 0.0, rng.random((200, 3)))
    assert latent_counts(indices, values, 50).tolist() == naive_counts(indices, values, 50)


def test_stats_on_a_hand_computed_example():
    counts = np.array([6, 2, 2, 0, 0, 0, 0, 0, 0, 0])  # shares .6 .2 .2; h = 10 → rare below 0.01
    got = usage_stats(counts, k=2, rows=5)
    n_eff = 1 / (0.36 + 0.04 + 0.04)
    assert got["dead_pct"] == 70.0 and got["rare_pct"] == 70.0 and got["rows"] == 5
    assert got["n_eff"] == pytest.approx(n_eff)
    assert got["postings_fraction"] == pytest.approx(4 / n_eff)


def test_uniform_usage_has_n_eff_h_and_the_postings_share_an_index_reads():
    """k²/n_eff is the mean share of the database a query's posting lists hold, queries drawn like documents."""
    rng = np.random.default_rng(1)
    h, k, n = 64, 2, 4000
    p = rng.dirichlet(np.ones(h) * 0.3)
    indices = np.stack([rng.choice(h, size=k, replace=False, p=p) for _ in range(n)])
    counts = latent_counts(indices, np.ones_like(indices, dtype=float), h)
    stats = usage_stats(counts, k)
    postings = {j: set(np.flatnonzero((indices == j).any(1))) for j in range(h)}
    touched = np.mean([sum(len(postings[j]) for j in row) / n for row in indices[:500]])
    assert stats["postings_fraction"] == pytest.approx(touched, rel=0.1)
    assert usage_stats(np.full(h, 7), k)["n_eff"] == pytest.approx(h)
    assert usage_stats(np.zeros(h), k)["dead_pct"] == 100.0
