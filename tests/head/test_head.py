"""SparseHead against a naive per-row reference of the formula in docs/method.md, values and gradients."""

import hashlib
import json
import resource

import pytest
import scipy.sparse
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from csrv2 import SparseCodes, SparseHead
from csrv2.config.run_config import HeadConfig
from csrv2.head.sparse_head import HeadOutput


def unit_rows(b, d, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=1)


def random_head(d=16, h=64, k=4, **kw):
    torch.manual_seed(1)
    head = SparseHead(d, h, k, **kw)
    with torch.no_grad():  # non-zero biases so their placement is tested
        head.b_pre.normal_(0, 0.1)
        head.b_lat.normal_(0, 0.1)
    return head


def make_dead(head, dead):
    """Counters such that exactly the latents in `dead` (h,) bool are dead."""
    with torch.no_grad():
        head.steps_since_fired.zero_()
        head.steps_since_fired[dead] = head.config.dead_steps + 1


def naive_pre(head, row):
    """pre = W (x − b_pre) + b_lat for one row, as a list of floats (plain loops, no matmul helpers)."""
    W, b_pre, b_lat = head.weight.tolist(), head.b_pre.tolist(), head.b_lat.tolist()
    centred = [float(row[c]) - b_pre[c] for c in range(head.d_in)]
    return [sum(W[j][c] * centred[c] for c in range(head.d_in)) + b_lat[j] for j in range(head.hidden)]


def naive_codes(head, x, k):
    """Per row: pre = W(x − b_pre) + b_lat; keep the k largest, ReLU, as a dense h-vector."""
    out = torch.zeros(len(x), head.hidden, dtype=x.dtype)
    for i, row in enumerate(x):
        pre = head.weight @ (row - head.b_pre) + head.b_lat
        order = sorted(range(head.hidden), key=lambda j: -float(pre[j]))[:k]
        for j in order:
            out[i, j] = max(float(pre[j]), 0.0)
    return out


def naive_auxk(head, x, k, dead, k_aux):
    """AuxK from scratch, row by row with Python floats: residual e = x − x̂_k; among dead latents keep the k_aux
    largest pre-activations, ReLU, decode without bias; MSE(ê, e) / MSE(batch-mean(e), e)."""
    d, h = head.d_in, head.hidden
    W = head.weight.tolist()
    b_pre = head.b_pre.tolist()
    residuals, aux_recons = [], []
    for row in x:
        pre = naive_pre(head, row)
        top_k = sorted(range(h), key=lambda j: -pre[j])[:k]
        recon = [b_pre[c] + sum(max(pre[j], 0.0) * W[j][c] for j in top_k) for c in range(d)]
        residuals.append([float(row[c]) - recon[c] for c in range(d)])
        dead_ids = [j for j in range(h) if dead[j]]
        top_aux = sorted(dead_ids, key=lambda j: -pre[j])[:k_aux]
        aux_recons.append([sum(max(pre[j], 0.0) * W[j][c] for j in top_aux) for c in range(d)])
    n = len(residuals)
    mean = [sum(e[c] for e in residuals) / n for c in range(d)]
    numerator = sum((a[c] - e[c]) ** 2 for a, e in zip(aux_recons, residuals) for c in range(d)) / (n * d)
    baseline = sum((mean[c] - e[c]) ** 2 for e in residuals for c in range(d)) / (n * d)
    return numerator / baseline


def test_encode_and_decode_match_naive_formula():
    """encode = ReLU(TopK_k(W(x − b_pre) + b_lat)) and decode = Wᵀz + b_pre, for k from 1 to hidden."""
    head, x = random_head(), unit_rows(8, 16)
    with torch.no_grad():
        for k in (1, 4, 17, 64):
            codes = head.encode(x, k)
            assert codes.indices.shape == (8, k) and codes.indices.dtype == torch.int64 and codes.dim == 64
            dense = naive_codes(head, x, k)
            torch.testing.assert_close(codes.to_dense(), dense)
            torch.testing.assert_close(head.decode(codes), dense @ head.weight + head.b_pre)
            torch.testing.assert_close(head.decode(codes, bias=False), dense @ head.weight)


