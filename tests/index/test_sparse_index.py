"""SparseIndex equals brute force Q @ Dᵀ on random sparse data (ids, scores, ties by lower id), on both kernels."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import scipy.sparse
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import csrv2.index.sparse_index as index_module
from csrv2.files import sha256_file
from csrv2.head.codes import SparseCodes
from csrv2.index.kernels import BLOCK
from csrv2.index.sparse_index import SparseIndex


def random_codes(rng: np.random.Generator, n: int, dim: int, k: int, levels: int = 4) -> SparseCodes:
    """(n, k) codes with distinct latents per row; values are multiples of 1/levels in [0, 1] (zeros = inactive).

    Dyadic values make every dot product exact in float32, so ties are real ties and ordering is checkable.
    """
    idx = np.argsort(rng.random((n, dim)), axis=1)[:, :k]
    val = rng.integers(0, levels + 1, size=(n, k)).astype(np.float32) / levels
    return SparseCodes(torch.from_numpy(idx), torch.from_numpy(val), dim)


def brute_force(docs: SparseCodes, queries: SparseCodes, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense float64 Q @ Dᵀ over all documents, rounded to float32; best first, ties by lower id; padded past N."""
    d, q = docs.to_dense().double().numpy(), queries.to_dense().double().numpy()
    scores = (q @ d.T).astype(np.float32)
    out_s = np.full((len(queries), top), -np.inf, np.float32)
    out_i = np.full((len(queries), top), -1, np.int64)
    for row in range(len(queries)):
        order = np.lexsort((np.arange(len(docs)), -scores[row]))[:top]
        out_s[row, : len(order)] = scores[row, order]
        out_i[row, : len(order)] = order
    return out_s, out_i


@pytest.fixture(params=["numba", "numpy"])
def kernel(request, monkeypatch):
    if request.param == "numba" and not index_module.HAVE_NUMBA:
        pytest.skip("numba not installed")
    monkeypatch.setattr(index_module, "HAVE_NUMBA", request.param == "numba")
    return request.param


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    dim=st.integers(4, 64),
    k=st.integers(1, 4),
    n_q=st.integers(1, 12),
    top=st.integers(1, 20),
    seed=st.integers(0, 2**31),
)
def test_matches_brute_force(n, dim, k, n_q, top, seed):
    rng = np.random.default_rng(seed)
    docs, queries = random_codes(rng, n, dim, k), random_codes(rng, n_q, dim, k)
    index = SparseIndex.build(docs)
    exp_s, exp_i = brute_force(docs, queries, top)
    for use_numba in {False, index_module.HAVE_NUMBA}:
        index_module.HAVE_NUMBA, saved = use_numba, index_module.HAVE_NUMBA
        try:
            for threads in (1, 2):
                scores, ids = index.search(queries, top=top, threads=threads)
                np.testing.assert_array_equal(ids.numpy(), exp_i)
                np.testing.assert_allclose(scores.numpy(), exp_s, rtol=1e-6)
        finally:
            index_module.HAVE_NUMBA = saved


def test_ties_go_to_lower_id(kernel):
    dim = 8
    idx = torch.tensor([[1, 2]] * 5 + [[3, 4]])
    val = torch.tensor([[1.0, 0.0]] * 5 + [[1.0, 1.0]])
    index = SparseIndex.build(SparseCodes(idx, val, dim))
    scores, ids = index.search(SparseCodes(torch.tensor([[1, 3]]), torch.tensor([[1.0, 0.5]]), dim), top=4)
    assert ids.tolist() == [[0, 1, 2, 3]]
    assert scores.tolist() == [[1.0, 1.0, 1.0, 1.0]]


