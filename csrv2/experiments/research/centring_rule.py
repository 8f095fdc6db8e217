"""Does "centre a corpus only when its mean is far from the training mean" beat centring every corpus?

Test-time centring (fold_inputs) moves a general head's b_pre from its training mixture's mean to the mean of the
corpus it encodes. It helps some tasks and costs others; this asks whether the distance between the two means tells
them apart. Inputs: one arm of a fold run (research/folds) scored twice, as trained and task-centred (two
results.json of the same heads), and the heads themselves (the run's heads_dir). Per task and training fold:

    distance = ‖mean(task rows) − b_pre‖ / sqrt(mean ‖row − mean(task rows)‖²)   (scale-free: the offset in units of
               the task's own spread; b_pre is the trained head's, i.e. where it sits for its mixture)
    gain     = score task-centred − score as trained, at one k

Printed: the gain per task with its distance, the rank correlation of the two per fold (held-out tasks), and the rule
"centre when distance > τ" on held-out tasks for a grid of τ, with τ picked on one fold and applied to the other.

    python -m csrv2.experiments.research.centring_rule --config research/general_width --arm shipped-h1536 \\
        --trained runs/general-width-trained/results.json --centred runs/general-width/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from csrv2.cli import find_config
from csrv2.experiments.research.folds import FoldsConfig, prepare_fold_task
from csrv2.head.sparse_head import SparseHead

TAUS = (0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, np.inf)  # 0: centre every task; inf: none


def relative_distance(rows: np.ndarray, b_pre: np.ndarray) -> float:
    """‖mean − b_pre‖ over the rows' RMS distance to their own mean. rows: (N, d); b_pre: (d,)."""
    rows = np.asarray(rows, dtype=np.float64)
    mean = rows.mean(0)
    spread = np.sqrt(((rows - mean) ** 2).sum(1).mean())
    return float(np.linalg.norm(mean - b_pre) / spread)


def scores_of(path: str | Path, arm: str, seed: int, k: int) -> dict[tuple[str, str], float]:
    """{(training fold, task): score} of one arm, seed and k in a fold run's results.json."""
    records = json.loads(Path(path).read_text())["records"]
    return {
        (r["fold"], r["task"]): r["score"]
        for r in records
        if r["kind"] == "score" and r["arm"] == arm and r["seed"] == seed and r["k"] == k
    }


def task_rows(cfg: FoldsConfig, arm: str, seed: int, trained: dict, centred: dict) -> list[dict]:
    """One row per (training fold, task) scored both ways: fold, task, type, held_out, distance, trained, centred."""
    scored = {name for (_, name) in trained.keys() & centred.keys()}
    tasks = {
        name: prepare_fold_task(name, cfg).task for names in cfg.folds.values() for name in names if name in scored
    }
    out = []
    for fold in cfg.train_folds or list(cfg.folds):
        head = SparseHead.from_pretrained(cfg.heads() / arm / fold / f"seed{seed}")
        b_pre = head.b_pre.detach().double().numpy()
        for home, names in cfg.folds.items():
            for name in names:
                if (fold, name) not in trained or (fold, name) not in centred:
                    continue
                task = tasks[name]
                out.append(
                    {
                        "fold": fold,
                        "task": name,
                        "type": task.type,
                        "held_out": home != fold,
                        "distance": relative_distance(task.rows(), b_pre),
                        "trained": trained[fold, name],
                        "centred": centred[fold, name],
                    }
                )
    return out


def rule_score(rows: list[dict], tau: float) -> float:
    """Mean score (×100) when a task is centred iff its distance exceeds tau, else scored as trained."""
    return 100 * float(np.mean([r["centred"] if r["distance"] > tau else r["trained"] for r in rows]))


def report(rows: list[dict]) -> str:
    lines = [
        "| fold | task | type | held out | distance | as trained | centred | gain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["fold"], not r["held_out"], r["distance"])):
        lines.append(
            f"| {r['fold']} | {r['task']} | {r['type']} | {'yes' if r['held_out'] else 'no'} | {r['distance']:.2f} "
            f"| {100 * r['trained']:.1f} | {100 * r['centred']:.1f} | {100 * (r['centred'] - r['trained']):+.1f} |"
        )
    folds = sorted({r["fold"] for r in rows})
    held = {f: [r for r in rows if r["fold"] == f and r["held_out"]] for f in folds}
    lines.append("")
    for f in folds:
        gains = [r["centred"] - r["trained"] for r in held[f]]
        rho = spearmanr([r["distance"] for r in held[f]], gains)[0] if len(gains) > 2 else float("nan")
        lines.append(f"fold {f}, held-out: Spearman(distance, gain) = {rho:+.2f} over {len(gains)} tasks")
    lines += ["", "| held-out mean, centre iff distance > τ | " + " | ".join(_tau(t) for t in TAUS) + " |"]
    lines.append("|---" * (len(TAUS) + 1) + "|")
    for f in folds:
        lines.append(f"| trained on {f} | " + " | ".join(f"{rule_score(held[f], t):.2f}" for t in TAUS) + " |")
    for f in folds:  # τ picked on this fold's held-out tasks, applied to every other fold's
        best = max(TAUS, key=lambda t: rule_score(held[f], t))
        for g in folds:
            if g != f:
                lines.append(
                    f"τ picked on fold {f}: {_tau(best)}; on fold {g} it scores {rule_score(held[g], best):.2f} "
                    f"(centre all {rule_score(held[g], 0.0):.2f}, none {rule_score(held[g], np.inf):.2f})"
                )
    return "\n".join(lines)


def _tau(t: float) -> str:
    return "never" if np.isinf(t) else ("always" if t == 0 else f"{t:.2f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", required=True, help="the fold run's config (a YAML path or a shipped name)")
    p.add_argument("--arm", required=True, help="the arm whose heads are read (in the config's heads_dir)")
    p.add_argument("--trained", required=True, help="results.json of the run scored with center_on: trained")
    p.add_argument("--centred", required=True, help="results.json of the run scored with center_on: task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--json", help="also write the per-task rows here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = FoldsConfig.from_yaml(find_config(args.config))
    trained = scores_of(args.trained, args.arm, args.seed, args.k)
    centred = scores_of(args.centred, args.arm, args.seed, args.k)
    rows = task_rows(cfg, args.arm, args.seed, trained, centred)
    if not rows:
        raise SystemExit(f"no task of arm {args.arm!r}, seed {args.seed}, k {args.k} is scored in both results files")
    print(report(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
