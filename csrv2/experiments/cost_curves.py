"""Cost curves: time and memory of every stage of csrv2 from N = 10k to 10M rows, with fitted growth exponents.

    OMP_NUM_THREADS=1 python scripts/bench_cost_curves.py --sizes 10000 100000 1000000 10000000

Real data: the texts, embeddings and k-heads of configs/bench/retrieval_small.yaml (cached by `csrv2 bench`). N rows
are drawn with replacement from its database pool (seed 0); the same draw gives the embeddings file and the codes.
Per N:
  embed   N / texts-per-second of the backbone measured here on `embed_texts` real texts: extrapolated, never run at N
  train   a fresh process trains a head (h 1536, k 2, csr objective: the .npy has no labels) for `train_steps` steps
          on the (N, d) float32 .npy, memory-mapped and read per batch (data.embeddings): s/step; one epoch is
          ⌈N / batch⌉ × s/step (extrapolated past train_steps); load s (the NaN/inf pass reads the file once); peak
          RSS (VmHWM, which counts the mapped file pages it touched) and peak anonymous RSS (what it really holds)
  encode  (N ≤ encode_max) a fresh process runs encode_to_index(head, file, k=2) with file reads: s, peak RSS
  index   per k: the pool's codes at the drawn rows → SparseIndex.build: s, bytes
  search  per k: median single-query latency, batch queries/s (csrv2.experiments.peers.measure_sparse), and top
          scores equal to brute force on `exact_queries` queries
  qdrant  (N ≤ qdrant_max) Qdrant local mode beside it: upsert s, median latency, top scores equal SparseIndex's
fit: slope of log(value) against log(N) over the sizes measured (1 = linear, 0 = constant).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from csrv2 import paths
from csrv2.codes import SparseCodes
from csrv2.config import Config
from csrv2.embeddings import embed_texts, get_encoder
from csrv2.experiments import bench, cost_curves_report, measure, peers
from csrv2.head import SparseHead
from csrv2.index_build import encode_to_index
from csrv2.prepare import training_data
from csrv2.trainer import Trainer

TRAIN_BATCH = 128


# -- memory of a process ------------------------------------------------------------------------------------------
def status_mib(field: str) -> float:
    """A /proc/self/status field in MiB (VmHWM: peak resident set; RssAnon: resident anonymous memory now)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**10
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


class AnonPeak:
    """Highest RssAnon seen by a thread sampling every 5 ms while the block runs: memory the process holds itself,
    without the clean file pages of a memory map (VmHWM counts those, and the kernel can drop them at any time)."""

    def __enter__(self):
        self.peak, self._stop = status_mib("RssAnon"), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, status_mib("RssAnon"))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, status_mib("RssAnon"))


