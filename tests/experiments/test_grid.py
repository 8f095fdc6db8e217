"""The methods × tasks × k grid on small synthetic tasks (via the `prepare=` hook, no backbone, no network).

Every check compares with a value computed independently of the grid: the dense row against evaluate_task called
directly, trained rows against their saved heads re-scored from disk, PCA against scikit-learn, the rendered tables
against the records.
"""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.decomposition import PCA

from csrv2.config.run_config import Config
from csrv2.config.strict import ConfigError
from csrv2.data.prepare import PreparedTask, TrainingData
from csrv2.evaluation.scoring import DenseFeaturizer, EmbeddedTask, PrefixFeaturizer, SparseFeaturizer, evaluate_task
from csrv2.experiments.paper.grid import GridConfig, mrl_featurizer, run_grid
from csrv2.experiments.paper.report import LABELS, PAPER
from csrv2.files import RefusedFolder
from csrv2.head.baselines import MRLHead, fit_pca
from csrv2.head.sparse_head import SparseHead
from csrv2.train.reuse import load_or_train

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "paper"
KS = [2, 4]
CS = [0]  # clustering seeds


def toy(name: str, config: Config | None = None) -> PreparedTask:
    """4 classes in 16 dims, 30 rows each (unit rows); even rows train, odd rows test. toy-cls: classification,
    toy-cls-2: the same on other draws, toy-clu: clustering of toy-cls's test rows."""
    rng = np.random.default_rng(2 if name == "toy-cls-2" else 0)
    centers = rng.standard_normal((4, 16)).astype(np.float32)
    y = np.repeat(np.arange(4), 30)
    x = centers[y] + 0.3 * rng.standard_normal((120, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    if name.startswith("toy-cls"):
        arrays, gold = {"train": x[::2], "test": x[1::2]}, {"train_labels": y[::2], "test_labels": y[1::2]}
        task = EmbeddedTask(name, "classification", arrays, gold)
    else:
        task = EmbeddedTask(name, "clustering", {"test": x[1::2]}, {"labels": y[1::2]})
    return PreparedTask(task, TrainingData(x[::2], y[::2]))


def hidden_signal(name: str, config: Config | None = None) -> PreparedTask:
    """Classification where the first 8 raw dims are label-free noise of tiny variance and the class sits in the
    last 8 dims at large variance: the first k raw dims carry nothing, the first k principal components the class."""
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), 50)
    centers = 3.0 * rng.standard_normal((4, 8))
    x = np.concatenate([0.01 * rng.standard_normal((200, 8)), centers[y] + 0.3 * rng.standard_normal((200, 8))], 1)
    x = x.astype(np.float32)
    arrays, gold = {"train": x[::2], "test": x[1::2]}, {"train_labels": y[::2], "test_labels": y[1::2]}
    train = TrainingData(x[::2], y[::2], unit_rows=False)  # raw coordinates on purpose: only PCA/truncation see them
    return PreparedTask(EmbeddedTask(name, "classification", arrays, gold), train)


