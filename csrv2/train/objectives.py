"""Training objectives: how each method turns one (micro-)batch into a single loss. The one place loss weights apply.

    csrv2: recon_weight · (L_k + recon_4k_coef · L_4k + aux_coef · L_aux) + contrastive_coef · SupCon(codes, labels)
           (+ uniformity_coef · InfoNCE(codes, codes), when set: spreads rows over latents; a term whose weight is
           0 is not computed and not logged)
           (+ distill_coef · KL(neighbours of the embeddings ‖ neighbours of the codes), when set; csrv2 and csr)
    csr:   the same with in-batch InfoNCE of the codes against themselves instead of SupCon
    mrl:   mean SupCon over every prefix of a linear head's output (the Matryoshka baseline)

The contrastive terms see the rows of every rank (gathered with gradient); the reconstruction terms are per rank,
with the AuxK normaliser over the global batch (csrv2.distributed).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from csrv2 import distributed
from csrv2.config.run_config import TrainConfig
from csrv2.head import losses
from csrv2.head.baselines import MRLHead


class StepLoss(NamedTuple):
    loss: Tensor  # the weighted scalar to backpropagate
    parts: dict[str, Tensor]  # unweighted parts (and `loss`), for metrics.jsonl
    fired: Tensor | None  # (h,) bool: latents active in this rank's rows (None for heads without latents)
    usage: Tensor | None = None  # (h,) float: this rank's rows in which each latent is active (None: no latents)


def step_loss(
    head: nn.Module,
    x: Tensor,
    labels: Tensor | None,
    k: int,
    train: TrainConfig,
    world: distributed.World,
    target: Tensor | None = None,
) -> StepLoss:
    """x (b, d): this rank's rows; labels (b,) or None; k: the head's k at this step; target: reconstruction
    target (default x)."""
    labels_all = None if labels is None else distributed.gather_labels(labels, world)
    if isinstance(head, MRLHead):
        outputs = distributed.all_gather_rows(head(x), world)  # (B, d)
        loss = losses.matryoshka_loss(outputs, labels_all, head.dims, train.temperature)
        return StepLoss(loss, {"loss": loss, "contrastive_loss": loss}, None, None)

    auxk = auxk_loss_across_ranks if world.active else losses.auxk_loss
    out = head(x, k=k, target=target, auxk_loss=auxk)
    autoencoder = out.recon_loss + train.recon_4k_coef * out.recon_4k_loss + train.aux_coef * out.aux_loss
    loss = train.recon_weight * autoencoder
    parts = {"recon_loss": out.recon_loss, "recon_4k_loss": out.recon_4k_loss, "aux_loss": out.aux_loss}
    uniformity_coef = train.uniformity_coef if train.objective == "csrv2" else 0.0
    if train.contrastive_coef > 0 or uniformity_coef > 0 or train.distill_coef > 0:
        # Gathering the codes and the (B, B) similarity matrix is skipped when no contrastive term is weighted:
        # the reconstruction-only recipe (contrastive_coef 0) then costs what its losses cost. Every rank shares
        # the config, so all of them skip the collective together.
        codes = distributed.all_gather_rows(out.codes.to_dense(), world)  # (B, h), differentiable in the kept values
        if train.contrastive_coef > 0:
            if train.objective == "csrv2":
                contrast = losses.supcon_loss(codes, labels_all, train.temperature, train.positives_inside_log)
            else:
                contrast = losses.info_nce(codes, temperature=train.temperature)
            loss = loss + train.contrastive_coef * contrast
            parts["contrastive_loss"] = contrast
        if uniformity_coef > 0:
            uniformity = losses.info_nce(codes, temperature=train.temperature)
            loss = loss + uniformity_coef * uniformity
            parts["uniformity_loss"] = uniformity
        if train.distill_coef > 0:
            teacher = distributed.all_gather_rows(x if target is None else target, world)  # (B, d)
            distill = losses.similarity_distillation(
                codes, teacher, train.temperature, train.distill_temperature or None
            )
            loss = loss + train.distill_coef * distill
            parts["distill_loss"] = distill
    parts["loss"] = loss
    return StepLoss(loss, parts, out.fired, out.usage)


def merge_usage(usage: Tensor | None, more: Tensor | None) -> Tensor | None:
    """Sum of the per-latent usage of two micro-batches (None when the head has no latents)."""
    if usage is None:
        return more
    return usage if more is None else usage + more


def merge_fired(fired: Tensor | None, more: Tensor | None) -> Tensor | None:
    """OR of the latents fired by two micro-batches (None when the head has no latents)."""
    if fired is None:
        return more
    return fired if more is None else torch.logical_or(fired, more)


def auxk_loss_across_ranks(aux_recon: Tensor, residual: Tensor) -> Tensor:
    """losses.auxk_loss on the global batch when run under a process group, else on this batch.

    The ratio MSE(ê, e) / MSE(mean(e), e) is not an average over rows, so averaging per-rank ratios would
    differ from one process. Here the denominator uses the global batch; each rank returns
    world · (its squared-error sum) / (global denominator sum), whose mean over ranks (what gradient and
    metric averaging take) is the single-process value.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return losses.auxk_loss(aux_recon, residual)
    size = dist.get_world_size()
    totals = torch.cat([residual.sum(0), residual.new_tensor([len(residual)])])
    dist.all_reduce(totals)
    mean = totals[:-1] / totals[-1]  # (d,) mean residual over the global batch
    denominator = (mean - residual).pow(2).sum()
    dist.all_reduce(denominator)
    return losses.safe_ratio(size * (aux_recon - residual).pow(2).sum(), denominator)
