"""Task preparation (csrv2.data.prepare): training data from a YAML task and from arrays, filling the cache, and the
embedded evaluation split, with a fake encoder (no model)."""

import numpy as np
import pytest

from csrv2.config.run_config import Config
from csrv2.config.strict import ConfigError
from csrv2.data import prepare
from csrv2.data.stacked_rows import StackedRows


def test_training_data_of_a_yaml_pair_task_groups_positive_pairs(fake, tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("q,d,y\nshort,a longer document,1\nx,yy,0\nsame,same,1\n")
    config = Config.from_dict(
        {
            "backbone": {"query_prompt": "query: "},
            "data": {
                "task": "mine",
                "tasks": [
                    {
                        "name": "mine",
                        "type": "pair_classification",
                        "path": str(path),
                        "text_column": "q",
                        "text2_column": "d",
                        "label_column": "y",
                        "split_column": "",
                    }
                ],
            },
        }
    )
    config.data.tasks[0].test_fraction = 0.0  # every row trains: small enough to check by hand
    data = prepare.training_data(config)
    X, labels = data.embeddings, data.labels
    assert X.shape == (5, 4) and X.dtype == np.float32 and labels.dtype == np.int64 and labels.shape == (5,)
    assert labels[0] == labels[1] and len(set(labels.tolist())) == 4  # short~doc; x, yy, same: own labels
    assert sorted(data.inputs) == sorted(["short", "a longer document", "x", "yy", "same"])
    assert (X[:, 1] == 0).all()  # pairs are documents on both sides: no query prompt
    with pytest.raises(ConfigError, match="no training data"):
        prepare.training_data(Config())


def test_fill_embeds_training_rows_and_the_evaluation_split(fake, tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("text,label\n" + "\n".join(f"t{i},{i % 2}" for i in range(10)))
    config = Config.from_dict(
        {"data": {"task": "c", "tasks": [{"name": "c", "path": str(path)}]}, "eval": {"tasks": ["c"]}}
    )
    assert prepare.fill(config) == ["c/train: 8 training rows", "c/test: train 8, test 2"]
    cached = sorted(p.name.split("__")[1] for p in (tmp_path / "embeddings").glob("*.npy"))
    assert cached == ["c_test_texts", "c_train_train-document"]  # the classifier reuses the training rows


def test_arrays_become_training_data_and_an_evaluation_task(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 4)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.savez(tmp_path / "train.npz", embeddings=x, labels=np.arange(20) % 2)
    np.savez(tmp_path / "test.npz", embeddings=x[:6], labels=np.arange(6) % 2)
    config = Config.from_dict(
        {"data": {"embeddings": str(tmp_path / "train.npz"), "eval_embeddings": str(tmp_path / "test.npz")}}
    )
    data = prepare.training_data(config)
    np.testing.assert_array_equal(data.embeddings, x)
    assert data.labels.dtype == np.int64 and data.labels.tolist() == [i % 2 for i in range(20)]
    task = prepare.arrays_task(config)
    assert task.type == "classification" and task.name == "test"
    np.testing.assert_array_equal(task.arrays["test"], x[:6])


def test_inputs_are_checked_before_any_work(tmp_path):
    """A mistyped eval task or data.task, and eval embeddings of another width, fail at load time, naming them."""
    with pytest.raises(ConfigError, match="eval.tasks: unknown task 'r9'"):
        prepare.check_inputs(Config.from_dict({"data": {"task": "r8"}, "eval": {"tasks": ["r8", "r9"]}}))
    with pytest.raises(ConfigError, match="data.task: unknown task 'mine'"):
        prepare.check_inputs(Config.from_dict({"data": {"task": "mine"}}))
    prepare.check_inputs(Config.from_dict({"data": {"task": "mine", "tasks": [{"name": "mine", "path": "m.csv"}]}}))
    np.save(tmp_path / "train.npy", np.ones((4, 8), np.float32))
    np.save(tmp_path / "test.npy", np.ones((4, 6), np.float32))
    paths = {"embeddings": str(tmp_path / "train.npy"), "eval_embeddings": str(tmp_path / "test.npy")}
    with pytest.raises(ConfigError, match=r"data.eval_embeddings has shape \(4, 6\) but data.embeddings \(4, 8\)"):
        prepare.check_inputs(Config.from_dict({"data": paths}))
    with pytest.raises(FileNotFoundError, match="data.eval_embeddings"):
        prepare.check_inputs(Config.from_dict({"data": {**paths, "eval_embeddings": str(tmp_path / "no.npy")}}))


def test_a_mixture_keeps_each_tasks_classes_apart_and_adds_unlabelled_rows_once(fake, tmp_path):
    """data.mixture: labels shifted per task (class 0 of `a` is not class 0 of `b`); data.max_per_task caps each
    task with the seed-0 draw; data.unlabeled adds a task's other rows (seed 1), never a text already present, each
    a class of its own and marked in `unlabeled`."""
    (tmp_path / "a.csv").write_text("text,label\n" + "\n".join(f"a{'x' * i},{i % 2}" for i in range(10)) + "\n")
    (tmp_path / "b.csv").write_text("text,label\n" + "\n".join(f"b{'y' * i},{i % 3}" for i in range(30)) + "\n")
    tasks = [{"name": n, "path": str(tmp_path / f"{n}.csv"), "test_fraction": 0.0} for n in ("a", "b")]
    config = Config.from_dict({"data": {"mixture": ["a", "b"], "tasks": tasks, "max_per_task": 12}})
    data = prepare.training_data(config)
    assert len(data) == 10 + 12 and data.unlabeled is not None and not data.unlabeled.any()
    a_rows, b_rows = slice(0, 10), slice(10, 22)
    assert set(data.labels[a_rows]) == {0, 1} and set(data.labels[b_rows]) == {2, 3, 4}
    for text, label in zip(data.inputs, data.labels):  # each row keeps its own task's class, shifted
        assert label == (len(text) - 1) % 2 if text[0] == "a" else label == 2 + (len(text) - 1) % 3
    b_task = prepare.get_task("b", config.data.tasks)
    want = prepare.task_training_data(b_task, config, 12, np.random.default_rng(0))
    assert data.inputs[b_rows] == want.inputs  # the grid's seed-0 draw, so the cache is shared
    # the rows are the tasks' cache files themselves, read per batch: nothing of the mixture is copied into RAM
    assert isinstance(data.embeddings, StackedRows) and all(isinstance(p, np.memmap) for p in data.embeddings.parts)
    np.testing.assert_array_equal(data.embeddings[np.arange(10, 22)], want.embeddings)

    config = Config.from_dict({"data": {"mixture": ["a", "b"], "unlabeled": ["b"], "tasks": tasks, "max_per_task": 12}})
    (encoder,) = fake.values()
    encoder.seen.clear()
    data = prepare.training_data(config)
    extra = data.inputs[22:]
    assert sorted(encoder.seen) == sorted(extra)  # only the new texts are embedded, not the whole seed-1 draw
    assert extra and not set(extra) & set(data.inputs[:22]) and len(set(extra)) == len(extra)
    assert data.unlabeled.tolist() == [False] * 22 + [True] * len(extra)
    assert sorted(data.labels[22:]) == list(range(5, 5 + len(extra)))  # one class each
    assert "data.unlabeled (b)" in data.source
    # data.max_unlabeled_per_task: the unlabelled draw has a cap of its own; 0 → every other row of b
    every = {"mixture": ["a", "b"], "unlabeled": ["b"], "tasks": tasks, "max_per_task": 12, "max_unlabeled_per_task": 0}
    data = prepare.training_data(Config.from_dict({"data": every}))
    assert len(data) == 10 + 30 and sorted(data.inputs[22:]) == sorted(
        set(b_task.training_examples("train").texts) - set(data.inputs[10:22])
    )
    few = prepare.training_data(Config.from_dict({"data": {**every, "max_unlabeled_per_task": 14}}))
    assert len(few) == 22 + len(set(few.inputs[22:])) and 0 < len(few) - 22 <= 14
    with pytest.raises(ConfigError, match="data.max_unlabeled_per_task"):
        Config.from_dict({"data": {**every, "max_unlabeled_per_task": -1}})
    b_all = {"data": {"mixture": ["b"], "unlabeled": ["b"], "tasks": tasks, "max_per_task": 0}}
    data = prepare.training_data(Config.from_dict(b_all))  # the labelled rows hold every text: nothing to add
    assert len(data) == 30 and not data.unlabeled.any()
    with pytest.raises(ConfigError, match="are all set"):
        Config.from_dict({"data": {"mixture": ["a"], "task": "a", "tasks": tasks}})
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        prepare.check_inputs(Config.from_dict({"data": {"mixture": ["a", "nope"], "tasks": tasks}}))
