"""One general head per fold of tasks, scored on the tasks it trained on and on the tasks it never saw.

    folds YAML ─ FoldsConfig.from_yaml ─→ FoldsConfig   (base: the csrv2 Config every arm starts from)
    every task of every fold: prepare_task (cached; training rows capped at max_per_task, seed 0 — the rows a
                              mixture trains on) → EmbeddedTask + TrainingData
    for each training fold F, arm, seed:
        head = Trainer(base + arm overrides, data.mixture = F's trainable tasks)      (reused when finished)
        scored at every k on every task → records {arm, fold: F, task, held_out, k, seed, score, ...}
        usage at every k on U(G) for each other fold G: G's evaluation texts and retrieval corpora, every row that
            is scored except the classifier's training rows → {dead_pct, n_eff, postings_fraction, rare_pct, rows}
        center_on: task → both encode each task (and its share of U) with b_pre at the mean of that task's own rows
    references: "dense" (the backbone, once per task), "per-task" (one head per trainable task of F, trained on that
        task alone with the base recipe: in-mixture rows only), "random" (an untrained head centred on F's
        mixture: what usage looks like before any training)
    → folds_report.write_outputs: results.json, table.md, after every arm

A task is in-mixture for F when F's mixture trained on it, held-out when it belongs to another fold; a test-only task
of F (nothing to train on) is neither for F's heads. Runs live in <heads_dir>/<arm>/<F>/seed<s>/.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from csrv2.config.run_config import Config, strict
from csrv2.config.strict import ConfigError
from csrv2.config.task_spec import resolve_input_paths
from csrv2.data.prepare import PreparedTask, TrainingData, check_inputs, mixture_training_data, prepare_task
from csrv2.evaluation.scoring import DenseFeaturizer, SparseFeaturizer, evaluate_task
from csrv2.evaluation.usage import latent_counts, usage_stats
from csrv2.experiments.paper.grid import Log
from csrv2.experiments.research.fold_inputs import mean_cosine, skew, usage_corpus, usage_parts
from csrv2.experiments.research.report import write_outputs
from csrv2.files import atomic_write_json
from csrv2.head.sparse_head import CONFIG_NAME, SparseHead
from csrv2.runs.layout import DATA_RECORD, METRICS_FILE
from csrv2.runs.metrics import read_metrics
from csrv2.train.reuse import load_or_train

REFERENCES = ("dense", "per-task", "random")
SCORES_FILE = "fold_scores.json"  # a head's records, reused by a rerun (see _scores)


def _base_paths(raw: dict, folder: Path) -> None:
    """base's relative input paths read from the YAML's folder, as a run config's are (resolve_input_paths)."""
    if isinstance(raw.get("base"), dict):
        resolve_input_paths(raw["base"], folder)