def test_few_candidates_filled_with_zero_score_documents(kernel):
    """Documents sharing no latent score 0 and fill the row by id, as brute force does; -inf/-1 only past N."""
    dim = 6
    idx = torch.tensor([[0, 1], [2, 3], [4, 5], [0, 2]])
    index = SparseIndex.build(SparseCodes(idx, torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [0.5, 0.0]]), dim))
    scores, ids = index.search(SparseCodes(torch.tensor([[0, 5]]), torch.tensor([[2.0, -1.0]]), dim), top=4)
    assert ids.tolist() == [[0, 3, 1, 2]]  # 2, 1, then the non-candidate 1 (score 0), then doc 2 (-1)
    assert scores.tolist() == [[2.0, 1.0, 0.0, -1.0]]
    scores, ids = index.search(SparseCodes(torch.tensor([[1, 3]]), torch.tensor([[0.0, 0.0]]), dim), top=6)
    assert ids.tolist() == [[0, 1, 2, 3, -1, -1]]  # an all-zero query: every document scores 0
    assert scores[0, :4].tolist() == [0.0] * 4 and torch.isinf(scores[0, 4:]).all()


def test_large_index_crosses_blocks(kernel):
    """Candidates spread over many accumulator blocks (BLOCK doc ids each) still come out exact."""
    rng = np.random.default_rng(0)
    docs = random_codes(rng, 3 * index_module.BLOCK + 17, 32, 2)
    queries = random_codes(rng, 5, 32, 3)
    scores, ids = SparseIndex.build(docs).search(queries, top=25)
    exp_s, exp_i = brute_force(docs, queries, 25)
    np.testing.assert_array_equal(ids.numpy(), exp_i)
    np.testing.assert_allclose(scores.numpy(), exp_s)


def test_scipy_input_and_numpy_output(kernel):
    rng = np.random.default_rng(1)
    docs, queries = random_codes(rng, 200, 40, 3), random_codes(rng, 7, 40, 3)
    from_codes = SparseIndex.build(docs)
    from_csr = SparseIndex.build(docs.to_scipy())
    s1, i1 = from_codes.search(queries, top=5)
    s2, i2 = from_csr.search(queries.to_scipy(), top=5)
    assert isinstance(s2, np.ndarray) and s2.dtype == np.float32 and i2.dtype == np.int64
    np.testing.assert_array_equal(i1.numpy(), i2)
    np.testing.assert_array_equal(s1.numpy(), s2)


def test_add_equals_build_of_all(kernel):
    rng = np.random.default_rng(2)
    a, b, queries = random_codes(rng, 150, 30, 3), random_codes(rng, 90, 30, 3), random_codes(rng, 6, 30, 3)
    grown = SparseIndex.build(a)
    new_ids = grown.add(b)
    assert new_ids.tolist() == list(range(150, 240)) and len(grown) == 240
    whole = SparseIndex.build(SparseCodes.cat([a, b]))
    for name in ("offsets", "doc_ids", "values"):
        np.testing.assert_array_equal(getattr(grown, name), getattr(whole, name))
    s1, i1 = grown.search(queries, top=8)
    s2, i2 = whole.search(queries, top=8)
    assert torch.equal(i1, i2) and torch.equal(s1, s2)


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_roundtrip(tmp_path, mmap):
    rng = np.random.default_rng(3)
    docs, queries = random_codes(rng, 120, 24, 2), random_codes(rng, 5, 24, 2)
    index = SparseIndex.build(docs)
    index.save(tmp_path / "ix")
    loaded = SparseIndex.load(tmp_path / "ix", mmap=mmap)
    assert isinstance(loaded.doc_ids, np.memmap) == mmap
    assert len(loaded) == 120 and loaded.dim == 24
    s1, i1 = index.search(queries, top=6)
    s2, i2 = loaded.search(queries, top=6)
    assert torch.equal(i1, i2) and torch.equal(s1, s2)
    loaded.add(random_codes(rng, 3, 24, 2))  # a mapped (read-only) index still grows, in memory
    assert len(loaded) == 123


