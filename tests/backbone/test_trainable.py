"""train.backbone=full: the backbone learns through the sparse objective, is checkpointed, resumed and saved."""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from csrv2 import Config, SparseHead
from csrv2.backbone.encoders import load_backbone
from csrv2.backbone.trainable import TrainableTextBackbone, TrainableVisionBackbone
from csrv2.config.run_config import BackboneConfig
from csrv2.data.catalog import get_task
from csrv2.data.prepare import evaluation_config, prepare_task, training_data
from csrv2.evaluation.scoring import DenseFeaturizer, SparseFeaturizer, evaluate_task
from csrv2.experiments.paper.grid import GridConfig, run_grid
from csrv2.train.trainer import Trainer

WORDS = ["river", "bank", "loan", "money", "fish", "water", "credit", "boat", "interest", "shore", "cash", "stream"]


@pytest.fixture
def small_task(tmp_path):
    """A 3-class csv of short texts (mechanics, not quality: it only has to give positives)."""
    rows = ["text,label"]
    for i in range(48):
        label = i % 3
        words = " ".join(WORDS[(label * 4 + j + i) % 12] for j in range(5))
        rows.append(f"the {words} number {i},{label}")
    path = tmp_path / "small.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def finetune_config(tmp_path, small_task, **train):
    return Config.from_dict(
        {
            "output_dir": str(tmp_path / "run"),
            "backbone": {"name": "all-MiniLM-L6-v2", "max_length": 16},
            "head": {"hidden": 256, "k": 2, "k_aux": 0},
            "data": {"task": "small", "tasks": [{"name": "small", "path": str(small_task)}]},
            "train": {
                "backbone": "full",
                "batch_size": 12,
                "max_steps": 4,
                "log_every": 1,
                "checkpoint_every": 2,
                "lr": 1e-4,
                "backbone_lr": 1e-4,
                "warmup_steps": 2,
                "max_grad_norm": 1.0,
                "grad_accum_steps": 2,
                **train,
            },
        }
    )


def test_full_finetuning_updates_backbone_and_resumes(tmp_path, small_task, minilm):
    cfg = finetune_config(tmp_path, small_task)
    before = {k: v.clone() for k, v in TrainableTextBackbone(cfg.backbone, cfg.train).state_dict().items()}
    Trainer(cfg, training_data(cfg)).fit()
    run = tmp_path / "run"
    assert (run / "backbone" / "model.safetensors").is_file()
    from safetensors.torch import load_file

    after = load_file(str(run / "backbone" / "model.safetensors"))
    changed = [k for k in after if not torch.equal(after[k], before["model." + k])]
    assert len(changed) > len(after) // 2  # the backbone learned, not only the head
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["lr"] for line in lines[:3]] == [5e-5, 1e-4, 1e-4]  # warmup over 2 steps, head group
    assert sum(line["contrastive_loss"] for line in lines) > 0  # a one-class micro-batch alone gives 0

    # Resume from step 2 reproduces the uninterrupted final head.
    straight = Trainer(cfg := finetune_config(tmp_path / "b", small_task), training_data(cfg)).fit()
    for step_dir in sorted(run.glob("step_*"))[1:]:  # as if killed between step 2's and step 4's checkpoints
        shutil.rmtree(step_dir)
    (run / "head.safetensors").unlink()
    resumed = Trainer(cfg := finetune_config(tmp_path, small_task, resume=True), training_data(cfg)).fit()
    torch.testing.assert_close(resumed.weight, straight.weight)


def test_paper_grid_finetunes_rescores_and_reuses(tmp_path, small_task, minilm):
    """The tables' csrv2-finetune row: trained on the task's texts, scored on embeddings of the finetuned backbone."""
    raw = {
        "output_dir": str(tmp_path / "grid"),
        "tasks": ["small"],
        "methods": ["dense", "csrv2-finetune"],
        "ks": [2],
        "seeds": [0],
        "clustering_seeds": [0],
        "base": {
            "backbone": {"name": "all-MiniLM-L6-v2", "max_length": 16},
            "head": {"hidden": 256, "k_aux": 0},
            "data": {"tasks": [{"name": "small", "path": str(small_task)}]},
            "train": {"batch_size": 12, "max_steps": 2, "log_every": 1, "backbone_lr": 1e-4},
        },
    }
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(raw))
    grid = GridConfig.from_yaml(tmp_path / "grid.yaml")
    records = [r for r in run_grid(grid, log=lambda s: None)["records"] if r["method"] == "csrv2-finetune"]
    assert len(records) == 1 and records[0]["train_s"] > 0
    run = tmp_path / "grid" / "heads" / "small" / "csrv2-finetune" / "k2" / "seed0"
    # The record scores the saved head on the task re-embedded by the run's own finetuned backbone.
    config = grid.run_config("csrv2-finetune", 2, 0, "small")
    rescored = prepare_task("small", evaluation_config(config)).task
    assert rescored.arrays["test"] is not None and evaluation_config(config).backbone.name == str(run / "backbone")
    head = SparseHead.from_pretrained(run)
    assert records[0]["score"] == evaluate_task(rescored, SparseFeaturizer(head), [2], [0])[2]["score"]
    assert records[0]["finetuned_dense"] == evaluate_task(rescored, DenseFeaturizer(), [2], [0])[None]["score"]
    assert (run / "backbone").is_dir() and yaml.safe_load((run / "config.yaml").read_text())["train"][
        "backbone"
    ] == "full"
    again = [r for r in run_grid(grid, log=lambda s: None)["records"] if r["method"] == "csrv2-finetune"]
    assert again[0]["train_s"] == 0.0 and again[0]["score"] == records[0]["score"]  # finished run reused


def test_vision_backbone_finetunes_and_reloads_for_evaluation(tmp_path):
    """EfficientNet-Lite0 trained through the sparse objective on real digits; the saved folder loads as a backbone
    whose embeddings are the trained network's (eval mode), not the pretrained one's."""
    backbone = {"name": "efficientnet-lite0", "kind": "vision", "image_size": 64}
    cfg = Config.from_dict(
        {
            "output_dir": str(tmp_path / "run"),
            "backbone": backbone,
            "data": {"task": "digits"},
            "head": {"hidden": 256, "k": 2, "k_aux": 0},
            "train": {"backbone": "full", "batch_size": 16, "max_steps": 2, "log_every": 1, "backbone_lr": 1e-3},
        }
    )
    Trainer(cfg, training_data(cfg)).fit()
    folder = tmp_path / "run" / "backbone"
    assert json.loads((folder / "vision_backbone.json").read_text())["base"] == "efficientnet-lite0"
    images = get_task("digits").splits["test"].images[:8]
    tuned = load_backbone(BackboneConfig(**{**backbone, "name": str(folder)})).encode(images, progress=False)
    frozen = load_backbone(BackboneConfig(**backbone)).encode(images, progress=False)
    assert tuned.shape == frozen.shape == (8, 1280)
    assert np.allclose(np.linalg.norm(tuned, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(tuned, frozen, atol=1e-4)  # the finetuned weights are the ones loaded
    from safetensors.torch import load_model

    trained = TrainableVisionBackbone(cfg.backbone, cfg.train)  # the last checkpoint's network, run in eval mode
    load_model(trained, str(tmp_path / "run" / "step_000002" / "backbone.module.safetensors"))
    with torch.no_grad():
        direct = trained.eval()(images).numpy()
    np.testing.assert_allclose(tuned, direct, atol=1e-5)
