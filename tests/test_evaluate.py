"""Scoring functions against small hand-computed examples; all-k-in-one-pass against per-k encoding."""

import math

import numpy as np
import pytest
import scipy.sparse
import torch

from csrv2 import SparseHead
from csrv2.evaluate import (
    DenseFeaturizer,
    EmbeddedTask,
    PrefixFeaturizer,
    SparseFeaturizer,
    classification_accuracy,
    clustering_v_measure,
    evaluate_task,
    knn_top1,
    ndcg_at_k,
    normalize_rows,
    pair_average_precision,
    reranking_map,
    retrieval_ndcg,
    sparsity_stats,
    sts_spearman,
)


def test_ndcg_hand_computed():
    # Query 0: ranking d2, d0, d1; relevant d0 (gain 1) → DCG = 1/log2(3), IDCG = 1.
    # Query 1: relevant d1 (gain 2), d2 (gain 1); ranking d1, d2, d0 → ideal → 1.0.
    scores = np.array([[0.5, 0.1, 0.9], [0.0, 0.8, 0.3]])
    rel = [{0: 1.0}, {1: 2.0, 2: 1.0}]
    assert ndcg_at_k(scores, rel, k=10) == pytest.approx((1 / math.log2(3) + 1.0) / 2)
    # k = 1: query 0 misses (0), query 1 hits its best (1).
    assert ndcg_at_k(scores, rel, k=1) == pytest.approx(0.5)
    # A query without relevant documents is skipped.
    assert ndcg_at_k(scores, [{0: 1.0}, {}], k=10) == pytest.approx(1 / math.log2(3))


def test_retrieval_ndcg_dense_and_sparse_agree():
    q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    corpus = np.array([[0.9, 0.1], [0.1, 0.9], [0.7, 0.7]], dtype=np.float32)
    rel = [{0: 1}, {2: 1}]
    # Query 1 ranks d1 (0.994) above d2 (0.707): relevant at rank 2 → 1/log2(3).
    expected = (1.0 + 1 / math.log2(3)) / 2
    assert retrieval_ndcg(q, corpus, rel) == pytest.approx(expected)
    assert retrieval_ndcg(scipy.sparse.csr_matrix(q), scipy.sparse.csr_matrix(corpus), rel) == pytest.approx(expected)


