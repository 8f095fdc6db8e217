"""The paper's tables: every method × task × k, trained by the same Trainer on the same data, scored by evaluate.py.

    grid YAML → GridConfig (+ a csrv2 Config under `base`) → for each task: embeddings (cached) → for each method:
      dense / truncate / pca: no training; mrl, csr, csrv2-linear: Trainer.fit() on the task's train split
      → evaluate_task (all k from one transform) → results.json → table.md (+ plot.png, comparison.md)

Trained heads are kept under <output_dir>/heads/<task>/<method>/<k>/seed<s>/ and reused when complete, so an
interrupted table resumes where it stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import platform
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from csrv2.config import Config, ConfigError, _build
from csrv2.evaluate import (
    ROLES,
    DenseFeaturizer,
    EmbeddedTask,
    Featurizer,
    PrefixFeaturizer,
    SparseFeaturizer,
    evaluate_task,
)

METHODS = ("dense", "truncate", "pca", "mrl", "csr", "csrv2-linear", "csrv2-finetune")
TRAINED = {"mrl": "mrl", "csr": "csr", "csrv2-linear": "csrv2", "csrv2-finetune": "csrv2"}  # method → train.objective
LABELS = {
    "dense": "backbone (dense, ceiling)",
    "truncate": "truncation (first k dims)",
    "pca": "PCA (first k components)",
    "mrl": "MRL (learned, first k dims)",
    "csr": "CSR",
    "csrv2-linear": "CSRv2 without backbone finetuning",
    "csrv2-finetune": "CSRv2 (backbone finetuning)",
}


@dataclass
class GridConfig:
    output_dir: str = "runs/paper"
    """Run folder: results.json, table.md, plot.png, comparison.md and the trained heads."""
    tasks: list[str] = field(default_factory=list)
    """Catalog task names (`python -c 'import csrv2.data as d; print(d.list_tasks())'`) or names in base.data.tasks."""
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    """Rows of the table: dense, truncate, pca, mrl, csr, csrv2-linear, csrv2-finetune."""
    ks: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32, 64])
    """Columns: active latents (sparse) or leading dimensions (dense prefixes)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Training seeds of every trained method; scores are averaged over them."""
    train_per_k: bool = True
    """True: one sparse head trained per k (head.k = k, the paper's protocol), scored at its k.
    False: one head trained at base.head.k, scored at every k from the same pre-activations."""
    max_train: int = 0
    """Cap on training rows per task (seeded subsample); 0 → all."""
    max_eval: int = 0
    """Cap on rows per evaluation role (test texts, pairs, queries; never the retrieval corpus); 0 → all."""
    clustering_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """k-means seeds averaged for clustering V-measure."""
    method_overrides: dict[str, list[str]] = field(default_factory=dict)
    """Per trained method, dotted overrides of `base` (e.g. {csr: ["train.lr=4e-4"]}). csrv2-finetune trains with
    train.backbone=full unless its overrides say otherwise (e.g. ["train.backbone=lora", "train.backbone_lr=1e-4"])."""
    base: dict[str, Any] = field(default_factory=dict)
    """A csrv2 Config (only differences from its defaults) shared by every trained method: backbone, head, train."""
    base_overrides: list[str] = field(default_factory=list)
    """Dotted overrides of `base` (the command line's `base.train.lr=4e-4` lands here as `train.lr=4e-4`)."""

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> GridConfig:
        """Strict: unknown keys or wrong types raise ConfigError naming them. Overrides: `ks=[2,4]`,
        `base.train.lr=4e-4` (anything under `base.` goes to the csrv2 Config)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"grid config {path} does not exist")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        base_overrides = []
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r} must look like key=value")
            if key.startswith("base."):
                base_overrides.append(f"{key[5:]}={value}")
            else:
                raw[key] = yaml.safe_load(value)
        try:
            grid = _build(cls, raw, "")
            grid.base_overrides += base_overrides
            grid.validate()
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
        return grid

    def validate(self) -> None:
        if not self.tasks:
            raise ConfigError("tasks is empty: name at least one task")
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ConfigError(f"methods {bad} unknown; valid: {', '.join(METHODS)}")
        bad = [m for m in self.method_overrides if m not in TRAINED]
        if bad:
            raise ConfigError(f"method_overrides for {bad}: only trained methods ({', '.join(TRAINED)}) take overrides")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"ks must be positive integers, got {self.ks}")
        if not self.seeds:
            raise ConfigError("seeds is empty")
        self.run_config("csrv2-linear", self.ks[0], self.seeds[0], "check")  # base must load as a Config

    def run_config(self, method: str, k: int | None, seed: int, task: str) -> Config:
        """The csrv2 Config that trains `method` on `task` (k: the head's final k; None → base.head.k)."""
        overrides = list(self.base_overrides)
        if method == "csrv2-finetune":
            overrides.append("train.backbone=full")
        overrides += self.method_overrides.get(method, [])
        overrides += [
            f"train.objective={TRAINED.get(method, 'csrv2')}",
            f"train.seed={seed}",
            f"data.task={task}",
            f"eval.ks={list(self.ks)}",
        ]
        if k is not None:
            overrides.append(f"head.k={k}")
        folder = Path(self.output_dir) / "heads" / task / method / (f"k{k}" if k is not None else "all") / f"seed{seed}"
        overrides.append(f"output_dir={folder}")
        # Deep copy: Config.from_dict writes overrides into the nested dicts it is given.
        base = {key: copy.deepcopy(value) for key, value in self.base.items() if key != "output_dir"}
        return Config.from_dict(base, overrides)


# ---------------------------------------------------------------------------------------------------------------------
# Tasks: the data module's Task → EmbeddedTask (+ training arrays), through the embedding cache
@dataclass
class PreparedTask:
    task: EmbeddedTask
    train_x: np.ndarray  # (N_train, d) backbone embeddings of the train split
    train_labels: np.ndarray | None  # (N_train,) contrastive labels
    train_inputs: list[str] | np.ndarray | None = None  # the texts (N_train,) or images behind train_x: what
    # backbone finetuning reads (None: not kept)


def prepare_task(
    name: str, config: Config, max_train: int = 0, max_eval: int = 0, seed: int = 0, for_training: bool = True
) -> PreparedTask:
    """A catalog (or data.tasks) task → its evaluation split's embeddings per role (cached) and training arrays.

    max_train / max_eval: seeded row caps applied before embedding (0 → all rows). Classification and image tasks
    score logistic regression / 1-NN on the same train rows the heads train on.
    for_training=False: only what scoring needs (other task types then skip embedding their train split).
    """
    from csrv2 import cache, data

    task = data.get_task(name, config.data.tasks)
    if task.type not in ROLES:
        raise ValueError(f"task {name!r}: type {task.type!r} cannot be scored; valid: {', '.join(ROLES)}")
    rng = np.random.default_rng(seed)
    bb = config.backbone
    if for_training or task.type in ("classification", "image_classification"):  # classifiers fit on the train split
        train_x, train_y, train_inputs = _training_arrays(task, config, max_train, rng)
    else:  # scoring only: other types never look at their train split
        train_x, train_y, train_inputs = np.empty((0, 0), np.float32), None, None
    split_name = task.test_split
    split = task.splits[split_name]
    key = f"{name}/{split_name}"
    if max_eval and len(split) > max_eval:
        rows = np.sort(rng.choice(len(split), max_eval, replace=False))
        if task.type == "retrieval":
            ids = [split.query_ids[i] for i in rows]
            split = data.Split(
                texts=[split.texts[i] for i in rows], query_ids=ids, qrels={q: split.qrels[q] for q in ids}
            )
        else:
            split = split.subset(rows)
        key += f"-sub{max_eval}s{seed}"
    t = task.type
    if t in ("classification", "image_classification"):
        if t == "image_classification":
            test = cache.embed_images(bb, split.images, f"{key}/images")
        else:
            test = cache.embed_texts(bb, split.texts, f"{key}/texts")
        emb = EmbeddedTask(
            name, t, {"train": train_x, "test": _f32(test)}, {"train_labels": train_y, "test_labels": split.labels}
        )
    elif t == "clustering":
        emb = EmbeddedTask(
            name, t, {"test": _f32(cache.embed_texts(bb, split.texts, f"{key}/texts"))}, {"labels": split.labels}
        )
    elif t in ("sts", "pair_classification"):
        arrays = {
            "text1": _f32(cache.embed_texts(bb, split.texts, f"{key}/texts")),
            "text2": _f32(cache.embed_texts(bb, split.texts2, f"{key}/texts2")),
        }
        gold = {"scores": split.scores} if t == "sts" else {"labels": split.labels}
        emb = EmbeddedTask(name, t, arrays, gold)
    elif t == "retrieval":
        row_of = {doc_id: i for i, doc_id in enumerate(task.corpus_ids)}
        relevance = [
            {row_of[d]: float(g) for d, g in split.qrels.get(q, {}).items() if d in row_of} for q in split.query_ids
        ]
        arrays = {
            "queries": _f32(cache.embed_texts(bb, split.texts, f"{key}/queries", "query")),
            "corpus": _f32(cache.embed_texts(bb, task.corpus, f"{name}/corpus")),
        }
        emb = EmbeddedTask(name, t, arrays, {"relevance": relevance})
    else:  # reranking: candidates are each query's positives then negatives, concatenated in query order
        candidates, groups, start = [], [], 0
        for i, (pos, neg) in enumerate(zip(split.positives, split.negatives)):
            candidates += list(pos) + list(neg)
            groups.append(
                (
                    i,
                    np.arange(start, start + len(pos) + len(neg)),
                    np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)],
                )
            )
            start += len(pos) + len(neg)
        arrays = {
            "queries": _f32(cache.embed_texts(bb, split.texts, f"{key}/queries", "query")),
            "docs": _f32(cache.embed_texts(bb, candidates, f"{key}/candidates")),
        }
        emb = EmbeddedTask(name, t, arrays, {"groups": groups})
    return PreparedTask(emb, train_x, train_y, train_inputs)


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _training_arrays(
    task, config: Config, max_train: int, rng
) -> tuple[np.ndarray, np.ndarray, list[str] | np.ndarray]:
    """The train split's examples with contrastive labels (csrv2.data), capped before embedding (seeded):
    embeddings (N, d), labels (N,), and the texts (N,) or images (N, H, W[, 3]) they were embedded from.

    Uncapped, non-retrieval: `csrv2.cache.training_arrays` (its cache keys). Retrieval documents are looked up in
    the corpus embeddings the evaluation uses, so the corpus is embedded once.
    """
    from csrv2 import cache

    if max_train == 0 and task.type != "retrieval":
        # training_arrays reads data.task: point it at this task, whatever the run trained on
        task_config = dataclasses.replace(config, data=dataclasses.replace(config.data, task=task.name))
        x, labels = cache.training_arrays(task_config)
        ex = task.training_examples("train")
        return _f32(x), np.asarray(labels), ex.images if ex.images is not None else list(ex.texts)
    ex = task.training_examples("train")
    n = len(ex.labels)
    rows = np.sort(rng.choice(n, max_train, replace=False)) if max_train and n > max_train else np.arange(n)
    bb, base, sub = config.backbone, f"{task.name}/train", f"-sub{len(rows)}" if len(rows) < n else ""
    if ex.images is not None:
        return _f32(cache.embed_images(bb, ex.images[rows], f"{base}/images{sub}")), ex.labels[rows], ex.images[rows]
    texts = np.array(ex.texts, dtype=object)[rows]
    is_query = ex.is_query[rows]
    x = np.empty((len(rows), 0), dtype=np.float32)
    for kind, part_rows in (("query", np.flatnonzero(is_query)), ("document", np.flatnonzero(~is_query))):
        if not len(part_rows):
            continue
        part_texts = texts[part_rows].tolist()
        if kind == "document" and task.type == "retrieval":
            corpus = cache.embed_texts(bb, task.corpus, f"{task.name}/corpus")  # (N_corpus, d), shared with eval
            row_of = {t: i for i, t in enumerate(task.corpus)}
            part = np.asarray(corpus)[[row_of[t] for t in part_texts]]
        else:
            part = cache.embed_texts(bb, part_texts, f"{base}/train-{kind}{sub}", kind)
        if x.shape[1] == 0:
            x = np.empty((len(rows), part.shape[1]), dtype=np.float32)
        x[part_rows] = part
    return x, ex.labels[rows], texts.tolist()


# ---------------------------------------------------------------------------------------------------------------------
# Methods → featurizers
def fit_pca(train_x: np.ndarray, n_components: int) -> Callable[[np.ndarray], np.ndarray]:
    """PCA on the train embeddings (N, d); returns x (M, d) → (M, n_components) projections (sorted by variance)."""
    mean = train_x.mean(axis=0, dtype=np.float64)
    _, _, vt = np.linalg.svd(np.asarray(train_x, dtype=np.float64) - mean, full_matrices=False)
    comps = vt[:n_components].astype(np.float32)  # (n_components, d)
    return lambda x: (np.asarray(x, dtype=np.float32) - mean.astype(np.float32)) @ comps.T


def load_or_train(
    config: Config,
    arrays: tuple[np.ndarray, np.ndarray | None] | None = None,
    examples: tuple | None = None,
) -> tuple[torch.nn.Module, float]:
    """A finished head in config.output_dir is reused; otherwise any partial run there is removed and trained anew.

    arrays: frozen embeddings to train the head on; examples: the (texts or images, labels) a trainable backbone
    (train.backbone=full|lora) reads.
    """
    from csrv2.baselines import MRLHead
    from csrv2.head import SparseHead
    from csrv2.trainer import Trainer

    folder = Path(config.output_dir)
    cls, marker = (MRLHead, "mrl_config.json") if config.train.objective == "mrl" else (SparseHead, "config.json")
    saved = folder / "config.yaml"
    finished = (folder / marker).is_file() and (config.train.backbone == "frozen" or (folder / "backbone").is_dir())
    if finished and saved.is_file() and Config.from_yaml(saved).to_dict() == config.to_dict():
        return cls.from_pretrained(folder).eval(), 0.0
    if folder.exists():
        shutil.rmtree(folder)  # a run folder this grid created and did not finish
    start = time.perf_counter()
    head = Trainer(config, arrays, examples).fit()
    return head.cpu().eval(), time.perf_counter() - start


def mrl_featurizer(head) -> Featurizer:
    @torch.no_grad()
    def fn(x):
        return head.eval()(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy()

    return PrefixFeaturizer(fn)


# ---------------------------------------------------------------------------------------------------------------------
# The grid
def run_grid(
    grid: GridConfig,
    prepare: Callable[[str, Config], PreparedTask] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train and score every method × task × k (× seed); write results.json, table.md, comparison.md, plot.png."""
    out = Path(grid.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    started = time.perf_counter()
    if prepare is None:

        def prepare(name: str, config: Config) -> PreparedTask:
            return prepare_task(name, config, grid.max_train, grid.max_eval)

    for task_name in grid.tasks:
        t0 = time.perf_counter()
        prepared = prepare(task_name, grid.run_config("csrv2-linear", None, grid.seeds[0], task_name))
        task = prepared.task
        log(f"[{task_name}] {task.type}: embedded in {time.perf_counter() - t0:.0f}s, train {prepared.train_x.shape}")
        for method in grid.methods:
            if method == "csrv2-finetune":
                records += _run_finetune(grid, prepared, prepare, log)
            else:
                records += _run_method(grid, method, prepared, log)
        write_outputs(grid, records, time.perf_counter() - started)
    return {"records": records}


def _record(task: EmbeddedTask, method: str, k, seed, result: dict | None, **extra) -> dict:
    rec = {"task": task.name, "type": task.type, "method": method, "k": k, "seed": seed}
    if result is not None:
        rec.update(score=result["score"], stats=result["stats"])
    rec.update(extra)
    return rec


def _run_method(grid: GridConfig, method: str, prepared: PreparedTask, log) -> list[dict]:
    task, ks = prepared.task, grid.ks
    arrays = (prepared.train_x, prepared.train_labels)
    cs = grid.clustering_seeds
    t0 = time.perf_counter()
    if method == "dense":
        res = evaluate_task(task, DenseFeaturizer(), ks, cs)
        return [_record(task, method, None, None, res[None], eval_s=time.perf_counter() - t0)]
    if method in ("truncate", "pca"):
        feat = PrefixFeaturizer() if method == "truncate" else PrefixFeaturizer(fit_pca(prepared.train_x, max(ks)))
        res = evaluate_task(task, feat, ks, cs)
        eval_s = (time.perf_counter() - t0) / len(ks)
        return [_record(task, method, k, None, res[k], eval_s=eval_s) for k in ks]
    records = []
    for seed in grid.seeds:
        if method == "mrl":
            head, train_s = load_or_train(grid.run_config(method, None, seed, task.name), arrays)
            t1 = time.perf_counter()
            res = evaluate_task(task, mrl_featurizer(head), ks, cs)
            eval_s = (time.perf_counter() - t1) / len(ks)
            records += [_record(task, method, k, seed, res[k], train_s=train_s, eval_s=eval_s) for k in ks]
        elif grid.train_per_k:
            for k in ks:
                head, train_s = load_or_train(grid.run_config(method, k, seed, task.name), arrays)
                t1 = time.perf_counter()
                res = evaluate_task(task, SparseFeaturizer(head), [k], cs)
                records.append(_record(task, method, k, seed, res[k], train_s=train_s, eval_s=time.perf_counter() - t1))
        else:
            head, train_s = load_or_train(grid.run_config(method, None, seed, task.name), arrays)
            t1 = time.perf_counter()
            res = evaluate_task(task, SparseFeaturizer(head), ks, cs)
            eval_s = (time.perf_counter() - t1) / len(ks)
            records += [_record(task, method, k, seed, res[k], train_s=train_s, eval_s=eval_s) for k in ks]
    scores = " ".join(f"{r['k']}:{100 * r['score']:.1f}" for r in records if r["seed"] == grid.seeds[0])
    log(f"[{task.name}] {method}: {scores} ({time.perf_counter() - t0:.0f}s)")
    return records


def _run_finetune(grid: GridConfig, prepared: PreparedTask, prepare, log) -> list[dict]:
    """CSRv2 with the backbone finetuned: backbone and head trained together on the task's training texts or images
    (the rows the other methods train on), then the task re-embedded by the finetuned backbone and scored. The
    finetuned backbone's own dense score is kept in each record as `finetuned_dense`."""
    from csrv2.run_eval import evaluation_config

    method, task, t0 = "csrv2-finetune", prepared.task, time.perf_counter()
    if prepared.train_inputs is None:
        note = "not run: the prepared task kept no training texts or images to finetune on"
        return [_record(task, method, None, None, None, note=note)]
    records = []
    for seed in grid.seeds:
        for k in grid.ks if grid.train_per_k else [None]:
            config = grid.run_config(method, k, seed, task.name)
            head, train_s = load_or_train(config, examples=(prepared.train_inputs, prepared.train_labels))
            t1 = time.perf_counter()
            rescored = prepare(task.name, evaluation_config(config)).task  # the finetuned backbone's embeddings
            ks = [k] if k is not None else grid.ks
            res = evaluate_task(rescored, SparseFeaturizer(head), ks, grid.clustering_seeds)
            dense = evaluate_task(rescored, DenseFeaturizer(), ks, grid.clustering_seeds)[None]["score"]
            eval_s = (time.perf_counter() - t1) / len(ks)
            records += [
                _record(task, method, kk, seed, res[kk], train_s=train_s, eval_s=eval_s, finetuned_dense=dense)
                for kk in ks
            ]
    scores = " ".join(f"{r['k']}:{100 * r['score']:.1f}" for r in records if r["seed"] == grid.seeds[0])
    log(f"[{task.name}] {method}: {scores} ({time.perf_counter() - t0:.0f}s)")
    return records


# ---------------------------------------------------------------------------------------------------------------------
# Outputs
def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def write_outputs(grid: GridConfig, records: list[dict], elapsed_s: float) -> None:
    out = Path(grid.output_dir)
    payload = {
        "grid": dataclasses.asdict(grid),
        "machine": machine(),
        "elapsed_s": round(elapsed_s, 1),
        "records": records,
    }
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(out / "results.json")
    table = render_table(records, grid.ks, grid.methods)
    (out / "table.md").write_text(table)
    (out / "comparison.md").write_text(render_comparison(records, grid.ks))
    try:
        plot(records, grid.ks, grid.methods, out / "plot.png")
    except ImportError:
        pass


def aggregate(records: list[dict]) -> dict:
    """(method, task, k) → {"score", "dead_pct", "postings_fraction", "type", "n_seeds"}: means over seeds, × 100."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if "score" in r:
            groups[(r["method"], r["task"], r["k"])].append(r)
    agg = {}
    for key, rs in groups.items():
        stats = [r["stats"] for r in rs if r.get("stats")]
        agg[key] = {
            "type": rs[0]["type"],
            "score": 100 * float(np.mean([r["score"] for r in rs])),
            "dead_pct": float(np.mean([s["dead_pct"] for s in stats])) if stats else None,
            "postings_fraction": float(np.mean([s["postings_fraction"] for s in stats])) if stats else None,
            "n_seeds": len(rs),
        }
    return agg


def _cell(agg, method, k, tasks, value="score") -> float | None:
    """Mean of `value` over tasks for (method, k); dense (k = None) is the same in every column. None if any missing."""
    vals = []
    for t in tasks:
        entry = agg.get((method, t, None)) or agg.get((method, t, k))
        if entry is None or entry[value] is None:
            return None
        vals.append(entry[value])
    return float(np.mean(vals)) if vals else None


def summary(records: list[dict], ks: list[int], methods: list[str]) -> dict:
    """{"tasks": {method: {k: mean over tasks}}, "types": {...mean over task types}, "by_type": {type: {...}},
    "dead": {method: {k: mean dead %}}, "postings": {...}}."""
    agg = aggregate(records)
    tasks_by_type: dict[str, list[str]] = defaultdict(list)
    for (_, task, _), e in agg.items():
        if task not in tasks_by_type[e["type"]]:
            tasks_by_type[e["type"]].append(task)
    all_tasks = [t for ts in tasks_by_type.values() for t in ts]
    res: dict[str, Any] = {
        "tasks": {},
        "types": {},
        "by_type": {t: {} for t in tasks_by_type},
        "dead": {},
        "postings": {},
        "task_list": all_tasks,
        "type_list": list(tasks_by_type),
    }
    for m in methods:
        res["tasks"][m] = {k: _cell(agg, m, k, all_tasks) for k in ks}
        for typ, ts in tasks_by_type.items():
            res["by_type"][typ][m] = {k: _cell(agg, m, k, ts) for k in ks}
        per_type = [[res["by_type"][typ][m][k] for typ in tasks_by_type] for k in ks]
        res["types"][m] = {
            k: (None if any(v is None for v in vs) else float(np.mean(vs))) for k, vs in zip(ks, per_type)
        }
        res["dead"][m] = {k: _cell(agg, m, k, all_tasks, "dead_pct") for k in ks}
        res["postings"][m] = {k: _cell(agg, m, k, all_tasks, "postings_fraction") for k in ks}
    return res


def _md(title: str, rows: dict, ks: list[int], methods: list[str], fmt="{:.2f}", note: dict | None = None) -> str:
    lines = [f"### {title}", "", "| method | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for m in methods:
        vals = rows.get(m, {})
        if all(vals.get(k) is None for k in ks):
            if note and m in note:
                lines.append(f"| {LABELS[m]} | " + " | ".join("—" for _ in ks) + " |")
            continue
        cells = ["—" if vals.get(k) is None else fmt.format(vals[k]) for k in ks]
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_table(records: list[dict], ks: list[int], methods: list[str]) -> str:
    s = summary(records, ks, methods)
    sparse = [m for m in methods if m in ("csr", "csrv2-linear", "csrv2-finetune")]
    not_run = {r["method"]: f"{r['task']}: {r['note']}" for r in records if "note" in r}  # e.g. finetuning on images
    parts = [
        "# Scores (× 100) by k",
        "",
        f"Tasks ({len(s['task_list'])}): {', '.join(s['task_list'])}. Dense rows use all d dimensions in every column; "
        "MRL / truncation / PCA use the first k dimensions; sparse rows keep k active latents.",
        "",
        _md("Mean over tasks", s["tasks"], ks, methods, note=not_run),
        _md("Mean over task types (each type weighted equally)", s["types"], ks, methods, note=not_run),
    ]
    for typ in s["type_list"]:
        parts.append(
            _md(
                f"{typ} ({', '.join(t for t in s['task_list'] if _type_of(records, t) == typ)})",
                s["by_type"][typ],
                ks,
                methods,
            )
        )
    parts.append(
        _md(
            "Dead latents, % of h never active on the evaluation data (mean over tasks)",
            {m: s["dead"][m] for m in sparse},
            ks,
            sparse,
            fmt="{:.1f}",
        )
    )
    parts.append(
        _md(
            "Postings touched per query, fraction of the database (Σ_j p_q(j)·p_d(j))",
            {m: s["postings"][m] for m in sparse},
            ks,
            sparse,
            fmt="{:.4f}",
        )
    )
    notes = [f"- {LABELS[m]}: {not_run[m]}" for m in methods if m in not_run]
    if notes:
        parts.append("\n".join(notes) + "\n")
    return "\n".join(parts)


def _type_of(records, task):
    return next(r["type"] for r in records if r["task"] == task)


PAPER = {  # PAPER.md headline, e5-mistral-7b, MTEB average (backbone 69.99); k = 2, 4, 8, 16, 32, 64
    "mrl": {2: 33.81, 4: 40.83, 8: 47.09, 16: 51.93, 32: 56.37, 64: 61.86},
    "csr": {2: 44.33, 4: 52.94, 8: 58.19, 16: 62.83, 32: 64.60, 64: 66.68},
    "csrv2-linear": {2: 53.35, 4: 58.62, 8: 61.53, 16: 64.26, 32: 65.83, 64: 67.58},
    "csrv2-finetune": {2: 58.38, 4: 61.01, 8: 63.76, 16: 65.76, 32: 66.70, 64: 68.08},
    "dense": {k: 69.99 for k in (2, 4, 8, 16, 32, 64)},
}
PAPER_DEAD = {"csr": {2: 88.1, 4: 69.1, 8: 47.9, 16: 31.8}, "csrv2": {2: 22.0, 4: 20.9, 8: 18.7, 16: 16.1}}


def render_comparison(records: list[dict], ks: list[int]) -> str:
    """The measured mean-over-tasks table beside PAPER.md's headline, and the paper's shape claims checked."""
    methods = ["mrl", "csr", "csrv2-linear", "csrv2-finetune", "dense"]
    s = summary(records, ks, methods)
    pk = [k for k in ks if k in PAPER["mrl"]]
    lines = [
        "# Measured (mean over tasks) beside PAPER.md (e5-mistral-7b, MTEB average)",
        "",
        "| method | " + " | ".join(f"k={k} ours / paper" for k in pk) + " |",
        "|---|" + "---|" * len(pk),
    ]
    for m in methods:
        cells = []
        for k in pk:
            ours = s["tasks"][m][k]
            cells.append(("—" if ours is None else f"{ours:.1f}") + f" / {PAPER[m][k]:.1f}")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    lines += ["", "Dead latents % (ours mean over tasks / paper):", ""]
    for m, pm in (("csr", "csr"), ("csrv2-linear", "csrv2")):
        cells = []
        for k in ks:
            if k in PAPER_DEAD[pm]:
                ours = s["dead"][m][k]
                cells.append(f"k={k}: " + ("—" if ours is None else f"{ours:.1f}") + f" / {PAPER_DEAD[pm][k]}")
        lines.append(f"- {LABELS[m]}: " + ", ".join(cells))
    lines += ["", "## The paper's shape, checked on our numbers", ""]
    t, d = s["tasks"], s["dead"]

    def ok(cond):
        return "n/a (missing)" if cond is None else ("agrees" if cond else "does NOT agree")

    def cmp(a, b, margin=0.0):
        return None if a is None or b is None else a > b + margin

    for k in (2, 4):
        if k in ks:
            lines.append(
                f"- k={k}: CSRv2 above CSR: {ok(cmp(t['csrv2-linear'][k], t['csr'][k]))} "
                f"({_f(t['csrv2-linear'][k])} vs {_f(t['csr'][k])}); CSR above MRL: "
                f"{ok(cmp(t['csr'][k], t['mrl'][k]))} ({_f(t['csr'][k])} vs {_f(t['mrl'][k])})"
            )
    if 2 in ks:
        lines.append(
            f"- dead latents at k=2 fall from CSR to CSRv2: {ok(cmp(d['csr'][2], d['csrv2-linear'][2]))} "
            f"({_f(d['csr'][2])} % vs {_f(d['csrv2-linear'][2])} %; paper 88.1 → 22.0)"
        )
    if 2 in ks and 8 in ks:
        a, b = t["csrv2-linear"][2], t["csr"][8]
        near = None if a is None or b is None else a >= b - 2.0
        lines.append(
            f"- CSRv2 at k=2 near (within 2 points of, or above) CSR at k=8: {ok(near)} "
            f"({_f(a)} vs {_f(b)}; paper 53.4 vs 58.2 without finetuning, 58.4 with)"
        )
    return "\n".join(lines) + "\n"


def _f(v):
    return "—" if v is None else f"{v:.1f}"


def plot(records: list[dict], ks: list[int], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary(records, ks, methods)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, m in enumerate(methods):
        ys = [s["tasks"][m][k] for k in ks]
        if all(y is None for y in ys):
            continue
        color = f"C{i}"  # one colour per method in both panels
        style = "--" if m == "dense" else "-o"
        ax1.plot(ks, [math.nan if y is None else y for y in ys], style, color=color, label=LABELS[m])
        dead = [s["dead"][m][k] for k in ks]
        if any(v is not None for v in dead):
            ax2.plot(ks, [math.nan if v is None else v for v in dead], "-o", color=color, label=LABELS[m])
    for ax, title in ((ax1, "score (mean over tasks, × 100)"), (ax2, "dead latents (%)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("k")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
