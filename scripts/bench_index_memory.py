"""Peak RSS of "embeddings on disk → codes → SparseIndex": the naive path against csrv2.index.build.encode_to_index.

    OMP_NUM_THREADS=1 python scripts/bench_index_memory.py --rows 1000000 --k 2

Writes an (N, 384) float32 .npy of the benchmark's real embeddings resampled with replacement (seed 0; the texts,
embeddings and k-head of configs/bench/retrieval_small.yaml, cached by `csrv2 bench`), then runs each path in a fresh
process and prints its peak RSS (VmHWM), seconds and the index it built (sha256 of its arrays):
  naive    np.load the whole file, csrv2.experiments.bench.retrieval.encode_sparse (8192-row batches), SparseIndex.build
  chunked  encode_to_index(head, path, chunk_rows=16384): chunks read with file reads, packed codes, counting sort
"""

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from csrv2 import paths
from csrv2.experiments import measure
from csrv2.experiments.bench import retrieval as bench
from csrv2.head.sparse_head import SparseHead
from csrv2.index.build import encode_to_index
from csrv2.index.sparse_index import SparseIndex


def head_and_embeddings(k: int):
    config = bench.BenchConfig.from_yaml("configs/bench/retrieval_small.yaml", [f"ks=[{k}]"])
    data, emb, _, pool = bench.embedded_texts(config)
    heads, _, _ = bench.train_heads(config, np.asarray(emb[pool]), data.labels[pool], log=lambda line: None)
    return heads[k], emb, pool


def child(mode: str, path: str, k: int) -> None:
    head = SparseHead.from_pretrained(path + ".head").eval()  # only the head: the baseline RSS is torch + csrv2
    base = measure.status_mib("VmHWM")
    start = time.perf_counter()
    if mode == "naive":
        x = np.load(path)
        index = SparseIndex.build(bench.encode_sparse(head, x, k))
    else:
        index = encode_to_index(head, path, k=k, chunk_rows=16384)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256(index.offsets.tobytes() + index.doc_ids.tobytes()).hexdigest()[:16]
    peak = measure.status_mib("VmHWM")
    record = {"mode": mode, "rows": index.n_docs, "k": k, "peak_rss_mib": round(peak), "rss_before_mib": round(base)}
    record.update(index_mib=round(index.memory_bytes() / 2**20, 1), seconds=round(seconds, 1), postings_sha=digest)
    print(json.dumps(record), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--file", default=str(paths.home() / "bench" / "index_memory_embeddings.npy"))
    parser.add_argument("--child", choices=["naive", "chunked"])
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.file, args.k)
        return
    Path(args.file).parent.mkdir(parents=True, exist_ok=True)
    head, emb, pool = head_and_embeddings(args.k)
    head.save_pretrained(args.file + ".head")
    rows = np.random.default_rng(0).integers(0, len(pool), args.rows)
    out = np.lib.format.open_memmap(args.file, mode="w+", dtype=np.float32, shape=(args.rows, emb.shape[1]))
    for start in range(0, args.rows, 65536):
        out[start : start + 65536] = emb[pool[rows[start : start + 65536]]]
    out.flush()
    del out
    size = Path(args.file).stat().st_size / 2**20
    print(json.dumps({"file": args.file, "rows": args.rows, "mib": round(size)}), flush=True)
    for mode in ("naive", "chunked"):
        child_args = ["--child", mode, "--file", args.file, "--k", str(args.k)]
        subprocess.run([sys.executable, __file__, *child_args], check=True)
    Path(args.file).unlink()
    shutil.rmtree(args.file + ".head")


if __name__ == "__main__":
    main()