def write_grid(tmp_path: Path, **kw) -> Path:
    raw = {
        "output_dir": str(tmp_path / "run"),
        "tasks": ["toy-cls", "toy-clu", "toy-cls-2"],  # two types, one with two tasks
        "ks": KS,
        "seeds": [0],
        "methods": ["dense", "truncate", "pca", "mrl", "csr", "csrv2-linear", "csrv2-finetune"],
        "clustering_seeds": CS,
        "base": {
            "head": {"hidden": 32, "k_aux": 8},
            "train": {"max_steps": 20, "batch_size": 16, "log_every": 5, "k_start": 8, "device": "cpu"},
        },
        **kw,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """One full grid run on the toy tasks, shared by the tests below: (grid, records)."""
    tmp = tmp_path_factory.mktemp("grid")
    grid = GridConfig.from_yaml(write_grid(tmp))
    return grid, run_grid(grid, prepare=toy, log=quiet)["records"]


def find(records, method, task, k=None, seed=0):
    hits = [r for r in records if (r["method"], r["task"], r["k"]) == (method, task, k) and r["seed"] in (seed, None)]
    assert len(hits) == 1, (method, task, k, hits)
    return hits[0]


# ---------------------------------------------------------------------------------------------------------------------
# The rows against independent computations
def test_every_cell_is_recorded_once(ran):
    grid, records = ran
    got = sorted((r["task"], r["method"], str(r["k"])) for r in records)
    want = [(t, "dense", "None") for t in grid.tasks] + [(t, "csrv2-finetune", "None") for t in grid.tasks]
    want += [(t, m, str(k)) for t in grid.tasks for m in ("truncate", "pca", "mrl", "csr", "csrv2-linear") for k in KS]
    assert got == sorted(want)
    saved = json.loads((Path(grid.output_dir) / "results.json").read_text())
    assert saved["records"] == records
    assert saved["grid"]["base"] == grid.base.to_dict()  # the whole base Config, defaults included
    assert saved["machine"]["cores"] == os.cpu_count()


@pytest.mark.parametrize("task", ["toy-cls", "toy-clu", "toy-cls-2"])
def test_dense_and_truncate_rows_equal_direct_scoring(ran, task):
    _, records = ran
    prepared = toy(task)
    dense = evaluate_task(prepared.task, DenseFeaturizer(), KS, CS)[None]
    assert find(records, "dense", task)["score"] == dense["score"]
    truncated = evaluate_task(prepared.task, PrefixFeaturizer(), KS, CS)
    for k in KS:
        assert find(records, "truncate", task, k)["score"] == truncated[k]["score"]


@pytest.mark.parametrize("task", ["toy-cls", "toy-clu", "toy-cls-2"])
@pytest.mark.parametrize("method", ["csr", "csrv2-linear"])
def test_sparse_rows_equal_their_saved_heads_rescored(ran, task, method):
    grid, records = ran
    prepared = toy(task)
    for k in KS:
        folder = Path(grid.output_dir) / "heads" / task / method / f"k{k}" / "seed0"
        head = SparseHead.from_pretrained(folder)
        assert head.k == k and head.hidden == 32
        again = evaluate_task(prepared.task, SparseFeaturizer(head), [k], CS)[k]
        rec = find(records, method, task, k)
        assert rec["score"] == again["score"]
        assert rec["stats"] == again["stats"]
        assert Config.from_yaml(folder / "config.yaml").train.objective == {"csr": "csr"}.get(method, "csrv2")


def test_mrl_rows_equal_the_saved_head_rescored(ran):
    grid, records = ran
    folder = Path(grid.output_dir) / "heads" / "toy-cls" / "mrl" / "all" / "seed0"
    again = evaluate_task(toy("toy-cls").task, mrl_featurizer(MRLHead.from_pretrained(folder)), KS, CS)
    for k in KS:
        assert find(records, "mrl", "toy-cls", k)["score"] == again[k]["score"]


def test_finetune_without_texts_is_recorded_as_not_run(ran):
    _, records = ran
    rec = find(records, "csrv2-finetune", "toy-cls")
    assert "score" not in rec and rec["note"].startswith("not run: the prepared task kept no training texts")


def test_second_run_reuses_every_head(ran):
    grid, records = ran
    heads = sorted(Path(grid.output_dir, "heads").glob("*/*/*/seed0/*.safetensors"))  # final heads, not checkpoints
    assert len(heads) == 15  # (mrl 1 + csr 2 + csrv2 2) × 3 tasks
    written = [p.stat().st_mtime_ns for p in heads]
    again = run_grid(grid, prepare=toy, log=quiet)["records"]
    assert [p.stat().st_mtime_ns for p in heads] == written  # loaded, not trained again
    assert [r.get("train_s") for r in again if "train_s" in r] == [0.0] * 18  # a record per (task, method, k)
    assert [r.get("score") for r in again] == [r.get("score") for r in records]


def test_pca_beats_truncation_where_the_signal_is_in_the_last_dims(tmp_path):
    grid = GridConfig.from_yaml(write_grid(tmp_path, tasks=["hidden"], methods=["dense", "truncate", "pca"]))
    records = run_grid(grid, prepare=hidden_signal, log=quiet)["records"]
    task = hidden_signal("hidden").task
    # chance is 0.25: two label-free coordinates against the two components that hold the class
    for k in KS:
        pca, trunc = find(records, "pca", "hidden", k)["score"], find(records, "truncate", "hidden", k)["score"]
        assert pca >= 0.95 and trunc <= 0.45, (k, pca, trunc)
    # the row is PCA fit on the train embeddings (scikit-learn's, up to each component's sign) → first k → scored
    sk = PCA(max(KS)).fit(task.arrays["train"])
    direct = evaluate_task(task, PrefixFeaturizer(sk.transform), KS, CS)
    for k in KS:
        assert find(records, "pca", "hidden", k)["score"] == pytest.approx(direct[k]["score"], abs=1e-12)


def test_fit_pca_matches_scikit_learn():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5)).astype(np.float32) * np.array([1.0, 5.0, 0.1, 2.0, 0.5], dtype=np.float32)
    z = fit_pca(x[:150], 3)(x[150:])  # fit on some rows, project others
    ref = PCA(3).fit(x[:150]).transform(x[150:])
    np.testing.assert_allclose(np.abs(z), np.abs(ref), atol=1e-4)
    # the components come by falling variance: the projections' variances are the explained variances
    variances = fit_pca(x, 3)(x).var(axis=0, ddof=1)
    np.testing.assert_allclose(variances, PCA(3).fit(x).explained_variance_, rtol=1e-4)
    assert variances[0] > variances[1] > variances[2]


