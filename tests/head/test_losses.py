"""Losses against naive per-row loops written from the formulas of docs/method.md: values and gradients, in float64."""

import math

import pytest
import torch

from csrv2 import info_nce, supcon_loss
from csrv2.head.losses import auxk_loss, matryoshka_loss, mse, similarity_distillation


def unit(row):
    """row / ‖row‖ with the norm as an explicit sum of squares (a zero row stays zero, as F.normalize's eps does)."""
    norm = torch.sqrt(sum(v * v for v in row))
    return row / torch.clamp(norm, min=1e-12)


def naive_supcon(features, labels, tau, inside_log=True):
    """Per row i with positives P(i) = {p ≠ i : y_p = y_i}, with explicit sums over P(i) and over a ≠ i:
    inside:  −log(Σ_p e^{s_ip} / Σ_{a≠i} e^{s_ia});  Khosla: −(1/|P|) Σ_p log(e^{s_ip} / Σ_{a≠i} e^{s_ia}).
    Mean over rows with a positive. Built from torch scalars so that autograd gives the naive gradient."""
    n = len(features)
    u = [unit(f) for f in features]
    labels = [int(v) for v in labels]
    terms = []
    for i in range(n):
        pos = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if not pos:
            continue
        s = [torch.dot(u[i], u[a]) / tau for a in range(n)]
        denom = sum(torch.exp(s[a]) for a in range(n) if a != i)
        if inside_log:
            terms.append(-torch.log(sum(torch.exp(s[p]) for p in pos) / denom))
        else:
            terms.append(-sum(torch.log(torch.exp(s[p]) / denom) for p in pos) / len(pos))
    return sum(terms) / len(terms)


def naive_info_nce(a, b, tau):
    """Mean over i of −log(e^{s_ii} / Σ_j e^{s_ij}), s_ij = â_i·b̂_j / τ."""
    a = [unit(r) for r in a]
    b = [unit(r) for r in b]
    total = 0
    for i in range(len(a)):
        logits = [torch.dot(a[i], b[j]) / tau for j in range(len(b))]
        total = total - torch.log(torch.exp(logits[i]) / sum(torch.exp(v) for v in logits))
    return total / len(a)


def naive_similarity_distillation(student, teacher, tau, tau_teacher=None):
    """Mean over i of Σ_{j≠i} p_ij·log(p_ij / q_ij), p_ij = e^{t̂_i·t̂_j/τ_t} / Σ_{a≠i} e^{t̂_i·t̂_a/τ_t}, q
    likewise from the student rows at τ. Gradient flows only through the student."""
    tau_teacher = tau if tau_teacher is None else tau_teacher
    s = [unit(r) for r in student]
    t = [unit(r) for r in teacher.detach()]
    n = len(s)
    total = 0
    for i in range(n):
        others = [j for j in range(n) if j != i]
        p_num = {j: torch.exp(torch.dot(t[i], t[j]) / tau_teacher) for j in others}
        q_num = {j: torch.exp(torch.dot(s[i], s[j]) / tau) for j in others}
        p_den, q_den = sum(p_num.values()), sum(q_num.values())
        total = total + sum((p_num[j] / p_den) * torch.log((p_num[j] / p_den) / (q_num[j] / q_den)) for j in others)
    return total / n


def features64(b, d, seed):
    return torch.randn(b, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


LABELS = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 0, 2, 5])  # 4 and 5 have no positive


@pytest.mark.parametrize("inside", [True, False])
def test_supcon_value_and_gradient_match_naive_loop(inside):
    """supcon_loss (both forms) equals the naive per-row formula, and so does its gradient w.r.t. the features."""
    features = features64(12, 7, 0).requires_grad_()
    got = supcon_loss(features, LABELS, 0.2, positives_inside_log=inside)
    (grad_got,) = torch.autograd.grad(got, features)
    want = naive_supcon(features, LABELS, 0.2, inside)
    (grad_want,) = torch.autograd.grad(want, features)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad_got, grad_want, rtol=1e-10, atol=1e-12)
    assert grad_want[[8, 11]].abs().sum() > 0  # rows without a positive still get gradient as negatives