def test_a_damaged_index_folder_is_named_and_never_searched(tmp_path):
    """What the kernels index with is checked on load: a bad offset (which made a search read out of bounds), a doc
    id ≥ n_docs, doc ids saved as float64, a missing file — each names its file."""
    rng = np.random.default_rng(4)
    SparseIndex.build(random_codes(rng, 50, 16, 2)).save(tmp_path / "ix")

    def damaged(name: str, change, checksums: bool = False) -> str:
        """The error of loading a damaged copy; without `checksums` the structural checks must catch it alone, both
        as an index saved before checksums were recorded (format /1, no marker) and as one whose checksums were
        recomputed over the damaged arrays (a writer bug, a tool that rewrote them)."""
        messages = []
        for how in ("legacy", "rehashed") if not checksums else ("as saved",):
            folder = tmp_path / f"bad-{name}-{how}"
            shutil.copytree(tmp_path / "ix", folder)
            change(folder)
            if how == "legacy":
                as_legacy(folder)
            elif how == "rehashed":
                rehash(folder)
            with pytest.raises((ValueError, FileNotFoundError)) as err:
                SparseIndex.load(folder)
            messages.append(str(err.value))
        assert len({m.replace(f"-{h}", "") for m, h in zip(messages, ("legacy", "rehashed"))}) == 1, messages
        return messages[0]

    def edit(name: str, fn):
        def change(folder):
            array = np.load(folder / f"{name}.npy")
            np.save(folder / f"{name}.npy", fn(array))

        return change

    assert "offsets.npy" in damaged("offsets", edit("offsets", lambda a: np.where(np.arange(len(a)) == 3, 10**9, a)))
    assert "doc_ids.npy" in damaged("ids", edit("doc_ids", lambda a: np.where(np.arange(len(a)) == 0, 50, a)))
    assert "doc_ids.npy: expected a 1-d int32" in damaged("float", edit("doc_ids", lambda a: a.astype(np.float64)))
    assert "values.npy" in damaged("nan", edit("values", lambda a: np.where(np.arange(len(a)) == 1, np.nan, a)))
    assert "values.npy not found" in damaged("missing", lambda folder: (folder / "values.npy").unlink())
    flipped = damaged(
        "flip", edit("values", lambda a: a * 2), checksums=True
    )  # finite, in range: only the hash sees it
    assert "values.npy does not match the sha256" in flipped


def as_legacy(folder) -> None:
    """Make a saved index look like one saved before checksums: format /1, no sha256, no csrv2 marker."""
    meta = json.loads((folder / "index.json").read_text())
    for key in ("sha256", "meta_sha256"):
        meta.pop(key, None)
    meta["format"] = index_module.LEGACY_FORMAT
    (folder / "index.json").write_text(json.dumps(meta))
    (folder / "csrv2_output.json").unlink(missing_ok=True)


def rehash(folder, **changes) -> None:
    """Recompute index.json's checksums over the folder's arrays as they are now (after `changes` to its keys)."""
    meta = {**json.loads((folder / "index.json").read_text()), **changes}
    meta["sha256"] = {n: sha256_file(folder / n) if (folder / n).is_file() else d for n, d in meta["sha256"].items()}
    meta["meta_sha256"] = index_module.meta_digest(meta)
    (folder / "index.json").write_text(json.dumps(meta))


def test_saving_over_an_index_replaces_it_whole(tmp_path, monkeypatch):
    """A save killed midway leaves the old index intact (never a mix of old and new files)."""
    rng = np.random.default_rng(5)
    old, new = SparseIndex.build(random_codes(rng, 40, 16, 2)), SparseIndex.build(random_codes(rng, 70, 16, 2))
    old.save(tmp_path / "ix")
    real_save, calls = np.save, []

    def dying_save(file, array, *args, **kwargs):
        calls.append(file)
        if len(calls) == 2:  # after offsets.npy and before doc_ids.npy of the new index
            raise KeyboardInterrupt
        real_save(file, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        new.save(tmp_path / "ix")
    monkeypatch.undo()
    loaded = SparseIndex.load(tmp_path / "ix")
    assert len(loaded) == 40
    np.testing.assert_array_equal(loaded.doc_ids, old.doc_ids)
    new.save(tmp_path / "ix")
    assert len(SparseIndex.load(tmp_path / "ix")) == 70


def test_statistics():
    docs = SparseCodes(torch.tensor([[0, 1], [0, 2], [0, 3]]), torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), 4)
    index = SparseIndex.build(docs)
    assert index.posting_lengths().tolist() == [3, 1, 0, 1]  # the explicit zero is dropped
    assert index.nnz == 5
    queries = SparseCodes(torch.tensor([[0, 1], [2, 3]]), torch.tensor([[1.0, 1.0], [1.0, 0.0]]), 4)
    assert index.postings_touched(queries).tolist() == [4, 0]


