"""Scoring functions against hand-computed examples and independent reference computations (numpy loops, scipy,
sklearn fit here); all-k-in-one-pass featurizing against per-k encoding; evaluate_task against the score functions."""

import math

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import v_measure_score

from csrv2 import SparseHead
from csrv2.evaluation.scoring import (
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


def unit(x):
    """Rows / their L2 norm in float64 (the test's own normalisation); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def naive_ndcg(scores, relevance, k):
    """nDCG@k per query written out: rank documents by score (no ties in the data), DCG = Σ gain / log2(rank + 1)."""
    values = []
    for row, rel in zip(scores, relevance):
        rel = {d: g for d, g in rel.items() if g > 0}
        if not rel:
            continue
        ranked = sorted(range(len(row)), key=lambda d: -row[d])[:k]
        dcg = sum(rel.get(d, 0.0) / math.log2(rank + 2) for rank, d in enumerate(ranked))
        ideal = sorted(rel.values(), reverse=True)[:k]
        idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
        values.append(dcg / idcg)
    return sum(values) / len(values)


def naive_ap(labels, scores):
    """Average precision without ties: mean over positives of precision at the positive's rank."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    hits, precisions = 0, []
    for rank, i in enumerate(order, start=1):
        if labels[i]:
            hits += 1
            precisions.append(hits / rank)
    return sum(precisions) / len(precisions)


def test_ndcg_hand_computed():
    """Two queries with hand-worked DCG/IDCG, k = 10 and k = 1, and a skipped query without relevant documents."""
    # Query 0: ranking d2, d0, d1; relevant d0 (gain 1) → DCG = 1/log2(3), IDCG = 1.
    # Query 1: relevant d1 (gain 2), d2 (gain 1); ranking d1, d2, d0 → ideal → 1.0.
    scores = np.array([[0.5, 0.1, 0.9], [0.0, 0.8, 0.3]])
    rel = [{0: 1.0}, {1: 2.0, 2: 1.0}]
    assert ndcg_at_k(scores, rel, k=10) == pytest.approx((1 / math.log2(3) + 1.0) / 2)
    # k = 1: query 0 misses (0), query 1 hits its best (1).
    assert ndcg_at_k(scores, rel, k=1) == pytest.approx(0.5)
    # A query without relevant documents is skipped.
    assert ndcg_at_k(scores, [{0: 1.0}, {}], k=10) == pytest.approx(1 / math.log2(3))
    # Graded, out of ideal order: ranking d1 (gain 1), d0 (gain 3) → DCG = 1 + 3/log2 3; IDCG = 3 + 1/log2 3.
    graded = ndcg_at_k(np.array([[0.2, 0.9, 0.1]]), [{0: 3.0, 1: 1.0}], k=10)
    assert graded == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))
    with pytest.raises(ValueError, match="no query"):
        ndcg_at_k(scores, [{}, {0: 0.0}])


def test_ndcg_ties_broken_by_document_index():
    """Tied scores rank in corpus order: all equal → relevant d2 at rank 3 → 1/log2(4); 40 documents, d39 on top and
    the rest tied at 0 → d3 at rank 5 → 1/log2(6) (an unstable sort moves it)."""
    assert ndcg_at_k(np.zeros((1, 5)), [{2: 1.0}], k=10) == pytest.approx(0.5)
    scores = np.zeros((1, 40))
    scores[0, 39] = 1.0
    assert ndcg_at_k(scores, [{3: 1.0}], k=10) == pytest.approx(1 / math.log2(6))


def test_ndcg_random_untied_equals_straightforward_formula():
    """On random untied scores with graded gains, every k in {1, 3, 10} equals the written-out formula."""
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((9, 25))
    relevance = [{int(d): float(rng.integers(1, 4)) for d in rng.choice(25, rng.integers(1, 6), replace=False)}]
    relevance += [
        {int(d): float(rng.integers(0, 4)) for d in rng.choice(25, rng.integers(1, 15), replace=False)}
        for _ in range(8)
    ]
    for k in (1, 3, 10):
        assert ndcg_at_k(scores, relevance, k) == pytest.approx(naive_ndcg(scores, relevance, k), rel=1e-12)