def test_supcon_forms_differ_and_labels_matter():
    """The two forms are different losses on the same batch, and changing the labels changes the loss."""
    features = features64(8, 5, 1)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    inside = float(supcon_loss(features, labels))
    khosla = float(supcon_loss(features, labels, positives_inside_log=False))
    assert not math.isclose(inside, khosla, rel_tol=1e-6)
    # the authors' bug (every label 0) gives a different loss
    assert not math.isclose(inside, float(supcon_loss(features, torch.zeros(8, dtype=torch.long))), rel_tol=1e-6)
    # one positive per row: both forms coincide (log of a single term)
    pairs = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert float(supcon_loss(features, pairs)) == pytest.approx(
        float(supcon_loss(features, pairs, positives_inside_log=False)), rel=1e-12
    )


@pytest.mark.parametrize("inside", [True, False])
def test_supcon_gradcheck(inside):
    """torch.autograd.gradcheck (finite differences) on supcon_loss in float64, tiny batch."""
    features = features64(5, 3, 2).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 1])
    assert torch.autograd.gradcheck(lambda f: supcon_loss(f, labels, 0.5, inside), (features,))


@pytest.mark.parametrize("inside", [True, False])
def test_supcon_without_positives_is_zero_and_differentiable(inside):
    """No row has a positive: the loss is exactly 0, attached to the graph, with a zero (finite) gradient."""
    features = features64(4, 3, 3).requires_grad_()
    loss = supcon_loss(features, torch.arange(4), positives_inside_log=inside)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


def test_supcon_on_sparse_codes_with_zero_rows_matches_naive():
    """All-zero code rows (cosine 0 with everything) give the naive loop's value, not NaN."""
    features = torch.zeros(5, 6, dtype=torch.float64)
    features[0, 1] = features[1, 1] = 1.0
    features[2, 3] = 2.0
    labels = torch.tensor([0, 0, 1, 1, 0])
    for inside in (True, False):
        got = supcon_loss(features, labels, positives_inside_log=inside)
        torch.testing.assert_close(got, naive_supcon(features, labels, 0.2, inside), rtol=1e-12, atol=0)


def test_supcon_shape_errors():
    """Features that are not (B, D), or labels not (B,), are refused."""
    with pytest.raises(ValueError, match="features must be"):
        supcon_loss(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match="features must be"):
        supcon_loss(torch.zeros(4, 2), torch.zeros(3))


def test_info_nce_value_and_gradient_match_naive_loop():
    """info_nce with separate positives and as self-contrast equals the naive loop, values and both gradients."""
    a, b = features64(6, 4, 4).requires_grad_(), features64(6, 4, 5).requires_grad_()
    got = info_nce(a, b, 0.2)
    grads_got = torch.autograd.grad(got, (a, b))
    want = naive_info_nce(a, b, 0.2)
    grads_want = torch.autograd.grad(want, (a, b))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    for g, w in zip(grads_got, grads_want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    got_self = info_nce(a, temperature=0.3)
    (grad_self,) = torch.autograd.grad(got_self, a)
    want_self = naive_info_nce(a, a, 0.3)  # the same tensor on both sides: gradient flows through both
    (grad_self_want,) = torch.autograd.grad(want_self, a)
    torch.testing.assert_close(got_self, want_self, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad_self, grad_self_want, rtol=1e-10, atol=1e-12)


def test_info_nce_gradcheck():
    """torch.autograd.gradcheck on info_nce in float64 w.r.t. anchors and positives."""
    a, b = features64(4, 3, 6).requires_grad_(), features64(4, 3, 7).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: info_nce(x, y, 0.5), (a, b))


def test_mse_is_the_element_mean():
    """Squared differences 1, 4, 0, 4 → mean 9/4."""
    assert float(mse(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.0, 0.0], [3.0, 2.0]]))) == 9 / 4


def test_auxk_normaliser_hand_computed_3x2():
    """e = [[1,0],[0,1],[2,2]]: batch mean [1,1], baseline MSE = 4/6; ê − e = [[0,1],[0,1],[0,1]]: MSE 3/6 → 0.75."""
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    e_hat = torch.tensor([[1.0, 1.0], [0.0, 0.0], [2.0, 1.0]])
    assert float(auxk_loss(e_hat, e)) == pytest.approx(0.75)
    # Perfect reconstruction → 0; predicting the batch mean → exactly 1.
    assert float(auxk_loss(e, e)) == 0.0
    assert float(auxk_loss(e.mean(0, keepdim=True).expand(3, 2), e)) == pytest.approx(1.0)