def test_forward_parts_match_naive_and_4k_uses_unmasked_preactivations():
    """recon, L_k, L_4k (top 4k of the same unmasked pre), AuxK and dead_fraction equal the naive formulas."""
    head, x = random_head(k=3, k_aux=8, dead_steps=0), unit_rows(8, 16)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::3] = True  # some dead latents are among the top 4k: L_4k must still see them
    make_dead(head, dead)
    out = head(x)
    assert isinstance(out, HeadOutput)
    with torch.no_grad():
        recon_k = naive_codes(head, x, 3) @ head.weight + head.b_pre
        recon_4k = naive_codes(head, x, 12) @ head.weight + head.b_pre
        torch.testing.assert_close(out.recon, recon_k)
        torch.testing.assert_close(out.codes.to_dense(), naive_codes(head, x, 3))
        torch.testing.assert_close(out.recon_loss, ((recon_k - x) ** 2).mean())
        torch.testing.assert_close(out.recon_4k_loss, ((recon_4k - x) ** 2).mean())
    expected_aux = naive_auxk(head, x, 3, dead.tolist(), 8)
    assert out.aux_loss.item() == pytest.approx(expected_aux, rel=1e-4)
    assert out.dead_fraction.item() == pytest.approx(float(dead.float().mean()))
    assert out.aux_loss > 0


def test_aux_uses_only_dead_latents_and_zero_when_none_dead():
    """AuxK is 0 with no dead latent; with dead latents it equals a from-scratch per-row loop over only those."""
    head, x = random_head(k=2, k_aux=4, dead_steps=5), unit_rows(8, 16)
    out = head(x)
    assert out.aux_loss == 0 and out.dead_fraction == 0  # nothing has been idle for more than 5 steps
    dead = torch.zeros(64, dtype=torch.bool)
    dead[10:20] = True
    make_dead(head, dead)
    out = head(x)
    expected = naive_auxk(head, x, 2, dead.tolist(), 4)
    assert out.aux_loss.item() == pytest.approx(expected, rel=1e-4)
    # Fewer dead latents than k_aux: all of them are used (min(k_aux, #dead)).
    few = torch.zeros(64, dtype=torch.bool)
    few[[5, 40]] = True
    make_dead(head, few)
    assert head(x).aux_loss.item() == pytest.approx(naive_auxk(head, x, 2, few.tolist(), 4), rel=1e-4)


def test_aux_loss_is_computed_from_a_custom_normaliser():
    """The auxk_loss argument receives (decoded dead top-k_aux without bias, detached residual x − x̂_k)."""
    head, x = random_head(k=2, k_aux=3, dead_steps=0), unit_rows(6, 16)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[30:50] = True
    make_dead(head, dead)
    seen = {}

    def spy(aux_recon, residual):
        seen["aux_recon"], seen["residual"] = aux_recon, residual
        return aux_recon.sum() * 0 + 7.0

    out = head(x, auxk_loss=spy)
    assert out.aux_loss.item() == 7.0 and not seen["residual"].requires_grad
    with torch.no_grad():
        torch.testing.assert_close(seen["residual"], x - out.recon)
        pre = head.pre_activations(x)
        expected = torch.zeros(6, 16)
        for i in range(6):
            order = sorted(range(30, 50), key=lambda j: -float(pre[i, j]))[:3]
            for j in order:
                expected[i] += max(float(pre[i, j]), 0.0) * head.weight[j]
        torch.testing.assert_close(seen["aux_recon"], expected)


def test_k_aux_zero_switches_aux_off():
    """k_aux = 0: the aux part is 0 even with every latent dead, and the other parts still backpropagate."""
    head, x = random_head(k=2, k_aux=0, dead_steps=0), unit_rows(8, 16)
    make_dead(head, torch.ones(64, dtype=torch.bool))
    out = head(x)
    assert out.aux_loss == 0 and out.dead_fraction == 1
    (out.recon_loss + out.recon_4k_loss + out.aux_loss).backward()
    assert head.weight.grad.abs().sum() > 0