def test_retrieval_ndcg_dense_sparse_and_chunked_equal_formula_on_cosine():
    """retrieval_ndcg = nDCG@10 of the test's own cosine matrix, for dense and CSR input and chunks that split queries
    (one query without a relevant document is skipped, not counted as 0)."""
    rng = np.random.default_rng(1)
    q = rng.standard_normal((7, 5)).astype(np.float32)
    corpus = rng.standard_normal((30, 5)).astype(np.float32)
    corpus[rng.random((30, 5)) < 0.4] = 0.0
    rel = [{int(d): 1.0 for d in rng.choice(30, 3, replace=False)} for _ in range(7)]
    rel[4] = {}
    expected = naive_ndcg(unit(q) @ unit(corpus).T, rel, 10)
    for chunk in (256, 3, 1):
        assert retrieval_ndcg(q, corpus, rel, chunk=chunk) == pytest.approx(expected, rel=1e-6)
    sparse = retrieval_ndcg(scipy.sparse.csr_matrix(q), scipy.sparse.csr_matrix(corpus), rel, chunk=2)
    assert sparse == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="relevance entries"):
        retrieval_ndcg(q, corpus, rel[:3])


def test_retrieval_ndcg_hand_computed():
    """Two queries on a 3-document corpus: one hit at rank 1, one at rank 2; dense and CSR alike."""
    q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    corpus = np.array([[0.9, 0.1], [0.1, 0.9], [0.7, 0.7]], dtype=np.float32)
    rel = [{0: 1}, {2: 1}]
    # Query 1 ranks d1 (0.994) above d2 (0.707): relevant at rank 2 → 1/log2(3).
    expected = (1.0 + 1 / math.log2(3)) / 2
    assert retrieval_ndcg(q, corpus, rel) == pytest.approx(expected)
    assert retrieval_ndcg(scipy.sparse.csr_matrix(q), scipy.sparse.csr_matrix(corpus), rel) == pytest.approx(expected)


def test_sts_spearman_equals_scipy_on_numpy_cosine():
    """sts_spearman = scipy.stats.spearmanr(the test's own row-wise cosine, gold), dense and sparse."""
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((40, 6)).astype(np.float32), rng.standard_normal((40, 6)).astype(np.float32)
    gold = rng.uniform(0, 5, 40)
    cos = (unit(a) * unit(b)).sum(axis=1)
    expected = spearmanr(cos, gold).statistic
    assert sts_spearman(a, b, gold) == pytest.approx(expected, rel=1e-9)
    assert sts_spearman(scipy.sparse.csr_matrix(a), scipy.sparse.csr_matrix(b), gold) == pytest.approx(expected)


