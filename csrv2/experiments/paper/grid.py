"""The paper's tables, run: every method × task × k (× seed), each trained method trained by the same Trainer on the
same rows, every score computed by csrv2.evaluation.scoring. grid_report turns the records into the files a reader looks at.

    grid YAML ─ GridConfig.from_yaml ─→ GridConfig   (base: the csrv2 Config every trained method starts from)
    for each task:   prepare(name, config) → PreparedTask
                       .task   EmbeddedTask: the evaluation split's backbone embeddings per role (N_role, d)
                       .train  TrainingData: the train split's embeddings (N, d), labels (N,), texts or images (N,)
      for each method (rows of the table):
        dense / truncate / pca   nothing trained: one transform per role, every k sliced from it
        mrl                      one MRLHead (d → d, trained on its prefixes) per seed, scored on its first k dims
        csr / csrv2-linear       one SparseHead per k (train_per_k) or one at base.head.k, per seed
        csrv2-finetune           backbone + head trained on the texts or images, the task re-embedded by that
                                 backbone, then scored
      → records [{task, type, method, k, seed, score, stats, train_s, eval_s, ...}]
      → grid_report.write_outputs: results.json, table.md, comparison.md, plot.png   (after every task)

Trained runs live in <output_dir>/heads/<task>/<method>/<k<k> | all>/seed<s>/ and are reused when complete and
trained by the same config, so an interrupted grid resumes where it stopped (a reused run records train_s = 0).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from csrv2.config.run_config import Config, strict
from csrv2.config.strict import ConfigError
from csrv2.config.task_spec import resolve_input_paths
from csrv2.data.prepare import PreparedTask, TrainingData, check_inputs, evaluation_config, prepare_task
from csrv2.evaluation.scoring import (
    DenseFeaturizer,
    EmbeddedTask,
    Featurizer,
    PrefixFeaturizer,
    SparseFeaturizer,
    evaluate_task,
)
from csrv2.experiments.measure import timed
from csrv2.experiments.paper.report import METHODS, write_outputs
from csrv2.head.baselines import fit_pca
from csrv2.train.reuse import load_or_train

TRAINED = {"mrl": "mrl", "csr": "csr", "csrv2-linear": "csrv2", "csrv2-finetune": "csrv2"}  # method → train.objective
Prepare = Callable[[str, Config], PreparedTask]  # (task name, the config whose backbone embeds it) → PreparedTask
Log = Callable[[str], None]


def _base_paths(raw: dict, folder: Path) -> None:
    """base's relative input paths read from the YAML's folder, as a run config's are (resolve_input_paths)."""
    if isinstance(raw.get("base"), dict):
        resolve_input_paths(raw["base"], folder)