def test_sts_and_pair_ap_hand_computed():
    a = np.array([[1, 0], [1, 0], [1, 0], [1, 0]], dtype=np.float32)
    b = np.array([[1, 0], [1, 1], [0, 1], [1, 3]], dtype=np.float32)  # cosines 1, .707, 0, .316
    assert sts_spearman(a, b, np.array([5.0, 4.0, 1.0, 2.0])) == pytest.approx(1.0)
    assert sts_spearman(a, b, np.array([1.0, 2.0, 5.0, 4.0])) == pytest.approx(-1.0)
    # Cosine ranking: p0 (1), p1 (.707), p3 (.316), p2 (0). Labels 1, 0, 0, 1 → AP = (1/1 + 2/3) / 2.
    assert pair_average_precision(a, b, np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 4) / 2)
    assert pair_average_precision(a, b, np.array([1, 0, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)


def test_reranking_map_hand_computed():
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    docs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    groups = [
        (0, np.array([0, 1, 2]), np.array([False, False, True])),  # cos 1, 0, .707 → relevant at rank 2: AP 1/2
        (1, np.array([0, 1]), np.array([False, True])),  # relevant first: AP 1
        (1, np.array([0]), np.array([True])),  # no negative: skipped
    ]
    assert reranking_map(queries, docs, groups) == pytest.approx(0.75)


def test_knn_and_classification_hand_computed():
    train = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)
    train_y = np.array([0, 1, 2])
    test = np.array([[0.9, 0.2], [0.1, 0.8], [-1, 0.3], [0.2, 0.9]], dtype=np.float32)
    assert knn_top1(train, train_y, test, np.array([0, 1, 2, 0])) == pytest.approx(0.75)
    rng = np.random.default_rng(0)
    centers = np.eye(4, dtype=np.float32)
    y = rng.integers(0, 4, 200)
    x = centers[y] + 0.05 * rng.standard_normal((200, 4)).astype(np.float32)
    assert classification_accuracy(x[:150], y[:150], x[150:], y[150:]) == 1.0
    assert classification_accuracy(scipy.sparse.csr_matrix(x[:150]), y[:150], x[150:], y[150:]) == 1.0


def test_clustering_v_measure_perfect_and_sparse():
    x = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    assert clustering_v_measure(x, labels, seeds=(0, 1)) == pytest.approx(1.0)
    assert clustering_v_measure(scipy.sparse.csr_matrix(x), labels, seeds=(0,)) == pytest.approx(1.0)


def test_sparsity_stats_hand_computed():
    # 4 latents, 1 of them dead. Queries: rows {0}, {0,1}. Docs: {0}, {2}, {0}.
    q = scipy.sparse.csr_matrix(np.array([[1, 0, 0, 0], [1, 1, 0, 0]], dtype=np.float32))
    d = scipy.sparse.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 1, 0], [2, 0, 0, 0]], dtype=np.float32))
    s = sparsity_stats(q, d)
    assert s["dead_pct"] == pytest.approx(25.0)
    # counts: latent0 = 2 + 2 = 4, latent1 = 1, latent2 = 1 → top 1 % (one latent) holds 4/6.
    assert s["top1pct_share"] == pytest.approx(4 / 6)
    p = np.array([4, 1, 1]) / 6
    assert s["usage_entropy"] == pytest.approx(float(-(p * np.log2(p)).sum()))
    # p_q = [1, .5, 0, 0], p_d = [2/3, 0, 1/3, 0] → Σ p_q p_d · N_d = 2/3 · 3 = 2 postings (query 0 and 1 hit d0, d2).
    assert s["postings_per_query"] == pytest.approx(2.0)
    assert s["mean_active"] == pytest.approx(6 / 5)


def test_sparse_featurizer_all_k_in_one_pass_matches_encode():
    torch.manual_seed(0)
    head = SparseHead(d_in=8, hidden=32, k=4)
    x = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)
    calls = []
    original = head.pre_activations

    def counting(xb):
        calls.append(len(xb))
        return original(xb)

    head.pre_activations = counting
    feats = SparseFeaturizer(head).transform(x, [2, 4, 8])
    assert calls == [10]  # one pass over the rows for all three k
    for k in (2, 4, 8):
        expected = normalize_rows(head.encode(torch.from_numpy(x), k).to_scipy()).toarray()
        np.testing.assert_allclose(feats[k].toarray(), expected, rtol=1e-5, atol=1e-6)
        assert (feats[k].getnnz(axis=1) <= k).all()


def test_evaluate_task_dense_prefix_and_sparse():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    centers = rng.standard_normal((3, 16)).astype(np.float32)
    x = centers[y] + 0.1 * rng.standard_normal((60, 16)).astype(np.float32)
    task = EmbeddedTask(
        "toy", "classification", {"train": x[::2], "test": x[1::2]}, {"train_labels": y[::2], "test_labels": y[1::2]}
    )
    dense = evaluate_task(task, DenseFeaturizer(), [2, 4])
    assert list(dense) == [None] and dense[None]["score"] == 1.0 and dense[None]["stats"] is None
    prefix = evaluate_task(task, PrefixFeaturizer(), [2, 4])
    assert list(prefix) == [2, 4]
    torch.manual_seed(0)
    sparse = evaluate_task(task, SparseFeaturizer(SparseHead(16, 64, 4)), [2, 4])
    assert set(sparse) == {2, 4} and 0 <= sparse[2]["stats"]["dead_pct"] <= 100
    with pytest.raises(ValueError, match="lacks embedding roles"):
        EmbeddedTask("bad", "retrieval", {"queries": x})
