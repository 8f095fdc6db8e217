"""Batch order against a naive reference: class-aware batches group each class by one sort, and must give exactly
the batches of a scan per class (the order every earlier run, and every resumed run, was trained with)."""

import numpy as np
import pytest

from csrv2.train import sampling


def naive_class_aware_batches(labels, batch_size, samples_per_class, seed, epoch):
    rng = np.random.default_rng([seed, epoch])
    groups = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))  # (n_c,) row ids of one class, ascending
        cut = [members[i : i + samples_per_class] for i in range(0, len(members), samples_per_class)]
        if len(cut) > 1 and len(cut[-1]) == 1:
            last = cut.pop()
            cut[-1] = np.concatenate([cut[-1], last])
        groups.extend(cut)
    order = np.concatenate([groups[i] for i in rng.permutation(len(groups))])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return batches[:-1] if len(batches) > 1 and len(batches[-1]) < 2 else batches


rng = np.random.default_rng(0)
LABELS = {
    "few classes": rng.integers(0, 7, 1000),
    "negative and unsorted": rng.integers(-3, 3, 11),
    "one row": np.array([5]),
    "mostly singletons (data.unlabeled)": np.r_[rng.integers(0, 50, 500), 50 + rng.permutation(2000)],
}


@pytest.mark.parametrize("name", LABELS)
def test_class_aware_batches_equal_the_per_class_scan(name):
    labels = LABELS[name]
    for epoch in range(3):
        got = sampling.class_aware_batches(labels, 32, 4, seed=1, epoch=epoch)
        want = naive_class_aware_batches(labels, 32, 4, 1, epoch)
        assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))
