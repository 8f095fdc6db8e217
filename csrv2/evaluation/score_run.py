"""Score one trained run: the dense backbone and the head's codes at every k of eval.ks, on eval.tasks.

The head's pre-activations are computed once per text; each k is a top-k of them (evaluate.SparseFeaturizer).
eval.center_on: task scores each task with b_pre at the mean of that task's rows (SparseHead.centred).
Writes eval.json into the run folder (and, in a run folder the trainer wrote, its README.md again, now with the
table) and returns the same numbers. Progress: one bar over task × k on stderr, shown only on a terminal.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from csrv2.config.run_config import Config
from csrv2.data.prepare import arrays_task, evaluation_config, prepare_task
from csrv2.evaluation.scoring import DenseFeaturizer, SparseFeaturizer, evaluate_task
from csrv2.files import atomic_write_json
from csrv2.head.baselines import MRLHead
from csrv2.runs.layout import CONFIG_FILE, EVAL_FILE
from csrv2.runs.model_card import format_results as format_results
from csrv2.runs.model_card import write_model_card


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
    # one tick per (task, dense) and per (task, k); disable=None: no bar when stderr is not a terminal (logs, CI)
    bar = tqdm(total=len(embedded) * (1 + len(config.eval.ks)), desc="eval", unit="score", disable=None)

    def tick(task_name: str, k: int | None) -> None:
        bar.set_postfix_str(f"{task_name} {'dense' if k is None else f'k={k}'}")
        bar.update(1)

    for task in embedded:
        progress = partial(tick, task.name)
        dense = evaluate_task(task, DenseFeaturizer(), config.eval.ks, on_score=progress)[None]["score"]
        scorer = head.centred(torch.from_numpy(task.mean())) if config.eval.center_on == "task" else head
        sparse = evaluate_task(task, SparseFeaturizer(scorer), config.eval.ks, on_score=progress)
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
    bar.close()
    out = Path(config.output_dir) / EVAL_FILE
    if out.parent.is_dir():
        atomic_write_json(out, results)
        if (out.parent / CONFIG_FILE).is_file():  # a run folder the trainer wrote: its card gains the table
            write_model_card(out.parent)
    return results