def naive_dense_losses(head, x, target, idx_k, idx_4k, dead, k_aux, code_weights):
    """The forward's losses from explicit dense (B, h) masked activations built from the head's parameters."""
    pre = (x - head.b_pre) @ head.weight.T + head.b_lat  # (B, h)
    b, h = pre.shape

    def masked(index_sets):
        mask = torch.zeros(b, h, dtype=torch.bool)
        for i, ids in enumerate(index_sets):
            mask[i, list(ids)] = True
        return torch.where(mask, torch.relu(pre), torch.zeros_like(pre))

    z_k, z_4k = masked(idx_k), masked(idx_4k)
    recon = z_k @ head.weight + head.b_pre
    recon_loss = ((recon - target) ** 2).mean()
    recon_4k_loss = ((z_4k @ head.weight + head.b_pre - target) ** 2).mean()
    plain = pre.tolist()
    aux_sets = [sorted((j for j in range(h) if dead[j]), key=lambda j: -plain[i][j])[:k_aux] for i in range(b)]
    e = (target - recon).detach()
    e_hat = masked(aux_sets) @ head.weight
    aux = ((e_hat - e) ** 2).mean() / ((e.mean(0, keepdim=True) - e) ** 2).mean()
    return recon_loss + recon_4k_loss + aux + (z_k * code_weights).sum(), z_k


def test_forward_backward_matches_naive_dense_formula_on_every_parameter():
    """∂(L_k + L_4k + L_aux + Σ w·codes)/∂(weight, b_pre, b_lat, x) of the fast path equals a dense autograd reference
    with the same top-k index sets (float64); the target is x.detach(), as a finetuned backbone passes it."""
    head = random_head(d=12, h=40, k=3, k_aux=5, dead_steps=2).double()
    dead = torch.zeros(40, dtype=torch.bool)
    dead[::2] = True
    make_dead(head, dead)
    x = unit_rows(7, 12, seed=4, dtype=torch.float64).requires_grad_()
    code_weights = torch.randn(7, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(5))

    out = head(x, target=x.detach())
    fast = out.recon_loss + out.recon_4k_loss + out.aux_loss + (out.codes.to_dense() * code_weights).sum()
    fast.backward()
    fast_grads = {name: p.grad.clone() for name, p in head.named_parameters()} | {"x": x.grad.clone()}
    head.zero_grad()
    x.grad = None

    with torch.no_grad():  # index sets: the k / 4k largest pre-activations per row, picked by a plain sort
        pre = (x - head.b_pre) @ head.weight.T + head.b_lat
        order = [sorted(range(40), key=lambda j: -float(pre[i, j])) for i in range(7)]
    idx_k, idx_4k = [o[:3] for o in order], [o[:12] for o in order]
    assert [set(r) for r in out.codes.indices.tolist()] == [set(r) for r in idx_k]
    naive, z_k = naive_dense_losses(head, x, x.detach(), idx_k, idx_4k, dead.tolist(), 5, code_weights)
    torch.testing.assert_close(fast, naive)
    assert (z_k > 0).sum() > 7  # the codes term has real gradient paths
    naive.backward()
    naive_grads = {name: p.grad for name, p in head.named_parameters()} | {"x": x.grad}
    assert set(fast_grads) == {"weight", "b_pre", "b_lat", "x"}
    for name in fast_grads:
        assert naive_grads[name].abs().sum() > 0, name
        torch.testing.assert_close(fast_grads[name], naive_grads[name], rtol=1e-10, atol=1e-12, msg=name)


def test_forward_and_encode_never_change_the_counters():
    """Dead statistics: forward / encode in train or eval mode leave steps_since_fired untouched."""
    head, x = random_head(dead_steps=1), unit_rows(8, 16)
    with torch.no_grad():
        head.steps_since_fired.copy_(torch.arange(64) % 4)
    before = head.steps_since_fired.clone()
    for mode in (head.train, head.eval):
        mode()
        head.encode(x)
        head(x)
        head(x, k=10)
        assert torch.equal(head.steps_since_fired, before)