@dataclass
class FoldsConfig:
    output_dir: str = "runs/live-latents"
    """Run folder: results.json, table.md and (unless heads_dir says otherwise) every trained head."""
    heads_dir: str = ""
    """Where trained heads live; empty → <output_dir>/heads. Two configs pointing at one folder share their heads
    (a confirmation run reuses the screening run's heads and trains only what is new)."""
    folds: dict[str, list[str]] = field(default_factory=dict)
    """Fold name → its tasks. Tasks that share documents belong in one fold; every task type in each, where it can."""
    train_folds: list[str] = field(default_factory=list)
    """Folds to train on (each scored against all the others); empty → every fold."""
    arms: dict[str, list[str]] = field(default_factory=dict)
    """Arm name → dotted overrides of `base` (e.g. {csr: ["train.objective=csr"]}); each trains one general head per
    training fold and seed. In data.unlabeled, the name FOLD stands for the training fold's own tasks."""
    references: list[str] = field(default_factory=lambda: list(REFERENCES))
    """Reference rows: dense, per-task (one head per task of the fold), random (untrained, centred)."""
    ks: list[int] = field(default_factory=lambda: [2, 4, 8])
    """Sparsity levels scored (every head trains at base.head.k)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Training seeds of every arm and of the per-task reference."""
    max_per_task: int = 8000
    """Training rows per task (seed-0 draw; also the classifier's fit rows); sets base.data.max_per_task."""
    max_eval: int = 3000
    """Rows per evaluation role (never the retrieval corpus); 0 → all."""
    clustering_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """k-means seeds averaged for clustering V-measure."""
    center_on: Literal["trained", "task"] = "trained"
    """b_pre when scoring: "trained" (as the head was trained) or "task": each task is encoded with b_pre at the mean
    of that task's own rows (test-time centering, fold_inputs.py), and usage on U counts its rows encoded that way."""
    anisotropy: float = 0.0
    """Simulate a more anisotropic backbone: every embedding x becomes (x + a·u) / ‖x + a·u‖ for one fixed random
    unit vector u (seed 0). a = 1.2 takes MiniLM's mean pairwise cosine from ~0.3 to ~0.7, where e5-family models
    sit. 0 → embeddings as the backbone gives them."""
    min_usage_activations: int = 20
    """U must hold at least this many activations per latent at the smallest k (N_U · k ≥ this · h), or the usage
    record says it is too small to read dead latents from."""
    base: Config = field(default_factory=Config)
    """The csrv2 Config every arm starts from (YAML: only its differences from the defaults)."""

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> FoldsConfig:
        return strict.load(cls, path, overrides, prepare=_base_paths)

    def validate(self) -> None:
        """Every field, as a run config checks its own (types, finiteness and int64 range: the loader), then the
        base config and every arm's config built from it."""
        if not self.output_dir.strip():
            raise ConfigError("output_dir is empty: name the folder (e.g. runs/live-latents)")
        counts = {"max_per_task": self.max_per_task, "max_eval": self.max_eval, "anisotropy": self.anisotropy}
        counts["min_usage_activations"] = self.min_usage_activations
        for key, value in counts.items():
            if value < 0:
                raise ConfigError(f"{key} must be ≥ 0, got {value}")
        for key, seeds in (("seeds", self.seeds), ("clustering_seeds", self.clustering_seeds)):
            if not seeds or any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
                raise ConfigError(f"{key} must be distinct integers ≥ 0, at least one, got {seeds}")
        if len(self.folds) < 2:
            raise ConfigError(f"folds: need at least two folds (train on one, score the others), got {len(self.folds)}")
        seen: dict[str, str] = {}
        for fold, tasks in self.folds.items():
            if not tasks:
                raise ConfigError(f"folds.{fold} is empty")
            for task in tasks:
                if not task.strip():
                    raise ConfigError(f"folds.{fold} holds an empty task name")
                if task in seen:
                    raise ConfigError(f"task {task!r} is in folds {seen[task]} and {fold}: a task belongs to one fold")
                seen[task] = fold
        bad = [f for f in self.train_folds if f not in self.folds]
        if bad:
            raise ConfigError(f"train_folds {bad} are not folds ({', '.join(self.folds)})")
        bad = [r for r in self.references if r not in REFERENCES]
        if bad:
            raise ConfigError(f"references {bad} unknown; valid: {', '.join(REFERENCES)}")
        clash = [a for a in self.arms if a in REFERENCES]
        if clash:
            raise ConfigError(f"arms {clash} take the name of a reference row; rename them")
        if not self.ks or any(k < 1 for k in self.ks) or not self.seeds:
            raise ConfigError(f"ks must be positive and seeds non-empty, got ks={self.ks}, seeds={self.seeds}")
        for arm in (None, *self.arms):  # None: base as the per-task reference trains it; a bad override fails here
            self.arm_config(arm, next(iter(self.folds)), self.seeds[0], ["task"])

    def heads(self) -> Path:
        return Path(self.heads_dir) if self.heads_dir else Path(self.output_dir) / "heads"

    def arm_config(self, arm: str | None, fold: str, seed: int, mixture: list[str]) -> Config:
        """The Config of `arm` (None: base alone) trained on `mixture` of `fold` with `seed`."""
        raw = strict.apply_overrides(self.base.to_dict(), self.arms.get(arm, []) if arm is not None else [])
        raw["train"]["seed"] = seed
        raw["data"].update(mixture=list(mixture), task="", max_per_task=self.max_per_task)
        unlabeled = raw["data"].get("unlabeled") or []
        raw["data"]["unlabeled"] = [t for name in unlabeled for t in (mixture if name == "FOLD" else [name])]
        raw["eval"]["ks"] = list(self.ks)
        raw["output_dir"] = str(self.heads() / (arm or "base") / fold / f"seed{seed}")
        try:
            return Config.from_dict(raw)
        except ConfigError as err:
            raise ConfigError(f"{'base' if arm is None else f'arms.{arm}'}: {err}") from None