# -- children: one stage in a fresh process -------------------------------------------------------------------------
def child_train(path: str, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as run_dir:
        config = Config.from_dict(
            {
                "output_dir": run_dir,
                "data": {"embeddings": path},
                "head": {"hidden": 1536, "k": 2},
                "train": {"objective": "csr", "max_steps": steps, "batch_size": TRAIN_BATCH, "checkpoint_every": 10**9},
            }
        )
        before = status_mib("VmHWM")
        with AnonPeak() as anon:
            load_s, data = measure.timed(lambda: training_data(config))
            fit_s, _ = measure.timed(lambda: Trainer(config, data).fit())
    return {
        "load_s": load_s,
        "s_per_step": fit_s / steps,
        "rss_before_mib": before,
        "peak_rss_mib": status_mib("VmHWM"),
        "peak_anon_mib": anon.peak,
    }


def child_encode(path: str, head_dir: str) -> dict:
    head = SparseHead.from_pretrained(head_dir).eval()
    before = status_mib("VmHWM")
    with AnonPeak() as anon:
        seconds, index = measure.timed(lambda: encode_to_index(head, path, k=2, chunk_rows=16384))
    return {
        "encode_s": seconds,
        "index_mib": index.memory_bytes() / 2**20,
        "rss_before_mib": before,
        "peak_rss_mib": status_mib("VmHWM"),
        "peak_anon_mib": anon.peak,
    }


def run_child(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "csrv2.experiments.cost_curves", "--child", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cost_curves child {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the parent: real data, one file per N, every stage ------------------------------------------------------------
def real_data(config: bench.BenchConfig, ks: list[int]):
    """(embeddings (T, d) memory map, database pool rows (P,), query rows (Q,), {k: head}) of the bench config."""
    data = bench.load_texts(config)
    emb = embed_texts(config.base.backbone, data.texts, key="bench/texts")
    queries, pool = np.arange(config.n_queries), np.arange(config.n_queries, len(data.texts))
    heads, _, _ = bench.train_heads(config, np.asarray(emb[pool]), data.labels[pool], log=lambda line: None)
    return data.texts, emb, pool, queries, {k: heads[k] for k in ks}


def embedding_file(folder: Path, emb: np.ndarray, pool: np.ndarray, rows: np.ndarray) -> Path:
    """The (N, d) float32 .npy of emb[pool[rows]], written in 64k-row blocks (reused when already complete)."""
    path = folder / f"rows_{len(rows)}.npy"
    if path.is_file() and np.load(path, mmap_mode="r").shape == (len(rows), emb.shape[1]):
        return path
    tmp = path.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(rows), emb.shape[1]))
    for start in range(0, len(rows), 65536):
        out[start : start + 65536] = emb[pool[rows[start : start + 65536]]]
    out.flush()
    del out
    tmp.replace(path)  # a crash mid-write leaves only the .partial file, never a short file under the final name
    return path


def brute_force_top(db: SparseCodes, queries: SparseCodes, top: int, block: int = 1 << 20) -> np.ndarray:
    """(Q, top) best scores of q · x over every row, from the packed codes alone (the naive reference)."""
    idx, val = db.indices.numpy(), db.values.numpy()  # (N, k)
    best = np.empty((len(queries), top), np.float32)
    for q in range(len(queries)):
        q_idx, q_val = queries.indices[q].numpy(), queries.values[q].numpy()
        scores = np.concatenate(
            [
                ((idx[s : s + block, :, None] == q_idx) * (val[s : s + block, :, None] * q_val)).sum((1, 2))
                for s in range(0, len(idx), block)
            ]
        )
        best[q] = -np.sort(-np.partition(scores, len(scores) - top)[-top:])
    return best


def search_costs(codes_db, codes_q, n: int, config, qdrant_max: int, exact_queries: int) -> dict:
    methods = ["qdrant_local"] if n <= qdrant_max and measure.installed("qdrant_client") else []
    out = peers.measure_sparse(codes_db, codes_q, methods, config.budget(), config.top, 1, None)
    ix = peers.SparseIndexPeer(codes_db)
    scores, _ = ix.search(codes_q[:exact_queries], config.top)
    record = {
        "build_s": out["sparse_index"]["build_s"],
        "index_mib": ix.index.memory_bytes() / 2**20,
        "median_us": out["sparse_index"]["median_us"],
        "batch_qps": out["sparse_index"]["qps"],
        "exact": measure.same_scores(scores, brute_force_top(codes_db, codes_q[:exact_queries], config.top)),
    }
    if methods:
        q = out["qdrant_local"]
        record.update(
            qdrant_upsert_s=q["build_s"], qdrant_median_us=q["median_us"], qdrant_same=q["same_scores_as_exact"]
        )
    return record


def embed_rate(config: bench.BenchConfig, texts: list[str], n_texts: int) -> float:
    """Texts per second of the bench backbone on n_texts real texts (model loaded and warmed up first)."""
    encoder = get_encoder(config.base.backbone)
    sample = texts[:: max(1, len(texts) // n_texts)][:n_texts]
    encoder.encode(sample[:16], progress=False)
    seconds, _ = measure.timed(lambda: encoder.encode(sample, progress=False))
    return len(sample) / seconds


def run(args, log=print) -> dict:
    config = bench.BenchConfig.from_yaml(args.config, [f"ks=[{','.join(map(str, args.ks))}]", "latency_queries=200"])
    texts, emb, pool, query_rows, heads = real_data(config, args.ks)
    folder = Path(args.folder or paths.home() / "bench" / "cost_curves")
    folder.mkdir(parents=True, exist_ok=True)
    heads[2].save_pretrained(folder / "head_k2")
    rate = embed_rate(config, texts, args.embed_texts)
    log(f"backbone: {rate:.1f} texts/s on {args.embed_texts} real texts, {torch.get_num_threads()} torch threads")
    pool_codes = {k: bench.encode_sparse(heads[k], np.asarray(emb[pool]), k) for k in args.ks}
    query_codes = {k: bench.encode_sparse(heads[k], np.asarray(emb[query_rows]), k) for k in args.ks}
    for k in args.ks:  # numba compiles the build and search kernels here, outside every timing
        peers.SparseIndexPeer(pool_codes[k][:1000]).search(query_codes[k][:2], config.top)
    results = {"machine": measure.machine(), "embed_texts_per_s": rate, "sizes": {}, "args": vars(args)}
    for n in args.sizes:
        rows = np.random.default_rng(0).integers(0, len(pool), n)
        record: dict = {"embed_s_extrapolated": n / rate}
        path = embedding_file(folder, emb, pool, rows)
        train = run_child("train", str(path), str(args.train_steps))
        train["epoch_s"] = train["s_per_step"] * -(-n // TRAIN_BATCH)
        record["train"] = train
        if n <= args.encode_max:
            record["encode"] = run_child("encode", str(path), str(folder / "head_k2"))
        if not args.keep_files:
            path.unlink()
        for k in args.ks:
            codes_db = pool_codes[k][torch.from_numpy(rows)]
            record[f"k{k}"] = search_costs(codes_db, query_codes[k], n, config, args.qdrant_max, args.exact_queries)
            del codes_db
        results["sizes"][str(n)] = record
        log(json.dumps({"n": n, **record}, default=float))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/bench/retrieval_small.yaml")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000])
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--encode-max", type=int, default=10_000_000, help="largest N encoded for real")
    parser.add_argument("--qdrant-max", type=int, default=100_000, help="largest N given to Qdrant local mode")
    parser.add_argument("--exact-queries", type=int, default=10)
    parser.add_argument("--embed-texts", type=int, default=500)
    parser.add_argument(
        "--folder", default="", help="where the (N, d) files go (default $CSRV2_HOME/bench/cost_curves)"
    )
    parser.add_argument("--keep-files", action="store_true", help="keep the (N, d) files (10M rows: 15 GB)")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--plot", default="", help="also draw the curves into this .png")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        stage, *rest = args.child
        record = child_train(rest[0], int(rest[1])) if stage == "train" else child_encode(rest[0], rest[1])
        print(json.dumps(record), flush=True)
        return
    results = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    print(cost_curves_report.table(results))
    if args.plot:
        cost_curves_report.plot(results, args.plot)


if __name__ == "__main__":
    main()