def test_sts_and_pair_ap_hand_computed():
    """Cosines 1, .707, 0, .316 against hand-ranked gold scores and labels."""
    a = np.array([[1, 0], [1, 0], [1, 0], [1, 0]], dtype=np.float32)
    b = np.array([[1, 0], [1, 1], [0, 1], [1, 3]], dtype=np.float32)  # cosines 1, .707, 0, .316
    assert sts_spearman(a, b, np.array([5.0, 4.0, 1.0, 2.0])) == pytest.approx(1.0)
    assert sts_spearman(a, b, np.array([1.0, 2.0, 5.0, 4.0])) == pytest.approx(-1.0)
    # Cosine ranking: p0 (1), p1 (.707), p3 (.316), p2 (0). Labels 1, 0, 1, 0 → AP = (1/1 + 2/4) / 2.
    assert pair_average_precision(a, b, np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 4) / 2)
    assert pair_average_precision(a, b, np.array([1, 0, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)


def test_pair_ap_random_equals_written_out_ap():
    """On random untied cosines, pair AP equals mean-precision-at-positives computed by a loop."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((30, 4)), rng.standard_normal((30, 4))
    labels = rng.integers(0, 2, 30)
    cos = (unit(a) * unit(b)).sum(axis=1)
    assert pair_average_precision(a, b, labels) == pytest.approx(naive_ap(labels.tolist(), cos.tolist()), rel=1e-6)


def test_reranking_map_hand_computed():
    """APs 1/2 and 1 by hand, a group without a negative skipped; dense and CSR alike."""
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    docs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    groups = [
        (0, np.array([0, 1, 2]), np.array([False, False, True])),  # cos 1, 0, .707 → relevant at rank 2: AP 1/2
        (1, np.array([0, 1]), np.array([False, True])),  # relevant first: AP 1
        (1, np.array([0]), np.array([True])),  # no negative: skipped
    ]
    assert reranking_map(queries, docs, groups) == pytest.approx(0.75)
    assert reranking_map(scipy.sparse.csr_matrix(queries), scipy.sparse.csr_matrix(docs), groups) == pytest.approx(0.75)


def test_reranking_map_random_equals_written_out_ap():
    """MAP over random groups equals the mean of the loop AP on the test's own cosines; all-positive groups skipped."""
    rng = np.random.default_rng(4)
    queries, docs = rng.standard_normal((5, 6)), rng.standard_normal((40, 6))
    groups, aps = [], []
    for qi in range(5):
        rows = rng.choice(40, 8, replace=False)
        relevant = rng.random(8) < 0.4
        relevant[0], relevant[1] = True, False
        groups.append((qi, rows, relevant))
        cos = unit(docs[rows]) @ unit(queries[qi : qi + 1]).ravel()
        aps.append(naive_ap(relevant.tolist(), cos.tolist()))
    groups.append((0, np.array([1, 2]), np.array([True, True])))
    assert reranking_map(queries, docs, groups) == pytest.approx(np.mean(aps), rel=1e-6)


def test_knn_top1_equals_argmax_loop():
    """1-NN accuracy equals a loop over test rows taking the train row of largest cosine; hand case too."""
    train = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)
    test = np.array([[0.9, 0.2], [0.1, 0.8], [-1, 0.3], [0.2, 0.9]], dtype=np.float32)
    assert knn_top1(train, np.array([0, 1, 2]), test, np.array([0, 1, 2, 0])) == pytest.approx(0.75)
    rng = np.random.default_rng(5)
    train, test = rng.standard_normal((25, 4)), rng.standard_normal((11, 4))
    train_y, test_y = rng.integers(0, 3, 25), rng.integers(0, 3, 11)
    ut, uq = unit(train), unit(test)
    correct = 0
    for i in range(11):
        sims = [float(uq[i] @ ut[j]) for j in range(25)]
        correct += int(train_y[sims.index(max(sims))] == test_y[i])
    assert knn_top1(train, train_y, test, test_y, chunk=4) == pytest.approx(correct / 11)
    sparse = knn_top1(scipy.sparse.csr_matrix(train), train_y, scipy.sparse.csr_matrix(test), test_y)
    assert sparse == pytest.approx(correct / 11)


def noisy_classes(n=120, d=5, noise=0.9, seed=6):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = rng.standard_normal((3, d))
    return (centers[y] + noise * rng.standard_normal((n, d))).astype(np.float32), y


def test_classification_accuracy_equals_sklearn_fit_here():
    """Accuracy equals an sklearn LogisticRegression fit by the test on its own unit rows (a non-trivial score),
    for dense and CSR features."""
    x, y = noisy_classes()
    clf = LogisticRegression(max_iter=1000, random_state=0).fit(unit(x[:80]), y[:80])
    expected = float((clf.predict(unit(x[80:])) == y[80:]).mean())
    assert 0.4 < expected < 1.0  # the data is neither trivial nor hopeless
    assert classification_accuracy(x[:80], y[:80], x[80:], y[80:]) == pytest.approx(expected)
    sparse_x = scipy.sparse.csr_matrix(x)
    assert classification_accuracy(sparse_x[:80], y[:80], sparse_x[80:], y[80:]) == pytest.approx(expected)


def test_clustering_v_measure_equals_kmeans_fit_here():
    """V-measure equals the mean over seeds of sklearn KMeans (n_init 1) on the test's own unit rows."""
    x, y = noisy_classes(n=60, noise=0.7, seed=7)
    expected = np.mean(
        [
            v_measure_score(y, KMeans(3, n_init=1, random_state=s).fit_predict(unit(x).astype(np.float32)))
            for s in (0, 1)
        ]
    )
    assert 0 < expected < 1
    assert clustering_v_measure(x, y, seeds=(0, 1)) == pytest.approx(expected, rel=1e-6)
    perfect = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99]], dtype=np.float32)
    assert clustering_v_measure(scipy.sparse.csr_matrix(perfect), np.array([0, 0, 1, 1]), seeds=(0,)) == 1.0


