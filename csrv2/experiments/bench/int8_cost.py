"""The accuracy cost of the inexact runtimes (onnx-int8, ct2-int8, openvino-bf16): catalog tasks scored on torch's
embeddings and on each runtime's.

    python scripts/bench_int8.py --threads 1                       # dense: four tasks, four task types
    python scripts/bench_int8.py --run runs/quickstart             # also that run's head on its task, per k
    python scripts/bench_int8.py --runtimes ct2-int8               # one runtime only

Each task's evaluation split (and, for classification, the train split its logistic regression is fit on) is embedded
by the same backbone under runtime torch and under each runtime asked for, through the embedding cache (torch's
entries are usually there already; every runtime has keys of its own), and scored by csrv2.evaluation.scoring with
the dense backbone (DenseFeaturizer): R8 accuracy, STS-B Spearman, Cranfield nDCG@10, SearchSnippets V-measure by
default. Also, per task, the lowest and the mean cosine between a text's two embeddings. With --run: the run's head
scored the same way at each k of its eval.ks, and once more with torch's train rows and the runtime's test rows (a
classifier built before a switch, fed the new runtime's queries).

    result = run_int8_cost(threads=1, run="runs/quickstart"); print(format(result))
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from csrv2.config.run_config import Config
from csrv2.data.prepare import prepare_task
from csrv2.data.tasks import ROLES, EmbeddedTask
from csrv2.evaluation.scoring import DenseFeaturizer, SparseFeaturizer, evaluate_task
from csrv2.experiments.bench.embed_speed import cosines
from csrv2.head.sparse_head import SparseHead

TASKS = ("r8", "stsbenchmark", "cranfield", "stc2-searchsnippets")
RUNTIMES = ("onnx-int8", "ct2-int8", "openvino-bf16")
METRIC = {
    "classification": "accuracy",
    "sts": "Spearman",
    "retrieval": "nDCG@10",
    "clustering": "V-measure",
    "pair_classification": "AP",
    "reranking": "MAP",
}


def runtime_config(base: Config, runtime: str, threads: int) -> Config:
    """`base` with backbone.runtime and backbone.threads set (neither threads nor batch size is part of a cache key)."""
    return dataclasses.replace(base, backbone=dataclasses.replace(base.backbone, runtime=runtime, threads=threads))


def embedded(name: str, base: Config, runtime: str, threads: int, max_eval: int) -> EmbeddedTask:
    """The task embedded under `runtime` (every runtime the same rows: the same seeded cap)."""
    return prepare_task(name, runtime_config(base, runtime, threads), max_eval=max_eval, for_training=False).task


def agreement(ref: EmbeddedTask, int8: EmbeddedTask) -> dict:
    """Lowest and mean cosine of a text's embedding with its torch embedding, over every role's rows."""
    cos = np.concatenate([cosines(np.asarray(int8.arrays[r]), np.asarray(ref.arrays[r])) for r in ROLES[ref.type]])
    return {
        "texts": int(len(cos)),
        "min_cosine": round(float(cos.min()), 5),
        "mean_cosine": round(float(cos.mean()), 5),
    }


def mixed(ref: EmbeddedTask, int8: EmbeddedTask) -> EmbeddedTask:
    """Classification with torch's train rows and the other runtime's test rows."""
    return dataclasses.replace(ref, arrays={"train": ref.arrays["train"], "test": int8.arrays["test"]})


def run_int8_cost(
    tasks: tuple[str, ...] = TASKS,
    threads: int = 1,
    max_eval: int = 0,
    run: str = "",
    backbone: str = "",
    runtimes: tuple[str, ...] = RUNTIMES,
) -> dict:
    """Dense scores per task under torch and each runtime (and, with `run`, the run's head per k on its data.task)."""
    base = Config.from_yaml(f"{run}/config.yaml") if run else Config()
    if backbone:
        base = dataclasses.replace(base, backbone=dataclasses.replace(base.backbone, name=backbone))
    rows, sparse = [], []
    for name in tasks:
        start = time.perf_counter()
        ref = embedded(name, base, "torch", threads, max_eval)
        row = {"task": name, "type": ref.type, "metric": METRIC[ref.type]}
        row["torch"] = evaluate_task(ref, DenseFeaturizer(), [])[None]["score"]
        row["runtimes"] = {}
        for runtime in runtimes:
            other = embedded(name, base, runtime, threads, max_eval)
            score = evaluate_task(other, DenseFeaturizer(), [])[None]["score"]
            row["runtimes"][runtime] = {"score": score, **agreement(ref, other)}
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
    if run:
        head, ks = SparseHead.from_pretrained(run), list(base.eval.ks)
        ref = embedded(base.data.task, base, "torch", threads, max_eval)
        variants = {"torch": ref}
        for runtime in runtimes:
            other = embedded(base.data.task, base, runtime, threads, max_eval)
            variants[runtime] = other
            if ref.type == "classification":
                variants[f"torch train, {runtime} test"] = mixed(ref, other)
        for label, task in variants.items():
            for k, r in evaluate_task(task, SparseFeaturizer(head), ks).items():
                sparse.append({"task": task.name, "embeddings": label, "k": k, "score": r["score"]})
    settings = {"backbone": base.backbone.name, "threads": threads, "max_eval": max_eval, "run": run}
    return {"settings": settings, "runtimes": list(runtimes), "dense": rows, "sparse": sparse}


def format(result: dict) -> str:
    """Markdown: the dense table (task, metric, torch, each runtime with its Δ and cosines) and, with a run, its head
    per k."""
    s, runtimes = result["settings"], result["runtimes"]
    lines = [
        f"{s['backbone']}, dense embeddings, torch against {', '.join(runtimes)} ({s['threads']} thread(s)"
        + (f", evaluation rows capped at {s['max_eval']})" if s["max_eval"] else ")"),
        "",
        "| task | type | metric | torch | "
        + " | ".join(f"{r} (Δ points)" for r in runtimes)
        + " | texts | "
        + " | ".join(f"{r}: min / mean cosine" for r in runtimes)
        + " |",
        "|---" * (5 + 2 * len(runtimes)) + "|",
    ]
    for r in result["dense"]:
        cells = [f"{100 * v['score']:.2f} ({100 * (v['score'] - r['torch']):+.2f})" for v in r["runtimes"].values()]
        cos = [f"{v['min_cosine']:.4f} / {v['mean_cosine']:.4f}" for v in r["runtimes"].values()]
        texts = next(iter(r["runtimes"].values()))["texts"] if r["runtimes"] else 0
        lines.append(
            f"| {r['task']} | {r['type']} | {r['metric']} | {100 * r['torch']:.2f} | "
            + " | ".join(cells)
            + f" | {texts:,} | "
            + " | ".join(cos)
            + " |"
        )
    if result["sparse"]:
        ks = sorted({r["k"] for r in result["sparse"]})
        labels = list(dict.fromkeys(r["embeddings"] for r in result["sparse"]))
        score = {(r["embeddings"], r["k"]): r["score"] for r in result["sparse"]}
        lines += ["", f"Head of {s['run']} on {result['sparse'][0]['task']}:", ""]
        lines += ["| embeddings | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
        for label in labels:
            lines.append(f"| {label} | " + " | ".join(f"{100 * score[label, k]:.2f}" for k in ks) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), help="catalog tasks scored densely")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every runtime")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), help="inexact runtimes compared with torch")
    parser.add_argument("--max-eval", type=int, default=0, help="seeded cap on evaluation rows (0: all)")
    parser.add_argument("--run", default="", help="a run folder: its head is scored on its data.task too")
    parser.add_argument("--backbone", default="", help="backbone.name (default: the run's, else csrv2's default)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line after the tables")
    args = parser.parse_args(argv)
    result = run_int8_cost(
        tuple(args.tasks), args.threads, args.max_eval, args.run, args.backbone, tuple(args.runtimes)
    )
    print(format(result), flush=True)
    if args.json:
        print(json.dumps(result), flush=True)
