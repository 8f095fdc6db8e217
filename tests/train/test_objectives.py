"""step_loss against the loss parts combined by hand from a direct head call: weights, gradients, fired latents."""

import pytest
import torch
import torch.nn.functional as F

from csrv2 import SparseHead
from csrv2.config.run_config import TrainConfig
from csrv2.distributed import World
from csrv2.head import losses
from csrv2.head.baselines import MRLHead
from csrv2.train.objectives import StepLoss, merge_fired, step_loss

COEFS = dict(recon_4k_coef=0.5, aux_coef=0.25, recon_weight=2.0, contrastive_coef=0.3, temperature=0.3)


def head_with_dead_latents(d=12, h=48, k=4):
    """A head whose every third latent is dead (so L_aux ≠ 0) and whose biases are non-zero."""
    torch.manual_seed(0)
    head = SparseHead(d, h, k, k_aux=6, dead_steps=2)
    with torch.no_grad():
        head.b_pre.normal_(0, 0.1)
        head.b_lat.normal_(0, 0.1)
        head.steps_since_fired[::3] = 3
    return head


def batch(b=10, d=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(b, d, generator=g), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 4])[:b]  # label 4 has no positive
    return x, labels


def grads(module):
    return {name: p.grad.clone() for name, p in module.named_parameters()}


def test_world_is_a_world_of_one():
    """World() is rank 0 of 1, inactive, main; shard returns every row."""
    world = World()
    assert (world.rank, world.size, world.active, world.is_main) == (0, 1, False, True)
    assert world.shard(torch.arange(5).numpy()).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("inside", [True, False])
def test_csrv2_weights_equal_hand_combined_parts(inside):
    """csrv2: loss = recon_weight·(L_k + recon_4k_coef·L_4k + aux_coef·L_aux) + contrastive_coef·SupCon(codes), with
    non-default coefficients; parts are the unweighted terms; gradients equal those of the hand-combined loss."""
    head, (x, labels) = head_with_dead_latents(), batch()
    train = TrainConfig(objective="csrv2", positives_inside_log=inside, **COEFS)
    got = step_loss(head, x, labels, 5, train, World())
    assert isinstance(got, StepLoss)
    got.loss.backward()
    got_grads = grads(head)
    head.zero_grad()

    out = head(x, k=5)
    supcon = losses.supcon_loss(out.codes.to_dense(), labels, 0.3, positives_inside_log=inside)
    parts = [out.recon_loss, out.recon_4k_loss, out.aux_loss, supcon]
    values = [p.item() for p in parts]
    assert all(v > 0 for v in values) and len({round(v, 6) for v in values}) == 4  # each weight is visible
    expected = 2.0 * (out.recon_loss + 0.5 * out.recon_4k_loss + 0.25 * out.aux_loss) + 0.3 * supcon
    torch.testing.assert_close(got.loss, expected, rtol=1e-6, atol=0)
    assert set(got.parts) == {"loss", "recon_loss", "recon_4k_loss", "aux_loss", "contrastive_loss"}
    for key, value in zip(("recon_loss", "recon_4k_loss", "aux_loss", "contrastive_loss"), parts):
        torch.testing.assert_close(got.parts[key], value, rtol=1e-6, atol=0, msg=key)
    torch.testing.assert_close(got.parts["loss"], got.loss)
    expected.backward()
    for name, g in grads(head).items():
        torch.testing.assert_close(got_grads[name], g, msg=name)