def loop_stats(q, d, separate):
    """dead %, postings per query, top-1% share, entropy and mean active of a dense 0/value matrix, by loops."""
    h = q.shape[1]
    rows = [q] if not separate else [q, d]
    counts = [sum(1 for m in rows for r in m if r[j] > 0) for j in range(h)]
    total = sum(counts)
    p_q = [sum(1 for r in q if r[j] > 0) / len(q) for j in range(h)]
    p_d = [sum(1 for r in d if r[j] > 0) / len(d) for j in range(h)]
    postings = sum(p_q[j] * p_d[j] for j in range(h)) * len(d)
    # postings by brute force: Σ over queries and docs of shared active latents, per query
    shared = sum(sum(1 for j in range(h) if a[j] > 0 and b[j] > 0) for a in q for b in d) / len(q)
    assert math.isclose(postings, shared)
    top = max(1, math.ceil(h / 100))
    entropy = -sum(c / total * math.log2(c / total) for c in counts if c)
    return {
        "dead_pct": 100 * sum(1 for c in counts if c == 0) / h,
        "top1pct_share": sum(sorted(counts, reverse=True)[:top]) / total,
        "usage_entropy": entropy,
        "usage_entropy_norm": entropy / math.log2(h),
        "postings_per_query": postings,
        "postings_fraction": postings / len(d),
        "mean_active": total / sum(len(m) for m in rows),
    }


def test_sparsity_stats_hand_computed():
    """Every statistic of a 4-latent example worked out by hand in the comments."""
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


def test_sparsity_stats_equal_loop_counts_on_random_tiny_matrices():
    """Every statistic equals the loop count on random tiny matrices with explicit zeros and negative values
    (not active), separate query/doc sides and doc_x=None (one side counted once)."""
    rng = np.random.default_rng(8)
    q = rng.standard_normal((6, 9)) * (rng.random((6, 9)) < 0.3)
    d = rng.standard_normal((10, 9)) * (rng.random((10, 9)) < 0.3)
    q_csr = scipy.sparse.csr_matrix(q)
    rows, cols = q.nonzero()  # row-major, as CSR stores them: entry 0 is data[0]
    row, col = rows[0], cols[0]
    q_csr.data[0] = 0.0  # an explicitly stored zero must not count as active
    q[row, col] = 0.0
    assert (q < 0).any() and (d < 0).any() and (q_csr.data == 0).sum() == 1
    for doc, separate in ((d, True), (None, False)):
        got = sparsity_stats(q_csr, None if doc is None else scipy.sparse.csr_matrix(doc))
        want = loop_stats(q, q if doc is None else doc, separate)
        assert set(got) == set(want)
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-12), key


