"""Score one trained run: the dense backbone and the head's codes at every k of eval.ks, on eval.tasks.

The head's pre-activations are computed once per text; each k is a top-k of them (evaluate.SparseFeaturizer).
Writes eval.json into the run folder and returns the same numbers.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from csrv2.baselines import MRLHead
from csrv2.config import Config
from csrv2.evaluate import DenseFeaturizer, SparseFeaturizer, evaluate_task
from csrv2.files import atomic_write_json
from csrv2.prepare import arrays_task, evaluation_config, prepare_task


def evaluate_run(config: Config, head: nn.Module, tasks: list[str] | None = None) -> dict:
    """{task: {"type", "dense", "sparse": {k: {"score", "dead_pct", "postings_per_query"}}}}, scores in [0, 1]."""
    if isinstance(head, MRLHead):
        raise ValueError("evaluate_run scores sparse heads; MRL heads are scored by the grid (csrv2 eval)")
    names = tasks or config.eval.tasks or config.data.mixture or ([config.data.task] if config.data.task else [])
    embedded = [arrays_task(config)] if config.data.eval_embeddings and not tasks else []
    if not names and not embedded:
        raise ValueError("nothing to evaluate: set eval.tasks, data.task or data.eval_embeddings")
    eval_config = evaluation_config(config)
    embedded += [prepare_task(name, eval_config, for_training=False).task for name in names]
    results = {}
    for task in embedded:
        dense = evaluate_task(task, DenseFeaturizer(), config.eval.ks)[None]["score"]
        sparse = evaluate_task(task, SparseFeaturizer(head), config.eval.ks)
        results[task.name] = {
            "type": task.type,
            "dense": dense,
            "sparse": {
                k: {
                    "score": r["score"],
                    "dead_pct": r["stats"]["dead_pct"],
                    "postings_per_query": r["stats"]["postings_per_query"],
                }
                for k, r in sparse.items()
            },
        }
    out = Path(config.output_dir) / "eval.json"
    if out.parent.is_dir():
        atomic_write_json(out, results)
    return results


def format_results(results: dict) -> str:
    """A markdown table: one row per task, the dense score, then score (dead %) at each k."""
    ks = sorted({int(k) for r in results.values() for k in r["sparse"]})
    lines = [
        "| task | type | dense | " + " | ".join(f"k={k} (dead %)" for k in ks) + " |",
        "|---|---|---|" + "---|" * len(ks),
    ]
    for name, r in results.items():
        cells = [f"{100 * r['sparse'][k]['score']:.1f} ({r['sparse'][k]['dead_pct']:.0f})" for k in ks]
        lines.append(f"| {name} | {r['type']} | {100 * r['dense']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
