"""Retrieval benchmark: SparseIndex vs faiss (dense, Matryoshka dims), sentence-transformers sparse, scipy.

    python scripts/bench.py --config configs/bench/retrieval.yaml [key=value ...]

Writes the tables into docs/benchmarks.md (between its bench markers), raw numbers as JSON under $CSRV2_HOME/bench.
"""

import os

# OpenMP threads (faiss, torch) that spin while idle starve one another on a small shared machine: a single faiss
# query took 60 ms instead of 50 µs here with the default active wait. Must be set before those libraries load.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402

from csrv2.bench import BenchConfig, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a YAML file in configs/bench/")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. sizes=[100000] head.epochs=2")
    args = parser.parse_args()
    config = BenchConfig.from_yaml(args.config, args.overrides)
    command = " ".join(["python", "scripts/bench.py", *map(shlex.quote, sys.argv[1:])])
    run(config, command=command, log=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
