"""Sub-class and pseudo-class labels (csrv2.train.relabel) on points whose clusters are known."""

import numpy as np

from csrv2.train.relabel import refine_labels


def blobs(centres, per, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([c + 0.01 * rng.normal(size=(per, len(c))) for c in centres]).astype(np.float32)


def same_partition(a, b):
    return len({(x, y) for x, y in zip(a, b)}) == len(set(a)) == len(set(b))


def test_each_class_splits_along_its_own_clusters_and_small_classes_stay_whole():
    eye = np.eye(6)
    x = np.concatenate([blobs(eye[:2], 10), blobs(eye[2:4], 10), blobs(eye[4:5], 3)])  # class 0, class 1, class 2
    labels = np.repeat([0, 1, 2], [20, 20, 3])
    got = refine_labels(x, labels, None, subclusters=2)
    truth = np.repeat([0, 1, 2, 3, 4], [10, 10, 10, 10, 3])
    assert same_partition(got, truth) and got.dtype == np.int64 and set(got) == set(range(5))


def test_unlabelled_rows_become_pseudo_classes_and_never_join_a_labelled_class():
    eye = np.eye(4)
    x = np.concatenate([blobs(eye[:1], 6), blobs(eye, 8)])  # 6 labelled rows, then 32 unlabelled in 4 clusters
    labels = np.concatenate([np.zeros(6, int), 1 + np.arange(32)])
    unlabeled = np.arange(38) >= 6
    got = refine_labels(x, labels, unlabeled, pseudo_label_rows=8)
    assert same_partition(got, np.repeat([0, 1, 2, 3, 4], [6, 8, 8, 8, 8]))  # the first blob's unlabelled rows too
    assert (refine_labels(x, labels, unlabeled) == labels).all()  # both off: labels unchanged