@dataclass
class GridConfig:
    output_dir: str = "runs/paper"
    """Run folder: results.json, table.md, plot.png, comparison.md and the trained heads."""
    tasks: list[str] = field(default_factory=list)
    """Catalog task names (`csrv2.data.catalog`) or names defined in base.data.tasks."""
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
    base: Config = field(default_factory=Config)
    """The csrv2 Config every trained method starts from (YAML: only its differences from the defaults). Per run the
    grid sets output_dir, data.task, train.objective, train.seed, eval.ks and (per k) head.k."""
    base_overrides: list[str] = field(default_factory=list)
    """Dotted overrides of `base` applied to every run (`train.lr=4e-4`). On the command line `base.train.lr=4e-4`
    does the same by setting `base` itself."""

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> GridConfig:
        """Strict (csrv2.config.strict): an unknown key, a wrong type or a duplicate key raises ConfigError naming it.
        Overrides: `ks=[2,4]`, `base.train.lr=4e-4` (dotted keys reach into `base`)."""
        return strict.load(cls, path, overrides, prepare=_base_paths)

    def validate(self) -> None:
        """Checks the grid, then builds the Config of every run it will train (so a bad base fails at load)."""
        if not self.tasks:
            raise ConfigError("tasks is empty: name at least one task")
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ConfigError(f"methods {bad} unknown; valid: {', '.join(METHODS)}")
        bad = [m for m in self.method_overrides if m not in TRAINED]
        if bad:
            raise ConfigError(f"method_overrides for {bad}: only trained methods ({', '.join(TRAINED)}) take overrides")
        for method, items in self.method_overrides.items():
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise ConfigError(f"method_overrides.{method} must be a list of key=value strings, got {items!r}")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"ks must be positive integers, got {self.ks}")
        if not self.seeds:
            raise ConfigError("seeds is empty")
        if not self.clustering_seeds:
            raise ConfigError("clustering_seeds is empty")
        if self.max_train < 0 or self.max_eval < 0:
            raise ConfigError(
                f"max_train and max_eval must be ≥ 0 (0 → all rows), got {self.max_train}, {self.max_eval}"
            )
        # csrv2-linear at base.head.k: the config whose backbone embeds each task (run_grid), whatever the methods
        runs = [("csrv2-linear", None)] + [(m, k) for m in self.methods if m in TRAINED for k in self.trained_ks(m)]
        for method, k in runs:
            try:
                self.run_config(method, k, self.seeds[0], self.tasks[0])
            except ConfigError as err:
                at = "base.head.k" if k is None else f"k={k}"
                raise ConfigError(f"base, as {method} trains it ({at}): {err}") from None

    def trained_ks(self, method: str) -> list[int | None]:
        """The head.k of each run of `method` (None: base.head.k). MRL heads have no k: one run serves every k."""
        return list(self.ks) if self.train_per_k and method != "mrl" else [None]

    def run_folder(self, method: str, k: int | None, seed: int, task: str) -> Path:
        return Path(self.output_dir) / "heads" / task / method / (f"k{k}" if k is not None else "all") / f"seed{seed}"

    def run_config(self, method: str, k: int | None, seed: int, task: str) -> Config:
        """The csrv2 Config that trains `method` on `task` (k: the head's final k; None → base.head.k).

        Later overrides win: base_overrides, then the method's, then what the grid decides per run."""
        overrides = list(self.base_overrides)
        if method == "csrv2-finetune":
            overrides.append("train.backbone=full")
        overrides += self.method_overrides.get(method, [])
        raw = strict.apply_overrides(self.base.to_dict(), overrides)  # a copy: self.base never changes
        raw["train"].update(objective=TRAINED.get(method, "csrv2"), seed=seed)
        raw["data"]["task"] = task  # set directly, not through YAML: a task named "yes" or "1" stays a string
        raw["eval"]["ks"] = list(self.ks)
        if k is not None:
            raw["head"]["k"] = k
        raw["output_dir"] = str(self.run_folder(method, k, seed, task))
        return Config.from_dict(raw)


