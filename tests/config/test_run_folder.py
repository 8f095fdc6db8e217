"""Where `csrv2 train` writes (csrv2.config.run_folder) and where a YAML's relative input paths are read from."""

from pathlib import Path

import pytest

from csrv2.cli import find_config
from csrv2.config.run_config import Config
from csrv2.config.run_folder import run_folder
from csrv2.experiments.paper.grid import GridConfig

QUICKSTART = find_config("quickstart")


@pytest.mark.parametrize(
    ("overrides", "folder"),
    [
        ([], "runs/quickstart"),
        (["head.k=4", "train.lr=1e-4"], "runs/quickstart-head.k=4-train.lr=1e-4"),
        (["train.lr=1e-4", "head.k=4"], "runs/quickstart-head.k=4-train.lr=1e-4"),  # sorted by key
        (["head.k=2"], "runs/quickstart"),  # the YAML's own value: the same run
        (["head.k=4", "head.k=2"], "runs/quickstart"),  # the last one counts, as in the config
        (["train.resume=true", "eval.ks=[2]", "eval.center_on=task"], "runs/quickstart"),  # the same run, rescored
        (["head.k=4", "train.resume=true"], "runs/quickstart-head.k=4"),  # resuming the head.k=4 run
        (["train.report_to=[tensorboard]"], "runs/quickstart-train.report_to=tensorboard"),
        (["backbone.query_prompt='query: a b'"], "runs/quickstart-backbone.query_prompt=query_a_b"),
        (["head.k=4", "output_dir=runs/k4"], "runs/k4"),  # an explicit output_dir wins
    ],
)
def test_overrides_that_change_the_head_get_a_folder_of_their_own(overrides, folder):
    assert run_folder(QUICKSTART, overrides) == folder


def test_a_yaml_without_output_dir_is_named_by_its_file_and_long_suffixes_are_hashed(tmp_path):
    (tmp_path / "my_task.yaml").write_text("head: {k: 2}\n")
    assert run_folder(tmp_path / "my_task.yaml") == "runs/my_task"
    assert run_folder(tmp_path / "my_task.yaml", ["head.k=4"]) == "runs/my_task-head.k=4"
    assert run_folder(None) == Config().output_dir
    long_a = run_folder(QUICKSTART, [f"backbone.query_prompt={'x' * 100}a"])
    long_b = run_folder(QUICKSTART, [f"backbone.query_prompt={'x' * 100}b"])
    assert long_a != long_b and len(long_a) <= len("runs/quickstart-") + 80
    assert long_a.startswith("runs/quickstart-backbone.query_prompt=xxx")


def test_relative_input_paths_are_read_from_the_yaml_folder(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    (conf / "data").mkdir(parents=True)
    for name in ("a.csv", "train.csv", "x.npz"):
        (conf / "data" / name).write_text("text,label\n")
    (conf / "run.yaml").write_text(
        "data:\n"
        "  embeddings: data/x.npz\n"
        "  tasks:\n"
        "    - {name: a, path: data/a.csv}\n"
        "    - {name: b, path: {train: data/train.csv, test: here.csv}}\n"
        "    - {name: c, path: 'hf:org/set'}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "here.csv").write_text("text,label\n")
    monkeypatch.chdir(elsewhere)  # run from another folder
    config = Config.from_yaml(conf / "run.yaml", ["data.eval_embeddings=data/x.npz"])
    tasks = {spec.name: spec.path for spec in config.data.tasks}
    assert tasks["a"] == str(conf / "data" / "a.csv")
    assert tasks["b"] == {
        "train": str(conf / "data" / "train.csv"),
        "test": "here.csv",
    }  # only the current folder has it
    assert tasks["c"] == "hf:org/set"
    assert config.data.embeddings == str(conf / "data" / "x.npz")
    assert config.data.eval_embeddings == "data/x.npz"  # a command-line override is relative to the current folder
    (conf / "grid.yaml").write_text("tasks: [a]\nbase:\n  data:\n    tasks: [{name: a, path: data/a.csv}]\n")
    grid = GridConfig.from_yaml(conf / "grid.yaml")
    assert Path(grid.base.data.tasks[0].path) == conf / "data" / "a.csv"
