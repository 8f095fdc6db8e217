"""A finished run, looked at: its README.md model card, `csrv2 plot` and `csrv2 compare`, on two tiny real runs
(MiniLM embeddings of a 2-class csv) that differ in head.k and train.lr."""

import importlib.metadata
import json
import shutil

import pytest
import yaml

from csrv2 import SparseHead, cli
from csrv2.config.run_config import Config
from csrv2.data.prepare import training_data
from csrv2.evaluation.score_run import evaluate_run
from csrv2.runs.provenance import git_state
from csrv2.runs.report import curves
from csrv2.train.trainer import Trainer

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
B_COMMAND = "csrv2 train --config tiny.yaml head.k=2 train.lr=1e-3"


@pytest.fixture(scope="module")
def two_runs(tiny_run, tmp_path_factory):
    """(a, b): a copy of tiny_run, evaluated; and a run of the same data with head.k=2, train.lr=1e-3, evaluated."""
    root = tmp_path_factory.mktemp("two_runs")
    a, b = root / "a", root / "b"
    shutil.copytree(tiny_run, a)  # the session's tiny_run stays as other tests expect it
    evaluate_run(Config.from_yaml(a / "config.yaml", [f"output_dir={a}"]), SparseHead.from_pretrained(a))
    config_b = Config.from_yaml(tiny_run / "config.yaml", [f"output_dir={b}", "head.k=2", "train.lr=1e-3"])
    head = Trainer(config_b, training_data(config_b), command=B_COMMAND).fit()
    evaluate_run(config_b, head)
    return a, b


def cell(result: dict) -> str:
    """A score (dead %) cell as the tables print it, computed here from eval.json's numbers."""
    return f"{100 * result['score']:.1f} ({result['dead_pct']:.0f})"


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def test_the_model_card_holds_the_runs_real_numbers(tiny_run, two_runs):
    assert "Not evaluated yet" in (tiny_run / "README.md").read_text()  # written when training ended
    a, b = two_runs
    for run, k, command in ((a, 4, "trained from Python"), (b, 2, f"`{B_COMMAND}`")):
        card = (run / "README.md").read_text()
        config = yaml.safe_load((run / "config.yaml").read_text())
        data = json.loads((run / "data.json").read_text())
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        results = json.loads((run / "eval.json").read_text())
        assert "Not evaluated yet" not in card  # evaluation wrote the card again
        assert f"| h (head.hidden) | {config['head']['hidden']} |" in card and f"| k (head.k) | {k} |" in card
        assert f"| objective | {config['train']['objective']} |" in card
        assert f"| name | `{config['backbone']['name']}` |" in card and "| pooling | mean |" in card
        assert f"| max_length | {config['backbone']['max_length']} |" in card and "| normalize | True |" in card
        assert f"| rows (data.json) | {data['rows']} |" in card and f"`{data['source']}`" in card
        assert f"| steps | {metrics[-1]['step']} |" in card and "| data.task | tiny |" in card
        for task, r in results.items():
            row = f"| {task} | {r['type']} | {100 * r['dense']:.1f} | "
            row += " | ".join(cell(r["sparse"][str(k)]) for k in sorted(map(int, r["sparse"]))) + " |"
            assert row in card
        assert command in card
        assert f"| torch | {importlib.metadata.version('torch')} |" in card
        assert f"| numpy | {importlib.metadata.version('numpy')} |" in card
        assert f"csrv2 commit {git_state()['commit']}" in card


def test_git_state_is_unknown_without_git(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no git executable to run
    assert git_state() == {"commit": "unknown", "dirty": None}


def test_compare_prints_eval_tables_side_by_side_and_the_differing_keys(two_runs, capsys):
    a, b = two_runs
    cli.main(["compare", str(a), str(b)])
    out = capsys.readouterr().out
    ra, rb = (json.loads((run / "eval.json").read_text()) for run in (a, b))
    for task in ra:
        assert f"| {task} | dense | {100 * ra[task]['dense']:.1f} | {100 * rb[task]['dense']:.1f} |" in out
        for k in ra[task]["sparse"]:
            assert f"| {task} | k={k} | {cell(ra[task]['sparse'][k])} | {cell(rb[task]['sparse'][k])} |" in out
    # The config section lists exactly the keys in which the two config.yaml files differ (output_dir aside).
    ca, cb = (flat(yaml.safe_load((run / "config.yaml").read_text())) for run in (a, b))
    expected = {key for key in ca.keys() | cb.keys() if ca.get(key) != cb.get(key)} - {"output_dir"}
    assert expected == {"head.k", "train.lr"}
    section = out.split("## Config keys that differ")[1].split("##")[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert {r[0].removeprefix("| ") for r in rows[1:]} == expected
    assert f"| head.k | {ca['head.k']} | {cb['head.k']} |" in section
    assert f"| train.lr | {ca['train.lr']} | {cb['train.lr']} |" in section


def test_compare_needs_two_run_folders(two_runs, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["compare", str(two_runs[0])])
    assert done.value.code == 2 and "at least two run folders" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        cli.main(["compare", str(two_runs[0]), str(tmp_path)])
    assert done.value.code == 2 and str(tmp_path / "config.yaml") in capsys.readouterr().err


def test_plot_draws_every_metric_of_a_run_to_a_png(two_runs, tmp_path, capsys):
    image = pytest.importorskip("matplotlib.image", reason="needs matplotlib (csrv2[extras])")
    a, _ = two_runs
    out = tmp_path / "curves.png"
    cli.main(["plot", str(a), "--out", str(out)])
    assert out.read_bytes()[:8] == PNG_SIGNATURE and image.imread(out).shape[0] > 100
    lines = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    plotted = capsys.readouterr().out
    expected = [key for key in lines[0] if key not in ("step", "epoch", "elapsed_s")]
    assert all(key in plotted for key in expected) and f"over {len(lines)} logged steps" in plotted
    assert {"loss", "recon_loss", "aux_loss", "k", "lr", "dead_pct"} <= set(expected)
    drawn = curves(a)  # what the panels hold: each key's values at the logged steps, as metrics.jsonl has them
    assert list(drawn)[0] == "loss" and set(drawn) == set(expected)
    for key in expected:
        assert drawn[key] == ([line["step"] for line in lines], [float(line[key]) for line in lines])


def test_plot_names_a_folder_without_metrics(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["plot", str(tmp_path)])
    assert done.value.code == 2 and str(tmp_path / "metrics.jsonl") in capsys.readouterr().err
