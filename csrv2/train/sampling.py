"""Batch order: a pure function of (seed, epoch), so a resumed run sees exactly the batches it would have seen."""

from __future__ import annotations

import numpy as np


def shuffled_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """A random permutation of range(n) cut into batches; a trailing batch of one is dropped."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return _cut(order, batch_size)


def class_aware_batches(
    labels: np.ndarray, batch_size: int, samples_per_class: int, seed: int, epoch: int
) -> list[np.ndarray]:
    """Batches in which examples of a class come in groups of `samples_per_class`, so most rows have positives.

    Each class's examples are shuffled and cut into groups (a trailing group of one joins the group
    before it); the groups of all classes are shuffled together and the sequence is cut into batches.
    Every example appears once per epoch. labels: (N,) int.
    """
    rng = np.random.default_rng([seed, epoch])
    groups: list[np.ndarray] = []
    # each class's rows in ascending order, classes ascending: one sort, not a scan of all N rows per class (with
    # data.unlabeled every unlabelled row is a class of its own, so C can be ~N)
    by_class = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.r_[True, labels[by_class][1:] != labels[by_class][:-1]])
    for members in np.split(by_class, starts[1:]):
        members = rng.permutation(members)
        cut = [members[i : i + samples_per_class] for i in range(0, len(members), samples_per_class)]
        if len(cut) > 1 and len(cut[-1]) == 1:
            last = cut.pop()
            cut[-1] = np.concatenate([cut[-1], last])
        groups.extend(cut)
    order = np.concatenate([groups[i] for i in rng.permutation(len(groups))])
    return _cut(order, batch_size)


def _cut(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches.pop()
    return batches