def test_errors_name_the_argument(tmp_path):
    index = SparseIndex.build(SparseCodes(torch.tensor([[0, 1]]), torch.tensor([[1.0, 1.0]]), 4))
    with pytest.raises(ValueError, match="top"):
        index.search(SparseCodes(torch.tensor([[0, 1]]), torch.tensor([[1.0, 1.0]]), 4), top=0)
    with pytest.raises(ValueError, match="dim"):
        index.search(SparseCodes(torch.tensor([[0, 1]]), torch.tensor([[1.0, 1.0]]), 8))
    with pytest.raises(ValueError, match="columns"):
        index.search(scipy.sparse.csr_matrix(np.ones((1, 5), np.float32)))
    with pytest.raises(TypeError, match="queries"):
        index.search(np.ones((1, 4)))
    with pytest.raises(FileNotFoundError, match="index.json"):
        SparseIndex.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="absent is not a folder written by SparseIndex.save"):
        SparseIndex.load(tmp_path / "absent")


def test_signed_values_match_brute_force(kernel):
    """Negative query or document values (not produced by a ReLU head, but allowed) still rank exactly."""
    rng = np.random.default_rng(4)
    docs, queries = random_codes(rng, 400, 16, 3), random_codes(rng, 10, 16, 3)

    def signs(c: SparseCodes) -> SparseCodes:
        flip = torch.from_numpy(rng.choice([-1.0, 1.0], tuple(c.values.shape))).float()
        return SparseCodes(c.indices, c.values * flip, c.dim)

    docs, queries = signs(docs), signs(queries)
    scores, ids = SparseIndex.build(docs).search(queries, top=15)
    exp_s, exp_i = brute_force(docs, queries, 15)
    np.testing.assert_array_equal(ids.numpy(), exp_i)
    np.testing.assert_allclose(scores.numpy(), exp_s)


