"""Where a general head's usage goes on another fold's texts, and what test-time centering changes
(docs/general-head.md, "Spreading usage, and centring at test time").

    python scripts/probe_usage.py --config configs/research/live_latents_usage.yaml \\
        --head runs/live-latents/heads/released-center/A/seed0 --train-fold A --other-fold B

Prints n_eff at k = 2 on the head's training rows, on U(train fold) and on U(other fold); the ten most used latents
of U(other) with their share there and on the training rows, and the cosine of each with the offset mean(U) − b_pre
(median over all latents beside it); then n_eff on U(other) with b_pre at the other fold's training-row mean and
with every task centred on its own rows (center_on: task).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from csrv2.evaluation.usage import latent_counts, usage_stats
from csrv2.experiments.research.fold_inputs import usage_corpus, usage_parts
from csrv2.experiments.research.folds import FoldsConfig, prepare_fold_task
from csrv2.head.sparse_head import SparseHead


def counts_at_k(head: SparseHead, x: np.ndarray, k: int = 2) -> np.ndarray:
    """(N, d) rows → (h,) rows in which each latent is active at sparsity k."""
    with torch.no_grad():
        codes = head.encode(torch.from_numpy(np.asarray(x, dtype=np.float32)), k)
    return latent_counts(codes.indices.numpy(), codes.values.numpy(), head.hidden)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="folds YAML file")
    parser.add_argument("--head", required=True, help="a trained head's run folder")
    parser.add_argument("--train-fold", required=True)
    parser.add_argument("--other-fold", required=True)
    args = parser.parse_args(argv)
    cfg = FoldsConfig.from_yaml(args.config)
    head = SparseHead.from_pretrained(args.head).eval()
    prepared = {}
    for fold in (args.train_fold, args.other_fold):
        for name in cfg.folds[fold]:
            prepared[name] = prepare_fold_task(name, cfg)
    train_rows = [prepared[t].train for t in cfg.folds[args.train_fold] if prepared[t].train is not None]
    other_parts = usage_parts(cfg.folds[args.other_fold], prepared)
    u_other = usage_corpus(other_parts)
    inputs = {
        f"training rows of {args.train_fold}": np.concatenate([t.embeddings for t in train_rows]),
        f"U({args.train_fold})": usage_corpus(usage_parts(cfg.folds[args.train_fold], prepared)),
        f"U({args.other_fold})": u_other,
    }
    counts = {}
    for label, x in inputs.items():
        counts[label] = counts_at_k(head, x)
        share = np.sort(counts[label] / counts[label].sum())[::-1]
        stats = usage_stats(counts[label], 2)
        print(f"{label}: {len(x)} rows, n_eff {stats['n_eff']:.0f}, top-10 latents {100 * share[:10].sum():.1f} %")
    c_other, c_train = counts[f"U({args.other_fold})"], counts[f"training rows of {args.train_fold}"]
    top = np.argsort(c_other)[::-1][:10]
    offset = u_other.mean(0) - head.b_pre.detach().numpy()
    w = head.weight.detach().numpy()
    cosine = (w @ offset) / np.linalg.norm(w, axis=1) / np.linalg.norm(offset)
    print(f"top-10 latents of U({args.other_fold}): share there %", np.round(100 * c_other[top] / c_other.sum(), 2))
    print("  their share on the training rows %", np.round(100 * c_train[top] / c_train.sum(), 2))
    print("  cosine with mean(U) - b_pre", np.round(cosine[top], 2), f"(median latent {np.median(cosine):.3f})")
    moved = head.centred(torch.from_numpy(u_other.mean(0).astype(np.float64)))
    n_eff = usage_stats(counts_at_k(moved, u_other), 2)["n_eff"]
    print(f"b_pre at the mean of U({args.other_fold}): n_eff {n_eff:.0f}")
    total = np.zeros(head.hidden)
    for name, part in zip(cfg.folds[args.other_fold], other_parts):
        total += counts_at_k(head.centred(torch.from_numpy(prepared[name].task.mean())), part)
    print(f"every task centred on its own rows (center_on: task): n_eff {usage_stats(total, 2)['n_eff']:.0f}")


if __name__ == "__main__":
    main()
