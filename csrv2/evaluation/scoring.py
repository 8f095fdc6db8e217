"""MTEB-style scoring of sparse codes and dense baselines, every k in one pass, plus sparsity statistics.

Scoring is on L2-normalised features (cosine), dense `np.ndarray (N, D)` or `scipy.sparse.csr_matrix (N, D)` alike:

| task type            | score                                                          |
|----------------------|----------------------------------------------------------------|
| classification       | logistic-regression accuracy, fit on the train split, test split scored |
| clustering           | k-means V-measure (k = number of labels), mean over seeds      |
| retrieval            | nDCG@10 from qrels (queries without relevant documents skipped) |
| sts                  | Spearman of cosine against the gold score                      |
| pair_classification  | average precision of cosine against the 0/1 label (as MTEB)   |
| reranking            | MAP: mean over queries of the average precision of cosine ranks |
| image_classification | 1-NN top-1 accuracy (cosine), train split as the database      |

A task reaches this module as an `EmbeddedTask`: backbone embeddings per role (e.g. train/test, queries/corpus) and
the gold data. A featurizer turns each role's embeddings into features for every k at once (`SparseFeaturizer` computes
the head's pre-activations once and slices one sorted top-k_max), so no text is re-encoded per k.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse
import torch
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, v_measure_score

from csrv2.data.tasks import ROLES, EmbeddedTask
from csrv2.evaluation.usage import usage_figures
from csrv2.head.codes import packed_to_csr

Features = np.ndarray | scipy.sparse.csr_matrix

# The roles each task type's sparsity statistics are measured on: (query-side role, document-side role), from the
# roles of csrv2.data.tasks.ROLES. Postings touched per query = Σ_j p_q(j)·p_d(j)·N_d.
STATS_ROLES = {
    "classification": ("test", "train"),
    "image_classification": ("test", "train"),
    "clustering": ("test", "test"),
    "retrieval": ("queries", "corpus"),
    "sts": ("text1", "text2"),
    "pair_classification": ("text1", "text2"),
    "reranking": ("queries", "docs"),
}


# ---------------------------------------------------------------------------------------------------------------------
# Feature helpers
def normalize_rows(x: Features, eps: float = 1e-12) -> Features:
    """Rows scaled to unit L2 norm; all-zero rows stay zero. Dense (N, D) float32 or CSR (N, D)."""
    if scipy.sparse.issparse(x):
        x = scipy.sparse.csr_matrix(x, dtype=np.float32)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        scale = 1.0 / np.maximum(norms, eps)
        return scipy.sparse.csr_matrix(scipy.sparse.diags(scale.astype(np.float32)) @ x)
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def cosine_matrix(a: Features, b: Features) -> np.ndarray:
    """(Na, D), (Nb, D) → (Na, Nb) dense cosine similarities."""
    s = normalize_rows(a) @ normalize_rows(b).T
    return s.toarray() if scipy.sparse.issparse(s) else np.asarray(s)


def paired_cosine(a: Features, b: Features) -> np.ndarray:
    """Row-wise cosine of two (N, D) feature matrices → (N,)."""
    a, b = normalize_rows(a), normalize_rows(b)
    if scipy.sparse.issparse(a):
        return np.asarray(a.multiply(b).sum(axis=1)).ravel()
    return np.einsum("nd,nd->n", a, b)


# ---------------------------------------------------------------------------------------------------------------------
# Scores, one per task type. Each returns a float in [0, 1] (× 100 in tables).
def classification_accuracy(
    train_x: Features, train_y: np.ndarray, test_x: Features, test_y: np.ndarray, seed: int = 0, max_iter: int = 1000
) -> float:
    """Logistic regression (sklearn defaults, C = 1) fit on train features, accuracy on test features."""
    clf = LogisticRegression(max_iter=max_iter, random_state=seed)
    clf.fit(normalize_rows(train_x), np.asarray(train_y))
    return float((clf.predict(normalize_rows(test_x)) == np.asarray(test_y)).mean())


def clustering_v_measure(x: Features, labels: np.ndarray, seeds: Sequence[int] = (0, 1, 2)) -> float:
    """k-means with as many clusters as gold labels, on unit rows; V-measure averaged over seeds (n_init = 1 each)."""
    labels = np.asarray(labels)
    n_clusters = len(np.unique(labels))
    x = normalize_rows(x)
    scores = []
    for seed in seeds:
        pred = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit_predict(x)
        scores.append(v_measure_score(labels, pred))
    return float(np.mean(scores))


def ndcg_at_k(scores: np.ndarray, relevance: Sequence[dict[int, float]], k: int = 10) -> float:
    """Mean nDCG@k. scores (Q, N) similarity of each query to each document; relevance[q] = {doc_index: gain > 0}.

    Gain is linear (as pytrec_eval's ndcg_cut), discount 1/log2(rank + 1). Ties in score are broken by document index
    (stable), so a query whose codes share no latent with any document scores as the corpus order would.
    Queries without relevant documents are skipped (as MTEB does); no scorable query → ValueError.
    """
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for q, rel in enumerate(relevance):
        rel = {d: g for d, g in rel.items() if g > 0}
        if not rel:
            continue
        row = scores[q]
        top = np.argsort(-row, kind="stable")[:k]
        dcg = sum(rel.get(int(d), 0.0) * discounts[i] for i, d in enumerate(top))
        ideal = sorted(rel.values(), reverse=True)[:k]
        idcg = float(np.dot(ideal, discounts[: len(ideal)]))
        values.append(dcg / idcg)
    if not values:
        raise ValueError("ndcg_at_k: no query has a relevant document")
    return float(np.mean(values))


def retrieval_ndcg(
    query_x: Features, corpus_x: Features, relevance: Sequence[dict[int, float]], k: int = 10, chunk: int = 256
) -> float:
    """nDCG@k of cosine ranking of the corpus for each query; relevance[q] = {corpus row: gain}."""
    if query_x.shape[0] != len(relevance):
        raise ValueError(f"retrieval: {query_x.shape[0]} query rows but {len(relevance)} relevance entries")
    total, count = 0.0, 0
    for start in range(0, query_x.shape[0], chunk):
        rel = relevance[start : start + chunk]
        n = sum(1 for r in rel if any(g > 0 for g in r.values()))
        if n == 0:
            continue
        s = cosine_matrix(query_x[start : start + chunk], corpus_x)
        total += ndcg_at_k(s, rel, k) * n
        count += n
    if count == 0:
        raise ValueError("retrieval: no query has a relevant document")
    return total / count


def sts_spearman(x1: Features, x2: Features, gold: np.ndarray) -> float:
    """Spearman correlation between the cosine of each pair and its gold similarity."""
    return float(spearmanr(paired_cosine(x1, x2), np.asarray(gold, dtype=float)).statistic)


def pair_average_precision(x1: Features, x2: Features, labels: np.ndarray) -> float:
    """Average precision of the pairs' cosine as a score for label 1 (MTEB's cosine AP)."""
    return float(average_precision_score(np.asarray(labels), paired_cosine(x1, x2)))


def reranking_map(query_x: Features, doc_x: Features, groups: Sequence[tuple[int, np.ndarray, np.ndarray]]) -> float:
    """MAP over groups (query row, candidate doc rows (n,), is_relevant (n,) bool), candidates ranked by cosine.

    AP per query is sklearn's (tied scores form one threshold, as in MTEB); queries with no positive or no negative
    candidate are skipped.
    """
    q = normalize_rows(query_x)
    d = normalize_rows(doc_x)
    aps = []
    for q_row, doc_rows, relevant in groups:
        relevant = np.asarray(relevant, dtype=bool)
        if relevant.all() or not relevant.any():
            continue
        s = d[np.asarray(doc_rows)] @ q[q_row].T
        s = s.toarray().ravel() if scipy.sparse.issparse(s) else np.asarray(s).ravel()
        aps.append(average_precision_score(relevant, s))
    if not aps:
        raise ValueError("reranking: no query has both positive and negative candidates")
    return float(np.mean(aps))


def knn_top1(train_x: Features, train_y: np.ndarray, test_x: Features, test_y: np.ndarray, chunk: int = 1024) -> float:
    """1-NN top-1 accuracy by cosine, the train split as database (ties → lowest train row)."""
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    correct = 0
    for start in range(0, test_x.shape[0], chunk):
        s = cosine_matrix(test_x[start : start + chunk], train_x)
        correct += int((train_y[s.argmax(axis=1)] == test_y[start : start + chunk]).sum())
    return correct / test_x.shape[0]


# ---------------------------------------------------------------------------------------------------------------------
# Sparsity statistics
def sparsity_stats(query_x: Features, doc_x: Features | None = None) -> dict[str, float]:
    """Usage statistics of sparse codes (rows = embeddings, columns = latents; active = value > 0).

    dead_pct, top1pct_share, usage_entropy(_norm): csrv2.evaluation.usage.usage_figures of the rows of query_x ∪ doc_x
      in which each latent is active.
    postings_per_query: expected postings an inverted index touches per query, Σ_j p_q(j)·p_d(j)·N_d, with p the share
      of query / document rows in which latent j is active and N_d the number of documents;
      `postings_fraction` = that / N_d (1.0 = a dense scan touches every document once per active latent pair).
    mean_active: mean active latents per row.
    """
    doc_x = query_x if doc_x is None else doc_x
    q = scipy.sparse.csr_matrix(query_x)
    d = scipy.sparse.csr_matrix(doc_x)
    h = q.shape[1]
    q_active = np.bincount(q.indices[q.data > 0], minlength=h).astype(np.float64)  # (h,) rows with latent j active
    d_active = np.bincount(d.indices[d.data > 0], minlength=h).astype(np.float64)
    counts = q_active + (d_active if doc_x is not query_x else 0.0)
    figures = usage_figures(counts)
    p_q, p_d = q_active / q.shape[0], d_active / d.shape[0]
    postings = float((p_q * p_d).sum() * d.shape[0])
    return {
        "dead_pct": figures["dead_pct"],
        "top1pct_share": figures["top1pct_share"],
        "usage_entropy": figures["usage_entropy"],
        "usage_entropy_norm": figures["usage_entropy_norm"],
        "postings_per_query": postings,
        "postings_fraction": postings / d.shape[0],
        "mean_active": float(counts.sum() / (q.shape[0] + (d.shape[0] if doc_x is not query_x else 0))),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Featurizers: backbone embeddings (N, d) → features for each k, all k at once
class Featurizer:
    """Maps backbone embeddings (N, d) to features per k. `ks=None` in `transform` → one entry under key None."""

    sparse: bool = False

    def transform(self, x: np.ndarray, ks: Sequence[int]) -> dict[int | None, Features]:
        raise NotImplementedError


class DenseFeaturizer(Featurizer):
    """The backbone itself (the ceiling row): one feature set, independent of k."""

    def transform(self, x, ks):
        return {None: normalize_rows(np.asarray(x, dtype=np.float32))}


class PrefixFeaturizer(Featurizer):
    """First-k coordinates of a (possibly learned) dense map: truncation, PCA, MRL. `fn(x (N, d)) → (N, D ≥ max k)`."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray] | None = None):
        self.fn = fn

    def transform(self, x, ks):
        z = np.asarray(x, dtype=np.float32) if self.fn is None else np.asarray(self.fn(x), dtype=np.float32)
        too_big = [k for k in ks if k > z.shape[1]]
        if too_big:
            raise ValueError(f"prefix features have {z.shape[1]} dims, cannot take the first {too_big}")
        return {k: normalize_rows(z[:, :k]) for k in ks}


