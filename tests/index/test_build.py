"""encode_to_index (embeddings → codes → SparseIndex in chunks) equals encoding everything at once and building."""

import numpy as np
import pytest
import torch

import csrv2.index.build as index_build
from csrv2.head.sparse_head import SparseHead
from csrv2.index.build import encode_to_index
from csrv2.index.sparse_index import SparseIndex


@pytest.fixture
def head_and_rows(tmp_path):
    torch.manual_seed(0)
    head = SparseHead(16, 64, k=3).eval()
    x = np.random.default_rng(0).normal(size=(101, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return head, x, tmp_path / "x.npy"


@pytest.mark.parametrize("source", ["path", "memmap", "array"])
@pytest.mark.parametrize("chunk_rows", [1, 7, 101, 1000])
@pytest.mark.parametrize("numba", [True, False])
def test_chunked_equals_all_at_once(head_and_rows, source, chunk_rows, numba, monkeypatch):
    head, x, path = head_and_rows
    if not numba:
        monkeypatch.setattr(index_build, "HAVE_NUMBA", False)
    with torch.no_grad():
        whole = SparseIndex.build(head.encode(torch.from_numpy(x), k=3).normalized())
    given = {"path": path, "memmap": np.load(path, mmap_mode="r"), "array": x}[source]
    chunked = encode_to_index(head, given, k=3, chunk_rows=chunk_rows)
    assert chunked.n_docs == whole.n_docs == 101
    np.testing.assert_array_equal(chunked.offsets, whole.offsets)
    np.testing.assert_array_equal(chunked.doc_ids, whole.doc_ids)
    # one row at a time goes through another matmul kernel than 101 rows: last-bit differences only
    np.testing.assert_allclose(chunked.values, whole.values, rtol=1e-6, atol=0)


def test_bad_input_is_named(head_and_rows, tmp_path):
    head, x, _ = head_and_rows
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        encode_to_index(head, tmp_path / "nope.npy")
    with pytest.raises(ValueError, match="chunk_rows"):
        encode_to_index(head, x, chunk_rows=0)
    np.save(tmp_path / "flat.npy", x[0])
    with pytest.raises(ValueError, match="flat.npy"):
        encode_to_index(head, tmp_path / "flat.npy")
    with pytest.raises(ValueError, match="no rows"):
        encode_to_index(head, x[:0])