def test_non_finite_values_and_repeated_latents_are_refused():
    """build, add and search refuse NaN / inf and a row that gives one active latent twice, naming the row."""
    good = SparseCodes(torch.tensor([[0, 1], [2, 3]]), torch.tensor([[1.0, 0.5], [0.5, 0.5]]), 4)
    index = SparseIndex.build(good)
    nan = SparseCodes(torch.tensor([[0, 1], [2, 3]]), torch.tensor([[1.0, 0.5], [float("nan"), 0.5]]), 4)
    twice = SparseCodes(torch.tensor([[0, 1], [2, 2]]), torch.tensor([[1.0, 0.5], [0.5, 0.5]]), 4)
    for call in (SparseIndex.build, index.add, index.search):
        with pytest.raises(ValueError, match="row 1 holds NaN or inf"):
            call(nan)
        with pytest.raises(ValueError, match="row 1 gives a latent twice"):
            call(twice)
    padded = SparseCodes(torch.tensor([[1, 0, 0]]), torch.tensor([[1.0, 0.0, 0.0]]), 4)  # zero slots may repeat
    index.search(padded)
    duplicated = scipy.sparse.csr_matrix((np.ones(2, np.float32), np.array([1, 1]), np.array([0, 2])), shape=(1, 4))
    with pytest.raises(ValueError, match="stores one latent twice"):
        SparseIndex.build(duplicated)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(BLOCK + 1, 3 * BLOCK),  # pruning starts from the second block of document ids
    k=st.integers(1, 3),
    top=st.integers(1, 12),
    signed=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_pruned_longest_list_matches_brute_force(n, k, top, signed, seed):
    """Skewed latent use (one latent on most documents, as trained heads give), dyadic values (many exact ties) over
    one or more blocks: once the heap is full the longest list's documents alone are skipped unread. Results must
    still equal brute force, ties by lower id, with signed values too (the smallest value bounds a negative weight)."""
    rng = np.random.default_rng(seed)
    dim = 8
    popular = rng.random(n) < 0.9  # latent 0 on ~90 % of documents: its list is the longest
    others = np.argsort(rng.random((n, dim - 1)), axis=1)[:, : k - 1] + 1
    idx = np.concatenate([np.where(popular, 0, rng.integers(1, dim, n))[:, None], others], axis=1)
    idx[~popular, 1:] = (idx[~popular, :1] + np.arange(1, k)) % dim  # rows without latent 0 keep distinct latents
    low = -4 if signed else 0
    val = rng.integers(low, 5, size=(n, k)).astype(np.float32) / 4
    # The popular latent's values: mostly small, large ones rare and scattered over the blocks, so the best documents
    # often come late (an index that stopped reading the longest list too early would miss them).
    big = rng.choice([1, 2, 3, 4], size=n, p=[0.9, 0.09, 0.009, 0.001]).astype(np.float32) / 4
    val[:, 0] = big * (rng.choice([-1, 1], size=n) if signed else 1)
    docs = SparseCodes(torch.from_numpy(idx), torch.from_numpy(val), dim)
    q_idx = torch.tensor([[0, *range(1, k)]] * 3)
    q_val = torch.from_numpy(rng.integers(low, 5, size=(3, k)).astype(np.float32) / 4)
    q_val[:, 0] = torch.tensor([1.0, 0.75, -0.5 if signed else 0.25])
    queries = SparseCodes(q_idx, q_val, dim)
    scores, ids = SparseIndex.build(docs).search(queries, top=top)
    exp_s, exp_i = brute_force(docs, queries, top)
    np.testing.assert_array_equal(ids.numpy(), exp_i)
    np.testing.assert_array_equal(scores.numpy(), exp_s)


def test_out_of_order_doc_ids_with_matching_checksums_are_named(tmp_path):
    """Doc ids out of order inside a posting list, checksums recomputed over them (a writer bug, a tool that rewrote
    the arrays): load(verify=True) names the list. They used to pass and then corrupt the heap in search."""
    rng = np.random.default_rng(6)
    SparseIndex.build(random_codes(rng, 3 * BLOCK, 8, 3)).save(tmp_path / "ix")
    offsets, doc_ids = np.load(tmp_path / "ix" / "offsets.npy"), np.load(tmp_path / "ix" / "doc_ids.npy")
    for name, change in (
        ("reversed", lambda ids: ids[::-1]),  # falling
        ("repeated", lambda ids: np.r_[ids[:1], ids[:-1]]),  # rising but not strictly: a doc twice
    ):
        folder = tmp_path / name
        shutil.copytree(tmp_path / "ix", folder)
        damaged = doc_ids.copy()
        damaged[offsets[2] : offsets[3]] = change(doc_ids[offsets[2] : offsets[3]].copy())
        np.save(folder / "doc_ids.npy", damaged)
        rehash(folder)
        with pytest.raises(ValueError, match=r"doc_ids.npy: the posting list of latent 2 is not strictly rising"):
            SparseIndex.load(folder)


def test_an_edited_index_json_is_named(tmp_path):
    """index.json hashes itself: an edited n_docs (which would return documents that do not exist), or a format set
    back to /1 to skip the checksums in a folder saved as /2, is named; with verify=False too (it costs O(1))."""
    rng = np.random.default_rng(7)
    SparseIndex.build(random_codes(rng, 30, 8, 2)).save(tmp_path / "ix")
    for name, edit in (
        ("n_docs", lambda meta: {**meta, "n_docs": 40}),
        ("format", lambda meta: {k: v for k, v in meta.items() if k not in ("sha256", "meta_sha256")}
         | {"format": index_module.LEGACY_FORMAT}),
    ):  # fmt: skip
        folder = tmp_path / name
        shutil.copytree(tmp_path / "ix", folder)
        meta = json.loads((folder / "index.json").read_text())
        (folder / "index.json").write_text(json.dumps(edit(meta)))
        for verify in (True, False):
            with pytest.raises(ValueError, match="index.json"):
                SparseIndex.load(folder, verify=verify)