def test_advance_dead_counters_adds_one_and_resets_fired():
    """advance_dead_counters: every counter +1, fired latents back to 0; dead = counter > dead_steps."""
    head = random_head(h=8, k=2, dead_steps=1)
    assert head.steps_since_fired.tolist() == [0] * 8 and head.dead_fraction() == 0
    fired = torch.tensor([True, False, False, True, False, False, False, False])
    head.advance_dead_counters(fired)
    assert head.steps_since_fired.tolist() == [0, 1, 1, 0, 1, 1, 1, 1]
    assert not head.dead_mask().any()  # 1 step idle is not more than dead_steps = 1
    head.advance_dead_counters(torch.tensor([False, True] + [False] * 6))
    assert head.steps_since_fired.tolist() == [1, 0, 2, 1, 2, 2, 2, 2]
    assert head.dead_mask().tolist() == [False, False, True, False, True, True, True, True]
    assert head.dead_fraction() == pytest.approx(5 / 8)
    head.advance_dead_counters(torch.ones(8, dtype=torch.bool))
    assert head.steps_since_fired.tolist() == [0] * 8


def test_fired_is_the_set_of_positive_code_entries():
    """fired (h,) is True exactly for latents with a positive value in some row (kept zeros do not fire)."""
    head, x = random_head(k=40), unit_rows(8, 16)
    with torch.no_grad():
        head.b_lat.sub_(0.3)  # many of the top 40 are non-positive → ReLU zeros among the kept entries
    out = head(x)
    assert (out.codes.values == 0).any()
    positive = {int(j) for j, v in zip(out.codes.indices.flatten(), out.codes.values.flatten()) if v > 0}
    assert set(out.fired.nonzero().flatten().tolist()) == positive
    assert out.fired.dtype == torch.bool and out.fired.shape == (64,) and len(positive) < 64


def test_k_bounds_and_constructor_checks():
    """k ∉ [1, hidden], non-positive sizes, negative k_aux / dead_steps and a wrong input width are refused."""
    with pytest.raises(ValueError, match="k=65"):
        SparseHead(16, 64, 65)
    with pytest.raises(ValueError, match="hidden"):
        SparseHead(16, 0, 1)
    with pytest.raises(ValueError, match="k_aux"):
        SparseHead(16, 64, 4, k_aux=-1)
    with pytest.raises(ValueError, match="dead_steps"):
        SparseHead(16, 64, 4, dead_steps=-1)
    head = random_head()
    with pytest.raises(ValueError, match="hidden=64"):
        head.encode(unit_rows(2, 16), k=65)
    with pytest.raises(ValueError, match="hidden=64"):
        head(unit_rows(2, 16), k=0)
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        head.encode(torch.zeros(2, 15))
    with pytest.raises(ValueError, match="hidden=64"):
        head.decode(SparseCodes(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1), dim=32))


