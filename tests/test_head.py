"""SparseHead against a naive per-row reference of PAPER.md's formula."""

import pytest
import scipy.sparse
import torch
import torch.nn.functional as F

from csrv2 import SparseCodes, SparseHead


def unit_rows(b, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=g), dim=1)


def random_head(d=16, h=64, k=4, **kw):
    torch.manual_seed(1)
    head = SparseHead(d, h, k, **kw)
    with torch.no_grad():  # non-zero biases so their placement is tested
        head.b_pre.normal_(0, 0.1)
        head.b_lat.normal_(0, 0.1)
    return head


def naive_codes(head, x, k):
    """Per row: pre = W(x − b_pre) + b_lat; keep the k largest, ReLU, as a dense h-vector."""
    out = torch.zeros(len(x), head.hidden)
    for i, row in enumerate(x):
        pre = head.weight @ (row - head.b_pre) + head.b_lat
        order = sorted(range(head.hidden), key=lambda j: -float(pre[j]))[:k]
        for j in order:
            out[i, j] = max(float(pre[j]), 0.0)
    return out


def test_encode_and_decode_match_naive_formula():
    head, x = random_head(), unit_rows(8, 16)
    with torch.no_grad():
        for k in (1, 4, 17, 64):
            codes = head.encode(x, k)
            assert codes.indices.shape == (8, k) and codes.indices.dtype == torch.int64 and codes.dim == 64
            dense = naive_codes(head, x, k)
            torch.testing.assert_close(codes.to_dense(), dense)
            torch.testing.assert_close(head.decode(codes), dense @ head.weight + head.b_pre)


def test_forward_parts_and_4k_from_unmasked_preactivations():
    head, x = random_head(k=3, k_aux=8, dead_steps=0), unit_rows(8, 16)
    head.train()
    head(x)  # after one step with dead_steps=0 every latent that did not fire is dead
    assert head.steps_since_fired.max() > 0
    out = head(x)
    with torch.no_grad():
        recon_k = naive_codes(head, x, 3) @ head.weight + head.b_pre
        recon_4k = naive_codes(head, x, 12) @ head.weight + head.b_pre
        torch.testing.assert_close(out.recon, recon_k)
        torch.testing.assert_close(out.recon_loss, ((recon_k - x) ** 2).mean())
        torch.testing.assert_close(out.recon_4k_loss, ((recon_4k - x) ** 2).mean())
        expected = out.recon_loss + out.recon_4k_loss / 8 + out.aux_loss / 32
        torch.testing.assert_close(out.loss, expected)
    assert out.aux_loss > 0


def test_aux_uses_only_dead_latents_and_zero_when_none_dead():
    head, x = random_head(k=2, k_aux=4, dead_steps=5), unit_rows(8, 16)
    out = head(x)
    assert out.aux_loss == 0  # nothing has been idle for more than 5 steps yet
    with torch.no_grad():
        head.steps_since_fired.zero_()
        dead = torch.zeros(64, dtype=torch.bool)
        dead[10:20] = True
        head.steps_since_fired[dead] = 100
        pre = head.pre_activations(x)
        residual = x - out.recon
    out = head(x)
    with torch.no_grad():
        masked = pre.masked_fill(~dead, float("-inf"))
        aux_codes = torch.zeros(8, 64)
        for i in range(8):
            top = masked[i].topk(4)
            aux_codes[i, top.indices] = F.relu(top.values)
        assert set(aux_codes.nonzero()[:, 1].tolist()) <= set(range(10, 20))
        e_hat = aux_codes @ head.weight
        expected = ((e_hat - residual) ** 2).mean() / ((residual.mean(0) - residual) ** 2).mean()
        torch.testing.assert_close(out.aux_loss, expected)


def test_k_aux_zero_switches_aux_off():
    head, x = random_head(k=2, k_aux=0, dead_steps=0), unit_rows(8, 16)
    head(x)
    out = head(x)
    assert out.aux_loss == 0 and torch.isfinite(out.loss)
    out.loss.backward()


def test_dead_statistics_advance_only_in_training():
    head, x = random_head(), unit_rows(8, 16)
    head.eval()
    before = head.steps_since_fired.clone()
    head.encode(x)
    head(x)
    assert torch.equal(head.steps_since_fired, before)
    head.train()
    head(x)
    assert not torch.equal(head.steps_since_fired, before)


def test_k_bounds():
    with pytest.raises(ValueError, match="k=65"):
        SparseHead(16, 64, 65)
    head = random_head()
    with pytest.raises(ValueError, match="hidden=64"):
        head.encode(unit_rows(2, 16), k=65)
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        head.encode(torch.zeros(2, 15))


def test_sparse_decode_equals_dense_decode():
    head, x = random_head(), unit_rows(32, 16)
    with torch.no_grad():
        for k in (1, 4, 32):
            codes = head.encode(x, k)
            torch.testing.assert_close(head.decode(codes, sparse=True), head.decode(codes), atol=1e-6, rtol=1e-5)


def test_codes_conversions():
    codes = SparseCodes(torch.tensor([[3, 1], [0, 2]]), torch.tensor([[0.5, 0.0], [1.0, 2.0]]), dim=5)
    dense = codes.to_dense()
    assert dense.tolist() == [[0, 0, 0, 0.5, 0], [1.0, 0, 2.0, 0, 0]]
    matrix = codes.to_scipy()
    assert isinstance(matrix, scipy.sparse.csr_matrix) and matrix.nnz == 3
    assert (matrix.toarray() == dense.numpy()).all()
    with pytest.raises(ValueError):
        SparseCodes(torch.tensor([[5]]), torch.tensor([[1.0]]), dim=5)


def test_save_and_load_round_trip_bit_exact(tmp_path):
    head = random_head(k_aux=7, dead_steps=3)
    head(unit_rows(4, 16))
    head.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "head.safetensors"]
    loaded = SparseHead.from_pretrained(tmp_path)
    assert loaded.spec == head.spec
    for (name, a), (_, b) in zip(head.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    x = unit_rows(5, 16, seed=3)
    assert torch.equal(head.encode(x).values, loaded.encode(x).values)