def test_sparse_featurizer_every_k_equals_encode_to_scipy_normalised():
    """One pass over the rows (chunked) gives, at every k, head.encode(x, k).to_scipy() with rows / L2 norm."""
    torch.manual_seed(0)
    head = SparseHead(d_in=8, hidden=32, k=4)
    with torch.no_grad():
        head.b_lat.normal_(-0.2, 0.2)  # some kept entries are ReLU zeros
    x = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)
    calls = []
    original = head.pre_activations

    def counting(xb):
        calls.append(len(xb))
        return original(xb)

    head.pre_activations = counting
    ks = [1, 2, 4, 8, 32]
    feats = SparseFeaturizer(head, chunk=4).transform(x, ks)
    assert calls == [4, 4, 2]  # one pass over the rows for every k
    del head.pre_activations
    for k in ks:
        with torch.no_grad():
            dense = head.encode(torch.from_numpy(x), k).to_scipy().toarray().astype(np.float64)
        norms = np.sqrt((dense**2).sum(axis=1, keepdims=True))
        expected = np.divide(dense, norms, out=np.zeros_like(dense), where=norms > 0)
        assert isinstance(feats[k], scipy.sparse.csr_matrix) and feats[k].shape == (10, 32)
        np.testing.assert_allclose(feats[k].toarray(), expected, rtol=1e-5, atol=1e-6)
        assert (feats[k].getnnz(axis=1) <= k).all() and (feats[k].data != 0).all()


def test_sparse_featurizer_does_not_depend_on_the_order_of_ks():
    """ks given largest first gives the same features as ascending ks."""
    torch.manual_seed(0)
    head = SparseHead(d_in=8, hidden=32, k=4)
    x = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)
    ascending = SparseFeaturizer(head).transform(x, [2, 8])
    descending = SparseFeaturizer(head).transform(x, [8, 2])
    for k in (2, 8):
        np.testing.assert_array_equal(descending[k].toarray(), ascending[k].toarray())


def classification_task():
    """Uneven splits (50 train, 30 test) so that swapping the query and document sides changes the statistics."""
    x, y = noisy_classes(n=80, d=16, noise=1.2, seed=9)
    return EmbeddedTask(
        "toy", "classification", {"train": x[:50], "test": x[50:]}, {"train_labels": y[:50], "test_labels": y[50:]}
    )


def test_evaluate_task_dense_equals_direct_score_calls():
    """evaluate_task with DenseFeaturizer = the score function called directly on the raw arrays, for several types."""
    rng = np.random.default_rng(10)
    task = classification_task()
    dense = evaluate_task(task, DenseFeaturizer(), [2, 4])
    assert list(dense) == [None] and dense[None]["stats"] is None
    a = task.arrays
    direct = classification_accuracy(a["train"], task.gold["train_labels"], a["test"], task.gold["test_labels"])
    assert dense[None]["score"] == direct and 0.3 < direct < 1.0

    t1, t2, gold = rng.standard_normal((20, 6)), rng.standard_normal((20, 6)), rng.uniform(0, 5, 20)
    sts = EmbeddedTask("sts", "sts", {"text1": t1, "text2": t2}, {"scores": gold})
    assert evaluate_task(sts, DenseFeaturizer(), [2])[None]["score"] == pytest.approx(sts_spearman(t1, t2, gold))

    q, c = rng.standard_normal((5, 6)), rng.standard_normal((15, 6))
    rel = [{int(rng.integers(15)): 1.0} for _ in range(5)]
    retrieval = EmbeddedTask("ret", "retrieval", {"queries": q, "corpus": c}, {"relevance": rel})
    assert evaluate_task(retrieval, DenseFeaturizer(), [2])[None]["score"] == pytest.approx(retrieval_ndcg(q, c, rel))

    labels = rng.integers(0, 2, 20)
    pairs = EmbeddedTask("pc", "pair_classification", {"text1": t1, "text2": t2}, {"labels": labels})
    expected_ap = pair_average_precision(t1, t2, labels)
    assert evaluate_task(pairs, DenseFeaturizer(), [2])[None]["score"] == pytest.approx(expected_ap)

    x, y = noisy_classes(n=30, d=6, seed=11)
    clustering = EmbeddedTask("cl", "clustering", {"test": x}, {"labels": y})
    got = evaluate_task(clustering, DenseFeaturizer(), [2], clustering_seeds=(0, 1))[None]["score"]
    assert got == pytest.approx(clustering_v_measure(x, y, seeds=(0, 1)))


