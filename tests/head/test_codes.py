"""SparseCodes and packed_to_csr against naive dict-of-keys loops over the packed (indices, values) pairs."""

import numpy as np
import pytest
import scipy.sparse
import torch

from csrv2.head.codes import SparseCodes, packed_to_csr


def naive_rows(indices, values):
    """Row i as {column: Σ values of that column} with zero sums dropped: the documented meaning of packed codes."""
    rows = []
    for idx_row, val_row in zip(np.asarray(indices).tolist(), np.asarray(values).tolist()):
        row = {}
        for j, v in zip(idx_row, val_row):
            row[j] = row.get(j, 0.0) + v
        rows.append({j: v for j, v in row.items() if v != 0})
    return rows


def csr_rows(matrix):
    """A CSR matrix read back entry by entry: list of {column: value}, and the stored column order per row."""
    rows, orders = [], []
    for i in range(matrix.shape[0]):
        start, end = matrix.indptr[i], matrix.indptr[i + 1]
        cols = matrix.indices[start:end].tolist()
        rows.append(dict(zip(cols, matrix.data[start:end].tolist())))
        orders.append(cols)
    return rows, orders


def random_packed(n=7, k=5, dim=6, seed=0):
    """Small dim so columns repeat within rows; a few values are exact zeros and one pair cancels to zero."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, dim, (n, k))
    values = rng.standard_normal((n, k))
    values[rng.random((n, k)) < 0.25] = 0.0
    indices[0] = [4, 4, 1, 3, 3]  # row 0: latent 4 given twice, cancelling; latent 3 twice with zeros
    values[0] = [1.5, -1.5, 2.0, 0.0, 0.0]
    return indices, values


def test_packed_to_csr_equals_dict_of_keys_loop_with_duplicates_and_zeros():
    """Duplicates summed, zero (and cancelled) entries dropped, columns sorted, for float64 and float32 values."""
    indices, values = random_packed()
    assert any(len(set(r)) < len(r) for r in indices.tolist())  # the data really has duplicates
    for dtype in (np.float64, np.float32):
        vals = values.astype(dtype)
        expected = naive_rows(indices, vals)
        matrix = packed_to_csr(indices.copy(), vals.copy(), dim=6)  # copies: see the input-mutation test below
        assert isinstance(matrix, scipy.sparse.csr_matrix) and matrix.shape == (7, 6) and matrix.dtype == dtype
        rows, orders = csr_rows(matrix)
        assert [sorted(r) for r in rows] == [sorted(r) for r in expected]
        for got, want in zip(rows, expected):
            for j in want:
                assert got[j] == pytest.approx(want[j], rel=1e-6 if dtype == np.float32 else 1e-12)
        assert all(order == sorted(order) for order in orders)
        assert (matrix.data != 0).all()
        assert rows[0] == {1: 2.0}  # the cancelled duplicate and the zero duplicates are gone


def test_packed_to_csr_leaves_its_inputs_unchanged():
    """Converting packed codes must not rewrite the (indices, values) arrays it was given."""
    indices, values = random_packed()
    before = indices.copy(), values.copy()
    packed_to_csr(indices, values, dim=6)
    assert np.array_equal(indices, before[0]) and np.array_equal(values, before[1])


def test_to_scipy_leaves_the_codes_unchanged():
    """codes.to_scipy() twice gives the same matrix, and the codes still hold what they held (zeros included)."""
    codes = SparseCodes(torch.tensor([[3, 1], [0, 2]]), torch.tensor([[0.5, 0.0], [1.0, 2.0]]), dim=5)
    first = codes.to_scipy().toarray()
    assert codes.values.tolist() == [[0.5, 0.0], [1.0, 2.0]] and codes.indices.tolist() == [[3, 1], [0, 2]]
    assert np.array_equal(codes.to_scipy().toarray(), first)


def test_packed_to_csr_dtypes_and_shape_errors():
    """float16 / int values become float32; mismatched or non-2-D inputs raise; zero rows/columns are allowed."""
    indices = np.array([[2, 0], [1, 1]])
    assert packed_to_csr(indices, np.array([[1, 2], [3, 4]]), 3).dtype == np.float32
    half = packed_to_csr(indices, np.array([[1, 2], [3, 4]], dtype=np.float16), 3)
    assert half.dtype == np.float32
    assert half.toarray().tolist() == [[2, 0, 1], [0, 7, 0]]
    assert packed_to_csr(np.zeros((0, 3), int), np.zeros((0, 3)), 5).shape == (0, 5)
    with pytest.raises(ValueError, match="must both be"):
        packed_to_csr(indices, np.ones((2, 3)), 3)
    with pytest.raises(ValueError, match="must both be"):
        packed_to_csr(indices.ravel(), np.ones(4), 3)


def test_sparse_codes_validation_errors():
    """Shape mismatch, non-2-D and out-of-range (negative or ≥ dim) indices are refused; an empty batch is fine."""
    with pytest.raises(ValueError, match="must both be"):
        SparseCodes(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2), dim=4)
    with pytest.raises(ValueError, match="must both be"):
        SparseCodes(torch.zeros(3, dtype=torch.long), torch.zeros(3), dim=4)
    with pytest.raises(ValueError, match=r"\[0, dim=4\)"):
        SparseCodes(torch.tensor([[0, 4]]), torch.ones(1, 2), dim=4)
    with pytest.raises(ValueError, match=r"\[0, dim=4\)"):
        SparseCodes(torch.tensor([[-1, 2]]), torch.ones(1, 2), dim=4)
    empty = SparseCodes(torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, 3), dim=4)
    assert len(empty) == 0 and empty.k == 3 and empty.to_dense().shape == (0, 4)


def distinct_codes(n=5, k=3, dim=8, seed=0, dtype=torch.float64):
    """Codes as a head makes them: distinct indices per row (some values exactly zero)."""
    g = torch.Generator().manual_seed(seed)
    indices = torch.stack([torch.randperm(dim, generator=g)[:k] for _ in range(n)])
    values = torch.randn(n, k, generator=g, dtype=dtype).clamp_min(0)
    return SparseCodes(indices, values, dim)


def test_to_dense_and_to_scipy_equal_the_loop():
    """to_dense and to_scipy both equal the dict-of-keys loop; to_dense is differentiable in the values."""
    codes = distinct_codes()
    expected = np.zeros((5, 8))
    for i, row in enumerate(naive_rows(codes.indices.numpy(), codes.values.numpy())):
        for j, v in row.items():
            expected[i, j] = v
    assert torch.equal(codes.to_dense(), torch.from_numpy(expected))
    matrix = codes.to_scipy()
    assert isinstance(matrix, scipy.sparse.csr_matrix) and (matrix.data != 0).all()
    assert np.array_equal(matrix.toarray(), expected)
    # to_dense as a function of the values: d/dvalues Σ_ij w_ij dense_ij = w gathered at the indices.
    values = codes.values.clone().requires_grad_()
    w = torch.randn(5, 8, dtype=torch.float64)
    (SparseCodes(codes.indices, values, 8).to_dense() * w).sum().backward()
    torch.testing.assert_close(values.grad, w.gather(1, codes.indices))


def test_to_scipy_of_values_that_require_grad():
    """to_scipy detaches: it works on codes straight out of a training forward."""
    codes = distinct_codes(dtype=torch.float32)
    attached = SparseCodes(codes.indices, codes.values.clone().requires_grad_(), codes.dim)
    assert np.array_equal(attached.to_scipy().toarray(), codes.to_dense().numpy())


def test_to_dense_sums_a_latent_given_twice_like_to_scipy():
    """Row i is Σ_j values[i, j]·e_{indices[i, j]}: a repeated index sums in to_dense as in to_scipy."""
    codes = SparseCodes(torch.tensor([[1, 1, 3]]), torch.tensor([[0.5, 0.25, 1.0]]), dim=4)
    assert codes.to_dense().tolist() == [[0.0, 0.75, 0.0, 1.0]]
    assert np.array_equal(codes.to_dense().numpy(), codes.to_scipy().toarray())


def test_normalized_rows_have_unit_norm_and_zero_rows_stay_zero():
    """normalized() divides each row by its own L2 norm (computed here as a plain sum of squares)."""
    codes = distinct_codes()
    codes.values[2] = 0.0  # an all-zero row
    unit = codes.normalized()
    assert torch.equal(unit.indices, codes.indices) and unit.dim == codes.dim
    for i in range(5):
        norm = sum(float(v) ** 2 for v in codes.values[i]) ** 0.5
        if norm == 0:
            assert (unit.values[i] == 0).all()
        else:
            torch.testing.assert_close(unit.values[i], codes.values[i] / norm)
            assert float(unit.to_dense()[i].pow(2).sum()) == pytest.approx(1.0)


def test_cat_getitem_len_k_and_to():
    """cat stacks rows in order; __getitem__ takes rows (slice, list, bool mask); parts must agree on dim and k."""
    a, b = distinct_codes(n=3, seed=1), distinct_codes(n=4, seed=2)
    both = SparseCodes.cat([a, b])
    assert len(both) == 7 and both.k == 3 and both.dim == 8
    assert torch.equal(both.to_dense(), torch.cat([a.to_dense(), b.to_dense()]))
    assert torch.equal(both[3:].to_dense(), b.to_dense())
    picked = both[[0, 6]]
    assert len(picked) == 2 and torch.equal(picked.to_dense(), both.to_dense()[[0, 6]])
    mask = torch.tensor([True, False, True, False, False, False, True])
    assert torch.equal(both[mask].indices, both.indices[mask])
    moved = both.to("cpu")
    assert torch.equal(moved.values, both.values) and moved.dim == 8
    with pytest.raises(ValueError, match="differ"):
        SparseCodes.cat([a, distinct_codes(n=2, dim=9)])
    with pytest.raises(ValueError, match="differ"):
        SparseCodes.cat([a, distinct_codes(n=2, k=2)])
