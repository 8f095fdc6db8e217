"""kill -9 at any moment leaves a run folder that resumes to the uninterrupted run's weights, bit for bit.

One run is killed five times (by SIGKILL, from outside, as a crash or an OOM killer would), at different points —
early before any checkpoint, mid-run, just after checkpoints, and inside a checkpoint write — and resumed each time;
its final head must equal a run that was never interrupted.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from csrv2 import Config
from csrv2.data.prepare import TrainingData
from csrv2.train.trainer import Trainer

# The training part of `csrv2 train` (the command adds only argument parsing and scoring), in a fresh interpreter
# that imports no more than training needs: a killed run is what a crash leaves, whatever started it.
TRAIN = """
import sys
from csrv2.config.run_config import Config
from csrv2.data.prepare import training_data
from csrv2.train.trainer import Trainer
config = Config.from_dict({}, sys.argv[1:])
Trainer(config, training_data(config)).fit()
"""
# The same with torch.save slowed down inside a checkpoint write: after the optimizer state of a temporary checkpoint
# folder is written, it touches a marker file (argv[1]) and sleeps, so the test can kill it right there.
SLOW_CHECKPOINT = (
    """
import pathlib, sys, time, torch
marker, real_save = pathlib.Path(sys.argv.pop(1)), torch.save
def save(obj, f, *args, **kwargs):
    real_save(obj, f, *args, **kwargs)
    if str(f).endswith("optimizer.pt") and ".tmp" in str(f):
        marker.touch()
        time.sleep(120)
torch.save = save
"""
    + TRAIN
)


def write_data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 16))
    labels = rng.integers(0, 6, 600)
    x = centers[labels] + 0.7 * rng.normal(size=(600, 16))
    path = tmp_path / "train.npz"
    np.savez(path, embeddings=(x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels=labels)
    return path


def overrides(path: Path, run: Path, resume: bool) -> list[str]:
    return [
        f"data.embeddings={path}",
        f"output_dir={run}",
        "head.hidden=64",
        "head.k=2",
        "eval.ks=[2]",
        "eval.after_training=false",
        "train.batch_size=32",
        "train.max_steps=240",
        "train.log_every=1",
        "train.checkpoint_every=20",
        f"train.resume={str(resume).lower()}",
    ]


def logged_steps(run: Path) -> int:
    metrics = run / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.is_file() else 0


def kill_when(command: list[str], ready, timeout: float = 180.0) -> None:
    """Start `command`, SIGKILL it as soon as ready() is true (it must not finish first)."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, "the run finished before the moment it was to be killed at"
        assert time.time() < deadline, "timed out waiting for the moment to kill at"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_sigkill_at_five_moments_then_resume_is_bit_exact(tmp_path):
    path, run = write_data(tmp_path), tmp_path / "run"
    train = [sys.executable, "-c", TRAIN]
    marker = tmp_path / "inside-checkpoint-write"
    moments = [
        ("before the first checkpoint", train, lambda: logged_steps(run) >= 5),
        ("inside a checkpoint write", [sys.executable, "-c", SLOW_CHECKPOINT, str(marker)], marker.exists),
        ("mid-run", train, lambda: logged_steps(run) >= 70),
        ("just after a checkpoint", train, lambda: (run / "step_000120").is_dir()),
        ("late", train, lambda: logged_steps(run) >= 200),
    ]
    for i, (_, command, ready) in enumerate(moments):
        kill_when([*command, *overrides(path, run, resume=i > 0)], ready)
        assert not (run / "head.safetensors").exists()
    arrays = np.load(path)
    data = TrainingData(arrays["embeddings"], arrays["labels"], source=f"data.embeddings ({path})")
    resumed = Trainer(Config.from_dict({}, overrides(path, run, resume=True)), data).fit()  # the last resume, here
    straight = Trainer(Config.from_dict({}, overrides(path, tmp_path / "straight", resume=False)), data).fit()
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 241))  # every step logged once, none twice
