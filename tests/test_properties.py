"""Property tests: whatever a user writes into a config, and whatever damage a saved folder takes, csrv2 answers with
its own error or a correct result — never an unexpected exception type, a crash of the interpreter or a wrong answer."""

import shutil

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csrv2 import Config, SparseHead, SparseIndex
from csrv2.config.strict import ConfigError
from csrv2.experiments.bench.retrieval import BenchConfig
from csrv2.experiments.paper.grid import GridConfig
from csrv2.files import MARKER
from csrv2.runs.checkpoint import save_checkpoint, verify_checkpoint

# Real keys mixed with noise, so that documents often reach deep into the config before going wrong.
KEYS = st.sampled_from(
    ["head", "train", "data", "eval", "backbone", "k", "hidden", "lr", "epochs", "tasks", "ks", "name", "path",
     "objective", "output_dir", "seeds", "methods", "base", "sizes", "texts", "temperature", "x", "", "0"]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["csrv2", "csr", "mrl", "r8", "1e-4", "[2, 4]", "nan"]),
)  # fmt: skip
DOCS = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5), max_leaves=12
)
OVERRIDES = st.lists(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["head.k", "train.lr", "eval.ks", "data.task", "x.y", "train"]),
              st.sampled_from(["4", "-1", "nan", "[2, 8]", "{a: 1}", "", "csr", "true", "1e-3", ":"])),
    max_size=3,
)  # fmt: skip
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(doc=st.dictionaries(KEYS, DOCS, max_size=6), overrides=OVERRIDES)
def test_config_loaders_give_a_config_or_a_config_error(tmp_path, doc, overrides):
    path = tmp_path / "random.yaml"
    path.write_text(yaml.safe_dump(doc))
    for loader, types in (
        (Config.from_yaml, Config),
        (GridConfig.from_yaml, GridConfig),
        (BenchConfig.from_yaml, BenchConfig),
    ):
        try:
            assert isinstance(loader(path, overrides), types)
        except ConfigError:
            pass


@FAST
@given(text=st.text(max_size=200))
def test_any_text_as_a_config_file_gives_a_config_or_a_config_error(tmp_path, text):
    path = tmp_path / "random.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        Config.from_yaml(path)
    except ConfigError:
        pass


def saved_folders(root):
    """A saved head, a saved index and a training checkpoint-like head folder, with what each should answer."""
    torch.manual_seed(0)
    head = SparseHead(8, 32, 2)
    head.save_pretrained(root / "head")
    codes = head.encode(torch.nn.functional.normalize(torch.randn(50, 8), dim=1))
    index = SparseIndex.build(codes)
    index.save(root / "index")
    return head, index, codes


CORRUPTIONS = st.tuples(
    st.sampled_from(["head/head.safetensors", "head/csrv2_head.json", "index/offsets.npy", "index/doc_ids.npy",
                     "index/values.npy", "index/index.json"]),
    st.sampled_from(["flip", "truncate", "delete", "zero"]),
    st.floats(0, 1),
)  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corruption=CORRUPTIONS)
def test_a_damaged_head_or_index_is_named_or_answers_exactly_as_before(tmp_path, corruption):
    root = tmp_path / "saved"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    head, index, codes = saved_folders(root)
    target, how, where = corruption
    file = root / target
    blob = bytearray(file.read_bytes())
    at = min(int(where * len(blob)), len(blob) - 1)
    if how == "flip":
        blob[at] ^= 0x5A
    elif how == "truncate":
        blob = blob[:at]
    elif how == "zero":
        blob[at:] = bytes(len(blob) - at)
    if how == "delete":
        file.unlink()
    else:
        file.write_bytes(bytes(blob))
    try:
        loaded_head = SparseHead.from_pretrained(root / "head")
        loaded_index = SparseIndex.load(root / "index")
    except (ValueError, FileNotFoundError):
        return  # named: the library's own error
    x = torch.nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    assert torch.equal(loaded_head.encode(x).values, head.encode(x).values)  # loaded means unchanged
    assert all(torch.equal(a, b) for a, b in zip(loaded_index.search(codes[:5]), index.search(codes[:5])))


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_a_damaged_checkpoint_file_is_named(tmp_path, how):
    """Every file of a checkpoint is covered by its recorded sha256, state.json by its own (state_sha256); the
    marker (csrv2.files.MARKER) only says what the folder is."""
    head = SparseHead(8, 32, 2)
    optimizer = torch.optim.Adam(head.parameters())
    folder = save_checkpoint(tmp_path, 3, head, optimizer, keep=2)
    assert verify_checkpoint(folder) == ""
    for file in sorted(p for p in folder.iterdir() if p.name not in ("state.json", MARKER)):
        backup = file.read_bytes()
        if how == "delete":
            file.unlink()
        else:
            file.write_bytes(
                backup[: len(backup) // 2] if how == "truncate" else bytes(b ^ 0xFF for b in backup[:8]) + backup[8:]
            )
        assert file.name in verify_checkpoint(folder)
        file.write_bytes(backup)
    state = (folder / "state.json").read_text()
    for edit in (state.replace('"step": 3', '"step": 4'), state.replace('"step": 3', '"step": 3, "x": 1'), state[:40]):
        (folder / "state.json").write_text(edit)  # state.json used to be the one file no checksum covered
        assert "state.json" in verify_checkpoint(folder)
    (folder / "state.json").write_text("{not json")
    assert "state.json cannot be read" in verify_checkpoint(folder)