def test_one_head_scores_every_k(tmp_path):
    grid = GridConfig.from_yaml(write_grid(tmp_path, train_per_k=False, methods=["csr"], tasks=["toy-clu"]))
    records = run_grid(grid, prepare=toy, log=quiet)["records"]
    folders = list((Path(grid.output_dir) / "heads" / "toy-clu" / "csr").iterdir())
    assert [f.name for f in folders] == ["all"]
    head = SparseHead.from_pretrained(folders[0] / "seed0")
    assert head.k == 8  # trained at base.head.k (the default), scored at every k of the grid
    again = evaluate_task(toy("toy-clu").task, SparseFeaturizer(head), KS, CS)
    assert again[2]["score"] != again[4]["score"]  # so a record of the wrong k would show
    assert [(r["k"], r["score"]) for r in records] == [(k, again[k]["score"]) for k in KS]


def test_load_or_train_retrains_an_unfinished_or_different_run(tmp_path):
    grid = GridConfig.from_yaml(write_grid(tmp_path))
    data = toy("toy-cls").train
    config = grid.run_config("csr", 2, 0, "toy-cls")
    folder = Path(config.output_dir)
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text('{"step": 1}\n')  # an interrupted run: the Trainer would refuse it
    head, seconds = load_or_train(config, data)
    assert seconds > 0 and isinstance(head, SparseHead)
    _, seconds = load_or_train(config, data)
    assert seconds == 0.0
    changed = GridConfig.from_yaml(write_grid(tmp_path), ["base.train.lr=1e-3"]).run_config("csr", 2, 0, "toy-cls")
    assert changed.output_dir == config.output_dir
    _, seconds = load_or_train(changed, data)
    assert seconds > 0  # same folder, another config: trained again
    assert Config.from_yaml(folder / "config.yaml").train.lr == 1e-3
    (folder / "notes.md").write_text("mine")  # a file no run writes: the folder is someone's, never removed
    with pytest.raises(RefusedFolder, match="holds files no run writes"):
        load_or_train(config, data)
    assert (folder / "notes.md").read_text() == "mine"


def test_a_head_saved_before_the_spec_rename_is_reused(tmp_path):
    """A finished run whose head spec is config.json (saved before csrv2_head.json) counts as done: loaded, not
    retrained, with the same weights."""
    grid = GridConfig.from_yaml(write_grid(tmp_path))
    config = grid.run_config("csr", 2, 0, "toy-cls")
    head, seconds = load_or_train(config, toy("toy-cls").train)
    folder = Path(config.output_dir)
    (folder / "csrv2_head.json").rename(folder / "config.json")
    again, seconds = load_or_train(config, toy("toy-cls").train)
    assert seconds == 0.0 and torch.equal(again.weight, head.weight)