def test_evaluate_task_prefix_equals_score_on_normalised_prefixes():
    """PrefixFeaturizer: the score at k is the score of the first k coordinates; a k beyond the width is refused."""
    task = classification_task()
    a, g = task.arrays, task.gold
    out = evaluate_task(task, PrefixFeaturizer(), [2, 5])
    assert list(out) == [2, 5]
    for k in (2, 5):
        expected = classification_accuracy(a["train"][:, :k], g["train_labels"], a["test"][:, :k], g["test_labels"])
        assert out[k]["score"] == expected and out[k]["stats"] is None
    with pytest.raises(ValueError, match="cannot take the first"):
        evaluate_task(task, PrefixFeaturizer(), [17])


def test_evaluate_task_sparse_equals_score_and_stats_on_featurized_codes():
    """SparseFeaturizer: score and stats at each k equal the score function and sparsity_stats(test, train) of the
    featurizer's own output."""
    task = classification_task()
    torch.manual_seed(0)
    head = SparseHead(16, 64, 4)
    out = evaluate_task(task, SparseFeaturizer(head), [2, 4])
    assert set(out) == {2, 4}
    for k in (2, 4):
        train = SparseFeaturizer(head).transform(task.arrays["train"], [k])[k]
        test = SparseFeaturizer(head).transform(task.arrays["test"], [k])[k]
        g = task.gold
        assert out[k]["score"] == classification_accuracy(train, g["train_labels"], test, g["test_labels"])
        assert out[k]["stats"] == sparsity_stats(test, train)


def test_embedded_task_validation():
    """Missing roles and unknown task types are refused when the task is built."""
    with pytest.raises(ValueError, match="lacks embedding roles"):
        EmbeddedTask("bad", "retrieval", {"queries": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="unknown type"):
        EmbeddedTask("bad", "ranking", {})


def test_normalize_rows_keeps_zero_rows_and_matches_between_dense_and_sparse():
    """(3, 4) → (.6, .8); a zero row stays zero; CSR input gives the same rows."""
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    expected = [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]]
    np.testing.assert_allclose(normalize_rows(x), expected, rtol=1e-6)
    np.testing.assert_allclose(normalize_rows(scipy.sparse.csr_matrix(x)).toarray(), expected, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# Against pytrec_eval (trec_eval's C code; what MTEB's retrieval scores use), when pytrec-eval-terrier is installed
def trec_run(scores, doc_ids):
    """(Q, N) scores → pytrec_eval's run {query id: {doc id: score}} (query ids q0, q1, ...)."""
    return {f"q{q}": {doc_ids[d]: float(s) for d, s in enumerate(row)} for q, row in enumerate(scores)}


def test_ndcg_at_10_equals_pytrec_eval_on_untied_graded_data():
    """Random untied scores, 12 queries × 60 documents, gains 1–3 (some judged 0): csrv2's mean nDCG@10 equals the mean
    of pytrec_eval's ndcg_cut_10, and so does retrieval_ndcg on cosine (dense and CSR), to 1e-6."""
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="needs pytrec-eval-terrier (pip install csrv2[mteb])")
    rng = np.random.default_rng(11)
    n_q, n_d = 12, 60
    ids = [f"d{d}" for d in range(n_d)]
    relevance = []
    for _ in range(n_q):
        judged = rng.choice(n_d, rng.integers(2, 15), replace=False)
        rel = {int(d): float(rng.integers(0, 4)) for d in judged}
        rel[int(judged[0])] = float(rng.integers(1, 4))  # at least one relevant document per query
        relevance.append(rel)
    qrels = {f"q{q}": {ids[d]: int(g) for d, g in rel.items()} for q, rel in enumerate(relevance)}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"})

    scores = rng.standard_normal((n_q, n_d))
    assert len(np.unique(scores)) == scores.size
    per_query = evaluator.evaluate(trec_run(scores, ids))
    expected = np.mean([per_query[f"q{q}"]["ndcg_cut_10"] for q in range(n_q)])
    assert 0.05 < expected < 0.95
    assert ndcg_at_k(scores, relevance, 10) == pytest.approx(expected, abs=1e-6)

    queries, docs = rng.standard_normal((n_q, 8)), rng.standard_normal((n_d, 8))
    cos = unit(queries) @ unit(docs).T
    per_query = evaluator.evaluate(trec_run(cos, ids))
    expected = np.mean([per_query[f"q{q}"]["ndcg_cut_10"] for q in range(n_q)])
    assert retrieval_ndcg(queries, docs, relevance, chunk=5) == pytest.approx(expected, abs=1e-6)
    keep = np.arange(8) >= 4  # zeros only in columns 0–3: every pair still overlaps, so cosines stay untied
    sparse_q = scipy.sparse.csr_matrix(np.where(keep | (rng.random(queries.shape) < 0.5), queries, 0.0))
    sparse_d = scipy.sparse.csr_matrix(np.where(keep | (rng.random(docs.shape) < 0.5), docs, 0.0))
    cos = cosine_of(sparse_q.toarray(), sparse_d.toarray())
    assert all(len(np.unique(row.round(6))) == n_d for row in cos)  # still untied within each query
    per_query = evaluator.evaluate(trec_run(cos, ids))
    expected = np.mean([per_query[f"q{q}"]["ndcg_cut_10"] for q in range(n_q)])
    assert retrieval_ndcg(sparse_q, sparse_d, relevance) == pytest.approx(expected, abs=1e-6)


