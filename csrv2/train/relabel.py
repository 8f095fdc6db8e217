"""Finer contrastive labels from the embeddings themselves: k-means sub-classes within each class, and k-means
pseudo-classes for unlabelled rows. A supervised contrastive loss puts each class on about one latent; finer classes
spread a head's usage over more latents (docs/general-head.md measures what that costs).

    labels = refine_labels(x, labels, unlabeled, subclusters=4, pseudo_label_rows=32, seed=0)

x: (N, d) embeddings; labels: (N,) int; unlabeled: (N,) bool or None. Returns new (N,) int64 labels, 0..C'-1.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans


def kmeans_labels(x: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """(n, d) → (n,) cluster ids in [0, clusters); one seeded k-means++ start, at most 50 iterations."""
    if clusters <= 1 or len(x) <= clusters:
        return np.zeros(len(x), np.int64) if clusters <= 1 else np.arange(len(x), dtype=np.int64)
    km = KMeans(n_clusters=clusters, n_init=1, max_iter=50, random_state=seed)
    return km.fit_predict(np.asarray(x, dtype=np.float32)).astype(np.int64)


def refine_labels(
    x: np.ndarray,
    labels: np.ndarray,
    unlabeled: np.ndarray | None,
    subclusters: int = 0,
    pseudo_label_rows: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Labelled rows: each class with ≥ 2·subclusters rows split into `subclusters` k-means sub-classes (smaller
    classes stay whole). Unlabelled rows (each its own class on input): grouped into ⌈n / pseudo_label_rows⌉ k-means
    clusters. 0 leaves either as it is."""
    labels = np.asarray(labels, dtype=np.int64)
    unlabeled = np.zeros(len(labels), bool) if unlabeled is None else np.asarray(unlabeled, bool)
    keys = np.stack([labels, np.zeros_like(labels)], axis=1)  # (class, part) pairs, renumbered at the end
    if subclusters > 1:
        order = np.argsort(labels[~unlabeled], kind="stable")
        rows = np.flatnonzero(~unlabeled)[order]
        starts = np.unique(labels[rows], return_index=True)[1]
        for members in np.split(rows, starts[1:]):
            if len(members) >= 2 * subclusters:
                keys[members, 1] = kmeans_labels(x[members], subclusters, seed)
    if pseudo_label_rows > 0 and unlabeled.any():
        rows = np.flatnonzero(unlabeled)
        clusters = -(-len(rows) // pseudo_label_rows)
        keys[rows, 0] = labels.max() + 1  # one namespace for all pseudo-classes
        keys[rows, 1] = kmeans_labels(x[rows], clusters, seed)
    return np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