class SparseFeaturizer(Featurizer):
    """A SparseHead: pre-activations computed once per row, one sorted top-(max k), each k a prefix of it.

    Slicing the sorted top-k_max equals `head.topk_codes(pre, k)` for every k (both keep the k largest, then ReLU).
    """

    sparse = True

    def __init__(self, head, chunk: int = 4096):
        self.head = head
        self.chunk = chunk

    @torch.no_grad()
    def transform(self, x, ks):
        head = self.head.eval()
        k_max = max(ks)
        idx, val = [], []
        for start in range(0, len(x), self.chunk):
            xb = torch.as_tensor(np.asarray(x[start : start + self.chunk], dtype=np.float32))
            codes = head.topk_codes(head.pre_activations(xb), k_max)  # indices/values (B, k_max), sorted descending
            idx.append(codes.indices.cpu().numpy())
            val.append(codes.values.float().cpu().numpy())
        indices, values = np.concatenate(idx), np.concatenate(val)  # (N, k_max)
        return {k: normalize_rows(packed_to_csr(indices[:, :k], values[:, :k], head.hidden)) for k in ks}


# ---------------------------------------------------------------------------------------------------------------------
# A task with its embeddings, scored for every k
def score_features(
    task: EmbeddedTask, feats: dict[str, Features], clustering_seeds: Sequence[int] = (0, 1, 2)
) -> float:
    """One score for a task from features per role (already for one k)."""
    g, t = task.gold, task.type
    if t == "classification":
        return classification_accuracy(feats["train"], g["train_labels"], feats["test"], g["test_labels"])
    if t == "image_classification":
        return knn_top1(feats["train"], g["train_labels"], feats["test"], g["test_labels"])
    if t == "clustering":
        return clustering_v_measure(feats["test"], g["labels"], clustering_seeds)
    if t == "retrieval":
        return retrieval_ndcg(feats["queries"], feats["corpus"], g["relevance"])
    if t == "sts":
        return sts_spearman(feats["text1"], feats["text2"], g["scores"])
    if t == "pair_classification":
        return pair_average_precision(feats["text1"], feats["text2"], g["labels"])
    if t == "reranking":
        return reranking_map(feats["queries"], feats["docs"], g["groups"])
    raise ValueError(f"unknown task type {t!r}")


def evaluate_task(
    task: EmbeddedTask,
    featurizer: Featurizer,
    ks: Sequence[int],
    clustering_seeds: Sequence[int] = (0, 1, 2),
    on_score: Callable[[int | None], None] | None = None,
) -> dict:
    """Score `task` at every k from one transform per role. Returns {k: {"score": float, "stats": {...} | None}};
    a dense featurizer returns a single entry under key None. on_score(k) is called after each k is scored
    (a progress bar)."""
    per_role = {role: featurizer.transform(task.arrays[role], ks) for role in ROLES[task.type]}
    keys = next(iter(per_role.values())).keys()
    q_role, d_role = STATS_ROLES[task.type]
    out = {}
    for k in keys:
        feats = {role: per_role[role][k] for role in per_role}
        stats = sparsity_stats(feats[q_role], feats[d_role]) if featurizer.sparse else None
        out[k] = {"score": score_features(task, feats, clustering_seeds), "stats": stats}
        if on_score is not None:
            on_score(k)
    return out