# ---------------------------------------------------------------------------------------------------------------------
# Featurizers of the methods that are not sparse heads
def mrl_featurizer(head: nn.Module) -> Featurizer:
    """An MRLHead as a prefix featurizer: x (N, d) → head(x) (N, d), scored on its first k dims."""

    @torch.no_grad()
    def fn(x):
        return head.eval()(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy()

    return PrefixFeaturizer(fn)


# ---------------------------------------------------------------------------------------------------------------------
# The methods: each returns its records for one task
def _record(task: EmbeddedTask, method: str, k, seed, result: dict | None, **extra) -> dict:
    rec = {"task": task.name, "type": task.type, "method": method, "k": k, "seed": seed}
    if result is not None:
        rec.update(score=result["score"], stats=result["stats"])
    rec.update(extra)
    return rec


def _not_run(task: EmbeddedTask, method: str, why: str) -> list[dict]:
    return [_record(task, method, None, None, None, note=f"not run: {why}")]


def run_untrained(grid: GridConfig, method: str, prepared: PreparedTask) -> list[dict]:
    """dense (one record, k = None: all d dims in every column), truncate and pca (one record per k)."""
    task, ks, cs = prepared.task, grid.ks, grid.clustering_seeds
    if method == "dense":
        eval_s, res = _timed_eval(task, DenseFeaturizer(), ks, cs)
        return [_record(task, method, None, None, res[None], eval_s=eval_s)]
    if method == "pca" and (prepared.train is None or prepared.train.embeddings is None):
        return _not_run(task, method, "the prepared task has no train embeddings to fit PCA on")

    def score():
        fn = None if method == "truncate" else fit_pca(prepared.train.embeddings, max(ks))
        return evaluate_task(task, PrefixFeaturizer(fn), ks, cs)

    seconds, res = timed(score)  # PCA's fit counts as evaluation time, shared equally by the ks
    return [_record(task, method, k, None, res[k], eval_s=seconds / len(ks)) for k in ks]


def run_trained(grid: GridConfig, method: str, prepared: PreparedTask) -> list[dict]:
    """mrl, csr, csrv2-linear over the frozen backbone: trained on prepared.train, scored on prepared.task."""
    task, cs = prepared.task, grid.clustering_seeds
    if prepared.train is None or prepared.train.embeddings is None:
        return _not_run(task, method, "the prepared task has no train embeddings to train on")
    records = []
    for seed in grid.seeds:
        for k in grid.trained_ks(method):
            config = grid.run_config(method, k, seed, task.name)
            head, train_s = load_or_train(config, prepared.train)
            ks = grid.ks if k is None else [k]  # a head trained at its k is scored there only
            if method != "mrl" and config.eval.center_on == "task":  # test-time centring on the scored rows' mean
                head = head.centred(torch.from_numpy(task.mean()))
            featurizer = mrl_featurizer(head) if method == "mrl" else SparseFeaturizer(head)
            eval_s, res = _timed_eval(task, featurizer, ks, cs)
            records += [_record(task, method, kk, seed, res[kk], train_s=train_s, eval_s=eval_s / len(ks)) for kk in ks]
    return records


def run_finetune(grid: GridConfig, prepared: PreparedTask, prepare: Prepare) -> list[dict]:
    """CSRv2 with the backbone trained: backbone and head trained together on the task's training texts or images
    (the rows the other methods train on), then the task re-embedded by the finetuned backbone and scored. The
    finetuned backbone's own dense score is kept in each record as `finetuned_dense`."""
    method, task, cs = "csrv2-finetune", prepared.task, grid.clustering_seeds
    if prepared.train is None or prepared.train.inputs is None:
        return _not_run(task, method, "the prepared task kept no training texts or images to finetune on")
    data = TrainingData(inputs=prepared.train.inputs, labels=prepared.train.labels, source=prepared.train.source)
    records = []
    for seed in grid.seeds:
        for k in grid.trained_ks(method):
            config = grid.run_config(method, k, seed, task.name)
            head, train_s = load_or_train(config, data)
            ks = grid.ks if k is None else [k]
            t0 = time.perf_counter()
            # The same prepare as the frozen rows (so the same seeded row caps), embedding with the finetuned backbone
            rescored = prepare(task.name, evaluation_config(config)).task
            res = evaluate_task(rescored, SparseFeaturizer(head), ks, cs)
            dense = evaluate_task(rescored, DenseFeaturizer(), ks, cs)[None]["score"]
            eval_s = time.perf_counter() - t0
            records += [
                _record(
                    task, method, kk, seed, res[kk], train_s=train_s, eval_s=eval_s / len(ks), finetuned_dense=dense
                )
                for kk in ks
            ]
    return records


# ---------------------------------------------------------------------------------------------------------------------
# The grid
def run_grid(grid: GridConfig, prepare: Prepare | None = None, log: Log = print) -> dict:
    """Train and score every method × task × k (× seed); after each task, rewrite results.json, table.md,
    comparison.md and plot.png in grid.output_dir. Returns {"records": [...]}, as in results.json.

    prepare: (task name, config) → PreparedTask; default csrv2.data.prepare.prepare_task with the grid's row caps.
    Tests pass synthetic tasks here."""
    if prepare is None:
        # every task must exist before the first one trains (a typo in the last task used to fail hours in)
        check_inputs(dataclasses.replace(grid.base, eval=dataclasses.replace(grid.base.eval, tasks=list(grid.tasks))))

        def prepare(name: str, config: Config) -> PreparedTask:
            return prepare_task(name, config, grid.max_train, grid.max_eval)

    started = time.perf_counter()
    records: list[dict] = []
    for name in grid.tasks:
        # Embedded by the frozen backbone the linear heads train over (base + base_overrides + their overrides).
        t0 = time.perf_counter()
        prepared = prepare(name, grid.run_config("csrv2-linear", None, grid.seeds[0], name))
        seconds = time.perf_counter() - t0
        rows = "no training rows" if prepared.train is None else f"{len(prepared.train)} training rows"
        log(f"[{name}] {prepared.task.type}: embedded in {seconds:.0f}s, {rows}")
        for method in grid.methods:
            t0 = time.perf_counter()
            new = _run_method(grid, method, prepared, prepare)
            seconds = time.perf_counter() - t0
            records += new
            first = [r for r in new if r["seed"] in (None, grid.seeds[0])]
            scores = " ".join(f"{r['k']}:{100 * r['score']:.1f}" if "score" in r else r["note"] for r in first)
            log(f"[{name}] {method}: {scores} ({seconds:.0f}s)")
        write_outputs(grid.output_dir, dataclasses.asdict(grid), records, time.perf_counter() - started)
    return {"records": records}


def _timed_eval(task: EmbeddedTask, featurizer: Featurizer, ks: list[int], cs: list[int]) -> tuple[float, dict]:
    """(seconds, evaluate_task's {k: {"score", "stats"}}): the timing is returned, never kept anywhere."""
    return timed(lambda: evaluate_task(task, featurizer, ks, cs))


def _run_method(grid: GridConfig, method: str, prepared: PreparedTask, prepare: Prepare) -> list[dict]:
    if method == "csrv2-finetune":
        return run_finetune(grid, prepared, prepare)
    if method in TRAINED:
        return run_trained(grid, method, prepared)
    return run_untrained(grid, method, prepared)
