"""Losses against naive per-row loops written from PAPER.md."""

import math

import torch
import torch.nn.functional as F

from csrv2 import info_nce, supcon_loss
from csrv2.losses import auxk_loss


def naive_supcon(features, labels, tau, inside_log=True):
    u = [f / f.norm() for f in features]
    terms = []
    for i in range(len(u)):
        pos = [p for p in range(len(u)) if p != i and labels[p] == labels[i]]
        if not pos:
            continue
        denom = sum(math.exp(float(u[i] @ u[a]) / tau) for a in range(len(u)) if a != i)
        if inside_log:
            terms.append(-math.log(sum(math.exp(float(u[i] @ u[p]) / tau) for p in pos) / denom))
        else:
            terms.append(-sum(math.log(math.exp(float(u[i] @ u[p]) / tau) / denom) for p in pos) / len(pos))
    return sum(terms) / len(terms)


def naive_info_nce(a, b, tau):
    a = [r / r.norm() for r in a]
    b = [r / r.norm() for r in b]
    total = 0.0
    for i in range(len(a)):
        logits = [float(a[i] @ b[j]) / tau for j in range(len(b))]
        total += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    return total / len(a)


def test_supcon_matches_naive_loop_both_forms():
    torch.manual_seed(0)
    features = torch.randn(12, 7, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 0, 2, 5])  # 4 and 5 have no positive
    for inside in (True, False):
        got = supcon_loss(features, labels, 0.2, positives_inside_log=inside)
        assert math.isclose(float(got), naive_supcon(features, labels, 0.2, inside), rel_tol=1e-9)


def test_supcon_has_gradient_on_real_positives_and_is_not_a_noop():
    torch.manual_seed(0)
    features = torch.randn(8, 5, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss = supcon_loss(features, labels)
    loss.backward()
    assert loss > 0 and features.grad.abs().sum() > 0
    # The authors' bug (every label 0) gives a different loss: the labels must matter.
    with torch.no_grad():
        all_zero = float(supcon_loss(features, torch.zeros(8, dtype=torch.long)))
    assert not math.isclose(loss.item(), all_zero)


def test_supcon_without_positives_is_zero_and_attached():
    features = torch.randn(4, 3, requires_grad=True)
    loss = supcon_loss(features, torch.arange(4))
    assert loss == 0 and loss.requires_grad


def test_supcon_on_sparse_codes_with_zero_rows_is_finite():
    features = torch.zeros(4, 6)
    features[0, 1] = features[1, 1] = 1.0
    loss = supcon_loss(features, torch.tensor([0, 0, 1, 1]))
    assert torch.isfinite(loss)


def test_info_nce_matches_naive_loop():
    torch.manual_seed(0)
    a, b = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    assert math.isclose(float(info_nce(a, b, 0.2)), naive_info_nce(a, b, 0.2), rel_tol=1e-9)
    assert math.isclose(float(info_nce(a, temperature=0.2)), naive_info_nce(a, a, 0.2), rel_tol=1e-9)


def test_auxk_normalisation_and_nan_guard():
    torch.manual_seed(0)
    e, e_hat = torch.randn(5, 3), torch.randn(5, 3)
    expected = ((e_hat - e) ** 2).mean() / ((e.mean(0) - e) ** 2).mean()
    torch.testing.assert_close(auxk_loss(e_hat, e), expected)
    constant = torch.ones(5, 3)
    assert auxk_loss(F.normalize(e_hat), constant) == 0  # zero variance baseline → 0, not NaN/inf
