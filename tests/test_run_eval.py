"""Scoring one run: every eval task is scored with its own training split, whatever task the head trained on."""

import numpy as np
import pytest
import torch

from csrv2 import Config, SparseHead
from csrv2.run_eval import evaluate_run, format_results

pytest.importorskip("transformers")


def write_task(path, n, topic_words):
    rows = ["text,label"]
    for i in range(n):
        label = i % 2
        rows.append(f"{topic_words[label]} story number {i},{label}")
    path.write_text("\n".join(rows) + "\n")


def test_eval_tasks_use_their_own_training_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("CSRV2_HOME", str(tmp_path / "home"))
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
    results = evaluate_run(config, SparseHead(384, 64, 2))
    assert set(results) == {"a", "b"}
    # Two topics that MiniLM separates trivially: a classifier fit on the right rows is perfect.
    assert results["b"]["dense"] == 1.0 and results["a"]["dense"] == 1.0
    assert set(results["b"]["sparse"]) == {2, 4}
    assert 0 <= results["b"]["sparse"][2]["dead_pct"] <= 100
    table = format_results(results)
    assert "| b | classification | 100.0 |" in table
    assert (tmp_path / "run" / "eval.json").is_file()
    assert np.isfinite(results["a"]["sparse"][4]["score"])
