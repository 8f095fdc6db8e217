"""Property tests: whatever a user writes into a config, and whatever damage a saved folder takes, csrv2 answers with
its own error or a correct result — never an unexpected exception type, a crash of the interpreter or a wrong answer."""

import functools
import json
import shutil

import numpy as np
import pytest
import scipy.sparse
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csrv2 import Config, SparseHead, SparseIndex
from csrv2.config.strict import ConfigError
from csrv2.experiments.bench.retrieval import BenchConfig
from csrv2.experiments.paper.grid import GridConfig
from csrv2.files import MARKER, sha256_file
from csrv2.head.codes import SparseCodes
from csrv2.index import sparse_index
from csrv2.index.kernels import BLOCK
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


# -- index arrays that pass their checksums: the kernels must never crash ------------------------------------------
FUZZ_DOCS, FUZZ_DIM = 2 * BLOCK + 300, 12  # three blocks of document ids


@functools.cache
def fuzz_base() -> tuple[dict[str, np.ndarray], int, SparseCodes]:
    """The arrays of a three-block index with dyadic values (exact scores, real ties) and its queries."""
    rng = np.random.default_rng(0)
    idx = np.argsort(rng.random((FUZZ_DOCS, FUZZ_DIM - 1)), axis=1)[:, :3] + 1
    idx[rng.random(FUZZ_DOCS) < 0.8, 0] = 0  # one long list (latent 0), so the pruned walk runs too
    val = rng.integers(1, 5, size=(FUZZ_DOCS, 3)).astype(np.float32) / 4
    index = SparseIndex.build(SparseCodes(torch.from_numpy(idx), torch.from_numpy(val), FUZZ_DIM))
    queries = SparseCodes(torch.tensor([[0, 1, 2], [3, 4, 5], [0, 6, 11], [7, 8, 9]]), torch.full((4, 3), 0.5), 12)
    arrays = {name: np.asarray(getattr(index, name)).copy() for name in ("offsets", "doc_ids", "values")}
    return arrays, index.n_docs, queries


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["offsets", "doc_ids", "values"]),
        st.sampled_from(["set", "swap", "reverse", "repeat", "drop", "insert"]),
        st.floats(0, 1),
        st.floats(0, 1),
        st.sampled_from([-2**31, -1, 0, 1, 3, BLOCK - 1, BLOCK, FUZZ_DOCS - 1, FUZZ_DOCS, 2**31 - 1, 2**40, "nnz",
                         "nnz+1", "nan", "inf"]),
    ),
    min_size=1,
    max_size=3,
)  # fmt: skip


def edited(arrays: dict[str, np.ndarray], edits) -> dict[str, np.ndarray]:
    out = {name: array.copy() for name, array in arrays.items()}
    for name, how, a, b, value in edits:
        array = out[name]
        if not len(array):
            continue
        i, j = sorted((int(a * (len(array) - 1)), int(b * (len(array) - 1))))
        if how == "set":
            nnz = len(out["doc_ids"])
            number = {"nnz": nnz, "nnz+1": nnz + 1, "nan": np.nan, "inf": np.inf}.get(value, value)
            if array.dtype.kind == "f":
                array[i] = number
            elif np.isfinite(number):
                array[i] = np.array(number, dtype=np.int64).astype(array.dtype)  # 2^40 wraps, as a bad writer's would
        elif how == "swap":
            array[i], array[j] = array[j], array[i]
        elif how == "reverse":
            array[i : j + 1] = array[i : j + 1][::-1].copy()
        elif how == "repeat":
            array[i + 1 : j + 1] = array[i]
        else:  # drop or insert a posting (both its arrays) or an offset
            for each in ("doc_ids", "values") if name != "offsets" else ("offsets",):
                grown = np.insert(out[each], i, out[each][j]) if how == "insert" else None
                out[each] = np.delete(out[each], i) if how == "drop" else grown
    return out


def expected(arrays: dict[str, np.ndarray], n_docs: int, queries: SparseCodes, top: int):
    """Brute force over a structurally valid index's arrays: dense float64 Q @ Dᵀ, best first, ties by lower id."""
    docs = scipy.sparse.csc_matrix(
        (arrays["values"], arrays["doc_ids"], arrays["offsets"]), shape=(n_docs, len(arrays["offsets"]) - 1)
    )
    scores = (queries.to_dense().double().numpy() @ docs.toarray().astype(np.float64).T).astype(np.float32)
    out_s = np.full((len(queries), top), -np.inf, np.float32)
    out_i = np.full((len(queries), top), -1, np.int64)
    for row in range(len(queries)):
        order = np.lexsort((np.arange(n_docs), -scores[row]))[:top]
        out_s[row, : len(order)], out_i[row, : len(order)] = scores[row, order], order
    return out_s, out_i


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS, n_docs_change=st.sampled_from([0, 0, -1, 1, -FUZZ_DOCS + 5]))
def test_index_arrays_that_pass_their_checksums_never_crash_a_search(tmp_path, edits, n_docs_change):
    """Arrays rewritten with their checksums recomputed (a writer bug, a tool): verify=True names what breaks the
    kernels' invariants or the index answers as brute force over its arrays does; verify=False answers (wrongly,
    perhaps) or raises the library's error — on both kernels, one thread or two, never a crash. Out-of-order ids and
    out-of-range offsets used to segfault or corrupt the heap."""
    base, n_docs, queries = fuzz_base()
    arrays = edited(base, edits)
    folder = tmp_path / "ix"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    meta = {
        "format": sparse_index.FORMAT,
        "n_docs": max(0, n_docs + n_docs_change),
        "dim": len(arrays["offsets"]) - 1,
        "nnz": len(arrays["doc_ids"]),
        "sha256": {f"{name}.npy": sha256_file(folder / f"{name}.npy") for name in arrays},
    }
    meta["meta_sha256"] = sparse_index.meta_digest(meta)
    (folder / "index.json").write_text(json.dumps(meta))
    for verify in (True, False):
        try:
            index = SparseIndex.load(folder, verify=verify)
        except (ValueError, FileNotFoundError):
            continue
        if index.dim != FUZZ_DIM:  # an offset dropped or added: the queries' dim is refused by name
            with pytest.raises(ValueError, match="the index has dim"):
                index.search(queries)
            continue
        if verify:
            want = expected(arrays, index.n_docs, queries, 7)
        for use_numba in {False, sparse_index.HAVE_NUMBA}:
            saved, sparse_index.HAVE_NUMBA = sparse_index.HAVE_NUMBA, use_numba
            try:
                for threads in (1, 2):
                    try:
                        scores, ids = index.search(queries, top=7, threads=threads)
                    except ValueError as err:
                        assert not verify and "index" in str(err)
                        continue
                    assert ((ids >= -1) & (ids < index.n_docs)).all()
                    if verify:
                        np.testing.assert_array_equal(ids.numpy(), want[1])
                        np.testing.assert_array_equal(scores.numpy(), want[0])
            finally:
                sparse_index.HAVE_NUMBA = saved