def test_sparse_decode_equals_dense_decode():
    """decode(sparse=True) (gathering k rows of W) equals the dense decode, with and without bias."""
    head, x = random_head(), unit_rows(32, 16)
    with torch.no_grad():
        for k in (1, 4, 32):
            codes = head.encode(x, k)
            torch.testing.assert_close(head.decode(codes, sparse=True), head.decode(codes), atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(
                head.decode(codes, bias=False, sparse=True), naive_codes(head, x, k) @ head.weight, atol=1e-6, rtol=1e-5
            )


def test_codes_conversions():
    """to_dense / to_scipy of a hand-written SparseCodes; an index ≥ dim is refused."""
    codes = SparseCodes(torch.tensor([[3, 1], [0, 2]]), torch.tensor([[0.5, 0.0], [1.0, 2.0]]), dim=5)
    dense = codes.to_dense()
    assert dense.tolist() == [[0, 0, 0, 0.5, 0], [1.0, 0, 2.0, 0, 0]]
    matrix = codes.to_scipy()
    assert isinstance(matrix, scipy.sparse.csr_matrix) and matrix.nnz == 3
    assert (matrix.toarray() == dense.numpy()).all()
    with pytest.raises(ValueError):
        SparseCodes(torch.tensor([[5]]), torch.tensor([[1.0]]), dim=5)


def test_from_config_and_config_fields():
    """from_config builds the head a HeadConfig describes; head.config is that HeadConfig."""
    cfg = HeadConfig(hidden=48, k=5, k_aux=9, dead_steps=7)
    head = SparseHead.from_config(12, cfg)
    assert head.config == cfg and head.d_in == 12
    assert (head.hidden, head.k, head.k_aux) == (48, 5, 9) and head.weight.shape == (48, 12)


def test_save_and_load_round_trip_bit_exact(tmp_path):
    """save_pretrained → from_pretrained: same config, same tensors (counters included), same codes."""
    head = random_head(k_aux=7, dead_steps=3)
    head.advance_dead_counters(head(unit_rows(4, 16)).fired)
    head.advance_dead_counters(torch.zeros(64, dtype=torch.bool))
    head.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csrv2_head.json", "head.safetensors"]
    assert json.loads((tmp_path / "csrv2_head.json").read_text()) == {
        "d_in": 16,
        "hidden": 64,
        "k": 4,
        "k_aux": 7,
        "dead_steps": 3,
        "weights_sha256": hashlib.sha256((tmp_path / "head.safetensors").read_bytes()).hexdigest(),
    }
    loaded = SparseHead.from_pretrained(tmp_path)
    assert loaded.config == head.config and loaded.d_in == 16
    assert head.state_dict().keys() == loaded.state_dict().keys()
    for name, a in head.state_dict().items():
        assert torch.equal(a, loaded.state_dict()[name]), name
    assert set(loaded.steps_since_fired.tolist()) == {1, 2}
    x = unit_rows(5, 16, seed=3)
    assert torch.equal(head.encode(x).values, loaded.encode(x).values)


def test_loads_a_folder_written_by_the_previous_version(tmp_path):
    """A config.json that still holds recon_4k_coef / aux_coef (the old format) loads; the weights come through."""
    head = random_head(k_aux=7, dead_steps=3)
    save_file({n: t.detach().contiguous() for n, t in head.state_dict().items()}, str(tmp_path / "head.safetensors"))
    old = {"d_in": 16, "hidden": 64, "k": 4, "k_aux": 7, "dead_steps": 3, "recon_4k_coef": 0.125, "aux_coef": 0.03125}
    (tmp_path / "config.json").write_text(json.dumps(old))
    loaded = SparseHead.from_pretrained(tmp_path)
    assert loaded.config == HeadConfig(hidden=64, k=4, k_aux=7, dead_steps=3)
    assert torch.equal(loaded.weight, head.weight) and torch.equal(loaded.b_lat, head.b_lat)


def test_loads_a_spec_saved_as_config_json_with_its_checksum(tmp_path):
    """Heads saved before the rename (spec in config.json, with weights_sha256) load and are still checked;
    csrv2_head.json wins when a folder has both."""
    head = random_head(k_aux=7, dead_steps=3)
    head.save_pretrained(tmp_path)
    (tmp_path / "csrv2_head.json").rename(tmp_path / "config.json")
    loaded = SparseHead.from_pretrained(tmp_path)
    assert loaded.config == head.config
    assert all(torch.equal(a, loaded.state_dict()[n]) for n, a in head.state_dict().items())
    spec = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**spec, "weights_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="does not match the sha256 in config.json"):
        SparseHead.from_pretrained(tmp_path)
    (tmp_path / "csrv2_head.json").write_text(json.dumps({**spec, "k": 5}))
    assert SparseHead.from_pretrained(tmp_path).k == 5
    for name in ("csrv2_head.json", "config.json"):
        (tmp_path / name).unlink()
    with pytest.raises(FileNotFoundError, match=r"csrv2_head.json not found \(nor config.json"):
        SparseHead.from_pretrained(tmp_path)


def test_from_pretrained_refuses_unknown_keys_and_missing_files(tmp_path):
    """An unknown config key and a folder without the weights are errors, not silent defaults."""
    random_head().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "csrv2_head.json").read_text())
    (tmp_path / "csrv2_head.json").write_text(json.dumps({**config, "sparsity": 3}))
    with pytest.raises(ValueError, match="sparsity"):
        SparseHead.from_pretrained(tmp_path)
    (tmp_path / "head.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="head.safetensors"):
        SparseHead.from_pretrained(tmp_path)


def test_damaged_weights_are_named_not_loaded(tmp_path):
    """A flipped byte in head.safetensors no longer matches the sha256 recorded at save time; a truncated config is
    named too."""
    random_head().save_pretrained(tmp_path)
    weights = tmp_path / "head.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-3] ^= 0x10
    weights.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"head.safetensors does not match the sha256"):
        SparseHead.from_pretrained(tmp_path)
    (tmp_path / "csrv2_head.json").write_text('{"d_in": 16, "hid')
    with pytest.raises(ValueError, match="csrv2_head.json: not valid JSON"):
        SparseHead.from_pretrained(tmp_path)