def test_csr_uses_info_nce_of_the_codes_against_themselves():
    """csr: the contrastive term is in-batch InfoNCE of the codes with themselves (labels unused, may be None)."""
    head, (x, labels) = head_with_dead_latents(), batch()
    train = TrainConfig(objective="csr", **COEFS)
    got = step_loss(head, x, None, 4, train, World())
    with torch.no_grad():
        out = head(x, k=4)
        nce = losses.info_nce(out.codes.to_dense(), temperature=0.3)
        expected = 2.0 * (out.recon_loss + 0.5 * out.recon_4k_loss + 0.25 * out.aux_loss) + 0.3 * nce
    assert float(nce) > 0 and out.aux_loss > 0
    torch.testing.assert_close(got.loss.detach(), expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(got.parts["contrastive_loss"].detach(), nce, rtol=1e-6, atol=0)
    with_labels = step_loss(head, x, labels, 4, train, World())
    torch.testing.assert_close(with_labels.loss, got.loss)


@pytest.mark.parametrize("objective", ["csrv2", "csr"])
def test_zero_contrastive_weight_is_not_computed(objective, monkeypatch):
    """contrastive_coef 0 (the reconstruction-only recipe): the loss is the weighted reconstruction alone, with the
    same gradients, no contrastive part is logged and neither contrastive loss is called at all."""
    head, (x, labels) = head_with_dead_latents(), batch()
    train = TrainConfig(objective=objective, **{**COEFS, "contrastive_coef": 0.0})

    def not_called(*args, **kwargs):
        raise AssertionError("a contrastive loss was computed with weight 0")

    monkeypatch.setattr(losses, "supcon_loss", not_called)
    monkeypatch.setattr(losses, "info_nce", not_called)
    got = step_loss(head, x, labels, 5, train, World())
    got.loss.backward()
    got_grads = grads(head)
    head.zero_grad()
    out = head(x, k=5)
    expected = 2.0 * (out.recon_loss + 0.5 * out.recon_4k_loss + 0.25 * out.aux_loss)
    torch.testing.assert_close(got.loss, expected, rtol=0, atol=0)
    assert set(got.parts) == {"loss", "recon_loss", "recon_4k_loss", "aux_loss"}
    expected.backward()
    for name, g in grads(head).items():
        torch.testing.assert_close(got_grads[name], g, rtol=0, atol=0, msg=name)


def test_step_loss_passes_k_and_the_reconstruction_target():
    """k reaches the head (codes have k columns) and target replaces x in the reconstruction terms."""
    head, (x, labels) = head_with_dead_latents(), batch()
    target = F.normalize(x + 0.3, dim=1)
    train = TrainConfig(**COEFS)
    got = step_loss(head, x, labels, 7, train, World(), target=target)
    with torch.no_grad():
        out = head(x, k=7, target=target)
        default = head(x, k=7)
    assert out.codes.k == 7
    torch.testing.assert_close(got.parts["recon_loss"].detach(), out.recon_loss)
    torch.testing.assert_close(got.parts["aux_loss"].detach(), out.aux_loss)
    assert not torch.isclose(out.recon_loss, default.recon_loss)  # the target really changes the term


def test_mrl_equals_matryoshka_loss_on_the_head_output():
    """mrl: loss = losses.matryoshka_loss(head(x), labels, head.dims, τ), unweighted; no fired latents."""
    head, (x, labels) = MRLHead(12, dims=[2, 4, 12]), batch()
    torch.manual_seed(3)
    with torch.no_grad():
        head.linear.weight.add_(0.3 * torch.randn(12, 12))
    train = TrainConfig(objective="mrl", **COEFS)
    got = step_loss(head, x, labels, 4, train, World())
    expected = losses.matryoshka_loss(head(x), labels, [2, 4, 12], 0.3)
    torch.testing.assert_close(got.loss, expected)
    assert got.fired is None and set(got.parts) == {"loss", "contrastive_loss"}
    got.loss.backward()
    got_grad = head.linear.weight.grad.clone()
    head.zero_grad()
    expected.backward()
    torch.testing.assert_close(got_grad, head.linear.weight.grad)


def test_fired_is_the_set_of_latents_with_a_positive_code():
    """fired (h,) is True exactly for latents with a positive value in the codes (kept ReLU zeros excluded);
    step_loss does not move the dead-latent counters."""
    head, (x, labels) = head_with_dead_latents(k=20), batch()
    with torch.no_grad():
        head.b_lat.sub_(0.35)  # many of the top 20 are non-positive
    before = head.steps_since_fired.clone()
    got = step_loss(head, x, labels, 20, TrainConfig(**COEFS), World())
    with torch.no_grad():
        codes = head(x, k=20).codes
    assert (codes.values == 0).any()
    positive = {int(j) for j, v in zip(codes.indices.flatten(), codes.values.flatten()) if v > 0}
    assert got.fired.dtype == torch.bool and got.fired.shape == (48,)
    assert set(got.fired.nonzero().flatten().tolist()) == positive and 0 < len(positive) < 48
    assert torch.equal(head.steps_since_fired, before)
    naive = torch.zeros(48)
    for row_i, row_v in zip(codes.indices.tolist(), codes.values.tolist()):
        for j, v in zip(row_i, row_v):
            naive[j] += v > 0
    assert torch.equal(got.usage, naive)  # usage: rows in which each latent is positive


def test_uniformity_term_adds_gamma_times_the_codes_info_nce():
    """uniformity_coef γ: loss = the csrv2 loss + γ·InfoNCE(codes, codes), logged as uniformity_loss."""
    head, (x, labels) = head_with_dead_latents(), batch()
    plain = step_loss(head, x, labels, 5, TrainConfig(objective="csrv2", **COEFS), World())
    got = step_loss(head, x, labels, 5, TrainConfig(objective="csrv2", uniformity_coef=0.7, **COEFS), World())
    uniformity = losses.info_nce(head(x, k=5).codes.to_dense(), temperature=0.3)
    assert uniformity.item() > 0
    torch.testing.assert_close(got.loss, plain.loss + 0.7 * uniformity)
    torch.testing.assert_close(got.parts["uniformity_loss"], uniformity)
    assert "uniformity_loss" not in plain.parts


@pytest.mark.parametrize("objective", ["csrv2", "csr"])
def test_distill_term_adds_delta_times_the_neighbour_kl(objective):
    """distill_coef δ: loss = the loss without it + δ·KL(neighbours of x ‖ neighbours of the codes), logged as
    distill_loss; with a separate reconstruction target the teacher is that target."""
    head, (x, labels) = head_with_dead_latents(), batch()
    plain = step_loss(head, x, labels, 5, TrainConfig(objective=objective, **COEFS), World())
    got = step_loss(head, x, labels, 5, TrainConfig(objective=objective, distill_coef=0.4, **COEFS), World())
    distill = losses.similarity_distillation(head(x, k=5).codes.to_dense(), x, temperature=0.3)
    assert distill.item() > 0
    torch.testing.assert_close(got.loss, plain.loss + 0.4 * distill)
    torch.testing.assert_close(got.parts["distill_loss"], distill)
    assert "distill_loss" not in plain.parts
    target = F.normalize(x + 0.5, dim=1)
    with_target = step_loss(head, x, labels, 5, TrainConfig(objective=objective, distill_coef=0.4), World(), target)
    want = losses.similarity_distillation(head(x, k=5, target=target).codes.to_dense(), target, temperature=0.2)
    torch.testing.assert_close(with_target.parts["distill_loss"], want)
    sharp = TrainConfig(objective=objective, distill_coef=0.4, distill_temperature=0.05, **COEFS)
    want = losses.similarity_distillation(head(x, k=5).codes.to_dense(), x, 0.3, teacher_temperature=0.05)
    torch.testing.assert_close(step_loss(head, x, labels, 5, sharp, World()).parts["distill_loss"], want)


def test_merge_fired_is_an_or_that_passes_none_through():
    """merge_fired: None with None is None, None with m is m, two masks are OR-ed element-wise."""
    a = torch.tensor([True, False, False, True])
    b = torch.tensor([False, False, True, True])
    assert merge_fired(None, None) is None
    assert torch.equal(merge_fired(None, a), a) and torch.equal(merge_fired(a, None), a)
    assert merge_fired(a, b).tolist() == [True, False, True, True]
