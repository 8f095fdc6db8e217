"""Two gloo processes under torchrun follow the same loss trajectory as one process with the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from csrv2 import Config, SparseHead
from csrv2.data.prepare import training_data
from csrv2.train.trainer import Trainer

TRAIN = Path(__file__).parent.parent / "scripts" / "train.py"  # the README's torchrun command runs this file


def run(args, env):
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(8, 32))
    labels = rng.integers(0, 8, 768)
    x = centers[labels] + 0.7 * rng.normal(size=(768, 32))
    np.savez(
        tmp_path / "train.npz",
        embeddings=(x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32),
        labels=labels,
    )
    overrides = [
        f"data.embeddings={tmp_path / 'train.npz'}",
        "head.hidden=128",
        "head.k=2",
        "head.dead_steps=3",
        "train.epochs=2",
        "train.batch_size=64",
        "train.log_every=1",
        "train.lr=1e-3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = Config.from_dict({}, [*overrides, f"output_dir={tmp_path / 'one'}"])
    Trainer(one, training_data(one)).fit()  # the single process runs here; the two ranks run the README's command
    run(
        [
            sys.executable,  # torchrun's module: no need for the `torchrun` script on PATH
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29533",
            str(TRAIN),
            *overrides,
            f"output_dir={tmp_path / 'two'}",
        ],
        env,
    )

    def trajectory(name):
        lines = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return {key: np.array([line[key] for line in lines]) for key in lines[0] if key != "elapsed_s"}

    one, two = trajectory("one"), trajectory("two")
    assert len(one["step"]) == len(two["step"]) == 24
    for key in ("loss", "recon_loss", "contrastive_loss", "k", "dead_pct"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-6, err_msg=key)
    assert one["dead_pct"].max() > 0  # the dead-latent statistics were exercised (and agree across ranks)
    a, b = SparseHead.from_pretrained(tmp_path / "one"), SparseHead.from_pretrained(tmp_path / "two")
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-4, atol=1e-5)