def run_folds(cfg: FoldsConfig, log: Log = print) -> dict:
    """Train and score every arm and reference (module docstring). Returns {"records": [...]}, as in results.json."""
    cfg.validate()
    started = time.perf_counter()
    names = [task for tasks in cfg.folds.values() for task in tasks]
    base = dataclasses.replace(cfg.base, eval=dataclasses.replace(cfg.base.eval, tasks=names))
    check_inputs(base)
    prepared = {}
    for name in names:
        t0 = time.perf_counter()
        prepared[name] = prepare_fold_task(name, cfg)
        train = prepared[name].train
        log(
            f"[{name}] {prepared[name].task.type}: {0 if train is None else len(train)} training rows ({time.perf_counter() - t0:.0f}s)"
        )
    # U of each fold: its tasks' rows (centred per task under center_on: task) and their union (otherwise)
    corpora = {}
    for fold, tasks in cfg.folds.items():
        parts = usage_parts(tasks, prepared)
        corpora[fold] = (parts, usage_corpus(parts))
        log(f"U({fold}): {len(corpora[fold][1])} rows, mean pairwise cosine {mean_cosine(corpora[fold][1]):.2f}")
    records: list[dict] = []

    def save():
        write_outputs(cfg.output_dir, dataclasses.asdict(cfg), records, time.perf_counter() - started)

    if "dense" in cfg.references:
        for name in names:
            res = evaluate_task(prepared[name].task, DenseFeaturizer(), cfg.ks, cfg.clustering_seeds)[None]
            records.append(_record(cfg, "dense", None, name, prepared, None, None, res["score"]))
        save()
    for fold in cfg.train_folds or list(cfg.folds):
        mixture = [t for t in cfg.folds[fold] if prepared[t].train is not None and _trainable(prepared[t])]
        for seed in cfg.seeds:
            if "random" in cfg.references:
                config = cfg.arm_config("random", fold, seed, mixture)
                records += _scores(
                    cfg,
                    Path(config.output_dir),
                    f"untrained, seed {seed}",
                    partial(
                        _score_head, cfg, "random", fold, seed, _centred_untrained(cfg, config), prepared, corpora, 0.0
                    ),
                )
                log(_summary(records, "random", fold, seed))
            if "per-task" in cfg.references:
                for task in mixture:
                    config = _per_task_config(cfg, task, seed)
                    head, train_s = _train(config, prepared[task].train)
                    records += _scores(
                        cfg,
                        Path(config.output_dir),
                        _weights_sha256(config),
                        partial(_score_head, cfg, "per-task", fold, seed, head, {task: prepared[task]}, {}, train_s),
                    )
                log(_summary(records, "per-task", fold, seed))
                save()
            for arm in cfg.arms:
                config = cfg.arm_config(arm, fold, seed, mixture)
                head, train_s = _train(config, _mixture(cfg, config))
                records += _scores(
                    cfg,
                    Path(config.output_dir),
                    _weights_sha256(config),
                    partial(_score_head, cfg, arm, fold, seed, head, prepared, corpora, train_s),
                )
                log(_summary(records, arm, fold, seed))
                save()
    save()
    return {"records": records}


