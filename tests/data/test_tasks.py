"""The task model: contrastive labels per task type (docs/method.md) on hand-made tasks, and seeded splits."""

import numpy as np
import pytest

from csrv2.data.tasks import Split, Task, stratified_split


def same(labels, i, j):
    return labels[i] == labels[j]


def test_classification_labels_are_the_classes_of_the_train_split_only():
    task = Task(
        "t",
        "classification",
        {"train": Split(["a", "b", "c"], np.array([1, 0, 1])), "test": Split(["x", "y"], np.array([0, 1]))},
    )
    texts, labels = task.training_texts()
    assert texts == ["a", "b", "c"] and labels.tolist() == [1, 0, 1] and labels.dtype == np.int64


def test_sts_pairs_with_score_at_least_3_of_5_share_a_label():
    s = Split(["a", "c", "e", "a"], texts2=["b", "d", "f", "g"], scores=np.array([3.0, 2.9, 4.5, 0.0]))
    ex = Task("t", "sts", {"train": s}).training_examples()
    pos = {t: i for i, t in enumerate(ex.texts)}
    assert sorted(ex.texts) == ["a", "b", "c", "d", "e", "f", "g"]  # "a" appears once: identical texts are one row
    assert same(ex.labels, pos["a"], pos["b"]) and same(ex.labels, pos["e"], pos["f"])
    assert not same(ex.labels, pos["c"], pos["d"]) and not same(ex.labels, pos["a"], pos["g"])
    assert len(set(ex.labels.tolist())) == 5  # {a, b}, {e, f}, {c}, {d}, {g}
    lee = Task(
        "lee", "sts", {"train": Split(["a", "c"], texts2=["b", "d"], scores=np.array([0.6, 0.59]))}, score_max=1.0
    )  # scale 0-1: threshold 0.6
    ex = lee.training_examples()
    assert ex.labels[0] == ex.labels[1] and ex.labels[2] != ex.labels[3]


def test_pair_classification_label_1_pairs_share_a_label():
    s = Split(["a", "c"], texts2=["b", "d"], labels=np.array([1, 0]))
    ex = Task("t", "pair_classification", {"train": s}).training_examples()
    assert ex.texts == ["a", "b", "c", "d"]
    assert ex.labels[0] == ex.labels[1] and len({ex.labels[0], ex.labels[2], ex.labels[3]}) == 3


def test_retrieval_query_and_its_relevant_docs_share_a_label_others_unique():
    train = Split(["q1 text", "q2 text"], query_ids=["q1", "q2"], qrels={"q1": {"d1": 1, "d2": 1}, "q2": {"d3": 1}})
    test = Split(["q3 text"], query_ids=["q3"], qrels={"q3": {"d4": 1}})
    task = Task(
        "t",
        "retrieval",
        {"train": train, "test": test},
        corpus_ids=["d1", "d2", "d3", "d4", "d5", "d6"],
        corpus=["doc1", "doc2", "doc3", "doc4", "doc5", "  "],
    )  # d6 empty: dropped
    ex = task.training_examples()
    at = {t: i for i, t in enumerate(ex.texts)}
    assert "q3 text" not in at and "  " not in at  # test queries are never trained on
    assert ex.is_query.tolist() == [t.startswith("q") for t in ex.texts]
    assert same(ex.labels, at["q1 text"], at["doc1"]) and same(ex.labels, at["doc1"], at["doc2"])
    assert same(ex.labels, at["q2 text"], at["doc3"]) and not same(ex.labels, at["q1 text"], at["q2 text"])
    others = [ex.labels[at[d]] for d in ("doc4", "doc5")]
    assert len(set(others)) == 2 and not set(others) & {ex.labels[at["q1 text"]], ex.labels[at["q2 text"]]}


def test_reranking_query_and_positives_share_each_negative_its_own():
    s = Split(["q"], positives=[["p1", "p2"]], negatives=[["n1", "n2"]])
    ex = Task("t", "reranking", {"train": s}).training_examples()
    assert ex.texts == ["q", "p1", "p2", "n1", "n2"] and ex.is_query.tolist() == [True, False, False, False, False]
    assert ex.labels[0] == ex.labels[1] == ex.labels[2] and len(set(ex.labels.tolist())) == 3


def test_task_without_train_split_refuses_training():
    with pytest.raises(ValueError, match="no 'train' split"):
        Task("lee", "sts", {"test": Split(["a"], texts2=["b"], scores=np.array([1.0]))}).training_texts()


def test_stratified_split_is_seeded_and_keeps_class_shares():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    train, test = stratified_split(labels, 0.2, seed=0)
    assert np.bincount(labels[test]).tolist() == [10, 6, 4] and len(set(train) | set(test)) == 100
    assert np.array_equal(test, stratified_split(labels, 0.2, seed=0)[1])
    assert not np.array_equal(test, stratified_split(labels, 0.2, seed=1)[1])