def rewrite(folder, tensors=None, **spec_changes) -> None:
    """Rewrite a saved head's weights and / or spec with a matching weights_sha256 (a writer bug, not damage)."""
    if tensors is not None:
        save_file(tensors, str(folder / "head.safetensors"))
    spec = json.loads((folder / "csrv2_head.json").read_text())
    spec.update(spec_changes)
    spec["weights_sha256"] = hashlib.sha256((folder / "head.safetensors").read_bytes()).hexdigest()
    (folder / "csrv2_head.json").write_text(json.dumps(spec))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_named_not_loaded(tmp_path, bad):
    """A head whose weights hold NaN / inf (with a matching checksum) used to load and encode every input to NaN."""
    head = random_head()
    head.save_pretrained(tmp_path)
    state = {name: t.clone() for name, t in head.state_dict().items()}
    state["b_lat"][3] = bad
    rewrite(tmp_path, state)
    with pytest.raises(ValueError, match="head.safetensors.*b_lat holds NaN or inf"):
        SparseHead.from_pretrained(tmp_path)


def test_a_spec_is_checked_against_the_weights_header_before_anything_is_allocated(tmp_path):
    """A spec claiming 60000 × 60000 used to allocate 14 GB (the head built from the spec) before the weights were
    read and found to be 64 × 16; now the header's shapes are compared first and nothing of the spec's size is
    built (here 12000 × 12000: the old code's peak memory grew by ~1.2 GB)."""
    random_head().save_pretrained(tmp_path)
    rewrite(tmp_path, hidden=12000, d_in=12000)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ValueError, match=r"weight has shape \[64, 16\], the spec needs \[12000, 12000\]"):
        SparseHead.from_pretrained(tmp_path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000
    rewrite(tmp_path, hidden=64, d_in=16, k=0)
    with pytest.raises(ValueError, match="csrv2_head.json: not a valid head spec.*k must be a positive int"):
        SparseHead.from_pretrained(tmp_path)
    rewrite(tmp_path, {"weight": torch.zeros(64, 16)}, k=4)
    with pytest.raises(ValueError, match="missing or unexpected"):
        SparseHead.from_pretrained(tmp_path)


def test_centred_is_a_copy_with_b_pre_at_the_mean():
    torch.manual_seed(0)
    head = SparseHead(6, 12, 2)
    mean = torch.randn(6)
    moved = head.centred(mean)
    assert torch.equal(moved.b_pre, mean) and not torch.equal(head.b_pre, mean)
    assert torch.equal(moved.weight, head.weight) and moved.weight is not head.weight
    x = torch.randn(5, 6)
    assert torch.allclose(moved.pre_activations(x), F.linear(x - mean, head.weight, head.b_lat))