# ---------------------------------------------------------------------------------------------------------------------
def prepare_fold_task(name: str, cfg: FoldsConfig) -> PreparedTask:
    """The task's evaluation split and (when it has a train split) the training rows a mixture draws from it."""
    try:
        p = prepare_task(name, cfg.base, cfg.max_per_task, cfg.max_eval, seed=0, for_training=True)
    except ValueError as err:
        if "can be scored but not trained on" not in str(err):
            raise
        p = prepare_task(name, cfg.base, cfg.max_per_task, cfg.max_eval, seed=0, for_training=False)
    if not cfg.anisotropy:
        return p
    arrays = {role: skew(x, cfg.anisotropy) for role, x in p.task.arrays.items()}
    train = (
        None if p.train is None else dataclasses.replace(p.train, embeddings=skew(p.train.embeddings, cfg.anisotropy))
    )
    return PreparedTask(dataclasses.replace(p.task, arrays=arrays), train)


def _mixture(cfg: FoldsConfig, config: Config) -> TrainingData:
    data = mixture_training_data(config)
    return dataclasses.replace(data, embeddings=skew(data.embeddings, cfg.anisotropy)) if cfg.anisotropy else data


def _train(config: Config, data: TrainingData) -> tuple[SparseHead, float]:
    """load_or_train, with the training loop's own seconds (metrics.jsonl) also for a head trained earlier. A head is
    reused only when it was trained on these rows too (its data.json), not only by this config: the config does not
    record `anisotropy`, and two configs may share heads_dir."""
    record = Path(config.output_dir) / DATA_RECORD
    if record.is_file() and json.loads(record.read_text()) != data.fingerprint():
        shutil.rmtree(config.output_dir)
    head, seconds = load_or_train(config, data)
    lines = read_metrics(Path(config.output_dir) / METRICS_FILE)
    return head, float(lines[-1].get("elapsed_s", seconds)) if lines else seconds


def _trainable(p: PreparedTask) -> bool:
    return p.train.embeddings is not None and len(np.unique(p.train.labels)) > 1


def _centred_untrained(cfg: FoldsConfig, config: Config) -> SparseHead:
    """The random reference: a head as the trainer initialises it (seeded), b_pre at the mixture mean, no step."""
    data = _mixture(cfg, config)
    torch.manual_seed(config.train.seed)
    head = SparseHead.from_config(data.embeddings.shape[1], config.head)
    head.center(torch.from_numpy(np.asarray(data.embeddings, dtype=np.float64).mean(0)))
    return head.eval()


def _per_task_config(cfg: FoldsConfig, task: str, seed: int) -> Config:
    """The per-task reference: the base recipe (no arm overrides) on one task's capped rows (the mixture's)."""
    raw = cfg.base.to_dict()
    raw["train"]["seed"] = seed
    raw["data"].update(mixture=[], task=task)
    raw["eval"]["ks"] = list(cfg.ks)
    raw["output_dir"] = str(cfg.heads() / "per-task" / task / f"seed{seed}")
    return Config.from_dict(raw)


def _scores(cfg: FoldsConfig, folder: Path, head_id: str, compute) -> list[dict]:
    """compute()'s records, kept in <folder>/fold_scores.json and reused while the head (head_id: its weights' sha256)
    and everything that decides a score (folds, ks, row caps, clustering seeds, anisotropy, backbone) are unchanged:
    a rerun with one more arm scores only that arm."""
    settings = {
        "head": head_id,
        "folds": cfg.folds,
        "ks": cfg.ks,
        "max_per_task": cfg.max_per_task,
        "max_eval": cfg.max_eval,
        "clustering_seeds": cfg.clustering_seeds,
        "anisotropy": cfg.anisotropy,
        **({"center_on": cfg.center_on} if cfg.center_on != "trained" else {}),  # older scores stay valid
        "min_usage_activations": cfg.min_usage_activations,
        "backbone": dataclasses.asdict(cfg.base.backbone),
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    path = folder / SCORES_FILE
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                return saved["records"]
        except (OSError, json.JSONDecodeError, KeyError):
            pass  # a damaged file is scored again
    records = compute()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"key": key, "records": records})
    return records