def test_auxk_gradient_matches_loop_and_nan_guard():
    """auxk_loss's gradient w.r.t. ê equals that of the element loop; a constant residual gives 0, not NaN/inf."""
    e = features64(5, 3, 8)
    e_hat = features64(5, 3, 9).requires_grad_()
    n = e.numel()
    mean = [sum(float(e[r, c]) for r in range(5)) / 5 for c in range(3)]
    baseline = sum((mean[c] - float(e[r, c])) ** 2 for r in range(5) for c in range(3)) / n
    want = sum((e_hat[r, c] - e[r, c]) ** 2 for r in range(5) for c in range(3)) / n / baseline
    got = auxk_loss(e_hat, e)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.autograd.grad(got, e_hat)[0], torch.autograd.grad(want, e_hat)[0])
    constant = torch.ones(5, 3, dtype=torch.float64)
    assert auxk_loss(e_hat, constant).item() == 0.0


def test_matryoshka_is_the_mean_of_naive_supcon_over_prefixes():
    """matryoshka_loss = mean over m ∈ dims of SupCon on the first m coordinates (value and gradient)."""
    emb = features64(8, 6, 10).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
    got = matryoshka_loss(emb, labels, [2, 4, 6], temperature=0.3)
    want = sum(naive_supcon(emb[:, :m], labels, 0.3) for m in (2, 4, 6)) / 3
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.autograd.grad(got, emb)[0], torch.autograd.grad(want, emb)[0])


@pytest.mark.parametrize("rows", [1, 4])
def test_auxk_is_finite_in_value_and_gradient_when_the_baseline_is_zero(rows):
    """A batch of one row (or a constant residual) has a zero baseline: loss 0 and gradient 0, never NaN."""
    aux = torch.randn(rows, 3, requires_grad=True)
    residual = torch.ones(rows, 3)  # constant across the batch → MSE(mean(e), e) = 0
    loss = auxk_loss(aux, residual)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(aux.grad, torch.zeros_like(aux))


def test_similarity_distillation_value_and_gradient_match_naive_loop():
    """similarity_distillation equals the naive KL loop in value and in the student's gradient; none reaches
    the teacher."""
    student, teacher = features64(7, 5, 8).requires_grad_(), features64(7, 3, 9).requires_grad_()
    got = similarity_distillation(student, teacher, 0.3)
    (grad_got,) = torch.autograd.grad(got, student)
    want = naive_similarity_distillation(student, teacher, 0.3)
    (grad_want,) = torch.autograd.grad(want, student)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad_got, grad_want, rtol=1e-10, atol=1e-12)
    assert got.item() > 0
    assert not similarity_distillation(student.detach(), teacher, 0.3).requires_grad
    sharp = similarity_distillation(student, teacher, 0.3, teacher_temperature=0.05)
    torch.testing.assert_close(sharp, naive_similarity_distillation(student, teacher, 0.3, 0.05), rtol=1e-12, atol=0)
    assert abs(sharp.item() - got.item()) > 1e-3


def test_similarity_distillation_is_zero_when_the_codes_keep_the_neighbours():
    """A student whose rows are the teacher's (up to scale) has the teacher's neighbours: KL 0. Zero code rows
    (cosine 0 with all) give the naive value, not NaN."""
    teacher = features64(6, 4, 10)
    torch.testing.assert_close(similarity_distillation(3.0 * teacher, teacher), torch.tensor(0.0, dtype=torch.float64))
    sparse = torch.zeros(6, 8, dtype=torch.float64)
    sparse[0, 1] = sparse[1, 1] = 1.0
    sparse[2, 5] = 2.0
    torch.testing.assert_close(
        similarity_distillation(sparse, teacher, 0.2),
        naive_similarity_distillation(sparse, teacher, 0.2),
        rtol=1e-12,
        atol=0,
    )


def test_similarity_distillation_shape_errors():
    """Student and teacher must be 2-D with the same rows."""
    with pytest.raises(ValueError, match="same rows"):
        similarity_distillation(torch.zeros(4, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="same rows"):
        similarity_distillation(torch.zeros(4), torch.zeros(4, 2))