def test_out_of_range_indices_in_scipy_matrices_and_edited_codes_are_refused():
    """scipy accepts a CSR matrix whose column index exceeds its width (and builds a CSC or COO one so on request);
    a SparseCodes' index tensor can be edited after construction. Both used to reach the kernels unchecked (a
    segfault); every build, add and search refuses them, naming the argument."""
    index = SparseIndex.build(SparseCodes(torch.tensor([[0, 1], [2, 3]]), torch.tensor([[1.0, 0.5], [0.5, 0.5]]), 4))
    ones = np.ones(2, np.float32)
    wide = scipy.sparse.csr_matrix((ones, np.array([1, 10**6]), np.array([0, 1, 2])), shape=(2, 4))
    negative = scipy.sparse.csr_matrix((ones, np.array([1, 2]), np.array([0, 1, 2])), shape=(2, 4))
    negative.indices[1] = -3
    falling = scipy.sparse.csr_matrix((ones, np.array([1, 2]), np.array([0, 1, 2])), shape=(2, 4))
    falling.indptr[1] = 5
    tall = scipy.sparse.csc_matrix((ones, np.array([0, 1]), np.array([0, 1, 2, 2, 2])), shape=(2, 4))
    tall.indices[1] = 7
    coo = scipy.sparse.coo_matrix((ones, (np.array([0, 1]), np.array([1, 2]))), shape=(2, 4))
    coo.col[0] = 9
    edited = SparseCodes(torch.tensor([[0, 1], [2, 3]]), torch.tensor([[1.0, 0.5], [0.5, 0.5]]), 4)
    edited.indices[1, 0] = 10**7
    inactive = SparseCodes(torch.tensor([[0, 1]]), torch.tensor([[1.0, 0.0]]), 4)
    inactive.indices[0, 1] = -1  # an inactive slot too: postings_touched would index with it
    for codes, message in (
        (wide, "outside \\[0, 4\\)"),
        (negative, "outside \\[0, 4\\)"),
        (falling, "indptr must rise"),
        (tall, "outside \\[0, 2\\)"),
        (coo, "axis-1 index outside"),
        (edited, "row 1 holds a latent index outside"),
        (inactive, "row 0 holds a latent index outside"),
    ):
        for call in (SparseIndex.build, index.add, index.search, index.postings_touched):
            with pytest.raises(ValueError, match=message):
                call(codes)
    assert len(index) == 2


def test_a_block_whose_documents_all_hold_three_query_latents_is_exact(kernel):
    """The last posting of a block whose BLOCK documents the shorter lists all flagged used to be written one past
    the per-thread `touched` scratch (another thread's row, or past the allocation): it has BLOCK + 1 slots now."""
    n = BLOCK + 5
    idx = torch.tensor([[0, 1, 2]]).repeat(n, 1)
    val = torch.ones(n, 3)
    val[::7, 0] = 0.5  # latent 0 on every document, with two values: the longest list, scored per document
    docs = SparseCodes(idx, val, 4)
    queries = SparseCodes(torch.tensor([[0, 1, 2]] * 3), torch.tensor([[1.0, 1.0, 1.0]] * 3), 4)
    index = SparseIndex.build(docs)
    scores, ids = index.search(queries, top=5, threads=2)
    exp_s, exp_i = brute_force(docs, queries, 5)
    np.testing.assert_array_equal(ids.numpy(), exp_i)
    np.testing.assert_array_equal(scores.numpy(), exp_s)
    if kernel == "numba":
        assert index._get_scratch(1)[2].shape[1] == BLOCK + 1
