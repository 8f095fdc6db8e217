"""The fold protocol (csrv2.experiments.research.folds) on small CSV tasks with a bag-of-words fake encoder.

Checks against values computed outside the protocol: which tasks are in-mixture / held-out, the dense reference
against evaluate_task called directly, usage against codes recomputed from the saved head, reuse of finished heads.
"""

import dataclasses
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from csrv2.backbone import embeddings
from csrv2.config.strict import ConfigError
from csrv2.data.prepare import prepare_task
from csrv2.evaluation.scoring import DenseFeaturizer, SparseFeaturizer, evaluate_task
from csrv2.evaluation.usage import latent_counts, usage_stats
from csrv2.experiments.research.fold_inputs import mean_cosine, skew
from csrv2.experiments.research.folds import FoldsConfig, run_folds
from csrv2.head.sparse_head import SparseHead

TOPICS = ["cats", "stocks", "rain", "chess", "bread", "trains"]


class WordsEncoder:
    """16-d unit vectors: the normalised sum of one fixed random vector per word (words of a topic share vectors)."""

    dim = 16

    def __init__(self, cfg):
        self.cfg = cfg

    def encode(self, texts, kind="document"):
        rows = []
        for text in texts:
            v = np.zeros(16)
            for word in text.split():
                v += np.random.default_rng(zlib.crc32(word.encode())).standard_normal(16)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32)