def cosine_of(a, b):
    return unit(a) @ unit(b).T


def test_reranking_map_equals_pytrec_eval_map_on_untied_data():
    """Each query ranks its own candidate list (8–20 of 80 documents, binary judgements on all of them): csrv2's MAP
    equals the mean of pytrec_eval's map over the same runs, to 1e-6 (no ties, so sklearn's AP is trec_eval's AP)."""
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="needs pytrec-eval-terrier (pip install csrv2[mteb])")
    rng = np.random.default_rng(12)
    queries, docs = rng.standard_normal((10, 6)), rng.standard_normal((80, 6))
    groups, qrels, run = [], {}, {}
    for q in range(10):
        rows = rng.choice(80, rng.integers(8, 21), replace=False)
        relevant = rng.random(len(rows)) < 0.35
        relevant[0], relevant[1] = True, False
        groups.append((q, rows, relevant))
        cos = unit(docs[rows]) @ unit(queries[q : q + 1]).ravel()
        qrels[f"q{q}"] = {f"d{d}": int(r) for d, r in zip(rows, relevant)}
        run[f"q{q}"] = {f"d{d}": float(c) for d, c in zip(rows, cos)}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"map"}).evaluate(run)
    expected = np.mean([per_query[f"q{q}"]["map"] for q in range(10)])
    assert 0.2 < expected < 0.95
    assert reranking_map(queries, docs, groups) == pytest.approx(expected, abs=1e-6)


def test_ties_are_where_csrv2_and_pytrec_eval_part():
    """With tied scores trec_eval orders documents by id, descending; csrv2 by corpus row, ascending. All scores tied,
    relevant document in row 1 of 12: csrv2 puts it at rank 2, pytrec_eval (ids d00…d11) at rank 11 (outside the
    top 10: nDCG 0). Ids that sort the other way round (row r → id d{11 - r}) make the two agree."""
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="needs pytrec-eval-terrier (pip install csrv2[mteb])")
    scores = np.zeros((1, 12))
    relevance = [{1: 1.0}]
    assert ndcg_at_k(scores, relevance, 10) == pytest.approx(1 / math.log2(3))
    for ids, expected in (([f"d{r:02d}" for r in range(12)], 0.0), ([f"d{11 - r:02d}" for r in range(12)], None)):
        qrels = {"q0": {ids[1]: 1}}
        got = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(trec_run(scores, ids))["q0"]
        assert got["ndcg_cut_10"] == pytest.approx(ndcg_at_k(scores, relevance, 10) if expected is None else expected)