def _weights_sha256(config: Config) -> str:
    return json.loads((Path(config.output_dir) / CONFIG_NAME).read_text())["weights_sha256"]


@torch.no_grad()
def _score_head(cfg, arm, fold, seed, head, prepared, corpora, train_s) -> list[dict]:
    head = head.cpu().eval()
    t0 = time.perf_counter()
    records = []
    # the head each task is encoded with, for its score and its share of U alike
    heads = {name: _scoring_head(cfg, head, p.task) for name, p in prepared.items()}
    for name, p in prepared.items():
        res = evaluate_task(p.task, SparseFeaturizer(heads[name]), cfg.ks, cfg.clustering_seeds)
        for k in cfg.ks:
            records.append(_record(cfg, arm, fold, name, prepared, seed, k, res[k]["score"], train_s=train_s))
    for other, (parts, union) in corpora.items():
        if other == fold:
            continue
        if cfg.center_on == "task":  # each task's rows as that task is scored (every task is in `prepared` here)
            pairs = [(heads[t], part) for t, part in zip(cfg.folds[other], parts)]
        else:
            pairs = [(head, union)]
        codes = [
            h.encode(torch.from_numpy(u[i : i + 8192]), max(cfg.ks)) for h, u in pairs for i in range(0, len(u), 8192)
        ]
        indices = np.concatenate([c.indices.numpy() for c in codes])  # (N_U, k_max), sorted by value
        values = np.concatenate([c.values.numpy() for c in codes])
        rows = len(indices)
        for k in cfg.ks:
            stats = usage_stats(latent_counts(indices[:, :k], values[:, :k], head.hidden), k, rows=rows)
            stats["enough_rows"] = rows * min(cfg.ks) >= cfg.min_usage_activations * head.hidden
            records.append({"kind": "usage", "arm": arm, "fold": fold, "corpus": other, "seed": seed, "k": k, **stats})
    for r in records:
        r.setdefault("eval_s", (time.perf_counter() - t0) / max(1, len(records)))
    return records


def _scoring_head(cfg: FoldsConfig, head: SparseHead, task) -> SparseHead:
    """The head a task is scored with: as trained, or centred on the task's own rows (center_on: task)."""
    return head.centred(torch.from_numpy(task.mean())) if cfg.center_on == "task" else head


def _record(cfg, arm, fold, task, prepared, seed, k, score, **extra) -> dict:
    home = next(f for f, tasks in cfg.folds.items() if task in tasks)
    trained_on = fold is not None and home == fold and prepared[task].train is not None
    held_out = fold is not None and home != fold
    return {
        "kind": "score",
        "arm": arm,
        "fold": fold,
        "task": task,
        "task_fold": home,
        "type": prepared[task].task.type,
        "in_mixture": trained_on,
        "held_out": held_out,
        "seed": seed,
        "k": k,
        "score": score,
        **extra,
    }


def _summary(records: list[dict], arm: str, fold: str, seed: int) -> str:
    mine = [r for r in records if r["arm"] == arm and r["fold"] == fold and r["seed"] == seed]
    parts = []
    for k in sorted({r["k"] for r in mine if r["kind"] == "score"}):
        held = [r["score"] for r in mine if r["kind"] == "score" and r["k"] == k and r["held_out"]]
        inside = [r["score"] for r in mine if r["kind"] == "score" and r["k"] == k and r["in_mixture"]]
        usage = [r for r in mine if r["kind"] == "usage" and r["k"] == k]
        text = f"k={k}: in {100 * np.mean(inside):.1f}" if inside else f"k={k}:"
        if held:
            text += f" held-out {100 * np.mean(held):.1f}"
        if usage:
            text += f" dead@U {usage[0]['dead_pct']:.0f}% n_eff {usage[0]['n_eff']:.0f}"
        parts.append(text)
    return f"[{arm} on {fold}, seed {seed}] " + " | ".join(parts)