def write_task(folder, name, topics, kind):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    rows = ["text,label"]
    for i in range(60):
        t = i % len(topics)
        rows.append(f"{topics[t]} {topics[t]} note{rng.integers(0, 40)} {name},{t}")
    (folder / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return {"name": name, "type": kind, "path": str(folder / f"{name}.csv"), "test_fraction": 0.3}


@pytest.fixture
def folds_config(tmp_path, monkeypatch):
    monkeypatch.setenv("CSRV2_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(embeddings, "get_encoder", lambda cfg: WordsEncoder(cfg))
    tasks = [
        write_task(tmp_path, "a-cls", TOPICS[:3], "classification"),
        write_task(tmp_path, "a-clu", TOPICS[:3], "clustering"),
        write_task(tmp_path, "b-cls", TOPICS[3:], "classification"),
        write_task(tmp_path, "b-clu", TOPICS[3:], "clustering"),
    ]
    raw = {
        "output_dir": str(tmp_path / "out"),
        "folds": {"A": ["a-cls", "a-clu"], "B": ["b-cls", "b-clu"]},
        "arms": {"recipe": [], "csr": ["train.objective=csr"]},
        "ks": [1, 2],
        "max_per_task": 30,
        "clustering_seeds": [0],
        "min_usage_activations": 1,
        "base": {
            "head": {"hidden": 32, "k": 2, "k_aux": 8, "dead_steps": 5},
            "train": {"epochs": 2, "batch_size": 16, "log_every": 5},
            "data": {"tasks": tasks},
        },
    }
    path = tmp_path / "folds.yaml"
    path.write_text(yaml.safe_dump(raw))
    return FoldsConfig.from_yaml(path)


def test_every_head_is_scored_in_and_out_of_its_fold_with_usage_on_the_other_folds_corpus(folds_config):
    cfg = folds_config
    records = run_folds(cfg, log=lambda line: None)["records"]
    scores = [r for r in records if r["kind"] == "score"]
    recipe_a = [r for r in scores if r["arm"] == "recipe" and r["fold"] == "A"]
    assert {(r["task"], r["in_mixture"], r["held_out"]) for r in recipe_a} == {
        ("a-cls", True, False),
        ("a-clu", True, False),
        ("b-cls", False, True),
        ("b-clu", False, True),
    }
    per_task = {r["task"] for r in scores if r["arm"] == "per-task"}
    assert per_task == {"a-cls", "a-clu", "b-cls", "b-clu"}  # each scored on its own task only
    assert all(r["in_mixture"] for r in scores if r["arm"] == "per-task")

    # dense: evaluate_task called directly on the same prepared task
    prepared = prepare_task("b-cls", cfg.base, cfg.max_per_task, cfg.max_eval, seed=0)
    direct = evaluate_task(prepared.task, DenseFeaturizer(), cfg.ks, cfg.clustering_seeds)[None]["score"]
    assert [r["score"] for r in scores if r["arm"] == "dense" and r["task"] == "b-cls"] == [direct]

    # usage of the A head on B's corpus, recomputed from the saved head: B's test texts (clustering and
    # classification test rows), never B's classifier training rows
    head = SparseHead.from_pretrained(f"{cfg.output_dir}/heads/recipe/A/seed0")
    u = np.unique(
        np.concatenate(
            [
                np.asarray(prepare_task(n, cfg.base, cfg.max_per_task, cfg.max_eval).task.arrays["test"])
                for n in ("b-cls", "b-clu")
            ]
        ),
        axis=0,
    )
    codes = head.encode(torch.from_numpy(u), 2)
    want = usage_stats(latent_counts(codes.indices.numpy(), codes.values.detach().numpy(), 32), 2, rows=len(u))
    got = next(r for r in records if r["kind"] == "usage" and r["arm"] == "recipe" and r["fold"] == "A" and r["k"] == 2)
    assert got["corpus"] == "B" and got["rows"] == len(u) > 30
    for key in ("dead_pct", "n_eff", "postings_fraction", "rare_pct"):
        assert got[key] == pytest.approx(want[key]), key

    # outputs: the summary's held-out mean is the mean of the held-out records
    results = json.loads((Path(cfg.output_dir) / "results.json").read_text())
    held = np.mean([r["score"] for r in recipe_a if r["held_out"] and r["k"] == 1])
    assert results["summary"]["recipe"]["A"]["held"]["1"] == pytest.approx(100 * held)
    table = (Path(cfg.output_dir) / "table.md").read_text()
    assert "trained on fold A" in table and "mean over training folds" in table and "| recipe |" in table

    # a second run reuses every finished head (and reports the seconds its training took)
    before = {p: p.stat().st_mtime_ns for p in Path(cfg.output_dir, "heads").rglob("head.safetensors")}
    again = run_folds(cfg, log=lambda line: None)["records"]
    assert {p: p.stat().st_mtime_ns for p in Path(cfg.output_dir, "heads").rglob("head.safetensors")} == before
    assert [r.get("train_s") for r in again] == [r.get("train_s") for r in records]
    assert again == records  # scores reused from each head's fold_scores.json

    # another output folder that points heads_dir at these heads trains nothing and scores the same
    other = dataclasses.replace(cfg, output_dir=cfg.output_dir + "-confirm", heads_dir=f"{cfg.output_dir}/heads")
    assert run_folds(other, log=lambda line: None)["records"] == records
    assert {p: p.stat().st_mtime_ns for p in Path(cfg.output_dir, "heads").rglob("head.safetensors")} == before
    assert (Path(other.output_dir) / "table.md").is_file() and not (Path(other.output_dir) / "heads").exists()

    # the same heads folder with other inputs (anisotropy: the config of each head is unchanged) retrains every head
    skewed = dataclasses.replace(other, anisotropy=1.0)
    run_folds(skewed, log=lambda line: None)
    after = {p: p.stat().st_mtime_ns for p in Path(cfg.output_dir, "heads").rglob("head.safetensors")}
    assert after.keys() == before.keys() and all(after[p] != before[p] for p in before)

    # a changed evaluation setting rescores: the records' keys stay, the k=2 usage is recomputed
    cfg.min_usage_activations = 1000
    third = run_folds(cfg, log=lambda line: None)["records"]
    assert not any(r["enough_rows"] for r in third if r["kind"] == "usage")


def test_center_on_task_encodes_each_task_with_b_pre_at_its_own_mean(folds_config):
    """center_on: task — each task scored (and counted in U) by the trained head with b_pre moved to the mean of that
    task's rows, every role; recomputed here from the saved head, which stays as trained."""
    cfg = dataclasses.replace(folds_config, center_on="task", arms={"recipe": []}, references=[])
    records = run_folds(cfg, log=lambda line: None)["records"]
    saved = SparseHead.from_pretrained(f"{cfg.output_dir}/heads/recipe/A/seed0")
    trained_b_pre = saved.b_pre.detach().clone()

    def centred_on(task):
        rows = np.concatenate([np.asarray(x, np.float64) for x in task.arrays.values()])
        head = SparseHead.from_pretrained(f"{cfg.output_dir}/heads/recipe/A/seed0")
        head.center(torch.from_numpy(rows.mean(0)))  # naive mean of every row the task encodes
        return head

    b_cls = prepare_task("b-cls", cfg.base, cfg.max_per_task, cfg.max_eval).task
    want = evaluate_task(b_cls, SparseFeaturizer(centred_on(b_cls)), cfg.ks, cfg.clustering_seeds)
    got = {r["k"]: r["score"] for r in records if r["kind"] == "score" and r["task"] == "b-cls" and r["fold"] == "A"}
    assert got == {k: want[k]["score"] for k in cfg.ks}

    counts = np.zeros(32)
    rows = 0
    for name in ("b-cls", "b-clu"):
        task = prepare_task(name, cfg.base, cfg.max_per_task, cfg.max_eval).task
        u = np.unique(np.asarray(task.arrays["test"]), axis=0)  # U: test rows, never the classifier's train rows
        codes = centred_on(task).encode(torch.from_numpy(u), 2)
        counts += latent_counts(codes.indices.numpy(), codes.values.detach().numpy(), 32)
        rows += len(u)
    usage = next(r for r in records if r["kind"] == "usage" and r["fold"] == "A" and r["k"] == 2)
    assert usage["rows"] == rows and usage["n_eff"] == pytest.approx(usage_stats(counts, 2)["n_eff"])
    assert torch.equal(SparseHead.from_pretrained(f"{cfg.output_dir}/heads/recipe/A/seed0").b_pre, trained_b_pre)
    assert not torch.allclose(centred_on(b_cls).b_pre, trained_b_pre)  # the centring did move it


def test_a_task_in_two_folds_or_a_bad_arm_is_refused(folds_config):
    cfg = folds_config
    cfg.arms["unlabeled"] = ["data.unlabeled=[FOLD, b-clu]"]
    config = cfg.arm_config("unlabeled", "A", 0, ["a-cls", "a-clu"])
    assert config.data.unlabeled == ["a-cls", "a-clu", "b-clu"] and config.data.mixture == ["a-cls", "a-clu"]
    cfg.folds["B"].append("a-cls")
    with pytest.raises(ConfigError, match="'a-cls' is in folds A and B"):
        cfg.validate()
    cfg.folds["B"].pop()
    cfg.arms["bad"] = ["train.nope=1"]
    with pytest.raises(ConfigError, match="arms.bad"):
        cfg.validate()


def test_skew_makes_rows_share_a_direction_and_mean_cosine_equals_the_pairwise_loop():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 64))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    naive = np.mean([x[i] @ x[j] for i in range(40) for j in range(40) if i != j])
    assert mean_cosine(x) == pytest.approx(naive)
    y = skew(x, 1.2)
    assert np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-6)
    # nearly orthogonal rows plus 1.2·u: cosines ≈ 1.44 / (1 + 1.44)
    assert mean_cosine(y) == pytest.approx(1.44 / 2.44, abs=0.05) and mean_cosine(x) < 0.05


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["seeds=[-1]"], "seeds must be distinct integers ≥ 0"),
        (["clustering_seeds=[]"], "clustering_seeds must be distinct integers ≥ 0"),
        (["seeds=[9223372036854775808]"], "seeds[0]=9223372036854775808 does not fit a 64-bit integer"),
        (["anisotropy=.nan"], "anisotropy=nan is not a finite number"),
        (["anisotropy=-1"], "anisotropy must be ≥ 0"),
        (["max_eval=-1"], "max_eval must be ≥ 0"),
        (["output_dir="], "output_dir is empty"),
        (["folds={A: [a-cls], B: 3}"], "folds.B must be a list"),
        (["folds={A: [a-cls], 2: [b-cls]}"], "folds: key 2 must be a string"),
        (["arms={}", "base.train.lr=0"], "base: train.lr must be > 0"),
        (["arms={}", "base.train.temperature=.inf"], "base.train.temperature=inf is not a finite number"),
        (["arms={}", "ks=[64]"], "base: eval.ks [64] must lie in [1, head.hidden=32]"),
    ],
)
def test_every_field_of_a_folds_config_is_checked_at_load(folds_config, tmp_path, overrides, message):
    """Folds configs used to check only folds, arms and ks: a negative seed, a NaN anisotropy or a base config that
    no run would accept (when no arm rebuilt it) loaded and failed hours later."""
    with pytest.raises(ConfigError) as err:
        FoldsConfig.from_yaml(tmp_path / "folds.yaml", overrides)
    assert message in str(err.value)
