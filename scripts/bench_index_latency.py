"""SparseIndex single-query latency against the memory-bandwidth bound, with csrv2 bench's own machinery.

    OMP_NUM_THREADS=1 python scripts/bench_index_latency.py --sizes 100000 1000000 --k 2

The benchmark texts, embeddings and heads of configs/bench/retrieval_small.yaml (cached by a previous `csrv2 bench`),
database codes resampled with replacement to each N (seed 0), then csrv2.experiments.bench.peers.measure_sparse for
SparseIndex alone: median single-query latency over `latency_queries` one-query calls, the fit fixed + ns/posting,
postings touched; and measure.read_bandwidth() in the same run. bound = mean postings touched × 8 bytes / bandwidth.
Prints one JSON line per N.
"""

import argparse
import json

import numpy as np
import torch

from csrv2.experiments import measure
from csrv2.experiments.bench import peers
from csrv2.experiments.bench import retrieval as bench


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/bench/retrieval_small.yaml")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--k", type=int, default=2)
    args = parser.parse_args(argv)
    config = bench.BenchConfig.from_yaml(args.config, [f"ks=[{args.k}]", "latency_queries=200"])
    data, emb, q_rows, pool = bench.embedded_texts(config)
    heads, _, _ = bench.train_heads(config, np.asarray(emb[pool]), data.labels[pool], log=lambda line: None)
    codes_q = bench.encode_sparse(heads[args.k], np.asarray(emb[q_rows]), args.k)
    codes_pool = bench.encode_sparse(heads[args.k], np.asarray(emb[pool]), args.k)
    rng = np.random.default_rng(config.seed)
    for n in args.sizes:
        codes_db = codes_pool[torch.from_numpy(rng.integers(0, len(pool), n))]
        budget = config.budget()
        record = peers.measure_sparse(codes_db, codes_q, [], budget, config.top, 1, None)["sparse_index"]
        bandwidth = measure.read_bandwidth()
        bound_us = record["postings_touched_mean"] * 8 / bandwidth / 1e3
        keys = ("median_us", "p99_us", "fit_fixed_us", "fit_ns_per_posting", "postings_touched_mean")
        out = {"n": n, "k": args.k, **{key: round(record[key], 2) for key in keys}}
        out.update(bandwidth_gbs=round(bandwidth, 2), bound_us=round(bound_us, 2))
        out["median_over_bound"] = round(record["median_us"] / bound_us, 2)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