# ---------------------------------------------------------------------------------------------------------------------
# The rendered tables against the records
def md_table(text: str, title: str) -> dict[str, list[str]]:
    """The rows of the markdown table under `### <title>`: {row label: cells}."""
    section = text.split(f"### {title}\n", 1)[1].split("###", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    assert rows[0][0].strip() == "method"
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def means(records, method, k, value=lambda r: 100 * r["score"], types=("classification", "clustering")):
    """Mean over seeds per task, then over the tasks of `types` → (mean over tasks, mean over the types' means)."""
    per_task, type_of = {}, {}
    for r in records:
        if r["method"] == method and r["k"] in (k, None) and "score" in r and r["type"] in types:
            per_task.setdefault(r["task"], []).append(value(r))
            type_of[r["task"]] = r["type"]
    task_means = {t: float(np.mean(v)) for t, v in per_task.items()}
    type_means = [np.mean([m for t, m in task_means.items() if type_of[t] == typ]) for typ in set(type_of.values())]
    return float(np.mean(list(task_means.values()))), float(np.mean(type_means))


def mean_over_tasks(records, method, k, value=lambda r: 100 * r["score"]):
    return means(records, method, k, value)[0]


def test_table_numbers_equal_the_records(ran):
    grid, records = ran
    table = (Path(grid.output_dir) / "table.md").read_text()
    trained = ["dense", "truncate", "pca", "mrl", "csr", "csrv2-linear"]
    by_tasks = md_table(table, "Mean over tasks")
    by_types = md_table(table, "Mean over task types (each type weighted equally)")
    clustering = md_table(table, "clustering (toy-clu)")
    classification = md_table(table, "classification (toy-cls, toy-cls-2)")
    for rows in (by_tasks, by_types):
        assert set(rows) == {LABELS[m] for m in [*trained, "csrv2-finetune"]}
        assert rows[LABELS["csrv2-finetune"]] == ["—"] * len(KS)  # not run, shown with a note
    for m in trained:
        label = LABELS[m]
        assert [float(c) for c in by_tasks[label]] == [round(means(records, m, k)[0], 2) for k in KS], m
        assert [float(c) for c in by_types[label]] == [round(means(records, m, k)[1], 2) for k in KS], m
        want = [round(means(records, m, k, types=("classification",))[0], 2) for k in KS]
        assert [float(c) for c in classification[label]] == want, m
        want = [round(100 * find(records, m, "toy-clu", None if m == "dense" else k)["score"], 2) for k in KS]
        assert [float(c) for c in clustering[label]] == want, m
    assert len(set(by_tasks[LABELS["dense"]])) == 1  # the ceiling is the same number in every column
    dead = md_table(table, "Dead latents, % of h never active on the evaluation data (mean over tasks)")
    postings = md_table(table, "Postings touched per query, fraction of the database (Σ_j p_q(j)·p_d(j))")
    for m in ("csr", "csrv2-linear"):
        want = [round(mean_over_tasks(records, m, k, lambda r: r["stats"]["dead_pct"]), 1) for k in KS]
        assert [float(c) for c in dead[LABELS[m]]] == want
        want = [round(mean_over_tasks(records, m, k, lambda r: r["stats"]["postings_fraction"]), 4) for k in KS]
        assert [float(c) for c in postings[LABELS[m]]] == want
    assert f"- {LABELS['csrv2-finetune']}: toy-cls-2: not run: " in table  # the note says why the row is empty


def test_comparison_numbers_equal_the_records_and_the_paper(ran):
    grid, records = ran
    text = (Path(grid.output_dir) / "comparison.md").read_text()
    rows = md_table("### t\n" + text.split("\n\n", 1)[1], "t")
    for m in ("dense", "mrl", "csr", "csrv2-linear"):
        cells = [re.fullmatch(r"(\S+) / (\S+)", c).groups() for c in rows[LABELS[m]]]
        assert [float(ours) for ours, _ in cells] == [round(mean_over_tasks(records, m, k), 1) for k in KS]
        assert [float(paper) for _, paper in cells] == [round(PAPER[m][k], 1) for k in KS]


# ---------------------------------------------------------------------------------------------------------------------
# GridConfig: strict, and the base is a Config
@pytest.mark.parametrize(
    "change, message",
    [
        ({"bogus": 1}, "unknown key bogus"),
        ({"methods": ["dense", "nope"]}, r"methods \['nope'\] unknown"),
        ({"base": {"head": {"hiden": 3}}}, "unknown key base.head.hiden"),
        ({"method_overrides": {"dense": ["train.lr=1"]}}, r"method_overrides for \['dense'\]"),
        ({"ks": [2, 64]}, "eval.ks \\[64\\] must lie in \\[1, head.hidden=32\\]"),  # a base that cannot train ks
    ],
)
def test_grid_config_refuses_and_names_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        GridConfig.from_yaml(write_grid(tmp_path, **change))


def test_grid_config_refuses_a_duplicate_key(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("tasks: [a]\nks: [2]\nks: [4]\n")
    with pytest.raises(ConfigError, match="'ks' appears twice"):
        GridConfig.from_yaml(path)


def test_base_is_a_config_and_overrides_reach_every_run(tmp_path):
    path = write_grid(tmp_path, base_overrides=["train.epochs=3"], method_overrides={"csr": ["train.lr=2e-4"]})
    grid = GridConfig.from_yaml(path, ["base.train.temperature=0.5", "ks=[2]"])
    assert isinstance(grid.base, Config) and grid.base.head.hidden == 32 and grid.ks == [2]
    assert grid.base.train.temperature == 0.5 and grid.base.train.epochs == 10  # base_overrides apply per run
    csr, mrl = grid.run_config("csr", 2, 3, "toy-cls"), grid.run_config("mrl", None, 3, "toy-cls")
    assert (csr.train.lr, mrl.train.lr) == (2e-4, Config().train.lr)
    for run in (csr, mrl):
        assert (run.train.epochs, run.train.temperature, run.train.seed, run.eval.ks) == (3, 0.5, 3, [2])
    assert (csr.head.k, mrl.head.k, csr.train.objective, mrl.train.objective) == (2, 8, "csr", "mrl")
    finetune = grid.run_config("csrv2-finetune", 2, 0, "toy-cls")
    assert finetune.train.backbone == "full" and finetune.data.task == "toy-cls"
    assert finetune.output_dir == str(Path(grid.output_dir) / "heads/toy-cls/csrv2-finetune/k2/seed0")
    assert grid.base.train.backbone == "frozen" and grid.base.output_dir == "runs/default"  # base never changes


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_paper_configs_load(path):
    raw = yaml.safe_load(path.read_text())
    grid = GridConfig.from_yaml(path)
    assert (grid.tasks, grid.methods, grid.ks) == (raw["tasks"], raw["methods"], raw["ks"])
    assert grid.base.head.hidden == raw["base"]["head"]["hidden"]
    assert grid.base.backbone.name == raw["base"]["backbone"]["name"]


def test_an_unknown_task_fails_before_anything_trains(tmp_path):
    """With the catalog's preparation, every task name is checked first: a typo in the last task costs nothing."""
    grid = GridConfig.from_yaml(write_grid(tmp_path, tasks=["r8", "rotten-tomatos"]))
    with pytest.raises(ConfigError, match="unknown task 'rotten-tomatos'"):
        run_grid(grid, log=lambda line: None)
    assert not (tmp_path / "run" / "heads").exists()


def test_center_on_task_scores_each_task_with_the_head_centred_on_its_rows(tmp_path):
    """base.eval.center_on: task moves b_pre to the mean of the scored task's rows, as `csrv2 train` scores a run."""
    path = write_grid(tmp_path, methods=["csrv2-linear"], tasks=["toy-cls"])
    grid = GridConfig.from_yaml(path, ["base.eval.center_on=task"])
    records = run_grid(grid, prepare=toy, log=quiet)["records"]
    task = toy("toy-cls").task
    for k in KS:
        head = SparseHead.from_pretrained(
            Path(grid.output_dir) / "heads" / "toy-cls" / "csrv2-linear" / f"k{k}" / "seed0"
        )
        centred = evaluate_task(task, SparseFeaturizer(head.centred(torch.from_numpy(task.mean()))), [k], CS)[k]
        as_trained = evaluate_task(task, SparseFeaturizer(head), [k], CS)[k]
        rec = find(records, "csrv2-linear", "toy-cls", k)
        assert rec["score"] == centred["score"] and rec["stats"] == centred["stats"]
        assert rec["stats"] != as_trained["stats"]  # so a grid that ignored center_on would fail here
