"""Losses of CSR / CSRv2 as small pure functions (docs/method.md, "Losses").

Shapes: B = batch, d = embedding width, D = feature width (h for sparse codes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def mse(x_hat: Tensor, x: Tensor) -> Tensor:
    """Element-mean squared error between (B, d) tensors."""
    return (x_hat - x).pow(2).mean()


def auxk_loss(aux_recon: Tensor, residual: Tensor) -> Tensor:
    """AuxK: how well the dead latents explain the residual, relative to predicting its batch mean.

    aux_recon (B, d): decoding (without bias) of the top-k_aux dead pre-activations.
    residual (B, d): e = x − x̂_k, detached by the caller.
    Returns MSE(ê, e) / MSE(mean_batch(e), e), and 0 (value and gradient) when the baseline is 0: a batch of one row
    or a constant residual has nothing for the dead latents to explain.
    """
    baseline = (residual.mean(dim=0, keepdim=True) - residual).pow(2).mean()
    return safe_ratio(mse(aux_recon, residual), baseline)


def safe_ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator where denominator > 0, else 0 — finite in value AND gradient.

    (Dividing first and replacing NaN afterwards fixes the value only: the backward of x / 0 is still NaN.)"""
    ok = denominator > 0
    return torch.where(ok, numerator / torch.where(ok, denominator, torch.ones_like(denominator)), numerator * 0.0)


def info_nce(anchors: Tensor, positives: Tensor | None = None, temperature: float = 0.2) -> Tensor:
    """In-batch InfoNCE over L2-normalised features (CSR's contrastive term).

    anchors (B, D), positives (B, D): row i of `positives` is the positive of anchor i, every other row a
    negative. positives=None uses the anchors themselves (CSR's self-contrast: codes of different
    inputs are pushed apart).
    """
    a = F.normalize(anchors, dim=1)
    p = a if positives is None else F.normalize(positives, dim=1)
    logits = a @ p.T / temperature
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


def similarity_distillation(
    student: Tensor, teacher: Tensor, temperature: float = 0.2, teacher_temperature: float | None = None
) -> Tensor:
    """How far the in-batch neighbours of the codes are from those of the dense embeddings: mean_i KL(p_i ‖ q_i).

    student (B, D) codes, teacher (B, d) embeddings (no gradient flows into them). Row i's distributions over the
    other rows j ≠ i: p_ij ∝ exp(cos(t_i, t_j)/τ_t), q_ij ∝ exp(cos(s_i, s_j)/τ), τ_t = teacher_temperature
    (default τ; a smaller τ_t weights the nearest neighbours). Unsupervised, so it applies to texts of any task: it
    asks the codes to rank a row's neighbours as the embedding they replace does.
    """
    if student.dim() != 2 or teacher.dim() != 2 or len(student) != len(teacher):
        raise ValueError(
            f"similarity_distillation: student (B, D) and teacher (B, d) need the same rows, got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}"
        )
    self_mask = torch.eye(len(student), dtype=torch.bool, device=student.device)

    def log_neighbours(features: Tensor, tau: float) -> Tensor:  # (B, B), row i a log-distribution over j ≠ i
        u = F.normalize(features, dim=1)
        return (u @ u.T / tau).masked_fill(self_mask, float("-inf")).log_softmax(dim=1)

    log_p = log_neighbours(teacher.detach(), temperature if teacher_temperature is None else teacher_temperature)
    log_q = log_neighbours(student, temperature)
    kl = (log_p.exp() * (log_p - log_q)).masked_fill(self_mask, 0.0)  # the diagonal is −inf − (−inf)
    return kl.sum(dim=1).mean()


def supcon_loss(
    features: Tensor, labels: Tensor, temperature: float = 0.2, positives_inside_log: bool = True
) -> Tensor:
    """Supervised contrastive loss (CSRv2) on features (B, D) with integer labels (B,).

    u = features / ‖features‖, s_ij = u_i·u_j / τ. For each row i with at least one positive
    P(i) = {p ≠ i : labels[p] = labels[i]}:
        ℓ_i = −log( Σ_{p∈P(i)} e^{s_ip} / Σ_{a≠i} e^{s_ia} )            (default, the authors' form)
        ℓ_i = −(1/|P(i)|) Σ_{p∈P(i)} log( e^{s_ip} / Σ_{a≠i} e^{s_ia} )  (positives_inside_log=False, Khosla et al.)
    The loss is the mean of ℓ_i over rows that have a positive. Rows without a positive in the batch
    contribute nothing (they still serve as negatives for the others); a batch where no row has a
    positive gives 0, still attached to the graph. Batches should therefore be class-aware.
    """
    if features.dim() != 2 or labels.shape != features.shape[:1]:
        raise ValueError(
            f"supcon_loss: features must be (B, D) and labels (B,), got {tuple(features.shape)} and "
            f"{tuple(labels.shape)}"
        )
    u = F.normalize(features, dim=1)
    sim = u @ u.T / temperature
    self_mask = torch.eye(len(u), dtype=torch.bool, device=u.device)
    pos_mask = (labels[:, None] == labels[None, :]) & ~self_mask
    has_pos = pos_mask.any(dim=1)
    if not bool(has_pos.any()):
        return sim.sum() * 0.0
    log_denominator = sim.masked_fill(self_mask, float("-inf")).logsumexp(dim=1)  # (B,)
    if positives_inside_log:
        log_numerator = sim.masked_fill(~pos_mask, float("-inf")).logsumexp(dim=1)
        per_row = log_denominator - log_numerator
    else:
        log_prob = sim - log_denominator[:, None]
        per_row = -(log_prob * pos_mask).sum(dim=1) / pos_mask.sum(dim=1).clamp_min(1)
    return per_row[has_pos].mean()


def matryoshka_loss(embedding: Tensor, labels: Tensor, dims: list[int], temperature: float = 0.2) -> Tensor:
    """Matryoshka (MRL baseline): the mean of supcon_loss over the first-m prefixes of (B, d) embeddings."""
    return torch.stack([supcon_loss(embedding[:, :m], labels, temperature) for m in dims]).mean()
