"""Retrieval benchmark: SparseIndex against faiss, sentence-transformers, scipy, torch and Qdrant, in one run.

config.texts (jsonl files under data_dir, default: the shared data sets' files, fetched when missing)
  → load_texts: BenchTexts  texts (T,), labels (T,) class ids, labelled (T,) bool      shuffled with `seed`
  → embedded_texts: emb (T, d) float32 (the library's cache); rows [0, n_queries) queries, the other P the pool
  → train_heads: one SparseHead per k and one MRLHead, csrv2.train.trainer on TrainingData(emb[pool], labels[pool]),
    reused from cache_dir/heads_<data digest>/ when complete          → heads, training record {name: seconds…}
  → quality on the real pool (DenseIndex gives the exact dense top): recall@top and label precision@top
  → encode overhead (backbone vs head), the sentence-transformers embedding |Δ| and CSR training speed
  → for N in sizes: pool rows resampled with replacement (seeded) → codes (N, k) per k, MRL vectors (N, m)
    → every method (csrv2.experiments.bench.peers): latency median / p99, batch queries/s, bytes / vector,
      build s, and whether its top scores equal the exact reference's
  → results dict; after every N, bench_report writes the markdown between docs/benchmarks.md's markers
    and the raw results as JSON

config = BenchConfig.from_yaml("configs/bench/retrieval_small.yaml", ["sizes=[10000]"])
results = run(config, command="csrv2 bench ...", log=print)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from csrv2 import extras, paths
from csrv2.backbone.embeddings import embed_texts, get_encoder
from csrv2.backbone.encoders import resolve_model_path
from csrv2.config.run_config import Config, DataConfig, strict
from csrv2.config.strict import ConfigError
from csrv2.data.fetch import data_file
from csrv2.data.prepare import TrainingData
from csrv2.experiments import measure
from csrv2.experiments.bench import peers
from csrv2.experiments.bench import report as bench_report
from csrv2.files import atomic_write_json
from csrv2.head.baselines import MRL_DIMS, MRLHead
from csrv2.head.codes import SparseCodes
from csrv2.head.sparse_head import SparseHead
from csrv2.index.dense import DenseIndex
from csrv2.index.sparse_index import SparseIndex
from csrv2.train.reuse import load_or_train

METHODS = ("sparse_index", "scipy", "st_sparse", "torch_sparse", "faiss_flat", "faiss_mrl", "qdrant_local")
DEFAULT_METHODS = METHODS[:-1]  # qdrant_local scans all N in Python per query (seconds at 1M): on request only
# What the benchmarked heads change from csrv2's Config defaults (YAML `base:` keys override these).
BASE_DEFAULTS = {
    "train": {"epochs": 5, "device": "cpu", "checkpoint_every": 10**9, "log_every": 50},
    "backbone": {"device": "cpu"},  # the encode-overhead timing compares backbone and head on the same CPU threads
}
TRAIN_RECORD = "bench_train_time.json"  # beside a head trained here: {"seconds", "samples", "epochs"}
Log = Callable[[str], None]


@dataclass
class BenchConfig:
    data_dir: str = ""
    """Root of the jsonl files in `texts`; empty → the public sets' files wherever csrv2.data.fetch.data_file finds
    them (converted under $CSRV2_HOME/data, the shared data folder $CSRV2_SHARED_DATA, or fetched now)."""
    texts: list[str] = field(default_factory=list)
    """jsonl files (relative to data_dir) whose `text` field is embedded: database and queries come from them."""
    max_texts: int = 0
    """Cap on the number of texts embedded (0 = all); the order is shuffled with `seed` first."""
    n_queries: int = 1000
    """Texts held out of the database and used as queries."""
    base: Config = field(default_factory=lambda: Config.from_dict(BASE_DEFAULTS))
    """The csrv2 Config the benchmarked heads train with (YAML: differences from the benchmark's defaults
    train.epochs=5, train.device=cpu, backbone.device=cpu). base.backbone embeds the texts. Per head the benchmark
    sets output_dir, head.k (each of ks), train.k_start (clipped to [k, hidden / 4]) and, for the MRL peer,
    train.objective=mrl."""
    head_dir: str = ""
    """Folder with trained heads `k{K}/` and `mrl/` (save_pretrained layout); empty → trained as `base` says."""
    sizes: list[int] = field(default_factory=lambda: [100_000, 1_000_000])
    """Database sizes N; codes are resampled (with replacement) from the embedded texts to reach N."""
    ks: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32, 64])
    """Active latents per code: one head per k."""
    mrl_dims: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32, 64])
    """Leading dims of the MRL head searched with faiss (the Matryoshka peer); each a width the head trains."""
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    """Methods measured: sparse_index (always), scipy, st_sparse, torch_sparse, faiss_flat, faiss_mrl; and
    qdrant_local (csrv2.index.qdrant on Qdrant's in-process mode, slow budget) only when listed."""
    top: int = 10
    """Neighbours returned per query."""
    latency_queries: int = 200
    """Queries timed one at a time (median, p99 of per-query latency)."""
    slow_latency_queries: int = 20
    """Single queries timed for methods that scan all N (faiss flat 384-d, torch sparse, qdrant_local)."""
    batch_queries: int = 1000
    """Queries searched in one call for queries/s (all threads)."""
    st_training_steps: int = 10
    """Optimiser steps timed for sentence-transformers' own CSR training (SparseEncoder + CSRLoss); 0 skips it."""
    st_latency_queries: int = 3
    """Single queries timed for sentence-transformers' semantic_search (it re-prepares the whole corpus per call)."""
    slow_batch_queries: int = 200
    """Queries per batch call for scipy, torch, sentence-transformers, faiss flat 384-d and qdrant_local."""
    threads: int = 0
    """Threads for SparseIndex batch search (0 = all cores); single-query latency is always one call per query."""
    seed: int = 0
    """Seed for shuffling the texts and resampling the database (head training uses base.train.seed)."""
    output: str = "docs/benchmarks.md"
    """Markdown report written here between its bench markers ('' = print only)."""
    results_json: str = ""
    """Raw results written here as JSON ('' = cache_dir/results_<output name>.json)."""
    cache_dir: str = ""
    """Where heads and the index save/load test go; empty → $CSRV2_HOME/bench. Embeddings: csrv2.backbone.embeddings."""

    @classmethod
    def from_dict(cls, raw: dict, overrides: list[str] | tuple[str, ...] = ()) -> BenchConfig:
        """Strict build (csrv2.config.strict) after `a.b=value` overrides; `base` starts from BASE_DEFAULTS."""
        raw = strict.apply_overrides(raw or {}, overrides)  # a copy: the caller's dicts stay as they are
        if not isinstance(raw.get("base", {}), dict):
            raise ConfigError(f"base must be a mapping (a csrv2 Config), got {raw['base']!r}")
        raw["base"] = _merged(BASE_DEFAULTS, raw.get("base", {}))
        config = strict.build(cls, raw)
        config.validate()
        return config

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> BenchConfig:
        """configs/bench/*.yaml: an unknown key, a wrong type or a duplicate key raises ConfigError naming it."""
        try:
            return cls.from_dict(strict.read_yaml(path), overrides)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None

    def validate(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ConfigError(f"methods: unknown {bad}; valid: {', '.join(METHODS)}")
        if not self.texts:
            raise ConfigError("texts: give at least one jsonl file of real texts")
        counts = ("n_queries", "top", "latency_queries", "slow_latency_queries", "st_latency_queries")
        for name in (*counts, "batch_queries", "slow_batch_queries"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_texts", "st_training_steps", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if not self.sizes or any(n <= 0 for n in self.sizes):
            raise ConfigError(f"sizes must be positive, got {self.sizes}")
        hidden = self.base.head.hidden
        if not self.ks or any(not 1 <= k <= hidden for k in self.ks):
            raise ConfigError(f"ks {self.ks} must lie in [1, base.head.hidden={hidden}]")
        bad = [m for m in self.mrl_dims if m not in MRL_DIMS]
        if bad:
            raise ConfigError(f"mrl_dims {bad} are not widths the MRL head trains; valid: {MRL_DIMS}")
        t = self.base.train
        if t.objective not in ("csrv2", "csr") or t.backbone != "frozen" or self.base.data != DataConfig():
            raise ConfigError(
                "base: the sparse heads train on the benchmark's own embedded texts with train.objective csrv2 or "
                f"csr and train.backbone=frozen, and base.data stays empty; got objective={t.objective}, "
                f"backbone={t.backbone}, data={dataclasses.asdict(self.base.data)}"
            )
        for k in [*self.ks, None]:  # every head's Config must build, so a bad base fails at load
            try:
                self.head_config(k, Path("heads"))
            except ConfigError as err:
                raise ConfigError(f"base, as the {'MRL' if k is None else f'k={k}'} head trains: {err}") from None

    def head_config(self, k: int | None, folder: Path) -> Config:
        """The csrv2 Config of one benchmarked head: the SparseHead at k, or the MRL head (k None), in `folder`."""
        raw = self.base.to_dict()
        raw["output_dir"] = str(folder)
        if k is None:
            raw["train"]["objective"] = "mrl"
        else:
            raw["head"]["k"] = k
            raw["train"]["k_start"] = max(k, min(raw["train"]["k_start"], raw["head"]["hidden"] // 4))
        return Config.from_dict(raw)

    def cache(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else paths.home() / "bench"

    def budget(self) -> peers.Budget:
        """method → (single queries timed, queries per batch call): methods that scan all N get fewer."""
        n_batch = min(self.batch_queries, self.n_queries)
        slow = min(n_batch, self.slow_batch_queries)
        return {
            "sparse_index": (self.latency_queries, n_batch),
            "scipy": (self.latency_queries, slow),
            "torch_sparse": (self.slow_latency_queries, slow),
            "st_sparse": (self.st_latency_queries, slow),
            "faiss_flat": (self.slow_latency_queries, slow),
            "faiss_mrl": (self.latency_queries, n_batch),
            "qdrant_local": (self.slow_latency_queries, slow),
        }


def _merged(defaults: dict, given: dict) -> dict:
    """defaults with `given` laid over them, recursively (new dicts; neither argument changes)."""
    out = {key: (dict(value) if isinstance(value, dict) else value) for key, value in defaults.items()}
    for key, value in given.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both else value
    return out


# -- real texts -------------------------------------------------------------------------------------------------------
@dataclass
class BenchTexts:
    texts: list[str]  # (T,) unique, whitespace-normalised, shuffled with config.seed, capped at max_texts
    labels: np.ndarray  # (T,) int64 class ids: one per (file, record label); a record without label is its own class
    labelled: np.ndarray  # (T,) bool: the record had a label, so its class counts in label precision


def load_texts(config: BenchConfig) -> BenchTexts:
    """The unique non-empty texts of every file in config.texts (a repeated text keeps its first record)."""
    root = Path(config.data_dir).expanduser() if config.data_dir else None
    if root is not None and not root.is_dir():
        raise FileNotFoundError(f"data_dir {root} does not exist: set data_dir in the config, or leave it empty")
    keys: dict[str, tuple] = {}  # text → (0, file no, label) for a labelled record, (1, n) for the n-th unlabelled
    for file_no, rel in enumerate(config.texts):
        path = root / rel if root is not None else data_file(rel)  # a public set: converted, shared, or fetched
        if not path.is_file():
            raise FileNotFoundError(f"texts: {path} does not exist")
        with path.open(encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                record = json.loads(line)
                if "text" not in record:
                    raise ValueError(f"{path}:{line_no}: no 'text' field")
                text = " ".join(str(record["text"]).split())
                if text and text not in keys:
                    labelled = "label" in record
                    keys[text] = (0, file_no, int(record["label"])) if labelled else (1, len(keys))
    # Class ids in sorted key order (labelled classes by file and label, then unlabelled texts in file order).
    class_of = {key: i for i, key in enumerate(sorted(set(keys.values())))}
    texts = list(keys)
    labels = np.array([class_of[key] for key in keys.values()], dtype=np.int64)
    labelled = np.array([key[0] == 0 for key in keys.values()], dtype=bool)
    order = np.random.default_rng(config.seed).permutation(len(texts))[: config.max_texts or None]
    return BenchTexts([texts[i] for i in order], labels[order], labelled[order])


# -- heads ------------------------------------------------------------------------------------------------------------
def train_heads(
    config: BenchConfig, emb: np.ndarray, labels: np.ndarray, log: Log = print, mrl: bool = True
) -> tuple[dict[int, SparseHead], MRLHead | None, dict[str, dict | None]]:
    """({k: SparseHead}, MRLHead (None when mrl=False), training record {head name: {"seconds", "samples", "epochs"} | None}).

    emb (P, d), labels (P,): the database pool. Each head is trained by csrv2's Trainer into
    cache_dir/heads_<digest of emb and labels>/<k{K} | mrl>/ and reused there when complete and trained by the same
    config (csrv2.train.reuse.load_or_train); its training time is kept beside it. head_dir: load `k{K}/`, `mrl/` from there."""
    if config.head_dir:
        root = Path(config.head_dir).expanduser()
        heads = {k: SparseHead.from_pretrained(root / f"k{k}").eval() for k in config.ks}
        return heads, MRLHead.from_pretrained(root / "mrl").eval() if mrl else None, {}
    digest = hashlib.sha256(np.ascontiguousarray(emb, dtype=np.float32))
    digest.update(np.ascontiguousarray(labels, dtype=np.int64))
    root = config.cache() / f"heads_{digest.hexdigest()[:12]}"
    data = TrainingData(emb, labels, source="benchmark texts (database pool)")
    heads: dict[str, torch.nn.Module] = {}
    training: dict[str, dict | None] = {}
    torch.set_num_threads(os.cpu_count() or 1)
    for k in [*config.ks, None] if mrl else config.ks:
        name = "mrl" if k is None else f"k{k}"
        cfg = config.head_config(k, root / name)
        heads[name], seconds = load_or_train(cfg, data)  # seconds = 0.0 when reused
        record = Path(cfg.output_dir) / TRAIN_RECORD
        if seconds:
            epochs = cfg.train.epochs
            samples = cfg.train.max_steps * cfg.train.batch_size if cfg.train.max_steps else len(emb) * epochs
            atomic_write_json(record, {"seconds": seconds, "samples": samples, "epochs": epochs})
            log(f"trained head {name} in {seconds:.0f} s")
        training[name] = json.loads(record.read_text()) if record.is_file() else None
    mrl_head = heads.pop("mrl", None)
    return {int(name[1:]): head for name, head in heads.items()}, mrl_head, training


def embedded_texts(config: BenchConfig) -> tuple[BenchTexts, np.ndarray, np.ndarray, np.ndarray]:
    """Texts, embeddings (T, d) (cache memory map), query rows (Q,) = the first n_queries, pool rows (P,) = the rest."""
    data = load_texts(config)
    if len(data.texts) <= config.n_queries:
        raise ValueError(f"n_queries={config.n_queries} leaves no database texts ({len(data.texts)} texts)")
    emb = embed_texts(config.base.backbone, data.texts, key="bench/texts")
    return data, emb, np.arange(config.n_queries), np.arange(config.n_queries, len(data.texts))


@torch.no_grad()
def encode_sparse(head: SparseHead, emb: np.ndarray, k: int) -> SparseCodes:
    """(N, d) → unit-norm SparseCodes (N, k), in batches of 8192 rows."""
    parts = [head.encode(torch.from_numpy(np.asarray(emb[i : i + 8192])), k=k) for i in range(0, len(emb), 8192)]
    return SparseCodes.cat(parts).normalized()


@torch.no_grad()
def encode_mrl(mrl: MRLHead, emb: np.ndarray, dim: int) -> np.ndarray:
    """(N, d) → (N, dim) float32 unit rows: the first `dim` outputs of the Matryoshka head."""
    return mrl.encode(torch.from_numpy(np.asarray(emb)), dim=dim).numpy().astype(np.float32)


# -- the whole run ----------------------------------------------------------------------------------------------------
def run(config: BenchConfig, command: str = "", log: Log = print) -> dict:
    """Measure every method of `config` in one process; returns the results and writes the report (config.output)."""
    missing = {m: peers.NEEDS[m] for m in config.methods if m in peers.NEEDS and not measure.installed(peers.NEEDS[m])}
    if config.st_training_steps and not measure.installed("sentence_transformers"):
        missing["st_training_steps"] = "sentence_transformers"
    if missing:
        needs = ", ".join(f"{method} needs {module}" for method, module in missing.items())
        raise extras.MissingExtra(f"{needs}, not installed: pip install 'csrv2[extras]', or drop those methods")
    data, emb, q_rows, pool = embedded_texts(config)
    emb_q, emb_pool = np.asarray(emb[q_rows]), np.asarray(emb[pool])  # (Q, d), (P, d)
    labels_q, labels_pool, labelled_q = data.labels[q_rows], data.labels[pool], data.labelled[q_rows]
    log(f"{len(data.texts)} texts embedded: {len(pool)} database, {len(q_rows)} queries")
    heads, mrl, training = train_heads(config, emb_pool, labels_pool, log)
    torch.set_num_threads(os.cpu_count() or 1)
    results: dict[str, Any] = {
        "machine": measure.machine(),
        "versions": measure.versions(),
        "command": command,
        "config": dataclasses.asdict(config),
        "n_texts": len(data.texts),
        "dim": int(emb.shape[1]),
        "training": training,
        "sizes": {},
    }

    # Quality on the real (not resampled) pool: which MRL dims match each k.
    _, truth = DenseIndex(emb_pool).search(emb_q, config.top)  # (Q, top) the exact dense neighbours
    quality = {"dense": measure.top_quality(truth, truth, labels_pool, labels_q, labelled_q)}
    codes_q, codes_pool, mrl_q, mrl_pool = {}, {}, {}, {}
    for k, head in heads.items():
        codes_q[k], codes_pool[k] = encode_sparse(head, emb_q, k), encode_sparse(head, emb_pool, k)
        _, found = SparseIndex.build(codes_pool[k]).search(codes_q[k], top=config.top)
        quality[f"sparse_k{k}"] = measure.top_quality(found.numpy(), truth, labels_pool, labels_q, labelled_q)
    for m in config.mrl_dims:
        mrl_q[m], mrl_pool[m] = encode_mrl(mrl, emb_q, m), encode_mrl(mrl, emb_pool, m)
        _, found = DenseIndex(mrl_pool[m]).search(mrl_q[m], config.top)
        quality[f"mrl_{m}"] = measure.top_quality(found, truth, labels_pool, labels_q, labelled_q)
    results["quality"] = quality
    log(json.dumps(quality))
    folder = resolve_model_path(config.base.backbone.name)  # the verified asset folder (sentence-transformers layout)
    if config.st_training_steps:
        t, texts_pool = config.base.train, data.texts[config.n_queries :]
        hidden, steps = config.base.head.hidden, config.st_training_steps
        st = peers.st_training_throughput(
            folder, texts_pool, labels_pool, hidden, t.lr, t.batch_size, steps, config.seed
        )
        results["st_training"] = st
        log(json.dumps(st))
    results["overhead"] = encode_overhead(config, folder, data.texts[:512], heads, emb)
    results["read_bandwidth_gbs"] = measure.read_bandwidth()
    log(json.dumps(results["overhead"]))

    rng, budget, top = np.random.default_rng(config.seed), config.budget(), config.top
    for n in config.sizes:
        rows = rng.integers(0, len(pool), n)  # (N,) resampled rows of the real database pool
        size: dict[str, Any] = {}
        if "faiss_flat" in config.methods:
            size["faiss_flat"] = peers.measure_dense(emb_pool[rows], emb_q, budget["faiss_flat"], top)
            log(f"N={n} faiss_flat {size['faiss_flat']}")
        if "faiss_mrl" in config.methods:
            for m in config.mrl_dims:
                size[f"faiss_mrl_{m}"] = peers.measure_dense(mrl_pool[m][rows], mrl_q[m], budget["faiss_mrl"], top)
                log(f"N={n} faiss_mrl_{m} {size[f'faiss_mrl_{m}']}")
        for k in config.ks:
            last = n == config.sizes[-1] and k == config.ks[-1]  # the save / load test runs once, at the largest
            save_dir = config.cache() / "index_load_test" if last else None
            codes_db = codes_pool[k][torch.from_numpy(rows)]  # (N, k)
            measured = peers.measure_sparse(codes_db, codes_q[k], config.methods, budget, top, config.threads, save_dir)
            for name, value in measured.items():
                size[f"{name}_k{k}"] = value
                log(f"N={n} {name}_k{k} {value}")
        results["sizes"][str(n)] = size
        if config.output:  # after every size, so a long run that stops late still leaves its tables
            bench_report.write_report(results, Path(config.output))
            stem = Path(config.output).stem
            atomic_write_json(config.results_json or config.cache() / f"results_{stem}.json", results)
    if not config.output:
        log(bench_report.report_markdown(results))
    return results


def encode_overhead(config: BenchConfig, folder: str, texts: list[str], heads: dict, emb: np.ndarray) -> dict:
    """Seconds per text of the backbone (csrv2's TextEncoder; sentence-transformers' encode too when installed) and
    of each head's encode, same texts, same threads; and max |Δ| per coordinate between sentence-transformers'
    embeddings and the library's cached ones (emb rows of `texts`) — the benchmark's embeddings came from the
    former before csrv2.backbone.embeddings."""
    encoder = get_encoder(config.base.backbone)
    encoder.encode(texts[:64], progress=False)  # warm-up
    backbone_s, _ = measure.timed(lambda: encoder.encode(texts, progress=False))
    out: dict[str, Any] = {"texts": len(texts), "backbone_ms_per_text": backbone_s / len(texts) * 1e3}
    if measure.installed("sentence_transformers"):
        st = peers.STEmbedder(folder)
        st.encode(texts[:64])  # warm-up
        st_s, st_emb = measure.timed(lambda: st.encode(texts, config.base.backbone.batch_size))
        out["st_backbone_ms_per_text"] = st_s / len(texts) * 1e3
        out["st_max_abs_diff"] = float(np.abs(st_emb - np.asarray(emb[: len(texts)])).max())
    x = torch.from_numpy(np.asarray(emb[: len(texts)]))  # (n, d)
    with torch.no_grad():
        for k, head in heads.items():
            head.encode(x[:64], k=k)
            head_s, _ = measure.timed(
                lambda head=head, k=k: [head.encode(x[i : i + 64], k=k) for i in range(0, len(x), 64)]
            )
            out[f"head_k{k}_ms_per_text"] = head_s / len(texts) * 1e3
            out[f"head_k{k}_overhead_pct"] = 100 * head_s / backbone_s
    return out
