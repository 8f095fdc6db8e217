"""Scoring one run: every eval task is scored with its own training split, whatever task the head trained on."""

import json

import torch

from csrv2 import Config, SparseHead
from csrv2.data.prepare import prepare_task
from csrv2.evaluation import score_run as run_eval
from csrv2.evaluation.score_run import evaluate_run, format_results
from csrv2.evaluation.scoring import classification_accuracy, normalize_rows, sparsity_stats


def write_task(path, n, topic_words):
    rows = ["text,label"]
    for i in range(n):
        label = i % 2
        rows.append(f"{topic_words[label]} story number {i},{label}")
    path.write_text("\n".join(rows) + "\n")


class RecordingBar:
    """Stands in for tqdm: records the total, each tick's label and the ticks."""

    made: list = []

    def __init__(self, total, **kwargs):
        self.total, self.labels, self.ticks = total, [], 0
        RecordingBar.made.append(self)

    def set_postfix_str(self, text):
        self.labels.append(text)

    def update(self, n):
        self.ticks += n

    def close(self):
        pass


def test_eval_tasks_use_their_own_training_rows(tmp_path, minilm, monkeypatch):
    write_task(tmp_path / "a.csv", 30, ["cats and dogs", "stocks and bonds"])
    write_task(tmp_path / "b.csv", 50, ["football match", "piano concert"])
    config = Config.from_dict(
        {
            "output_dir": str(tmp_path / "run"),
            "backbone": {"max_length": 16},
            "head": {"hidden": 64, "k": 2},
            "data": {
                "task": "a",
                "tasks": [
                    {"name": "a", "path": str(tmp_path / "a.csv")},
                    {"name": "b", "path": str(tmp_path / "b.csv")},
                ],
            },
            "eval": {"ks": [2, 4], "tasks": ["a", "b"]},
        }
    )
    (tmp_path / "run").mkdir()
    torch.manual_seed(0)
    head = SparseHead(384, 64, 2)
    monkeypatch.setattr(run_eval, "tqdm", RecordingBar)
    results = evaluate_run(config, head)
    (bar,) = RecordingBar.made  # progress: one tick per task × (dense, each k), labelled with both
    assert bar.total == bar.ticks == 2 * 3
    assert bar.labels == ["a dense", "a k=2", "a k=4", "b dense", "b k=2", "b k=4"]
    assert not (tmp_path / "run" / "README.md").exists()  # not a run folder the trainer wrote: no model card
    assert set(results) == {"a", "b"}
    # Two topics that MiniLM separates trivially: a classifier fit on the right rows is perfect.
    assert results["b"]["dense"] == 1.0 and results["a"]["dense"] == 1.0
    assert set(results["b"]["sparse"]) == {2, 4}
    # Each sparse score equals the classifier fit directly on b's own train codes, scored on b's test codes.
    task = prepare_task("b", config, for_training=False).task
    with torch.no_grad():
        for k in (2, 4):
            train = normalize_rows(head.encode(torch.from_numpy(task.arrays["train"]), k).to_scipy())
            test = normalize_rows(head.encode(torch.from_numpy(task.arrays["test"]), k).to_scipy())
            expected = classification_accuracy(train, task.gold["train_labels"], test, task.gold["test_labels"])
            assert results["b"]["sparse"][k]["score"] == expected
            assert results["b"]["sparse"][k]["dead_pct"] == sparsity_stats(test, train)["dead_pct"]
    table = format_results(results)
    assert "| b | classification | 100.0 |" in table
    row = next(line for line in table.splitlines() if line.startswith("| a |"))
    assert f"{100 * results['a']['sparse'][4]['score']:.1f} ({results['a']['sparse'][4]['dead_pct']:.0f})" in row
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["b"]["sparse"]["2"]["score"] == results["b"]["sparse"][2]["score"]


def test_eval_center_on_task_scores_each_task_with_b_pre_at_its_own_mean(tmp_path, fake):
    """eval.center_on: task — a task's codes come from the head with b_pre at the mean of that task's rows (train
    and test), computed here by hand; the head passed in is left as it was."""
    write_task(tmp_path / "b.csv", 40, ["football match", "piano concert"])
    config = Config.from_dict(
        {
            "output_dir": str(tmp_path / "run"),
            "head": {"hidden": 8, "k": 2},
            "data": {"task": "b", "tasks": [{"name": "b", "path": str(tmp_path / "b.csv")}]},
            "eval": {"ks": [1, 2], "center_on": "task"},
        }
    )
    torch.manual_seed(0)
    head = SparseHead(4, 8, 2)
    before = {name: p.detach().clone() for name, p in head.state_dict().items()}
    results = evaluate_run(config, head)
    assert all(torch.equal(before[name], p) for name, p in head.state_dict().items())
    task = prepare_task("b", config, for_training=False).task
    centred = SparseHead(4, 8, 2)
    centred.load_state_dict(before)
    rows = torch.cat([torch.from_numpy(task.arrays["train"]), torch.from_numpy(task.arrays["test"])]).double()
    with torch.no_grad():
        centred.b_pre.copy_(rows.mean(0).float())
        for k in (1, 2):
            train = normalize_rows(centred.encode(torch.from_numpy(task.arrays["train"]), k).to_scipy())
            test = normalize_rows(centred.encode(torch.from_numpy(task.arrays["test"]), k).to_scipy())
            expected = classification_accuracy(train, task.gold["train_labels"], test, task.gold["test_labels"])
            assert results["b"]["sparse"][k]["score"] == expected
